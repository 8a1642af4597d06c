"""Deliveries exactly as the Functions Python worker hands them to function_app's triggers.

The worker decodes every `eventGridTrigger` body with azure-functions' own
`EventGridEventInConverter.decode(Datum(type="json"))`: an Event Grid schema body becomes
`func.EventGridEvent`, a CloudEvents 1.0 body becomes `func.CloudEvent` (azure-functions >= 1.25),
whatever the trigger's annotation says. These tests make that call, nothing of ours in between.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

import function_app
from amlevents.host.functions import load_functions
from amlevents.host.server import FunctionsHost
from handlers.events import parse as ev
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher, default_dispatcher
from handlers.runtime.routing import function_for
from tests.conftest import load_sample

SAMPLES = ("model_registered", "model_deployed", "run_completed", "run_status_changed",
           "dataset_drift_detected")
MakeDispatcher = Callable[..., Dispatcher]


def to_cloud_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """An Event Grid schema event as Event Grid delivers it to a CloudEventSchemaV1_0 subscription.

    The service's mapping (the documented pairs of one event in both schemas): topic -> source,
    eventType -> type, eventTime -> time, dataVersion -> dataschema "#{dataVersion}".
    """
    return {"specversion": "1.0", "id": event["id"], "source": event["topic"],
            "type": event["eventType"], "subject": event["subject"], "time": event["eventTime"],
            "dataschema": f"#{event.get('dataVersion') or ''}", "data": event["data"]}


def worker_decode(event: Mapping[str, Any]) -> Any:
    """What the worker passes the trigger function for one event of a delivery."""
    return EventGridEventInConverter.decode(meta.Datum(type="json", value=json.dumps(event)),
                                            trigger_metadata=None)


# -- issue 11, bug 1: CloudEvents deliveries were all recorded `invalid` -----------------------

@pytest.mark.parametrize("name", SAMPLES)
def test_cloud_event_from_the_worker_is_acted_on_not_invalid(make_dispatcher: MakeDispatcher,
                                                             name: str) -> None:
    raw = load_sample(name)
    decoded = worker_decode(to_cloud_event(raw))
    assert isinstance(decoded, func.CloudEvent)  # despite the func.EventGridEvent annotation
    result = make_dispatcher().dispatch(decoded, function=function_for(raw["eventType"]))
    assert result.outcome is not Outcome.INVALID, result.detail
    assert (result.event_id, result.event_type) == (raw["id"], raw["eventType"])


# -- issue 11, bug 2: a malformed func object got a key from its memory address ----------------

@pytest.mark.parametrize(("schema", "missing", "named"), [
    ("EventGridSchema", "eventType", "eventType"),
    ("CloudEventSchemaV1_0", "type", "type"),
    ("CloudEventSchemaV1_0", "data", "data"),
])
def test_malformed_worker_event_twice_has_one_key_and_keeps_what_can_be_read(
        make_dispatcher: MakeDispatcher, schema: str, missing: str, named: str) -> None:
    raw = load_sample("model_registered")
    body = to_cloud_event(raw) if schema == "CloudEventSchemaV1_0" else raw
    del body[missing]
    dispatcher = make_dispatcher()
    first = dispatcher.dispatch(worker_decode(body), function="on_ml_event")
    again = dispatcher.dispatch(worker_decode(body), function="on_ml_event")  # a new object
    assert first.outcome is Outcome.INVALID and f"{named}: is required" in first.detail
    assert again.key == first.key and again.duplicate
    [entry] = dispatcher.ledger.entries()
    assert (entry.event_id, entry.topic, entry.subject, entry.attempts) == \
        (raw["id"], raw["topic"], raw["subject"], 2)


def test_the_pre_1_25_converters_cloud_event_is_invalid_naming_what_it_dropped(
        make_dispatcher: MakeDispatcher) -> None:
    # azure-functions <= 1.24 decoded a CloudEvents body as an EventGridEvent, reading only the
    # Event Grid names: source, type and time were dropped (eventgrid.py of 1.21.3 .. 1.24.0).
    raw = load_sample("run_status_changed")
    old_form = func.EventGridEvent(id=raw["id"], topic=None, subject=raw["subject"],  # type: ignore[arg-type]
                                   event_type=None, event_time=None, data=raw["data"],  # type: ignore[arg-type]
                                   data_version=None)  # type: ignore[arg-type]
    dispatcher = make_dispatcher()
    result = dispatcher.dispatch(old_form, function="on_run_status")
    assert result.outcome is Outcome.INVALID
    assert "eventType: is required" in result.detail and "topic: is required" in result.detail
    assert dispatcher.dispatch(old_form, function="on_run_status").duplicate
    [entry] = dispatcher.ledger.entries()
    assert (entry.event_id, entry.subject) == (raw["id"], raw["subject"])


# -- the tier: every sample, both schemas, through function_app's own functions ----------------

SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")
FUNCTIONS = load_functions(function_app.app)  # the worker's view: the app's indexed functions


def in_schema(event: Mapping[str, Any], schema: str) -> dict[str, Any]:
    return to_cloud_event(event) if schema == "CloudEventSchemaV1_0" else dict(event)


@pytest.fixture
def use_ledger(monkeypatch: pytest.MonkeyPatch, base_env: dict[str, str],
               tmp_path: Path) -> Callable[[str], None]:
    """Point the process (as the app sees it) at a fresh dry-run ledger named `name`."""
    def use(name: str) -> None:
        for setting, value in base_env.items():
            monkeypatch.setenv(setting, value)
        monkeypatch.setenv("AMLEVENTS_LEDGER_PATH", str(tmp_path / f"{name}.sqlite3"))
        default_dispatcher.cache_clear()
    return use


def rows() -> list[tuple[str, ...]]:
    """What the ledger recorded, without times (the same in both schemas or it is a bug)."""
    return [(e.event_id, e.event_type, e.topic, e.subject, e.function, e.outcome.value, e.action,
             e.detail, str(e.attempts)) for e in default_dispatcher().ledger.entries()]


def trigger(name: str, event: Mapping[str, Any]) -> None:
    """Invoke function_app's function `name` as the worker does for one event of a delivery."""
    FUNCTIONS.event_grid[name](worker_decode(event))


def test_the_app_s_event_grid_triggers_load_as_the_worker_loads_them() -> None:
    # load_functions refuses an annotation the converter rejects, as the worker does at load.
    assert set(FUNCTIONS.event_grid) == {"on_model_registered", "on_drift_detected",
                                         "on_run_status", "on_ml_event"}


@pytest.mark.parametrize("name", SAMPLES)
def test_each_sample_reaches_the_same_outcome_in_both_schemas(
        use_ledger: Callable[[str], None], name: str) -> None:
    raw = load_sample(name)
    recorded = {}
    for schema in SCHEMAS:
        use_ledger(schema)
        trigger(function_for(raw["eventType"]), in_schema(raw, schema))
        recorded[schema] = rows()
    [row] = recorded["EventGridSchema"]
    assert recorded["CloudEventSchemaV1_0"] == [row]
    assert row[:4] == (raw["id"], raw["eventType"], raw["topic"], raw["subject"])
    assert row[5] not in ("invalid", "refused", "retry"), row


@pytest.mark.parametrize("name", SAMPLES)
def test_both_schemas_give_the_same_envelope(name: str) -> None:
    raw = load_sample(name)
    grid, cloud = (ev.parse_event(worker_decode(in_schema(raw, s))) for s in SCHEMAS)
    assert (grid.envelope.schema, cloud.envelope.schema) == SCHEMAS
    assert replace(cloud.envelope, schema=grid.envelope.schema) == grid.envelope
    assert replace(cloud, envelope=grid.envelope) == grid
    assert cloud.envelope.raw["source"] == raw["topic"]  # passed on in the schema it came in


@pytest.mark.parametrize("schema", SCHEMAS)
def test_a_batch_is_split_and_each_event_decoded_by_the_converter(
        use_ledger: Callable[[str], None], schema: str) -> None:
    use_ledger(schema)
    body = json.dumps([in_schema(load_sample(n), schema) for n in SAMPLES]).encode()
    content_type = "application/cloudevents-batch+json" if schema == "CloudEventSchemaV1_0" \
        else "application/json"
    reply = FunctionsHost(FUNCTIONS).handle(
        "POST", "/runtime/webhooks/EventGrid?functionName=on_ml_event",
        {"aeg-event-type": "Notification", "content-type": content_type}, body)
    assert reply.status == 202, reply.body
    outcomes = [(row[1], row[5]) for row in rows()]
    assert [t for t, _ in outcomes] == [load_sample(n)["eventType"] for n in SAMPLES]
    assert not [o for _, o in outcomes if o in ("invalid", "refused", "retry")], outcomes


@pytest.mark.parametrize("schema", SCHEMAS)
def test_the_same_delivery_twice_has_one_key_and_acts_once(
        use_ledger: Callable[[str], None], schema: str) -> None:
    use_ledger(schema)
    event = in_schema(load_sample("dataset_drift_detected"), schema)
    dispatcher = default_dispatcher()
    first = dispatcher.dispatch(worker_decode(event), function="on_drift_detected")
    trigger("on_drift_detected", event)  # the redelivery, through the app's own function
    again = dispatcher.dispatch(worker_decode(event), function="on_drift_detected")
    assert (first.outcome, first.duplicate) == (Outcome.PLANNED, False)
    assert again.duplicate and again.key == first.key
    [entry] = dispatcher.ledger.entries()
    assert (entry.outcome, entry.attempts) == (Outcome.PLANNED, 3)
