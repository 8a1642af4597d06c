"""fields: the reading rules shared by dicts and azure.functions objects, each value and problem
compared whole (a problem's text is what an operator reads in the ledger)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from handlers.errors import InvalidEvent
from handlers.events.fields import (
    Fields,
    Problems,
    data_object,
    envelope,
    load_json,
    number,
    string_map,
    text,
)
from handlers.events.types import EVENT_GRID_SCHEMA, EventEnvelope

RUN = "Microsoft.MachineLearningServices.RunCompleted"


@pytest.mark.parametrize("absent", [None, "", "   ", "\t\n"])
@pytest.mark.parametrize("required", [True, False])
def test_an_absent_or_blank_text_is_empty_and_named_only_when_required(absent: Any,
                                                                        required: bool) -> None:
    problems: Problems = []
    assert text(absent, "subject", problems, required=required) == ""
    assert problems == ([("subject", "is required")] if required else [])


@pytest.mark.parametrize(("given", "expected"), [("abc", "abc"), (" a ", " a "), (7, "7"),
                                                 (0, "0")])
def test_a_text_keeps_strings_as_given_and_writes_ints(given: Any, expected: str) -> None:
    problems: Problems = []
    assert text(given, "modelVersion", problems, required=True) == expected
    assert problems == []


@pytest.mark.parametrize(("given", "kind"), [(True, "bool"), (False, "bool"), (1.5, "float"),
                                             ({"a": 1}, "dict"), ([1], "list")])
@pytest.mark.parametrize("required", [True, False])
def test_a_text_of_another_type_is_empty_and_named(given: Any, kind: str, required: bool) -> None:
    problems: Problems = []
    assert text(given, "id", problems, required=required) == ""
    assert problems == [("id", f"must be a string, got {kind}")]


@pytest.mark.parametrize(("given", "expected"), [(0.25, 0.25), ("0.5", 0.5), (3, 3.0),
                                                 (" 2 ", 2.0)])
def test_a_number_is_a_json_number_or_numeric_string(given: Any, expected: float) -> None:
    problems: Problems = []
    assert number(given, "coefficient", problems) == expected
    assert problems == []


def test_an_absent_number_is_nan_and_required() -> None:
    problems: Problems = []
    assert math.isnan(number(None, "coefficient", problems))
    assert problems == [("coefficient", "is required")]


@pytest.mark.parametrize("bad", [True, False, "abc", "nan", "inf", float("inf"), [1], ""])
def test_a_number_that_is_not_finite_is_named_with_its_value(bad: Any) -> None:
    problems: Problems = []
    assert not math.isfinite(number(bad, "coefficient", problems))
    assert problems == [("coefficient", f"must be a finite number, got {bad!r}")]


def test_a_string_map_makes_every_scalar_a_string() -> None:
    problems: Problems = []
    given = {"a": "x", "b": True, "c": False, "d": None, "e": 3, "f": 1.5, 7: "seven"}
    assert string_map(given, "tags", problems) == {
        "a": "x", "b": "true", "c": "false", "d": "", "e": "3", "f": "1.5", "7": "seven"}
    assert problems == []


def test_an_absent_string_map_is_empty_without_a_problem() -> None:
    problems: Problems = []
    assert string_map(None, "tags", problems) == {}
    assert problems == []


@pytest.mark.parametrize(("bad", "kind"), [("a=b", "str"), ([1], "list"), (3, "int")])
def test_a_string_map_that_is_not_an_object_is_named(bad: Any, kind: str) -> None:
    problems: Problems = []
    assert string_map(bad, "tags", problems) == {}
    assert problems == [("tags", f"must be an object, got {kind}")]


def test_nested_values_of_a_string_map_are_each_named_and_the_rest_kept() -> None:
    problems: Problems = []
    found = string_map({"ok": "1", "deep": {"x": 1}, "many": [1]}, "properties", problems)
    assert found == {"ok": "1"}
    assert problems == [("properties.deep", "must be a string value"),
                        ("properties.many", "must be a string value")]


@pytest.mark.parametrize("given", [{"a": 1}, '{"a": 1}', b'{"a": 1}'])
def test_data_is_an_object_or_json_text_holding_one(given: Any) -> None:
    problems: Problems = []
    assert data_object(given, problems) == {"a": 1}
    assert problems == []


@pytest.mark.parametrize(("bad", "problem"), [
    (None, "is required"), ("{not json", "must be a JSON object"),
    (b"\xff", "must be a JSON object"), ("[1, 2]", "must be an object, got list"),
    ("", "must be an object, got str"), (b"", "must be an object, got bytes"),
    (7, "must be an object, got int")])
def test_data_of_anything_else_is_empty_and_named(bad: Any, problem: str) -> None:
    problems: Problems = []
    assert data_object(bad, problems) == {}
    assert problems == [("data", problem)]


def test_load_json_reads_text_and_bytes() -> None:
    assert load_json('{"a": [1]}') == {"a": [1]}
    assert load_json(bytearray(b"[1]")) == [1]


def test_load_json_names_the_body_and_the_parsers_reason() -> None:
    with pytest.raises(InvalidEvent) as caught:
        load_json("{")
    assert (caught.value.field, caught.value.problems) == ("body", (
        ("body", "is not valid JSON: Expecting property name enclosed in double quotes: "
                 "line 1 column 2 (char 1)"),))
    assert str(caught.value) == ("body: is not valid JSON: Expecting property name enclosed in "
                                 "double quotes: line 1 column 2 (char 1)")


def test_fields_read_any_casing_the_documented_spelling_first() -> None:
    problems: Problems = []
    fields = Fields({"ModelName": "upper", "modelname": "lower", "Other": 0}, "data.", problems)
    assert fields.get("ModelName") == "upper"
    assert fields.get("MODELNAME") == "lower"  # the lower-cased copy: the last spelling wins
    assert fields.get("other") == 0
    assert fields.get("missing") is None


def test_a_none_under_the_documented_spelling_falls_back_to_another_casing() -> None:
    fields = Fields({"runId": None, "RUNID": "r1"}, "", [])
    assert fields.get("runId") == "r1"


def test_fields_name_problems_with_their_prefix() -> None:
    problems: Problems = []
    fields = Fields({"modelVersion": True, "tags": [1], "coefficient": "x", "name": "  "},
                    "data.", problems)
    assert fields.text("modelVersion", required=True) == ""
    assert fields.text("name", required=True) == ""
    assert fields.text("absent", required=False) == ""
    assert fields.string_map("tags") == {}
    assert math.isnan(fields.number("coefficient"))
    assert problems == [("data.modelVersion", "must be a string, got bool"),
                        ("data.name", "is required"),
                        ("data.tags", "must be an object, got list"),
                        ("data.coefficient", "must be a finite number, got 'x'")]


def test_fields_return_values_as_read() -> None:
    problems: Problems = []
    fields = Fields({"name": "m", "version": 3, "tags": {"a": 1}, "n": "2.5"}, "data.", problems)
    assert (fields.text("name", required=True), fields.text("version", required=True),
            fields.string_map("tags"), fields.number("n")) == ("m", "3", {"a": "1"}, 2.5)
    assert problems == []


def test_an_envelope_of_good_values_canonicalises_the_type() -> None:
    raw = {"id": "e1"}
    found = envelope([], id="e1", event_type=RUN.lower(), topic="/t", subject="s",
                     event_time="2024-01-01T00:00:00Z", data_version="1", schema=EVENT_GRID_SCHEMA,
                     data={"a": 1}, raw=raw)
    assert found == EventEnvelope(id="e1", event_type=RUN, subject="s", topic="/t",
                                  event_time="2024-01-01T00:00:00Z", data_version="1",
                                  schema=EVENT_GRID_SCHEMA, data={"a": 1}, raw=raw)
    assert found.raw is raw


def test_an_envelope_with_problems_raises_one_error_naming_them_all() -> None:
    with pytest.raises(InvalidEvent) as caught:
        envelope([("id", "is required"), ("data", "is required")], id="", event_type="",
                 topic="", subject="", event_time="", data_version="", schema=EVENT_GRID_SCHEMA,
                 data={}, raw={})
    assert (caught.value.field, caught.value.message) == ("id", "is required")
    assert str(caught.value) == "id: is required; data: is required"
