"""The subscriptions file: the shipped one is valid and routes the samples; bad ones fail clearly."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from amlevents.simulator.filters import evaluate, matches
from amlevents.simulator.subscriptions import (
    SubscriptionsError,
    load_subscriptions,
    parse_subscriptions,
    schema_problems,
)
from handlers.runtime.routing import FUNCTION_EVENT_TYPES, accepts

ROOT = Path(__file__).resolve().parents[3]
SUBSCRIPTIONS = ROOT / "infra" / "subscriptions.json"
SCHEMA = ROOT / "infra" / "subscriptions.schema.json"
SAMPLES = ROOT / "samples" / "events"
FUNCTIONS = tuple(FUNCTION_EVENT_TYPES)


def shipped() -> dict[str, Any]:
    """A fresh copy of the shipped subscriptions document."""
    return json.loads(SUBSCRIPTIONS.read_text(encoding="utf-8"))


def schema() -> dict[str, Any]:
    """The JSON Schema."""
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def minimal(**overrides: Any) -> dict[str, Any]:
    """A one-subscription document, with overrides on the subscription."""
    subscription = {"name": "sub-one", "function": "on_ml_event",
                    "deadLetter": {"blobContainerName": "eventgrid-deadletter"},
                    "filter": {"advancedFilters": []}, **overrides}
    return {"subscriptions": [subscription]}


def with_filters(filters: list[dict[str, Any]]) -> dict[str, Any]:
    """A document whose subscription has these advanced filters."""
    return minimal(filter={"advancedFilters": filters})


def sample(name: str) -> dict[str, Any]:
    """One documented sample event."""
    return copy.deepcopy(json.loads((SAMPLES / f"{name}.json").read_text("utf-8"))[0])


def test_shipped_file_loads_with_the_apps_functions() -> None:
    subscriptions = load_subscriptions(SUBSCRIPTIONS, known_functions=FUNCTIONS)
    assert {s.function for s in subscriptions if s.destination is None} == set(FUNCTIONS)
    assert all(s.dead_letter is not None for s in subscriptions)


def test_shipped_file_validates_against_the_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    jsonschema.validate(shipped(), schema(), cls=jsonschema.Draft202012Validator)


def test_each_subscription_sends_only_types_its_function_accepts() -> None:
    for subscription in load_subscriptions(SUBSCRIPTIONS):
        if subscription.destination is not None:
            continue  # not one of the app's functions
        for event_type in subscription.filter.included_event_types or ():
            assert accepts(subscription.function, event_type), subscription.name


def _routes(event: dict[str, Any]) -> set[str]:
    """The app's functions the shipped file routes an event to."""
    return {s.function for s in load_subscriptions(SUBSCRIPTIONS)
            if s.destination is None and evaluate(s.filter, event).matched}


def _tagged(deploy: str) -> dict[str, Any]:
    event = sample("model_registered")
    event["data"]["ModelTags"]["deploy"] = deploy
    return event


def _drift(subject: str) -> dict[str, Any]:
    event = sample("dataset_drift_detected")
    event["subject"] = subject
    return event


def _status(status: str) -> dict[str, Any]:
    event = sample("run_status_changed")
    event["data"]["runStatus"] = status
    return event


@pytest.mark.parametrize(("make_event", "expected"), [
    (lambda: sample("model_registered"), set()),  # no deploy tag
    (lambda: _tagged("true"), {"on_model_registered"}),
    (lambda: _tagged("TRUE"), {"on_model_registered"}),
    (lambda: _tagged("false"), set()),
    (lambda: sample("dataset_drift_detected"), {"on_drift_detected"}),
    # Both documented drift subjects: the ML events article's and the schema article's.
    (lambda: _drift("datadrift/01d29aa4/run/01d29aa4_1571590300380"), {"on_drift_detected"}),
    (lambda: _drift("datadrifts/01d29aa4/runs/01d29aa4_1571590300380"), {"on_drift_detected"}),
    (lambda: _drift("DataDrift/01d29aa4/Run/1"), {"on_drift_detected"}),  # case-insensitive
    (lambda: _drift("models/m:1"), set()),
    (lambda: sample("run_status_changed"), {"on_run_status"}),
    (lambda: _status("Failed"), {"on_run_status"}),
    (lambda: _status("Completed"), set()),
    (lambda: sample("model_deployed"), {"on_ml_event"}),
    (lambda: sample("run_completed"), {"on_ml_event"}),
])
def test_shipped_file_routes_the_documented_samples(make_event: Callable[[], dict[str, Any]],
                                                     expected: set[str]) -> None:
    assert _routes(make_event()) == expected


def _filters(count: int) -> list[dict[str, Any]]:
    return [{"operatorType": "IsNotNull", "key": f"data.k{i}"} for i in range(count)]


def _values(count: int) -> list[dict[str, Any]]:
    return [{"operatorType": "StringIn", "key": "data.k", "values": [f"v{i}" for i in range(count)]}]


# (document, expected message fragment, also rejected by the JSON Schema?)
INVALID: list[tuple[str, dict[str, Any], str, bool]] = [
    ("26 filters", with_filters(_filters(26)),
     "26 advanced filters; Event Grid allows at most 25 advanced filters per subscription", True),
    ("26 values in one filter", with_filters(_values(26)),
     "26 filter values across all the filters; Event Grid allows at most 25", True),
    ("26 values across filters", with_filters(_values(13) + _values(13)),
     "26 filter values across all the filters", False),
    ("513 chars", with_filters([{"operatorType": "StringIn", "key": "data.k",
                                 "values": ["x" * 513]}]),
     "513 characters; Event Grid allows at most 512 per string value", True),
    ("unknown operator", with_filters([{"operatorType": "StringLike", "key": "data.k",
                                        "values": ["a"]}]), "operatorType must be one of", True),
    ("values on single", with_filters([{"operatorType": "NumberLessThan", "key": "data.k",
                                        "values": [1]}]), "takes a single 'value'", True),
    ("value on multi", with_filters([{"operatorType": "StringIn", "key": "data.k",
                                      "value": "a"}]), "takes a non-empty 'values' array", True),
    ("value on null check", with_filters([{"operatorType": "IsNotNull", "key": "data.k",
                                           "value": 1}]), "takes no value", True),
    ("string for number", with_filters([{"operatorType": "NumberIn", "key": "data.k",
                                         "values": ["1"]}]), "must be a number", True),
    ("bool for number", with_filters([{"operatorType": "NumberLessThan", "key": "data.k",
                                       "value": True}]), "must be a number", True),
    ("number for bool", with_filters([{"operatorType": "BoolEquals", "key": "data.k",
                                       "value": 1}]), "must be true or false", True),
    ("bad range", with_filters([{"operatorType": "NumberInRange", "key": "data.k",
                                 "values": [[1, 2, 3]]}]), "must be [low, high]", True),
    ("inverted range", with_filters([{"operatorType": "NumberInRange", "key": "data.k",
                                      "values": [[5, 1]]}]), "low is above high", False),
    ("nested non-data key", with_filters([{"operatorType": "IsNotNull", "key": "subject.x"}]),
     "only data.* keys can be nested", True),
    ("empty key segment", with_filters([{"operatorType": "IsNotNull", "key": "data..x"}]),
     "without empty segments", True),
    ("attempts 0", minimal(retryPolicy={"maxDeliveryAttempts": 0}), "from 1 to 30", True),
    ("attempts 31", minimal(retryPolicy={"maxDeliveryAttempts": 31}), "from 1 to 30", True),
    ("ttl 1441", minimal(retryPolicy={"eventTimeToLiveInMinutes": 1441}), "from 1 to 1440", True),
    ("batch 5001", minimal(batching={"maxEventsPerBatch": 5001}), "from 1 to 5000", True),
    ("batch kb 1025", minimal(batching={"preferredBatchSizeInKilobytes": 1025}),
     "from 1 to 1024", True),
    ("schema", minimal(eventDeliverySchema="CustomInputSchema"), "is not one of", True),
    ("typo", minimal(retryPolicy={"maxDeliveryAttempt": 3}), "unknown property", True),
    ("no dead letter", minimal(deadLetter=None), "deadLetter.blobContainerName", True),
    ("bad container", minimal(deadLetter={"blobContainerName": "Dead_Letters"}),
     "blob container name", True),
    ("bad name", minimal(name="x"), "name: required", True),
    ("empty event types", minimal(filter={"includedEventTypes": []}), "non-empty array", True),
]


@pytest.mark.parametrize(("label", "document", "message", "schema_rejects"), INVALID,
                         ids=[case[0] for case in INVALID])
def test_invalid_documents_fail_clearly(label: str, document: dict[str, Any], message: str,
                                        schema_rejects: bool) -> None:
    if document["subscriptions"][0].get("deadLetter", ...) is None:
        del document["subscriptions"][0]["deadLetter"]
    with pytest.raises(SubscriptionsError) as caught:
        parse_subscriptions(document, known_functions=FUNCTIONS)
    assert "subscription " in str(caught.value)
    assert any(message in problem for problem in caught.value.problems), caught.value.problems
    assert bool(schema_problems(document, schema())) is schema_rejects


def test_errors_name_the_subscription_and_filter() -> None:
    long_value = {"operatorType": "StringIn", "key": "data.k", "values": ["x" * 600]}
    document = with_filters([*_filters(24), long_value])
    with pytest.raises(SubscriptionsError) as caught:
        parse_subscriptions(document)
    assert ("subscription 'sub-one': filter.advancedFilters[24] (StringIn on 'data.k'): "
            "a string value has 600 characters") in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    document = minimal(function="not_a_function", retryPolicy={"maxDeliveryAttempts": 99},
                       eventDeliverySchema="Nope")
    with pytest.raises(SubscriptionsError) as caught:
        parse_subscriptions(document, known_functions=FUNCTIONS)
    assert len(caught.value.problems) == 3
    assert "'not_a_function' is not one of the app's Event Grid functions" in str(caught.value)


def test_duplicate_names_are_refused() -> None:
    document = minimal()
    document["subscriptions"].append(copy.deepcopy(document["subscriptions"][0]))
    document["subscriptions"][1]["name"] = "SUB-ONE"
    with pytest.raises(SubscriptionsError, match="used more than once"):
        parse_subscriptions(document)


def test_exactly_25_filters_and_values_are_allowed() -> None:
    assert parse_subscriptions(with_filters(_filters(25)))
    assert parse_subscriptions(with_filters(_values(25)))


def test_defaults_follow_event_grid() -> None:
    (subscription,) = parse_subscriptions(minimal())
    assert subscription.retry_policy.max_delivery_attempts == 30
    assert subscription.retry_policy.event_time_to_live_in_minutes == 1440
    assert subscription.batching is None
    assert subscription.event_delivery_schema == "EventGridSchema"
    assert subscription.filter.included_event_types is None


def test_included_event_types_null_means_every_type() -> None:
    # ARM's EventSubscriptionFilter: includedEventTypes null (or absent) = all event types.
    document = minimal(filter={"includedEventTypes": None, "advancedFilters": []})
    assert schema_problems(document, schema()) == []
    (subscription,) = parse_subscriptions(document, known_functions=FUNCTIONS)
    assert subscription.filter.included_event_types is None
    assert all(evaluate(subscription.filter, sample(name)).matched
               for name in ("model_deployed", "run_completed", "dataset_drift_detected"))


def test_filter_numbers_are_read_as_exact_decimals(tmp_path: Path) -> None:
    # GIVEN a file whose filter value a float would round to 1.1
    filters: list[dict[str, Any]] = [
        {"operatorType": "NumberLessThan", "key": "data.score", "value": "@"},
        {"operatorType": "NumberInRange", "key": "data.score", "values": [["@", 1.2]]}]
    text = json.dumps(with_filters(filters)).replace('"@"', "1.1000000000000001")
    path = tmp_path / "subscriptions.json"
    path.write_text(text, encoding="utf-8")
    shutil.copy(SCHEMA, tmp_path)
    # WHEN it is loaded THEN the values are the decimals written, and compare as such
    (subscription,) = load_subscriptions(path)
    below, in_range = subscription.filter.advanced_filters
    assert below.values == (Decimal("1.1000000000000001"),)
    assert in_range.values == ((Decimal("1.1000000000000001"), Decimal("1.2")),)
    assert matches(below, {"data": {"score": Decimal("1.1")}}, on_arrays=False)
    assert not matches(in_range, {"data": {"score": Decimal("1.1")}}, on_arrays=False)


def test_load_reports_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(SubscriptionsError, match="cannot read the file"):
        load_subscriptions(tmp_path / "absent.json")
    broken = tmp_path / "subscriptions.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(SubscriptionsError, match="not valid JSON"):
        load_subscriptions(broken)


def test_load_runs_the_schema_too(tmp_path: Path) -> None:
    path = tmp_path / "subscriptions.json"
    path.write_text(json.dumps(minimal()), encoding="utf-8")
    strict = schema()
    strict["$defs"]["subscription"]["required"].append("description")
    (tmp_path / "strict.json").write_text(json.dumps(strict), encoding="utf-8")
    with pytest.raises(SubscriptionsError, match="'description' is a required property"):
        load_subscriptions(path, schema_path=tmp_path / "strict.json")
