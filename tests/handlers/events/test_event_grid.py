"""event_grid: an Event Grid schema dict to its envelope, compared whole."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.errors import InvalidEvent
from handlers.events.event_grid import from_event_grid
from handlers.events.types import EVENT_GRID_SCHEMA, EventEnvelope

RUN = "Microsoft.MachineLearningServices.RunCompleted"


def event(**changes: Any) -> dict[str, Any]:
    body = {"id": "e1", "eventType": RUN, "topic": "/subscriptions/s", "subject": "runs/r1",
            "eventTime": "2024-05-01T10:00:00Z", "dataVersion": "2", "data": {"runId": "r1"}}
    return {**body, **changes}


def test_every_field_is_read_into_the_envelope() -> None:
    raw = event(eventType=RUN.upper())
    found = from_event_grid(raw)
    assert found == EventEnvelope(id="e1", event_type=RUN, subject="runs/r1",
                                  topic="/subscriptions/s", event_time="2024-05-01T10:00:00Z",
                                  data_version="2", schema=EVENT_GRID_SCHEMA,
                                  data={"runId": "r1"}, raw=raw)
    assert found.raw is raw


def test_keys_are_read_in_any_casing() -> None:
    raw = {"ID": "e1", "EVENTTYPE": RUN, "Topic": "/t", "Subject": "s", "EventTime": "t",
           "DataVersion": "1", "Data": {"a": 1}}
    found = from_event_grid(raw)
    assert (found.id, found.event_type, found.topic, found.subject, found.event_time,
            found.data_version, found.data) == ("e1", RUN, "/t", "s", "t", "1", {"a": 1})


def test_the_optional_fields_may_be_absent_and_are_then_empty() -> None:
    raw = event()
    del raw["eventTime"], raw["dataVersion"]
    found = from_event_grid(raw)
    assert (found.event_time, found.data_version) == ("", "")


def test_every_missing_field_is_named_in_order() -> None:
    with pytest.raises(InvalidEvent) as caught:
        from_event_grid({})
    assert caught.value.problems == (("id", "is required"), ("eventType", "is required"),
                                     ("topic", "is required"), ("subject", "is required"),
                                     ("data", "is required"))
    assert caught.value.field == "id"


def test_fields_of_the_wrong_type_are_named_the_optional_ones_too() -> None:
    with pytest.raises(InvalidEvent) as caught:
        from_event_grid(event(eventTime=5.5, dataVersion=["1"], subject=True, data="[1]"))
    assert caught.value.problems == (("subject", "must be a string, got bool"),
                                     ("eventTime", "must be a string, got float"),
                                     ("dataVersion", "must be a string, got list"),
                                     ("data", "must be an object, got list"))
