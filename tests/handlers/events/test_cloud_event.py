"""cloud_event: a CloudEvents 1.0 dict to its envelope, compared whole; telling it from Event Grid."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.errors import InvalidEvent
from handlers.events.cloud_event import (
    SPEC_VERSION,
    check_spec_version,
    data_version,
    from_cloud_event,
    is_cloud_event,
)
from handlers.events.fields import Problems
from handlers.events.types import CLOUD_EVENT_SCHEMA, EventEnvelope

RUN = "Microsoft.MachineLearningServices.RunCompleted"


def cloud(**changes: Any) -> dict[str, Any]:
    body = {"specversion": "1.0", "id": "e1", "type": RUN, "source": "/subscriptions/s",
            "subject": "runs/r1", "time": "2024-05-01T10:00:00Z", "dataschema": "#2",
            "data": {"runId": "r1"}}
    return {**body, **changes}


def test_the_spec_version_understood_is_1_0() -> None:
    assert SPEC_VERSION == "1.0"


def test_every_attribute_is_read_into_the_envelope() -> None:
    raw = cloud(type=RUN.upper())
    found = from_cloud_event(raw)
    assert found == EventEnvelope(id="e1", event_type=RUN, subject="runs/r1",
                                  topic="/subscriptions/s", event_time="2024-05-01T10:00:00Z",
                                  data_version="2", schema=CLOUD_EVENT_SCHEMA,
                                  data={"runId": "r1"}, raw=raw)
    assert found.raw is raw


def test_attributes_are_read_in_any_casing() -> None:
    raw = {"SpecVersion": "1.0", "ID": "e1", "TYPE": RUN, "Source": "/t", "Subject": "s",
           "Time": "t", "DataSchema": "#1", "Data": {"a": 1}}
    found = from_cloud_event(raw)
    assert (found.id, found.event_type, found.topic, found.subject, found.event_time,
            found.data_version, found.data) == ("e1", RUN, "/t", "s", "t", "1", {"a": 1})


def test_subject_time_and_dataschema_are_optional_and_then_empty() -> None:
    raw = {"specversion": "1.0", "id": "e1", "type": RUN, "source": "/t", "data": {}}
    found = from_cloud_event(raw)
    assert (found.subject, found.event_time, found.data_version) == ("", "", "")


def test_every_missing_attribute_is_named_in_order() -> None:
    with pytest.raises(InvalidEvent) as caught:
        from_cloud_event({})
    assert caught.value.problems == (("specversion", "is required"), ("id", "is required"),
                                     ("type", "is required"), ("source", "is required"),
                                     ("data", "is required"))
    assert caught.value.field == "specversion"
    assert str(caught.value) == ("specversion: is required; id: is required; type: is required; "
                                 "source: is required; data: is required")


def test_attributes_of_the_wrong_type_are_named_the_optional_ones_too() -> None:
    with pytest.raises(InvalidEvent) as caught:
        from_cloud_event(cloud(specversion=1.0, subject=True, time=5.5, dataschema=["#1"],
                               data="[1]"))
    assert caught.value.problems == (("specversion", "must be a string, got float"),
                                     ("subject", "must be a string, got bool"),
                                     ("time", "must be a string, got float"),
                                     ("dataschema", "must be a string, got list"),
                                     ("data", "must be an object, got list"))


@pytest.mark.parametrize("version", ["0.3", "1.0.1", "1", " 1.0"])
def test_another_spec_version_is_named(version: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        from_cloud_event(cloud(specversion=version))
    assert caught.value.problems == (("specversion", f"must be 1.0, got {version!r}"),)


@pytest.mark.parametrize(("value", "problems"), [
    ("1.0", []),
    (None, [("specversion", "is required")]),
    ("", [("specversion", "is required")]),
    ("   ", [("specversion", "is required")]),
    (1, [("specversion", "must be 1.0, got '1'")]),
    ({"v": 1}, [("specversion", "must be a string, got dict")]),
    ("0.3", [("specversion", "must be 1.0, got '0.3'")]),
])
def test_check_spec_version_appends_one_problem_at_most(value: Any,
                                                        problems: Problems) -> None:
    found: Problems = [("before", "kept")]
    check_spec_version(value, found)
    assert found == [("before", "kept"), *problems]


@pytest.mark.parametrize(("dataschema", "expected"), [
    ("#2", "2"), ("#", ""), ("", ""), ("#1.0", "1.0"), ("2", "2"), ("##3", "#3"),
    ("https://x/schema#2", "https://x/schema#2")])
def test_data_version_is_the_dataschema_after_its_hash(dataschema: str, expected: str) -> None:
    assert data_version(dataschema) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ({"specversion": "1.0"}, True),
    ({"specversion": None}, True),  # present is enough: its value is checked later
    ({"specVersion": "1.0", "id": "e"}, True),
    ({"SPECVERSION": "1.0"}, True),
    ({"id": "e", "topic": "/t", "subject": "s", "eventType": "T", "eventTime": "t",
      "data": {}, "dataVersion": "1", "metadataVersion": "1"}, False),
    ({}, False),
    ({"id": "e", "source": "/t", "type": "T"}, False),  # no specversion: not a CloudEvent
    ({"specversions": "1.0"}, False),  # twelve letters
    ({"specversio": "1.0"}, False),  # ten letters
    ({"spec_version": "1.0"}, False),
    ({11: "1.0", "extra": 1}, False),  # a key that is not text is never specversion
])
def test_is_cloud_event_looks_for_specversion_in_any_casing(raw: dict[Any, Any],
                                                            expected: bool) -> None:
    assert is_cloud_event(raw) is expected
