"""salvage: a malformed event keeps what can be read, and its key depends on content only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from handlers.events.salvage import MAX_FIELD_CHARS, Salvaged, salvage

Sample = Callable[[str], dict[str, Any]]


def worker_decode(event: dict[str, Any]) -> Any:
    return EventGridEventInConverter.decode(meta.Datum(type="json", value=json.dumps(event)),
                                            trigger_metadata=None)


def test_a_dict_keeps_its_fields_in_any_casing_and_its_old_key_material() -> None:
    event = {"ID": "e1", "EventType": "T", "Topic": "/t", "SUBJECT": "s", "data": [1]}
    found = salvage(event)
    assert (found.event_id, found.event_type, found.topic, found.subject) == ("e1", "T", "/t", "s")
    # The same bytes as before salvage existed, so rows already in a ledger keep their keys.
    assert found.key_material == json.dumps(event, sort_keys=True, default=str).encode()


def test_cloud_event_names_are_read_too() -> None:
    found = salvage({"specversion": "1.0", "id": "c1", "type": "T", "source": "/s"})
    assert (found.event_id, found.event_type, found.topic, found.subject) == ("c1", "T", "/s", "")


@pytest.mark.parametrize("body", [b'{"id": "j1", "eventType": "T"}', '{"id": "j1", "eventType": "T"}'])
def test_json_text_keeps_its_bytes_as_key_and_its_fields(body: bytes | str) -> None:
    found = salvage(body)
    assert found.key_material == (body if isinstance(body, bytes) else body.encode())
    assert (found.event_id, found.event_type) == ("j1", "T")


@pytest.mark.parametrize("body", [b"\xff\xfe", b"[1, 2]", "not json", b"[" * 5000])
def test_unreadable_text_is_keyed_by_its_bytes(body: bytes | str) -> None:
    found = salvage(body)
    assert found.event_id == "" and found.key_material


@pytest.mark.parametrize("cloud", [False, True])
def test_the_same_func_object_content_gives_the_same_key(sample: Sample, cloud: bool) -> None:
    raw = sample("model_registered")
    body = ({"specversion": "1.0", "id": raw["id"], "source": raw["topic"],
             "subject": raw["subject"], "time": raw["eventTime"], "data": raw["data"]}
            if cloud else {**raw, "eventType": None})
    first, again = worker_decode(body), worker_decode(body)
    assert first is not again and repr(first) != repr(again)  # reprs carry memory addresses
    assert salvage(first) == salvage(again)
    found = salvage(first)
    assert (found.event_id, found.event_type, found.topic, found.subject) == \
        (raw["id"], "", raw["topic"], raw["subject"])


def test_different_func_objects_get_different_keys(sample: Sample) -> None:
    raw = sample("model_registered")
    other = {**raw, "id": "another"}
    assert salvage(worker_decode(raw)).key_material != salvage(worker_decode(other)).key_material


def test_an_event_grid_event_with_missing_attributes_keeps_the_rest(sample: Sample) -> None:
    raw = sample("run_status_changed")
    event = func.EventGridEvent(id=raw["id"], data=raw["data"], topic=None,  # type: ignore[arg-type]
                                subject=raw["subject"], event_type=None,  # type: ignore[arg-type]
                                event_time=None, data_version=None)  # type: ignore[arg-type]
    assert salvage(event) == Salvaged(salvage(event).key_material, raw["id"], "", "",
                                      raw["subject"])


def test_an_unknown_object_gets_a_key_without_its_address() -> None:
    class Strange:
        pass

    first, again = salvage(Strange()), salvage(Strange())
    assert first == again and b"0x" not in first.key_material
    assert first.event_id == ""
    # the key names the object's type, so two unknown kinds never share a key
    assert first.key_material.startswith(f"{__name__}.{Strange.__qualname__}:".encode())


def test_fields_are_bounded_and_only_scalars_are_kept() -> None:
    found = salvage({"id": "x" * 10_000, "eventType": True, "topic": {"a": 1}, "subject": 7})
    assert len(found.event_id) == MAX_FIELD_CHARS
    assert (found.event_type, found.topic, found.subject) == ("", "", "7")


def test_a_dict_that_json_cannot_sort_still_gets_a_stable_key() -> None:
    event = {1: "a", "b": object()}
    assert salvage(event).key_material == salvage({1: "a", "b": object()}).key_material


def nested(depth: int, leaf: Any) -> dict[str, Any]:
    """A dict `depth` levels deep, built without recursion (JSON parsers allow such depth)."""
    value: Any = leaf
    for _ in range(depth):
        value = {"data": value}
    return value


def test_content_deeper_than_json_dumps_or_repr_can_take_still_gets_a_key() -> None:
    deep, same, other = nested(100_000, [1]), nested(100_000, [1]), nested(100_000, [2])
    found = salvage({"id": "deep", **deep})
    assert found.event_id == "deep"
    assert found.key_material == salvage({"id": "deep", **same}).key_material
    assert found.key_material != salvage({"id": "deep", **other}).key_material


def test_an_object_whose_repr_raises_still_gets_a_key() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert salvage(Hostile()) == salvage(Hostile())
    assert salvage({"id": "h", "x": Hostile()}).event_id == "h"


def test_the_walked_key_of_mixed_key_types_is_exact() -> None:
    # json.dumps cannot sort int and str keys together: the key is walked, keys by their repr
    # in order, each followed by ":", scalars by ",", containers bracketed.
    event = {1: "a", "b": [1, None, (2,)], "c": {"d": "e"}}
    assert salvage(event) == Salvaged(b"{'b':[1,None,[2,]]'c':{'d':'e',}1:'a',}", "", "", "", "")


def test_the_walked_key_tells_a_string_value_from_punctuation() -> None:
    # A value that reads like the walker's punctuation is quoted by its repr, so never confused.
    assert salvage({1: "}", "a": "]"}).key_material == b"{'a':']',1:'}',}"


class Unprintable:
    """Neither repr nor str works: only its type can name it."""

    def __repr__(self) -> str:
        raise RuntimeError("no")

    def __str__(self) -> str:
        raise RuntimeError("no")


def test_values_json_cannot_write_are_keyed_by_their_text_without_addresses() -> None:
    found = salvage({"id": "h", "x": Unprintable(), "o": object()})
    assert found == Salvaged(b'{"id": "h", "o": "<object object>", "x": "<Unprintable>"}', "h")


def test_an_unknown_object_whose_repr_raises_is_keyed_by_its_type() -> None:
    assert salvage(Unprintable()) == Salvaged(f"{__name__}.Unprintable:<Unprintable>".encode())


def test_an_unknown_objects_key_is_its_type_and_repr() -> None:
    class Plain:
        def __repr__(self) -> str:
            return "Plain(1) at 0xdeadBEEF"

    assert salvage(Plain()) == Salvaged(f"{__name__}.{Plain.__qualname__}:Plain(1)".encode())


def test_the_first_present_name_is_read_ints_as_text() -> None:
    # eventType before type, topic before source; ints kept as their text, bools and None skipped
    found = salvage({"id": 12, "type": "cloud", "eventType": "grid", "source": "/s",
                     "topic": None, "subject": False})
    assert (found.event_id, found.event_type, found.topic, found.subject) == (
        "12", "grid", "/s", "")


def test_a_field_exactly_at_the_bound_is_kept_whole() -> None:
    assert salvage({"id": "x" * MAX_FIELD_CHARS}).event_id == "x" * MAX_FIELD_CHARS
    assert salvage({"id": "y" * (MAX_FIELD_CHARS + 1)}).event_id == "y" * MAX_FIELD_CHARS


def test_json_text_that_is_not_an_object_keeps_no_fields() -> None:
    assert salvage('["id", "x"]') == Salvaged(b'["id", "x"]')
    assert salvage(bytearray(b'{"id": "b"}')) == Salvaged(b'{"id": "b"}', "b")


def test_text_with_a_lone_surrogate_is_keyed_by_its_bytes() -> None:
    assert salvage('{"id": "\ud800"}').key_material == '{"id": "\ud800"}'.encode(
        "utf-8", "surrogatepass")


def test_a_func_event_is_keyed_by_its_canonical_wire_form(sample: Sample) -> None:
    raw = sample("model_registered")
    found = salvage(worker_decode(raw))
    wire = {k: v for k, v in raw.items() if k != "metadataVersion"}
    wire["eventTime"] = "2017-06-26T18:41:00.958410Z"
    assert found == Salvaged(json.dumps(wire, sort_keys=True).encode(), raw["id"],
                             raw["eventType"], raw["topic"], raw["subject"])
