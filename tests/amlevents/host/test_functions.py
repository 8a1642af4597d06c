"""The host's functions module: what a trigger receives is what the Python worker would pass it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from amlevents.host.functions import FunctionLoadError, decode_event, load_functions
from amlevents.host.server import FunctionsHost

Sample = Callable[[str], dict[str, Any]]
WEBHOOK = "/runtime/webhooks/EventGrid?functionName=record"


def as_cloud_event(event: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event["id"], "source": event["topic"],
            "type": event["eventType"], "subject": event["subject"], "time": event["eventTime"],
            "data": event["data"]}


def recording_app(received: list[Any]) -> func.FunctionApp:
    """An app with one Event Grid trigger that keeps whatever it is handed."""
    app = func.FunctionApp()

    @app.function_name("record")
    @app.event_grid_trigger(arg_name="event")
    def record(event: func.EventGridEvent) -> None:
        received.append(event)

    return app


def deliver(received: list[Any], body: Any, **headers: str) -> tuple[int, Any]:
    host = FunctionsHost(load_functions(recording_app(received)))
    reply = host.handle("POST", WEBHOOK, {"aeg-event-type": "Notification", **headers},
                        json.dumps(body).encode())
    return reply.status, reply.body


def test_a_cloud_event_reaches_the_trigger_as_the_worker_hands_it(sample: Sample) -> None:
    # The worker gives func.CloudEvent whatever the annotation; the host used to build an
    # EventGridEvent itself, which hid that the app could not read it (issue 11).
    received: list[Any] = []
    raw = sample("model_registered")
    assert deliver(received, [as_cloud_event(raw)])[0] == 202
    [event] = received
    assert isinstance(event, func.CloudEvent)
    assert (event.id, event.source, event.type, event.subject) == \
        (raw["id"], raw["topic"], raw["eventType"], raw["subject"])


def test_an_event_grid_event_reaches_the_trigger_as_the_worker_hands_it(sample: Sample) -> None:
    received: list[Any] = []
    raw = sample("run_status_changed")
    assert deliver(received, [raw, raw])[0] == 202
    assert [type(e) for e in received] == [func.EventGridEvent, func.EventGridEvent]
    assert (received[0].topic, received[0].event_type) == (raw["topic"], raw["eventType"])


@pytest.mark.parametrize("cloud", [False, True])
def test_decode_event_is_the_converters_decode(sample: Sample, cloud: bool) -> None:
    raw = sample("dataset_drift_detected")
    event = as_cloud_event(raw) if cloud else raw
    expected = EventGridEventInConverter.decode(meta.Datum(type="json", value=json.dumps(event)),
                                                trigger_metadata=None)
    decoded = decode_event(event)
    assert type(decoded) is type(expected)
    assert repr(decoded).split(" at 0x")[0] == repr(expected).split(" at 0x")[0]
    assert decoded.get_json() == expected.get_json()


def test_an_event_the_worker_cannot_decode_fails_its_invocation(sample: Sample) -> None:
    # The converter cannot parse this eventTime: the worker fails the invocation, so Event Grid
    # redelivers; the other events of the delivery are still invoked.
    received: list[Any] = []
    good, bad = sample("model_registered"), sample("model_registered")
    bad["id"], bad["eventTime"] = "bad-time", "26 June 2017"
    status, body = deliver(received, [bad, good])
    assert status == 500 and body["accepted"] == 1
    [failure] = body["failed"]
    assert failure["id"] == "bad-time"
    assert failure["error"].startswith("EventDecodeError: azure-functions' eventGridTrigger "
                                       "converter cannot decode this event")
    assert "ValueError: time data '26 June 2017'" in failure["error"]
    assert [e.id for e in received] == [good["id"]]


def test_a_trigger_annotated_with_a_union_is_refused_at_load_as_the_worker_does() -> None:
    app = func.FunctionApp()

    @app.function_name("either")
    @app.event_grid_trigger(arg_name="event")
    def either(event: func.EventGridEvent | func.CloudEvent) -> None:
        """The tempting fix the worker refuses to load."""

    with pytest.raises(FunctionLoadError, match="function either: parameter 'event'"):
        load_functions(app)
