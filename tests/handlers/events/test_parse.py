"""Parsing: both schemas, both key casings, every required field, liberal input."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from handlers.errors import InvalidEvent
from handlers.events import parse as ev

SAMPLES = ("model_registered", "model_deployed", "run_completed", "run_status_changed",
           "dataset_drift_detected", "model_monitor_breach", "model_monitor_recovered")
REQUIRED_DATA = {
    "model_registered": ("ModelName", "ModelVersion"),
    "model_deployed": ("ServiceName",),
    "run_completed": ("experimentName", "runId"),
    "run_status_changed": ("experimentName", "runId", "runStatus"),
    "dataset_drift_detected": ("DataDriftId", "DataDriftName", "RunId", "DriftCoefficient"),
}
Sample = Callable[[str], dict[str, Any]]


def to_cloud_event(event: dict[str, Any], spec_key: str = "specversion") -> dict[str, Any]:
    """The same event in CloudEvents 1.0 structured form."""
    return {spec_key: "1.0", "id": event["id"], "source": event["topic"],
            "type": event["eventType"], "subject": event["subject"],
            "time": event["eventTime"], "datacontenttype": "application/json",
            "data": event["data"]}


def flip_case(data: dict[str, Any]) -> dict[str, Any]:
    """ModelName -> modelName and runId -> RunId: official material uses both."""
    return {(k[0].swapcase() + k[1:]): v for k, v in data.items()}


@pytest.mark.parametrize("name", SAMPLES)
def test_every_documented_sample_parses(sample: Sample, name: str) -> None:
    # GIVEN a documented sample WHEN parsed THEN the typed event keeps envelope and raw dict
    raw = sample(name)
    event = ev.parse_event(raw)
    assert event.envelope.id == raw["id"]
    assert event.envelope.subject == raw["subject"]
    assert event.envelope.topic == raw["topic"]
    assert event.envelope.schema == ev.EVENT_GRID_SCHEMA
    assert event.envelope.raw == raw


@pytest.mark.parametrize("name", SAMPLES)
def test_cloud_events_parse_to_the_same_typed_event(sample: Sample, name: str) -> None:
    raw = sample(name)
    grid, cloud = ev.parse_event(raw), ev.parse_event(to_cloud_event(raw))
    assert cloud.envelope.schema == ev.CLOUD_EVENT_SCHEMA
    assert cloud.envelope.topic == grid.envelope.topic
    assert {k: v for k, v in vars(cloud).items() if k != "envelope"} == \
        {k: v for k, v in vars(grid).items() if k != "envelope"}


def test_cloud_event_envelope_spelled_specVersion_is_accepted(sample: Sample) -> None:
    event = ev.parse_event(to_cloud_event(sample("model_registered"), spec_key="specVersion"))
    assert isinstance(event, ev.ModelRegistered)


@pytest.mark.parametrize("name", SAMPLES)
def test_data_keys_match_in_either_casing(sample: Sample, name: str) -> None:
    raw = sample(name)
    flipped = {**raw, "data": flip_case(raw["data"])}
    assert {k: v for k, v in vars(ev.parse_event(flipped)).items() if k != "envelope"} == \
        {k: v for k, v in vars(ev.parse_event(raw)).items() if k != "envelope"}


@pytest.mark.parametrize(("name", "field"), [(n, f) for n, fs in REQUIRED_DATA.items() for f in fs])
def test_each_missing_required_data_field_is_named(sample: Sample, name: str, field: str) -> None:
    raw = sample(name)
    del raw["data"][field]
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_event(raw)
    assert caught.value.field == f"data.{field}"
    assert f"data.{field}" in str(caught.value)


@pytest.mark.parametrize("field", ["id", "eventType", "topic", "subject", "data"])
def test_each_missing_envelope_field_is_named(sample: Sample, field: str) -> None:
    raw = sample("run_status_changed")
    del raw[field]
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_event(raw)
    assert caught.value.field == field


@pytest.mark.parametrize(("value", "says"), [(" ", "is required"),
                                             (1.0, "must be a string, got float")])
def test_a_blank_or_non_text_specversion_is_named(sample: Sample, value: Any, says: str) -> None:
    cloud = to_cloud_event(sample("model_registered"))
    cloud["specversion"] = value
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_event(cloud)
    assert caught.value.field == "specversion" and says in str(caught.value)


@pytest.mark.parametrize("field", ["id", "type", "source", "specversion"])
def test_each_missing_cloud_event_attribute_is_named(sample: Sample, field: str) -> None:
    cloud = to_cloud_event(sample("model_registered"))
    if field == "specversion":
        cloud["specversion"] = "0.3"
    else:
        del cloud[field]
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_event(cloud)
    assert caught.value.field == field


def test_every_problem_is_collected_before_raising(sample: Sample) -> None:
    raw = sample("dataset_drift_detected")
    raw["data"] = {"DriftCoefficient": "high"}
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_event(raw)
    named = {field for field, _ in caught.value.problems}
    assert named == {"data.DataDriftId", "data.DataDriftName", "data.RunId",
                     "data.DriftCoefficient"}


@pytest.mark.parametrize(("given", "expected"), [(20, "20"), ("20", "20"), ("v3-beta", "v3-beta")])
def test_model_version_may_be_int_or_string(sample: Sample, given: object, expected: str) -> None:
    raw = sample("model_registered")
    raw["data"]["ModelVersion"] = given
    event = ev.parse_event(raw)
    assert isinstance(event, ev.ModelRegistered)
    assert event.model_version == expected


@pytest.mark.parametrize("bad", [True, 1.5, [], {}])
def test_model_version_of_other_types_is_invalid(sample: Sample, bad: object) -> None:
    raw = sample("model_registered")
    raw["data"]["ModelVersion"] = bad
    with pytest.raises(InvalidEvent, match="data.ModelVersion"):
        ev.parse_event(raw)


def test_unknown_fields_are_ignored_and_null_run_type_is_empty(sample: Sample) -> None:
    raw = sample("run_status_changed")
    raw["data"]["somethingNew"] = {"nested": [1, 2]}
    raw["extra"] = "ignored"
    event = ev.parse_event(raw)
    assert isinstance(event, ev.RunStatusChanged)
    assert event.run_type == ""
    assert event.run_status == "failed"


def test_tags_are_strings_and_nested_tag_values_are_invalid(sample: Sample) -> None:
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = {"deploy": True, "count": 2, "none": None}
    event = ev.parse_event(raw)
    assert isinstance(event, ev.ModelRegistered)
    assert dict(event.model_tags) == {"deploy": "true", "count": "2", "none": ""}
    raw["data"]["ModelTags"] = {"deploy": {"nested": "x"}}
    with pytest.raises(InvalidEvent, match="data.ModelTags.deploy"):
        ev.parse_event(raw)


@pytest.mark.parametrize("bad", ["abc", None, True, float("nan"), "inf"])
def test_drift_coefficient_must_be_a_finite_number(sample: Sample, bad: object) -> None:
    raw = sample("dataset_drift_detected")
    raw["data"]["DriftCoefficient"] = bad
    with pytest.raises(InvalidEvent, match="data.DriftCoefficient"):
        ev.parse_event(raw)


def test_drift_coefficient_as_numeric_string_is_accepted(sample: Sample) -> None:
    raw = sample("dataset_drift_detected")
    raw["data"]["DriftCoefficient"] = "0.5"
    event = ev.parse_event(raw)
    assert isinstance(event, ev.DatasetDriftDetected)
    assert event.drift_coefficient == 0.5


def test_model_ids_are_split(sample: Sample) -> None:
    event = ev.parse_event(sample("model_deployed"))
    assert isinstance(event, ev.ModelDeployed)
    assert event.model_ids == ("sklearn_regression_model:1", "sklearn_regression_model:2")


def test_subject_is_kept_as_given(sample: Sample) -> None:
    raw = sample("dataset_drift_detected")
    raw["subject"] = "datadrift/abc/run/def"
    assert ev.parse_event(raw).envelope.subject == "datadrift/abc/run/def"


def test_event_type_is_matched_case_insensitively(sample: Sample) -> None:
    raw = sample("model_registered")
    raw["eventType"] = raw["eventType"].lower()
    assert ev.parse_event(raw).envelope.event_type == ev.MODEL_REGISTERED


def test_unknown_event_type_is_refused_by_parse_data(sample: Sample) -> None:
    raw = sample("model_registered")
    raw["eventType"] = "Microsoft.Storage.BlobCreated"
    envelope = ev.parse_envelope(raw)
    assert not envelope.known_type
    with pytest.raises(InvalidEvent, match="eventType"):
        ev.parse_data(envelope)


def test_azure_functions_event_grid_event_is_accepted(sample: Sample) -> None:
    raw = sample("model_registered")
    wrapped = func.EventGridEvent(
        id=raw["id"], data=raw["data"], topic=raw["topic"], subject=raw["subject"],
        event_type=raw["eventType"], event_time=datetime(2017, 6, 26, tzinfo=UTC),
        data_version="")
    event = ev.parse_event(wrapped)
    assert isinstance(event, ev.ModelRegistered)
    assert event.model_name == "sklearn_regression_model"
    assert event.envelope.event_time.startswith("2017-06-26")


def test_json_text_and_batches_are_accepted(sample: Sample) -> None:
    raw = sample("run_completed")
    assert isinstance(ev.parse_event(json.dumps(raw)), ev.RunCompleted)
    assert len(ev.split_batch(json.dumps([raw, raw]))) == 2
    assert ev.split_batch(raw) == [raw]


@pytest.mark.parametrize("body", [b"not json", b"42", b"\xff\xfe", "[1"])
def test_non_event_bodies_raise_invalid_event(body: bytes | str) -> None:
    with pytest.raises(InvalidEvent, match="body"):
        ev.parse_event(body)


def test_data_as_json_string_is_accepted(sample: Sample) -> None:
    raw = sample("model_registered")
    raw["data"] = json.dumps(raw["data"])
    assert isinstance(ev.parse_event(raw), ev.ModelRegistered)


def test_data_of_wrong_type_is_named(sample: Sample) -> None:
    raw = sample("model_registered")
    raw["data"] = [1, 2]
    with pytest.raises(InvalidEvent, match="data: must be an object"):
        ev.parse_event(raw)


def test_the_documented_spelling_wins_over_another_casing_of_the_same_key(sample: Sample) -> None:
    # The documented key is read first (one look-up); another casing only when it is absent.
    raw = sample("model_registered")
    raw["data"]["modelname"] = "another-spelling"
    assert ev.parse_event(raw).model_name == sample("model_registered")["data"]["ModelName"]
    del raw["data"]["ModelName"]
    assert ev.parse_event(raw).model_name == "another-spelling"


@pytest.mark.parametrize("spelling", ["specversion", "specVersion", "SPECVERSION"])
def test_a_cloud_event_is_told_apart_by_specversion_in_any_casing(sample: Sample,
                                                                   spelling: str) -> None:
    event = ev.parse_event(to_cloud_event(sample("model_registered"), spec_key=spelling))
    assert event.envelope.schema == ev.CLOUD_EVENT_SCHEMA
    assert ev.parse_event(sample("model_registered")).envelope.schema == ev.EVENT_GRID_SCHEMA


def test_tag_values_of_any_json_scalar_become_their_json_text(sample: Sample) -> None:
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = {"on": True, "off": False, "n": 3, "none": None, "s": "x"}
    event = ev.parse_event(raw)
    assert isinstance(event, ev.ModelRegistered)
    assert dict(event.model_tags) == {"on": "true", "off": "false", "n": "3", "none": "", "s": "x"}


def _fields(event: Any, *left_out: str) -> dict[str, Any]:
    return {k: v for k, v in vars(event).items() if k not in ("envelope", *left_out)}


def test_each_sample_parses_to_every_documented_value(sample: Sample) -> None:
    tags = {"area": "diabetes", "type": "regression"}
    assert _fields(ev.parse_event(sample("model_registered"))) == {
        "model_name": "sklearn_regression_model", "model_version": "20", "model_tags": tags,
        "model_properties": {"type": "test"}}
    assert _fields(ev.parse_event(sample("model_deployed"))) == {
        "service_name": "my-sklearn-service", "service_compute_type": "ACI",
        "model_ids": ("sklearn_regression_model:1", "sklearn_regression_model:2"),
        "service_tags": tags, "service_properties": {"type": "test"}}
    completed = ev.parse_event(sample("run_completed"))
    assert _fields(completed, "run_properties") == {
        "experiment_id": "0fa9dfaa-cba3-4fa7-b590-23e48548f5c1",
        "experiment_name": "automl-local-regression",
        "run_id": "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5", "run_type": "",
        "run_tags": {}}
    assert completed.run_properties["run_algorithm"] == "LassoLars"  # type: ignore[attr-defined]
    assert _fields(ev.parse_event(sample("dataset_drift_detected"))) == {
        "data_drift_id": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef",
        "data_drift_name": "myDriftMonitor",
        "run_id": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380",
        "base_dataset_id": "3c56d136-0f64-4657-a0e8-5162089a88a3",
        "target_dataset_id": "d7e74d2e-c972-4266-b5fb-6c9c182d2a74",
        "drift_coefficient": 0.8350349068479208,
        "start_time": "2019-07-04T00:00:00+00:00", "end_time": "2019-07-05T00:00:00+00:00"}


def test_a_deployment_without_model_ids_or_compute_type_is_still_valid(sample: Sample) -> None:
    raw = sample("model_deployed")
    del raw["data"]["ModelIds"], raw["data"]["ServiceComputeType"]
    event = ev.parse_event(raw)
    assert _fields(event, "service_tags", "service_properties") == {
        "service_name": "my-sklearn-service", "service_compute_type": "", "model_ids": ()}
    raw["data"]["ModelIds"] = " a:1 , ,b:2, "  # blanks between commas are dropped
    assert ev.parse_event(raw).model_ids == ("a:1", "b:2")  # type: ignore[attr-defined]


def test_optional_drift_and_run_fields_may_be_absent(sample: Sample) -> None:
    raw = sample("dataset_drift_detected")
    for key in ("BaseDatasetId", "TargetDatasetId", "StartTime", "EndTime"):
        del raw["data"][key]
    drift = _fields(ev.parse_event(raw))
    assert (drift["base_dataset_id"], drift["target_dataset_id"], drift["start_time"],
            drift["end_time"]) == ("", "", "", "")
    run = sample("run_status_changed")
    for key in ("experimentId", "runType", "runTags", "runProperties"):
        del run["data"][key]
    assert _fields(ev.parse_event(run), "monitor_breach") == {
        "experiment_id": "", "experiment_name": "automl-local-regression",
        "run_id": "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5", "run_type": "",
        "run_tags": {}, "run_properties": {}, "run_status": "failed"}
