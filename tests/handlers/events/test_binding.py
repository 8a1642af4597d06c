"""binding: the objects the Functions worker hands a trigger, read straight into the envelope."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from handlers.errors import InvalidEvent
from handlers.events import parse as ev
from handlers.events.binding import (
    is_cloud_event_object,
    is_event_grid_event_object,
    iso_time,
    wire_form,
)
from tests.conftest import ROOT

if TYPE_CHECKING:  # typing-only shapes (see shapes.py)
    from handlers.events.shapes import CloudEventObject, EventGridEventObject

SAMPLES = ("model_registered", "model_deployed", "run_completed", "run_status_changed",
           "dataset_drift_detected", "model_monitor_breach", "model_monitor_recovered")
Sample = Callable[[str], dict[str, Any]]


def to_cloud_event(event: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event["id"], "source": event["topic"],
            "type": event["eventType"], "subject": event["subject"], "time": event["eventTime"],
            "dataschema": f"#{event.get('dataVersion') or ''}", "data": event["data"]}


def worker_decode(event: dict[str, Any]) -> Any:
    """The worker's call for one event of an eventGridTrigger delivery."""
    return EventGridEventInConverter.decode(meta.Datum(type="json", value=json.dumps(event)),
                                            trigger_metadata=None)


@pytest.mark.parametrize("name", SAMPLES)
def test_a_func_cloud_event_parses_like_its_event_grid_twin(sample: Sample, name: str) -> None:
    raw = sample(name)
    cloud, grid = worker_decode(to_cloud_event(raw)), worker_decode(raw)
    assert isinstance(cloud, func.CloudEvent) and isinstance(grid, func.EventGridEvent)
    from_cloud, from_grid = ev.parse_event(cloud), ev.parse_event(grid)
    assert from_cloud.envelope.schema == ev.CLOUD_EVENT_SCHEMA
    assert from_grid.envelope.schema == ev.EVENT_GRID_SCHEMA
    for event in (from_cloud, from_grid):
        assert (event.envelope.id, event.envelope.event_type, event.envelope.topic,
                event.envelope.subject) == (raw["id"], raw["eventType"], raw["topic"],
                                            raw["subject"])
    assert {k: v for k, v in vars(from_cloud).items() if k != "envelope"} == \
        {k: v for k, v in vars(from_grid).items() if k != "envelope"}


def test_the_time_the_converter_parsed_is_written_back_in_utc(sample: Sample) -> None:
    # The converter keeps six of the sample's seven fractional digits.
    event = ev.parse_event(worker_decode(to_cloud_event(sample("model_registered"))))
    assert event.envelope.event_time == "2017-06-26T18:41:00.958410Z"
    assert event.envelope.raw["time"] == "2017-06-26T18:41:00.958410Z"


def test_iso_time_writes_utc_with_z_and_local_times_as_given() -> None:
    assert iso_time(datetime(2017, 6, 26, 18, 41, tzinfo=UTC)) == "2017-06-26T18:41:00Z"
    assert iso_time(datetime(2017, 6, 26, 18, 41)) == "2017-06-26T18:41:00"  # no zone given
    assert iso_time(None) is None


def test_raw_keeps_the_schema_the_event_came_in(sample: Sample) -> None:
    cloud = to_cloud_event(sample("run_status_changed"))
    cloud["traceparent"] = "00-abc-def-01"  # an extension attribute is passed on too
    raw = ev.parse_envelope(worker_decode(cloud)).raw
    assert raw["specversion"] == "1.0" and raw["source"] == cloud["source"]
    assert raw["traceparent"] == "00-abc-def-01" and raw["data"] == cloud["data"]
    assert "topic" not in raw


@pytest.mark.parametrize("attribute", ["id", "type", "source"])
def test_each_missing_cloud_event_attribute_is_named(sample: Sample, attribute: str) -> None:
    cloud = to_cloud_event(sample("model_registered"))
    del cloud[attribute]
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_event(worker_decode(cloud))
    assert caught.value.field == attribute


def test_a_cloud_event_of_another_spec_version_is_named(sample: Sample) -> None:
    cloud = {**to_cloud_event(sample("model_registered")), "specversion": "0.3"}
    with pytest.raises(InvalidEvent, match="specversion: must be 1.0, got '0.3'"):
        ev.parse_event(worker_decode(cloud))


def test_a_binary_cloud_event_without_data_is_named(sample: Sample) -> None:
    cloud = to_cloud_event(sample("model_registered"))
    cloud["data_base64"] = "eyJhIjogMX0="  # the converter keeps it as an extension, data None
    del cloud["data"]
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_event(worker_decode(cloud))
    assert caught.value.field == "data"


def test_data_given_as_a_json_string_is_read(sample: Sample) -> None:
    cloud = to_cloud_event(sample("model_registered"))
    cloud["data"] = json.dumps(cloud["data"])
    assert isinstance(ev.parse_event(worker_decode(cloud)), ev.ModelRegistered)


def test_the_old_converters_form_of_a_cloud_event_names_what_it_lost(sample: Sample) -> None:
    # azure-functions <= 1.24 read a CloudEvents body by Event Grid names only: topic, eventType
    # and eventTime came out None. Those fields are named; nothing is guessed from the subject.
    raw = sample("run_status_changed")
    old = func.EventGridEvent(id=raw["id"], data=raw["data"], topic=None,  # type: ignore[arg-type]
                              subject=raw["subject"], event_type=None,  # type: ignore[arg-type]
                              event_time=None, data_version=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_event(old)
    assert [name for name, _ in caught.value.problems] == ["eventType", "topic"]


def test_an_event_grid_event_without_subject_is_named(sample: Sample) -> None:
    raw = sample("model_deployed")
    del raw["subject"]
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_event(worker_decode(raw))
    assert caught.value.field == "subject"


def test_other_objects_are_refused_naming_the_body() -> None:
    with pytest.raises(InvalidEvent, match="body: unsupported event object object"):
        ev.parse_envelope(object())


def test_dicts_and_json_never_load_azure_functions(sample: Sample) -> None:
    # The CLI path and the planning code stay free of azure.functions (cold start, layering).
    code = ("import json, sys; from handlers.events import parse as ev; "
            f"ev.parse_event(json.loads({json.dumps(json.dumps(sample('model_registered')))})); "
            "ev.parse_event(json.dumps({'specversion': '1.0', 'id': '1', 'source': 's', "
            "'type': 'Microsoft.MachineLearningServices.RunCompleted', 'data': "
            "{'experimentName': 'e', 'runId': 'r'}})); "
            "import handlers.events.salvage; "
            "print('azure.functions' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_package_init_imports_nothing() -> None:
    code = "import sys, handlers.events; print(sorted(m for m in sys.modules if 'handlers.' in m))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "['handlers.events']"


@pytest.mark.parametrize(("dataschema", "expected"), [
    ("#2", "2"), ("#", ""), ("https://example.com/schema.json", "https://example.com/schema.json")])
def test_dataschema_carries_the_data_version(sample: Sample, dataschema: str,
                                             expected: str) -> None:
    cloud = {**to_cloud_event(sample("model_registered")), "dataschema": dataschema}
    assert ev.parse_envelope(worker_decode(cloud)).data_version == expected
    assert ev.parse_envelope(cloud).data_version == expected


def test_the_azure_functions_classes_have_the_shapes_binding_reads(sample: Sample) -> None:
    raw = sample("model_registered")
    # Typed assignments: mypy checks the classes against the protocols.
    grid: EventGridEventObject = func.EventGridEvent(
        id=raw["id"], data=raw["data"], topic=raw["topic"], subject=raw["subject"],
        event_type=raw["eventType"], event_time=None, data_version="")
    cloud: CloudEventObject = func.CloudEvent(
        id=raw["id"], source=raw["topic"], type=raw["eventType"], specversion="1.0",
        data=raw["data"])
    assert is_cloud_event_object(cloud) and not is_event_grid_event_object(cloud)
    assert is_event_grid_event_object(grid) and not is_cloud_event_object(grid)
    assert not is_cloud_event_object(raw) and not is_event_grid_event_object(raw)


@pytest.mark.parametrize("schema", ["EventGridSchema", "CloudEventSchemaV1_0"])
def test_the_wire_form_is_the_event_as_delivered(sample: Sample, schema: str) -> None:
    # GIVEN a delivered event (every optional CloudEvents attribute set), as the worker decodes it
    raw = sample("model_registered")
    if schema != "EventGridSchema":
        raw = {**to_cloud_event(raw), "dataschema": "#2", "datacontenttype": "application/json"}
    # THEN its wire form holds each attribute under its own name, the time in UTC with Z
    form = wire_form(worker_decode(raw))
    time_name = "eventTime" if schema == "EventGridSchema" else "time"
    assert form.pop(time_name) == "2017-06-26T18:41:00.958410Z"
    assert form == {k: v for k, v in raw.items() if k not in ("eventTime", "time",
                                                              "metadataVersion")}


class _Shaped:
    """An object with only the attributes given (a `get_json` among them when asked)."""

    def __init__(self, get_json: bool, **attributes: Any) -> None:
        for name, value in attributes.items():
            setattr(self, name, value)
        if get_json:
            self.get_json: Callable[[], dict[str, Any]] = lambda: {}


@pytest.mark.parametrize(("attributes", "get_json", "expected"), [
    ({"event_type": "T", "topic": "/t"}, True, True),
    ({"event_type": "T"}, True, False),  # no topic
    ({"topic": "/t"}, True, False),  # no event type
    ({"event_type": "T", "topic": "/t"}, False, False),  # nothing to read the data with
])
def test_an_event_grid_event_object_needs_event_type_topic_and_get_json(
        attributes: dict[str, Any], get_json: bool, expected: bool) -> None:
    assert is_event_grid_event_object(_Shaped(get_json, **attributes)) is expected


@pytest.mark.parametrize(("attributes", "get_json", "expected"), [
    ({"specversion": "1.0"}, True, True), ({}, True, False), ({"specversion": "1.0"}, False, False)])
def test_a_cloud_event_object_needs_specversion_and_get_json(
        attributes: dict[str, Any], get_json: bool, expected: bool) -> None:
    assert is_cloud_event_object(_Shaped(get_json, **attributes)) is expected


def test_a_non_callable_get_json_is_not_an_event_object() -> None:
    shaped = _Shaped(False, specversion="1.0", event_type="T", topic="/t")
    setattr(shaped, "get_json", {})  # noqa: B010 - an attribute that is not a method
    assert not is_cloud_event_object(shaped) and not is_event_grid_event_object(shaped)


def test_wire_form_refuses_other_objects_naming_their_type() -> None:
    with pytest.raises(TypeError) as caught:
        wire_form(_Shaped(True, event_type="T"))  # type: ignore[arg-type]
    assert str(caught.value) == "not an azure.functions event: _Shaped"


def test_wire_form_leaves_out_what_the_converter_found_no_key_for(sample: Sample) -> None:
    raw = sample("run_status_changed")
    event = func.EventGridEvent(id=raw["id"], data=raw["data"], topic=raw["topic"],
                                subject=raw["subject"], event_type=raw["eventType"],
                                event_time=None, data_version=None)  # type: ignore[arg-type]
    assert wire_form(event) == {"id": raw["id"], "topic": raw["topic"],
                                "subject": raw["subject"], "eventType": raw["eventType"],
                                "data": raw["data"]}


def test_an_event_grid_object_is_read_into_the_whole_envelope(sample: Sample) -> None:
    raw = sample("model_registered")
    found = ev.parse_envelope(worker_decode(raw))
    assert found == ev.EventEnvelope(
        id=raw["id"], event_type=raw["eventType"], subject=raw["subject"], topic=raw["topic"],
        event_time="2017-06-26T18:41:00.958410Z", data_version=raw["dataVersion"],
        schema=ev.EVENT_GRID_SCHEMA, data=raw["data"], raw={})
    assert found.raw["eventTime"] == "2017-06-26T18:41:00.958410Z"


def test_an_event_grid_object_without_time_or_version_has_them_empty(sample: Sample) -> None:
    raw = sample("model_registered")
    event = func.EventGridEvent(id=raw["id"], data=raw["data"], topic=raw["topic"],
                                subject=raw["subject"], event_type=raw["eventType"],
                                event_time=None, data_version=None)  # type: ignore[arg-type]
    found = ev.parse_envelope(event)
    assert (found.event_time, found.data_version) == ("", "")


def test_every_problem_of_an_event_grid_object_is_named_in_order() -> None:
    event = func.EventGridEvent(id=None, data=None, topic=7, subject="  ",  # type: ignore[arg-type]
                                event_type=None, event_time=None,  # type: ignore[arg-type]
                                data_version=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_envelope(event)
    assert caught.value.problems == (("id", "is required"), ("eventType", "is required"),
                                     ("subject", "is required"),
                                     ("dataVersion", "must be a string, got bool"),
                                     ("data", "is required"))


def test_a_cloud_event_object_is_read_into_the_whole_envelope(sample: Sample) -> None:
    raw = sample("model_registered")
    cloud = {**to_cloud_event(raw), "dataschema": "#3"}
    found = ev.parse_envelope(worker_decode(cloud))
    assert found == ev.EventEnvelope(
        id=raw["id"], event_type=raw["eventType"], subject=raw["subject"], topic=raw["topic"],
        event_time="2017-06-26T18:41:00.958410Z", data_version="3",
        schema=ev.CLOUD_EVENT_SCHEMA, data=raw["data"], raw={})


def test_a_cloud_event_object_without_subject_or_time_has_them_empty(sample: Sample) -> None:
    cloud = to_cloud_event(sample("model_registered"))
    del cloud["subject"], cloud["time"], cloud["dataschema"]
    found = ev.parse_envelope(worker_decode(cloud))
    assert (found.subject, found.event_time, found.data_version) == ("", "", "")


def test_every_problem_of_a_cloud_event_object_is_named_in_order() -> None:
    cloud = func.CloudEvent(id=None, source=None, type=None, specversion="2.0",  # type: ignore[arg-type]
                            subject=5, dataschema=[1], data=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_envelope(cloud)
    assert caught.value.problems == (("specversion", "must be 1.0, got '2.0'"),
                                     ("id", "is required"), ("type", "is required"),
                                     ("source", "is required"),
                                     ("dataschema", "must be a string, got list"),
                                     ("data", "is required"))


@pytest.mark.parametrize(("value", "expected"), [
    (datetime(2017, 6, 26, 18, 41, 0, 5, tzinfo=UTC), "2017-06-26T18:41:00.000005Z"),
    (datetime(2017, 6, 26, 18, 41, tzinfo=timezone(timedelta(hours=2))),
     "2017-06-26T18:41:00+02:00"),
    ("2017-06-26 18:41", "2017-06-26 18:41"),  # not what the converter makes: kept readable
    (17, "17")])
def test_iso_time_of_other_zones_and_other_values(value: object, expected: str) -> None:
    assert iso_time(value) == expected


def test_json_bodies_that_are_not_objects_are_named_by_their_type() -> None:
    with pytest.raises(InvalidEvent) as caught:
        ev.parse_envelope("[1]")
    assert str(caught.value) == "body: must be a JSON object, got list"
