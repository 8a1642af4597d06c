"""Event Grid filtering, table-driven: every operator matching, not matching, key missing."""

from __future__ import annotations

from typing import Any

import pytest

from amlevents.simulator.filters import (
    OPERATORS,
    AdvancedFilter,
    EventFilter,
    evaluate,
    lookup,
    matches,
)

EVENT: dict[str, Any] = {
    "id": "831e1650-001e-001b-66ab-eeb76e069631",
    "topic": "/subscriptions/s/resourceGroups/rg/providers/"
             "Microsoft.MachineLearningServices/workspaces/ws",
    "subject": "models/Sklearn_Regression_Model:20",
    "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
    "eventTime": "2017-06-26T18:41:00.9584103Z",
    "dataVersion": "2",
    "metadataVersion": "1",
    "data": {
        "ModelName": "sklearn_regression_model",
        "ModelVersion": 20,
        "ratio": 0.5,
        "enabled": True,
        "nothing": None,
        "ModelTags": {"deploy": "True", "stage": "Prod"},
        "numbers": [1, 5, 10],
        "words": ["Alpha", "beta"],
        "mixed": [1, "two", True, None, {"k": 1}],
        "empty": [],
        "objects": [{"a": 1}],
    },
}

CLOUD_EVENT: dict[str, Any] = {
    "specversion": "1.0", "type": "com.example.someevent", "source": "/mycontext",
    "id": "C234-1234-1234", "time": "2018-04-05T17:31:00Z", "subject": None,
    "comexampleextension1": "value", "comexampleothervalue": 5,
    "datacontenttype": "application/json",
    "data": {"appinfoA": "abc", "appinfoB": 123, "appinfoC": True},
}

MISSING = "data.doesNotExist"

# (operator, key, values, expected) on EVENT, arrays disabled.
SCALAR_CASES: list[tuple[str, str, tuple[Any, ...], bool]] = [
    ("NumberIn", "data.ModelVersion", (20, 21), True),
    ("NumberIn", "data.ModelVersion", (1, 2), False),
    ("NumberIn", "data.ratio", (0.5,), True),
    ("NumberNotIn", "data.ModelVersion", (1, 2), True),
    ("NumberNotIn", "data.ModelVersion", (1, 20), False),
    ("NumberLessThan", "data.ModelVersion", (21,), True),
    ("NumberLessThan", "data.ModelVersion", (20,), False),
    ("NumberGreaterThan", "data.ModelVersion", (19,), True),
    ("NumberGreaterThan", "data.ModelVersion", (20,), False),
    ("NumberLessThanOrEquals", "data.ModelVersion", (20,), True),
    ("NumberLessThanOrEquals", "data.ModelVersion", (19.99,), False),
    ("NumberGreaterThanOrEquals", "data.ModelVersion", (20,), True),
    ("NumberGreaterThanOrEquals", "data.ModelVersion", (20.01,), False),
    ("NumberInRange", "data.ModelVersion", ((1, 5), (20, 30)), True),
    ("NumberInRange", "data.ModelVersion", ((10, 20),), True),  # inclusive
    ("NumberInRange", "data.ratio", ((0.1, 0.5),), True),
    ("NumberInRange", "data.ModelVersion", ((21, 30),), False),
    ("NumberNotInRange", "data.ModelVersion", ((21, 30), (0, 19)), True),
    ("NumberNotInRange", "data.ModelVersion", ((21, 30), (20, 20)), False),
    ("BoolEquals", "data.enabled", (True,), True),
    ("BoolEquals", "data.enabled", (False,), False),
    ("BoolEquals", "data.ModelTags.deploy", (True,), False),  # the string "True" is no boolean
    ("StringIn", "data.ModelTags.deploy", ("true",), True),  # case-insensitive
    ("StringIn", "data.ModelTags.deploy", ("false", "tru"), False),
    ("StringNotIn", "data.ModelTags.deploy", ("false", "no"), True),
    ("StringNotIn", "data.ModelTags.deploy", ("false", "TRUE"), False),  # must avoid every value
    ("StringBeginsWith", "subject", ("runs/", "MODELS/"), True),
    ("StringBeginsWith", "subject", ("runs/",), False),
    ("StringNotBeginsWith", "subject", ("runs/", "datadrifts/"), True),
    ("StringNotBeginsWith", "subject", ("runs/", "models/"), False),
    ("StringEndsWith", "subject", (":20",), True),
    ("StringEndsWith", "subject", (":21",), False),
    ("StringNotEndsWith", "subject", (":21", ":22"), True),
    ("StringNotEndsWith", "subject", (":21", "_MODEL:20"), False),
    ("StringContains", "subject", ("torch", "REGRESSION"), True),
    ("StringContains", "subject", ("torch",), False),
    ("StringNotContains", "subject", ("torch", "tf"), True),
    ("StringNotContains", "subject", ("torch", "regression"), False),
    ("IsNullOrUndefined", "data.nothing", (), True),
    ("IsNullOrUndefined", "data.ModelName", (), False),
    ("IsNotNull", "data.ModelName", (), True),
    ("IsNotNull", "data.nothing", (), False),
    ("IsNotNull", "data.ModelTags", (), True),  # an object is not null
    # Type rules: values of another type are ignored; strings accept numbers and booleans.
    ("NumberIn", "data.ModelName", (20,), False),
    ("NumberNotIn", "data.ModelName", (20,), True),
    ("StringIn", "data.ModelVersion", ("20",), True),
    ("StringIn", "data.enabled", ("TRUE",), True),
    ("StringIn", "data.ModelTags", ("Prod",), False),  # objects are not filterable
]

# Every operator with a missing key, as documented (the NOTE under StringNotIn).
MISSING_EXPECTED = {
    "NumberNotIn": True, "StringNotIn": True, "IsNullOrUndefined": True,
}
MISSING_VALUES: dict[str, tuple[Any, ...]] = {
    "NumberInRange": ((0, 100),), "NumberNotInRange": ((0, 100),), "BoolEquals": (True,),
    "IsNullOrUndefined": (), "IsNotNull": (),
}

# (operator, key, values, enableAdvancedFilteringOnArrays, expected)
ARRAY_CASES: list[tuple[str, str, tuple[Any, ...], bool, bool]] = [
    ("NumberIn", "data.numbers", (5,), True, True),
    ("NumberIn", "data.numbers", (5,), False, False),
    ("NumberIn", "data.numbers", (7,), True, False),
    ("NumberNotIn", "data.numbers", (7, 8), True, True),
    ("NumberNotIn", "data.numbers", (7, 5), True, False),
    ("NumberNotIn", "data.numbers", (7,), False, False),
    ("NumberLessThan", "data.numbers", (2,), True, True),
    ("NumberLessThan", "data.numbers", (1,), True, False),
    ("NumberGreaterThan", "data.numbers", (9,), True, True),
    ("NumberGreaterThan", "data.numbers", (10,), True, False),
    ("NumberLessThanOrEquals", "data.numbers", (1,), True, True),
    ("NumberGreaterThanOrEquals", "data.numbers", (10,), True, True),
    ("NumberGreaterThanOrEquals", "data.numbers", (11,), True, False),
    ("NumberInRange", "data.numbers", ((2, 5),), True, True),
    ("NumberInRange", "data.numbers", ((6, 9),), True, False),
    ("NumberNotInRange", "data.numbers", ((11, 20),), True, True),
    ("NumberNotInRange", "data.numbers", ((2, 5),), True, False),
    ("StringIn", "data.words", ("BETA",), True, True),
    ("StringIn", "data.words", ("BETA",), False, False),
    ("StringNotIn", "data.words", ("gamma",), True, True),
    ("StringNotIn", "data.words", ("gamma", "alpha"), True, False),
    ("StringBeginsWith", "data.words", ("al",), True, True),
    ("StringNotBeginsWith", "data.words", ("al",), True, False),
    ("StringNotBeginsWith", "data.words", ("ga",), True, True),
    ("StringEndsWith", "data.words", ("TA",), True, True),
    ("StringNotEndsWith", "data.words", ("ta",), True, False),
    ("StringContains", "data.words", ("lph",), True, True),
    ("StringNotContains", "data.words", ("lph",), True, False),
    ("StringNotContains", "data.words", ("zz",), True, True),
    ("BoolEquals", "data.mixed", (True,), True, True),  # other element types ignored
    ("NumberIn", "data.mixed", (1,), True, True),
    ("StringIn", "data.mixed", ("TWO",), True, True),
    ("StringIn", "data.empty", ("x",), True, False),
    ("StringNotIn", "data.empty", ("x",), True, True),
    ("StringIn", "data.objects", ("a",), True, False),  # arrays of objects are not supported
    ("IsNotNull", "data.numbers", (), True, True),
    ("IsNotNull", "data.numbers", (), False, False),  # "the matching operation fails"
    ("IsNullOrUndefined", "data.numbers", (), True, False),
    ("IsNullOrUndefined", "data.numbers", (), False, False),
]

# Keys: envelope names in any casing, nested data keys in any casing (sample: ModelTags).
KEY_CASES: list[tuple[str, Any]] = [
    ("id", EVENT["id"]), ("ID", EVENT["id"]), ("Topic", EVENT["topic"]),
    ("Subject", EVENT["subject"]), ("EventType", EVENT["eventType"]),
    ("DataVersion", "2"), ("data.ModelTags.deploy", "True"),
    ("data.modelTags.deploy", "True"), ("Data.MODELTAGS.Deploy", "True"),
]


def advanced(operator: str, key: str, values: tuple[Any, ...]) -> AdvancedFilter:
    """Build one filter."""
    return AdvancedFilter(operator, key, values)


@pytest.mark.parametrize(("operator", "key", "values", "expected"), SCALAR_CASES)
def test_operator_on_scalar_values(operator: str, key: str, values: tuple[Any, ...],
                                   expected: bool) -> None:
    assert matches(advanced(operator, key, values), EVENT, on_arrays=False) is expected


def test_scalar_table_covers_every_operator_both_ways() -> None:
    outcomes = {(op, expected) for op, _, _, expected in SCALAR_CASES}
    assert {op for op, _ in outcomes} == OPERATORS
    assert all((op, True) in outcomes and (op, False) in outcomes for op in OPERATORS)


@pytest.mark.parametrize("operator", sorted(OPERATORS))
@pytest.mark.parametrize("key", [MISSING, "data.nothing", "data.ModelTags.missing.deeper"])
def test_missing_or_null_key(operator: str, key: str) -> None:
    values = MISSING_VALUES.get(operator, ("x",) if operator.startswith("String") else (1,))
    expected = MISSING_EXPECTED.get(operator, False)
    assert matches(advanced(operator, key, values), EVENT, on_arrays=True) is expected


@pytest.mark.parametrize(("operator", "key", "values", "on_arrays", "expected"), ARRAY_CASES)
def test_operator_on_arrays(operator: str, key: str, values: tuple[Any, ...], on_arrays: bool,
                            expected: bool) -> None:
    assert matches(advanced(operator, key, values), EVENT, on_arrays=on_arrays) is expected


@pytest.mark.parametrize(("key", "expected"), KEY_CASES)
def test_key_lookup_is_case_insensitive(key: str, expected: Any) -> None:
    assert lookup(EVENT, key) == (True, expected)


def test_exact_case_property_wins() -> None:
    event = {"data": {"modelTags": {"deploy": "no"}, "ModelTags": {"deploy": "yes"}}}
    assert lookup(event, "data.ModelTags.deploy") == (True, "yes")
    assert lookup(event, "data.modelTags.deploy") == (True, "no")


@pytest.mark.parametrize(("operator", "key", "values", "expected"), [
    ("StringIn", "type", ("COM.EXAMPLE.SOMEEVENT",), True),
    ("StringIn", "source", ("/mycontext",), True),
    ("StringIn", "specversion", ("1.0",), True),
    ("StringBeginsWith", "comexampleothervalue", ("5", "1"), True),  # the docs' example
    ("StringIn", "comexampleextension1", ("VALUE",), True),
    ("NumberGreaterThan", "data.appinfoB", (100,), True),
    ("BoolEquals", "data.appinfoC", (True,), True),
    ("IsNullOrUndefined", "subject", (), True),
    ("StringIn", "eventType", ("com.example.someevent",), False),  # not a CloudEvents key
])
def test_cloud_event_keys(operator: str, key: str, values: tuple[Any, ...],
                          expected: bool) -> None:
    assert matches(advanced(operator, key, values), CLOUD_EVENT, on_arrays=False) is expected


# (filter, expected matched) for whole-filter evaluation.
FILTER_CASES: list[tuple[EventFilter, bool]] = [
    (EventFilter(), True),
    (EventFilter(included_event_types=("microsoft.machinelearningservices.modelregistered",)),
     True),
    (EventFilter(included_event_types=("All",)), True),
    (EventFilter(included_event_types=("Microsoft.MachineLearningServices.ModelDeployed",)),
     False),
    (EventFilter(subject_begins_with="MODELS/sklearn"), True),
    (EventFilter(subject_begins_with="MODELS/", is_subject_case_sensitive=True), False),
    (EventFilter(subject_begins_with="models/Sklearn", is_subject_case_sensitive=True), True),
    (EventFilter(subject_ends_with=":20"), True),
    (EventFilter(subject_ends_with="_model:20", is_subject_case_sensitive=True), False),
    (EventFilter(subject_begins_with="models/", subject_ends_with=":21"), False),
    (EventFilter(advanced_filters=(advanced("StringIn", "data.ModelTags.deploy", ("true",)),
                                   advanced("NumberGreaterThan", "data.ModelVersion", (10,)))),
     True),
    (EventFilter(advanced_filters=(advanced("StringIn", "data.ModelTags.deploy", ("true",)),
                                   advanced("NumberGreaterThan", "data.ModelVersion", (30,)))),
     False),  # ANDed
    (EventFilter(advanced_filters=(advanced("NumberIn", "data.numbers", (5,)),),
                 enable_advanced_filtering_on_arrays=True), True),
]


@pytest.mark.parametrize(("event_filter", "expected"), FILTER_CASES)
def test_whole_filter(event_filter: EventFilter, expected: bool) -> None:
    result = evaluate(event_filter, EVENT)
    assert result.matched is expected
    assert bool(result.reason) is not expected


def test_reasons_name_what_failed() -> None:
    by_type = evaluate(EventFilter(included_event_types=("X",)), EVENT)
    by_subject = evaluate(EventFilter(subject_begins_with="runs/"), EVENT)
    by_advanced = evaluate(EventFilter(advanced_filters=(
        advanced("StringIn", "data.ModelTags.deploy", ("no",)),)), EVENT)
    assert "includedEventTypes" in by_type.reason
    assert "subject" in by_subject.reason
    assert "advancedFilters[0] StringIn on 'data.ModelTags.deploy'" in by_advanced.reason


def test_cloud_event_type_and_missing_subject() -> None:
    assert evaluate(EventFilter(included_event_types=("com.example.SomeEvent",)),
                    CLOUD_EVENT).matched
    assert not evaluate(EventFilter(subject_begins_with="a"), CLOUD_EVENT).matched
