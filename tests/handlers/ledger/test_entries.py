"""The ledger's values, built fast on the hot path and exactly as before: timestamps, entries."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.ledger.ledger import (
    HISTORY_KEEP,
    LedgerEntry,
    ReceivedEvent,
    add_history,
    body_key,
    event_key,
    parse_history,
    storable,
    utc_iso,
)
from handlers.ledger.stored_event import decode_event
from handlers.outcome import Outcome

FACTS: dict[str, Any] = {"key": "k", "event_id": "e", "event_type": "t", "subject": "s", "topic": "/t",
         "function": "f", "received_at": "r", "updated_at": "u", "outcome": Outcome.DONE}


@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False) |
       st.integers(min_value=0, max_value=2**32).map(lambda s: s + 0.0005) |
       st.integers(min_value=0, max_value=2**32).map(lambda s: s + 0.9999995))
def test_utc_iso_writes_what_datetime_writes(epoch_s: float) -> None:
    # Rounding to microseconds (half to even), then milliseconds: as datetime does it.
    assert utc_iso(epoch_s) == datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(
        timespec="milliseconds")


def test_an_entry_built_from_its_fields_equals_the_dataclass_one() -> None:
    built = LedgerEntry.of(FACTS)
    assert built == LedgerEntry(**FACTS)
    assert (built.attempts, built.etag, built.history) == (1, "", "")


def test_evolve_changes_fields_and_refuses_unknown_ones() -> None:
    entry = LedgerEntry(**FACTS)
    changed = entry.evolve(outcome=Outcome.FAILED, attempts=2)
    assert (changed.outcome, changed.attempts, entry.outcome) == (Outcome.FAILED, 2, Outcome.DONE)
    with pytest.raises(TypeError, match="outcom"):
        entry.evolve(outcom=Outcome.FAILED)


def test_the_event_key_is_the_same_however_often_it_is_asked() -> None:
    first = event_key("/subscriptions/S/x", "Microsoft.MachineLearningServices.ModelRegistered", "1")
    again = event_key("/subscriptions/s/X ", "microsoft.machinelearningservices.modelregistered",
                      " 1")
    assert first == again and len(first) == 40


def test_the_event_key_is_the_same_in_every_release() -> None:
    # Rows written by an earlier version must still deduplicate a redelivery after an upgrade:
    # the key is the first 40 hex digits of SHA-256 over lower-cased topic and type, and the id.
    ws = "/subscriptions/S/resourceGroups/R/providers/Microsoft.MachineLearningServices/workspaces/W"
    assert event_key(ws, "Microsoft.MachineLearningServices.RunStatusChanged", "id-1") == (
        "df963719ce9d6fd4a1ba1a8efef704690d41a8e6")
    assert event_key(ws, "T", "x" * 100_000) == hashlib.sha256(
        f"{ws.lower()}\nt\n{'x' * 100_000}".encode()).hexdigest()[:40]  # the uncached way too


def test_a_hostile_event_size_is_hashed_but_never_held_in_the_cache() -> None:
    from handlers.ledger import ledger

    huge = "x" * 100_000
    before = ledger._cached_event_key.cache_info().currsize
    assert event_key("/t", "T", huge) == event_key("/t", "T", huge) == ledger._event_key(
        "/t", "T", huge)
    assert ledger._cached_event_key.cache_info().currsize == before


def test_as_json_is_the_public_shape_exactly() -> None:
    entry = LedgerEntry(**{**FACTS, "outcome": Outcome.PLANNED}, action="deploy m:3",
                        detail='{"a":1}', attempts=4, claim_expires_at_s=9.5, etag="W/1",
                        history='[{"n":1}]')
    # every public field under its own name, nothing internal (claim, etag, history)
    assert entry.as_json() == {
        "id": "e", "key": "k", "type": "t", "subject": "s", "topic": "/t", "function": "f",
        "received_at": "r", "updated_at": "u", "outcome": "planned", "action": "deploy m:3",
        "detail": '{"a":1}', "attempts": 4}


def test_a_new_entry_has_the_documented_defaults() -> None:
    entry = LedgerEntry.of(FACTS)
    assert (entry.action, entry.detail, entry.attempts, entry.claim_expires_at_s, entry.etag,
            entry.history) == ("", "", 1, 0.0, "", "")
    assert entry.events() == [] and not entry.quarantined


def test_evolve_names_every_unknown_field_sorted_and_leaves_the_original() -> None:
    entry = LedgerEntry(**FACTS)
    with pytest.raises(TypeError) as caught:
        entry.evolve(zeta=1, alpha=2, action="kept out")
    assert str(caught.value) == "LedgerEntry has no field(s) ['alpha', 'zeta']"
    changed = entry.evolve(action="a", history='[{"n":1},"junk"]')
    assert changed == LedgerEntry(**FACTS, action="a", history='[{"n":1},"junk"]')
    assert entry == LedgerEntry(**FACTS) and changed.events() == [{"n": 1}]


@pytest.mark.parametrize(("outcome", "action", "expected"), [
    (Outcome.FAILED, "quarantined", True), (Outcome.FAILED, "deploy", False),
    (Outcome.DONE, "quarantined", False)])
def test_only_a_failed_row_marked_quarantined_is_quarantined(outcome: Outcome, action: str,
                                                             expected: bool) -> None:
    assert LedgerEntry(**{**FACTS, "outcome": outcome}, action=action).quarantined is expected


def received(**changes: Any) -> ReceivedEvent:
    facts = {k: FACTS[k] for k in ("key", "event_id", "event_type", "subject", "topic",
                                   "function")}
    return ReceivedEvent(**{**facts, **changes})


def test_a_received_event_without_its_event_stores_nothing() -> None:
    assert received().stored() == b""
    assert received(raw={}, schema="EventGridSchema").stored() == b""


def test_a_received_event_stores_its_event_masked_with_its_schema() -> None:
    event = {"id": "e", "data": {"token": "secret-1", "n": 1}}
    stored = received(raw=event, schema="CloudEventSchemaV1_0",
                      clean=lambda text: text.replace("secret-1", "***")).stored()
    read = decode_event(stored)
    assert (read.event, read.schema, read.masked, read.truncated) == (
        {"id": "e", "data": {"token": "***", "n": 1}}, "CloudEventSchemaV1_0", 1, {})


def test_a_received_event_screened_clean_is_stored_as_it_came() -> None:
    event = {"id": "e", "data": {"token": "secret-1"}}
    stored = received(raw=event, schema="EventGridSchema", clean=lambda text: "masked",
                      screen=lambda document: False).stored()
    assert decode_event(stored).event == event


@pytest.mark.parametrize(("epoch_s", "expected"), [
    (0.0, "1970-01-01T00:00:00.000+00:00"), (1.9999996, "1970-01-01T00:00:02.000+00:00"),
    (-0.25, "1969-12-31T23:59:59.750+00:00"), (1_700_000_000.1234, "2023-11-14T22:13:20.123+00:00")])
def test_utc_iso_at_its_boundaries(epoch_s: float, expected: str) -> None:
    assert utc_iso(epoch_s) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"), ("café", "café"), ("a\ud800b", "a\ufffd\ufffd\ufffdb"), ("", "")])
def test_storable_replaces_only_lone_surrogates(text: str, expected: str) -> None:
    assert storable(text) == expected


def test_the_body_key_is_raw_and_36_hex_digits_of_sha256() -> None:
    assert body_key(b"{}") == "raw-" + hashlib.sha256(b"{}").hexdigest()[:36]


def test_the_event_key_at_the_cache_bound_is_the_same_either_way() -> None:
    from handlers.ledger import ledger

    topic = "t" * (ledger._CACHED_KEY_CHARS - 2)
    assert event_key(topic, "T", "1") == hashlib.sha256(
        f"{topic}\nt\n1".encode()).hexdigest()[:40]
    assert ledger._event_key(" /T ", " T ", " 1 ") == hashlib.sha256(
        b"/t\nt\n1").hexdigest()[:40]


@pytest.mark.parametrize("added", [HISTORY_KEEP + 1, HISTORY_KEEP + 2, HISTORY_KEEP + 10])
def test_a_history_keeps_its_first_and_latest_items_and_counts_the_rest(added: int) -> None:
    text = ""
    for n in range(1, added + 1):
        text = add_history(text, {"n": n})
    # the first item, the count of those dropped, then the latest HISTORY_KEEP - 2
    omitted = added - (HISTORY_KEEP - 1)
    assert parse_history(text) == [{"n": 1}, {"omitted": omitted},
                                   *({"n": n} for n in range(omitted + 2, added + 1))]


def test_a_new_history_is_compact_json_of_its_first_item() -> None:
    assert add_history("", {"n": 1, "é": "ü"}) == '[{"n":1,"é":"ü"}]'
    assert add_history('[{"n":1}]', {"n": 2}) == '[{"n":1},{"n":2}]'


def test_a_history_just_at_its_bound_omits_nothing() -> None:
    text = ""
    for n in range(1, HISTORY_KEEP + 1):
        text = add_history(text, {"n": n})
    assert parse_history(text) == [{"n": n} for n in range(1, HISTORY_KEEP + 1)]


@pytest.mark.parametrize("damaged", ["{", '{"n": 1}', '"text"', "[1, 2]"])
def test_a_damaged_history_reads_as_empty(damaged: str) -> None:
    assert parse_history(damaged) == []
