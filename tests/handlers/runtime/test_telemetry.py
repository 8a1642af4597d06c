"""Telemetry: spans and metrics asserted with the OpenTelemetry SDK's in-memory exporters, logs that
carry the event id, listeners, and the Azure Monitor distro configured lazily (in a subprocess,
exporting to a local stand-in for the Application Insights ingestion endpoint)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from handlers.ledger.ledger import EventFacts
from handlers.outcome import Outcome
from handlers.runtime import telemetry
from handlers.runtime.dispatch import Dispatcher, DispatchResult
from handlers.runtime.telemetry import LOG_EVENT_ID, EventSeen

ROOT = Path(__file__).resolve().parents[3]
Sample = Callable[[str], dict[str, Any]]
RUN = "Microsoft.MachineLearningServices.RunStatusChanged"
MODEL = "Microsoft.MachineLearningServices.ModelRegistered"
_SPANS = InMemorySpanExporter()
_METRICS = InMemoryMetricReader(preferred_temporality={
    Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA})
_installed = False


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    """Global in-memory providers (installed once per process), telemetry on for this test."""
    global _installed
    if not _installed:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_SPANS))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_METRICS]))
        _installed = True
    _METRICS.get_metrics_data()  # deltas from here on
    _SPANS.clear()
    telemetry.enable()
    yield _SPANS, _METRICS
    telemetry.disable()


def points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    """(attributes, value) of every point of one metric since the last collection."""
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        found.append((dict(point.attributes or {}),
                                      value if value is not None else point.count))
    return found


def all_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Every metric's points since the last collection, by name."""
    data = reader.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    found.setdefault(metric.name, []).append(
                        (dict(point.attributes or {}),
                         value if value is not None else (point.count, point.sum)))
    return found


def event_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("amlevents on_")]


def test_one_span_per_event_with_the_event_and_its_outcome(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader], make_dispatcher: Any,
        sample: Sample) -> None:
    spans, _ = otel
    dispatcher: Dispatcher = make_dispatcher()
    event = sample("run_status_changed")
    # WHEN an event is delivered twice
    dispatcher.dispatch(event, function="on_run_status")
    dispatcher.dispatch(event, function="on_run_status")
    # THEN two consumer spans, each with the event's id, type, subject, function and outcome
    first, second = event_spans(spans)
    assert first.name == "amlevents on_run_status" and first.kind is SpanKind.CONSUMER
    attributes = dict(first.attributes or {})
    assert attributes["cloudevents.event_id"] == event["id"]
    assert attributes["cloudevents.event_type"] == RUN
    assert attributes["cloudevents.event_subject"] == event["subject"]
    assert attributes["cloudevents.event_source"] == event["topic"]
    assert attributes["amlevents.function"] == "on_run_status"
    assert (attributes["amlevents.outcome"], attributes["amlevents.duplicate"]) == (
        "planned", False)
    assert dict(second.attributes or {})["amlevents.duplicate"] is True
    # AND the handler ran in a child span of the first only (the duplicate did nothing)
    actions = [s for s in spans.get_finished_spans() if s.name.startswith("amlevents.action")]
    assert [a.name for a in actions] == ["amlevents.action RunStatusChanged"]
    assert actions[0].parent is not None and actions[0].parent.span_id == first.context.span_id
    assert first.status.status_code is not StatusCode.ERROR


def test_retry_and_failed_outcomes_are_errors_and_counted_as_retries(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader], make_dispatcher: Any,
        sample: Sample) -> None:
    spans, reader = otel
    # GIVEN a setting out of range: every event is kept as `retry`
    dispatcher: Dispatcher = make_dispatcher(AMLEVENTS_CLAIM_TIMEOUT_S="0")
    result = dispatcher.dispatch(sample("dataset_drift_detected"), function="on_drift_detected")
    assert result.should_retry
    (span,) = event_spans(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["amlevents.outcome"] == "retry"
    retries = points(reader, "amlevents.retries")
    assert retries == [({"cloudevents.event_type": "Microsoft.MachineLearningServices."
                         "DatasetDriftDetected", "amlevents.outcome": "retry",
                         "amlevents.function": "on_drift_detected"}, 1)]


def test_metrics_count_events_by_type_and_outcome_duplicates_and_time_the_actions(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader], make_dispatcher: Any,
        sample: Sample) -> None:
    _, reader = otel
    dispatcher: Dispatcher = make_dispatcher()
    registered = sample("model_registered")
    deploy = json.loads((ROOT / "samples/events/amlevents_model_registered_deploy.json")
                        .read_text())[0]
    foreign = sample("run_status_changed") | {"topic": "/subscriptions/other", "id": "x"}
    for event, function in ((registered, "on_model_registered"),
                            (deploy, "on_model_registered"), (deploy, "on_model_registered"),
                            (foreign, "on_run_status"), ({"no": "event"}, "on_ml_event")):
        dispatcher.dispatch(event, function=function)
    found = all_points(reader)
    events = {(a["cloudevents.event_type"], a["amlevents.outcome"]): v
              for a, v in found["amlevents.events"]}
    assert events == {(MODEL, "skipped"): 1, (MODEL, "planned"): 2, (RUN, "refused"): 1,
                      ("other", "invalid"): 1}
    assert found["amlevents.duplicates"] == [
        ({"cloudevents.event_type": MODEL, "amlevents.function": "on_model_registered"}, 1)]
    durations = {a["amlevents.outcome"]: v for a, v in found["amlevents.action.duration"]}
    assert set(durations) == {"skipped", "planned"}  # refused and invalid never reach a handler
    assert all(count == 1 and total >= 0 for count, total in durations.values())
    assert "amlevents.retries" not in found


def test_azure_sdk_calls_are_child_spans_of_the_event(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader], base_env: dict[str, str],
        table_env: dict[str, str], sample: Sample) -> None:
    spans, _ = otel
    # GIVEN the Table ledger (the azure-data-tables SDK, on Azurite)
    dispatcher = Dispatcher({**base_env, **table_env})
    dispatcher.context()  # the table is created outside the event's span
    spans.clear()
    # WHEN an event is dispatched
    dispatcher.dispatch(sample("run_status_changed"), function="on_run_status")
    # THEN the SDK's calls (claim, finish) are spans inside the event's trace, under its span
    (event,) = event_spans(spans)
    sdk = [s for s in spans.get_finished_spans()
           if s.context.trace_id == event.context.trace_id and s is not event
           and not s.name.startswith("amlevents")]
    names = {s.name for s in sdk}
    assert any("TableClient" in name for name in names), names
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    for span in sdk:  # every SDK span descends from the event's span
        parent = span.parent
        while parent is not None and parent.span_id != event.context.span_id:
            parent = by_id[parent.span_id].parent
        assert parent is not None, span.name
    dispatcher.ledger.close()


def test_log_records_carry_the_event_id_while_it_is_handled(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader], make_dispatcher: Any,
        sample: Sample, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="amlevents")
    event = sample("run_status_changed")
    make_dispatcher().dispatch(event, function="on_run_status")
    logging.getLogger("amlevents").info("after the event")
    during = [r for r in caplog.records if r.getMessage().startswith("event ")]
    assert during and all(getattr(r, LOG_EVENT_ID) == event["id"] for r in during)
    (after,) = [r for r in caplog.records if r.getMessage() == "after the event"]
    assert not hasattr(after, LOG_EVENT_ID)


def test_storm_digests_are_counted(otel: tuple[InMemorySpanExporter,
                                               InMemoryMetricReader]) -> None:
    _, reader = otel
    telemetry.record_digest("teams", 12)
    assert points(reader, "amlevents.notify.digests") == [
        ({"amlevents.channel": "teams", "amlevents.notifications": 12}, 1)]


def test_listeners_see_every_delivery_without_opentelemetry(make_dispatcher: Any,
                                                            sample: Sample) -> None:
    # GIVEN telemetry off, one listener that records and one that fails
    assert not telemetry.enabled()
    seen: list[EventSeen] = []

    def broken(_: EventSeen) -> None:
        raise RuntimeError("a listener bug")

    telemetry.add_listener(seen.append)
    telemetry.add_listener(broken)
    try:
        dispatcher: Dispatcher = make_dispatcher()
        event = sample("model_registered")
        dispatcher.dispatch(event, function="on_model_registered")
        dispatcher.dispatch(event, function="on_model_registered")
        dispatcher.dispatch("not json", function="on_ml_event")
    finally:
        telemetry.remove_listener(seen.append)
        telemetry.remove_listener(broken)
    # THEN each delivery was seen once, with what a line per event needs; the failing listener
    # failed no delivery
    assert [(s.event_id, s.outcome.value, s.duplicate) for s in seen] == [
        (event["id"], "skipped", False), (event["id"], "skipped", True), ("", "invalid", False)]
    assert seen[0].subject == event["subject"] and seen[0].function == "on_model_registered"
    assert seen[0].event_type == MODEL and seen[0].duration_s >= 0


# --- the real distro, lazily (subprocesses) ---------------------------------------------------

class _Ingestion(BaseHTTPRequestHandler):
    """Application Insights' ingestion endpoint (`/v2.1/track`), recording what it receives."""

    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        items = json.loads(body)
        with self.lock:
            self.received.extend(items if isinstance(items, list) else [items])
        reply = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items),
                            "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


SCRIPT = r"""
import json, sys
import function_app
before = sorted(m for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor")))
from handlers.runtime.dispatch import default_dispatcher
event = json.load(open("samples/events/run_status_changed.json"))[0]
result = default_dispatcher().dispatch(event, function="on_run_status")
after = any(m.startswith("opentelemetry") for m in sys.modules)
if after:
    from opentelemetry import metrics, trace
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        getattr(provider, "force_flush", lambda: None)()
print(json.dumps({"before": before, "after": after, "outcome": result.outcome.value}))
"""


def test_a_broken_connection_string_leaves_telemetry_off_and_events_handled(
        tmp_path: Path) -> None:
    secret = "garbage-with-a-Secret0123456789"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMLEVENTS_",
                                                                     "APPLICATIONINSIGHTS"))}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False, env={
                              **env, "APPLICATIONINSIGHTS_CONNECTION_STRING": secret,
                              "AMLEVENTS_ALLOWED_TOPICS": json.loads(
                                  (ROOT / "samples/events/run_status_changed.json")
                                  .read_text())[0]["topic"],
                              "AMLEVENTS_LEDGER_PATH": str(tmp_path / "ledger.sqlite3"),
                              "AMLEVENTS_NOTIFY_OUTBOX_DIR": str(tmp_path / "outbox")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["outcome"] == "planned"
    assert "telemetry off: APPLICATIONINSIGHTS_CONNECTION_STRING is set" in done.stderr
    assert secret not in done.stdout + done.stderr


def run_app(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """Import function_app and dispatch one event in a fresh interpreter."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMLEVENTS_",
                                                                      "APPLICATIONINSIGHTS"))}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False, env={
                              **base, **env,
                              "AMLEVENTS_ALLOWED_TOPICS": json.loads(
                                  (ROOT / "samples/events/run_status_changed.json")
                                  .read_text())[0]["topic"],
                              "AMLEVENTS_LEDGER_PATH": str(tmp_path / "ledger.sqlite3"),
                              "AMLEVENTS_NOTIFY_OUTBOX_DIR": str(tmp_path / "outbox")})
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_a_connection_string_opentelemetry_is_never_imported(tmp_path: Path) -> None:
    result = run_app({}, tmp_path)
    assert result == {"before": [], "after": False, "outcome": "planned"}


def test_with_a_connection_string_the_distro_exports_on_first_event_not_at_import(
        tmp_path: Path) -> None:
    # GIVEN a stand-in for the ingestion endpoint, named by the connection string
    _Ingestion.received.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingestion)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                  f"IngestionEndpoint=http://127.0.0.1:{server.server_address[1]}/")
    try:
        # WHEN the app is imported, then handles one event (offline: no statsbeat, no IMDS; every
        # trace kept: the distro's default rate-limited sampler may drop a process's first)
        result = run_app({"APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
                          "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                          "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
                          "OTEL_TRACES_SAMPLER": "always_on"}, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    # THEN nothing of OpenTelemetry was imported with the app (cold start), it was at the event
    assert result == {"before": [], "after": True, "outcome": "planned"}
    # AND Application Insights received the event's request, its action, and the metrics
    names = {(item["name"].rsplit(".", 1)[-1], item["data"]["baseData"].get("name"))
             for item in _Ingestion.received}
    assert ("Request", "amlevents on_run_status") in names
    assert ("RemoteDependency", "amlevents.action RunStatusChanged") in names
    metric_names = {m["name"] for item in _Ingestion.received
                    if item["name"].endswith(".Metric") for m in item["data"]["baseData"]["metrics"]}
    assert {"amlevents.events", "amlevents.action.duration"} <= metric_names
    (request,) = [i for i in _Ingestion.received if i["name"].endswith(".Request")]
    properties = request["data"]["baseData"]["properties"]
    assert properties["amlevents.outcome"] == "planned"
    assert properties["cloudevents.event_type"] == RUN


def test_a_storm_digest_sent_by_the_notifier_is_counted(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader], make_dispatcher: Any,
        sample: Sample, tmp_path: Path) -> None:
    _, reader = otel
    now = [1_700_000_000.0]
    env = {**make_dispatcher().env, "AMLEVENTS_DRY_RUN_NOTIFY": "false",
           "AMLEVENTS_NOTIFY_STORM_MAX": "3", "AMLEVENTS_NOTIFY_STORM_WINDOW_S": "60",
           "AMLEVENTS_NOTIFY_OUTBOX_DIR": str(tmp_path / "outbox")}
    dispatcher = Dispatcher(env, clock=lambda: now[0])
    for n in range(5):  # 3 sent, 2 held for the digest
        event = sample("run_status_changed")
        event["id"] = f"evt-{n}"
        event["data"].update(runId=f"run-{n}", runStatus="Failed")
        dispatcher.dispatch(event, function="on_run_status")
    now[0] += 60
    from handlers.notify.handler import flush_digests

    assert flush_digests(dispatcher.context()) == ["outbox: (digest of 2 sent first)"]
    assert points(reader, "amlevents.notify.digests") == [
        ({"amlevents.channel": "outbox", "amlevents.notifications": 2}, 1)]


def test_every_concerns_outcome_is_counted_and_a_failing_one_makes_the_span_an_error(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader], make_dispatcher: Any) -> None:
    spans, reader = otel
    breach = json.loads((ROOT / "samples/events/model_monitor_breach.json").read_text())[0]
    # GIVEN the retraining concern's settings broken: its row is `retry`, notify's is `planned`
    dispatcher: Dispatcher = make_dispatcher(AMLEVENTS_RETRAIN_COOLDOWN_S="abc")
    result = dispatcher.dispatch(breach, function="on_run_status")
    assert result.outcome.value == "planned" and [o.outcome.value for o in result.also] == ["retry"]
    events = {a["amlevents.outcome"]: v for a, v in all_points(reader)["amlevents.events"]}
    assert events == {"planned": 1, "retry": 1}
    (span,) = event_spans(spans)
    assert span.status.status_code is StatusCode.ERROR


# --- each function on its own, with a DispatchResult made by hand -----------------------------

def facts(event_id: str = "e-1", event_type: str = RUN) -> EventFacts:
    return EventFacts(key="k", event_id=event_id, event_type=event_type, subject="runs/r1",
                      topic="/subscriptions/s", function="on_run_status")


def result(outcome: Outcome, **changes: Any) -> DispatchResult:
    made = DispatchResult(key="k", event_id="e-1", event_type=RUN, outcome=outcome,
                          action="did it", detail="{}")
    return dataclasses.replace(made, **changes)


def test_observe_gives_the_event_span_every_attribute_and_counts_it_once(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = otel

    def dispatch() -> DispatchResult:
        telemetry.annotate(facts())
        return result(Outcome.PLANNED, action="a" * 300)

    # WHEN one delivery is observed (its action longer than a span attribute may be)
    assert telemetry.observe("on_run_status", dispatch).outcome is Outcome.PLANNED
    # THEN its span holds the event, the outcome and the action cut at 256 characters
    (span,) = spans.get_finished_spans()
    assert (span.name, span.kind, span.status.status_code) == (
        "amlevents on_run_status", SpanKind.CONSUMER, StatusCode.UNSET)
    assert dict(span.attributes or {}) == {
        "amlevents.function": "on_run_status", "messaging.system": "eventgrid",
        "cloudevents.event_id": "e-1", "cloudevents.event_type": RUN,
        "cloudevents.event_subject": "runs/r1", "cloudevents.event_source": "/subscriptions/s",
        "amlevents.outcome": "planned", "amlevents.duplicate": False,
        "amlevents.action": "a" * 256}
    assert all_points(reader) == {"amlevents.events": [(
        {"cloudevents.event_type": RUN, "amlevents.outcome": "planned",
         "amlevents.function": "on_run_status"}, 1)]}


def test_an_event_never_annotated_takes_its_id_and_type_from_the_result(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = otel
    telemetry.observe("on_ml_event", lambda: result(Outcome.INVALID, event_id="x-9",
                                                    event_type="Custom.Type"))
    (span,) = spans.get_finished_spans()
    assert dict(span.attributes or {}) == {
        "amlevents.function": "on_ml_event", "messaging.system": "eventgrid",
        "cloudevents.event_id": "x-9", "amlevents.outcome": "invalid",
        "amlevents.duplicate": False, "amlevents.action": "did it"}
    # a type outside Azure ML's is counted as `other` (bounded metric dimensions)
    assert all_points(reader) == {"amlevents.events": [(
        {"cloudevents.event_type": "other", "amlevents.outcome": "invalid",
         "amlevents.function": "on_ml_event"}, 1)]}


def test_an_unannotated_event_without_an_id_sets_none(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, _ = otel
    telemetry.observe("on_ml_event", lambda: result(Outcome.INVALID, event_id=""))
    (span,) = spans.get_finished_spans()
    assert "cloudevents.event_id" not in dict(span.attributes or {})


@pytest.mark.parametrize("outcome", [Outcome.RETRY, Outcome.FAILED])
def test_a_retry_or_failure_makes_the_span_an_error_naming_outcome_and_action(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader], outcome: Outcome) -> None:
    spans, reader = otel

    def dispatch() -> DispatchResult:
        telemetry.annotate(facts())
        return result(outcome, action="b" * 300)

    telemetry.observe("on_run_status", dispatch)
    (span,) = spans.get_finished_spans()
    assert (span.status.status_code, span.status.description) == (
        StatusCode.ERROR, f"{outcome.value}: {'b' * 300}"[:256])
    attributes = {"cloudevents.event_type": RUN, "amlevents.outcome": outcome.value,
                  "amlevents.function": "on_run_status"}
    expected = {"amlevents.events": [(attributes, 1)]}
    if outcome is Outcome.RETRY:
        expected["amlevents.retries"] = [(attributes, 1)]
    assert all_points(reader) == expected


def test_another_concerns_failure_is_counted_and_names_the_span_error(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = otel

    def dispatch() -> DispatchResult:
        telemetry.annotate(facts())
        return result(Outcome.PLANNED, also=(
            result(Outcome.SKIPPED, action="nothing"),
            result(Outcome.FAILED, action="retraining broke"),
            result(Outcome.IN_PROGRESS, action="elsewhere")))

    telemetry.observe("on_run_status", dispatch)
    (span,) = spans.get_finished_spans()
    assert (span.status.status_code, span.status.description) == (
        StatusCode.ERROR, "failed: retraining broke")
    found = all_points(reader)
    base = {"cloudevents.event_type": RUN, "amlevents.function": "on_run_status"}
    assert sorted((a["amlevents.outcome"], v) for a, v in found["amlevents.events"]) == [
        ("failed", 1), ("in_progress", 1), ("planned", 1), ("skipped", 1)]
    assert all(a.keys() == {*base, "amlevents.outcome"} and a.items() >= base.items()
               for a, _ in found["amlevents.events"])
    # in progress elsewhere: Event Grid must redeliver, counted under the event's own outcome
    assert found["amlevents.retries"] == [({**base, "amlevents.outcome": "planned"}, 1)]


def test_the_events_own_error_status_is_kept_over_another_concerns(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, _ = otel
    telemetry.observe("on_run_status", lambda: result(
        Outcome.RETRY, action="mine", also=(result(Outcome.FAILED, action="theirs"),)))
    (span,) = spans.get_finished_spans()
    assert span.status.description == "retry: mine"


def test_a_duplicate_is_counted_by_type_and_function(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = otel
    telemetry.observe("on_run_status", lambda: result(Outcome.SKIPPED, duplicate=True))
    (span,) = spans.get_finished_spans()
    assert dict(span.attributes or {})["amlevents.duplicate"] is True
    assert all_points(reader)["amlevents.duplicates"] == [
        ({"cloudevents.event_type": RUN, "amlevents.function": "on_run_status"}, 1)]


@pytest.mark.parametrize(("event_type", "name", "kind"), [
    (MODEL, "amlevents.action ModelRegistered", MODEL), ("Custom.Thing", "amlevents.action Thing",
                                                         "other"),
    ("plain", "amlevents.action plain", "other")])
def test_run_action_times_the_handler_in_a_child_span(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader], event_type: str, name: str,
        kind: str) -> None:
    spans, reader = otel
    handled = result(Outcome.DONE)
    assert telemetry.run_action(event_type, lambda n: handled if n == 1 else None, 1) is handled
    (span,) = spans.get_finished_spans()
    assert (span.name, dict(span.attributes or {})) == (name, {"amlevents.outcome": "done"})
    ((attributes, (count, seconds)),) = all_points(reader)["amlevents.action.duration"]
    assert (attributes, count) == ({"cloudevents.event_type": kind, "amlevents.outcome": "done"},
                                   1)
    assert 0 <= seconds < 1


def test_run_action_of_a_result_without_an_outcome_names_it_as_text(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = otel
    telemetry.run_action(RUN, lambda: "no outcome here")
    (span,) = spans.get_finished_spans()
    assert dict(span.attributes or {}) == {"amlevents.outcome": "None"}
    assert [a for a, _ in all_points(reader)["amlevents.action.duration"]] == [
        {"cloudevents.event_type": RUN, "amlevents.outcome": "None"}]


def test_without_telemetry_actions_and_digests_record_nothing() -> None:
    assert not telemetry.enabled()
    _SPANS.clear()
    assert telemetry.run_action(RUN, lambda a, b: a + b, 2, 3) == 5
    telemetry.record_digest("teams", 1)
    assert telemetry.observe("on_x", lambda: 7) == 7  # no listener either: just the call
    assert _SPANS.get_finished_spans() == ()


def test_a_listener_sees_the_whole_delivery_and_a_failing_one_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: list[EventSeen] = []

    def broken(_: EventSeen) -> None:
        raise RuntimeError("a listener bug")

    def dispatch() -> DispatchResult:
        telemetry.annotate(facts())
        return result(Outcome.DONE, duplicate=True, detail='{"a": 1}')

    telemetry.add_listener(broken)
    telemetry.add_listener(seen.append)
    caplog.set_level(logging.ERROR, logger="amlevents.telemetry")
    try:
        before = time.time()
        telemetry.observe("on_run_status", dispatch)
    finally:
        telemetry.remove_listener(broken)
        telemetry.remove_listener(seen.append)
    telemetry.remove_listener(broken)  # removing one not there is harmless
    (event,) = seen
    assert before <= event.at <= time.time() and 0 <= event.duration_s < 1
    assert dataclasses.replace(event, at=0.0, duration_s=0.0) == EventSeen(
        at=0.0, function="on_run_status", event_id="e-1", event_type=RUN, subject="runs/r1",
        topic="/subscriptions/s", outcome=Outcome.DONE, action="did it", detail='{"a": 1}',
        duplicate=True, duration_s=0.0)
    (record,) = [r for r in caplog.records if r.name == "amlevents.telemetry"]
    assert (record.levelno, record.msg, record.args) == (
        logging.ERROR, "event listener %r failed", (broken,))
    assert record.getMessage() == f"event listener {broken!r} failed"
    # The traceback: exc_info, or the redacted exc_text once the app's filter (installed by an
    # earlier test's dispatcher on a root handler) has seen the record first.
    traceback = logging.Formatter().formatException(record.exc_info) if record.exc_info \
        else record.exc_text or ""
    assert traceback.rstrip().endswith("RuntimeError: a listener bug")


def test_a_listener_of_an_unannotated_delivery_gets_the_results_id_and_type() -> None:
    seen: list[EventSeen] = []
    telemetry.add_listener(seen.append)
    try:
        telemetry.observe("on_ml_event", lambda: result(Outcome.INVALID, event_id="x",
                                                        event_type="Bad"))
    finally:
        telemetry.remove_listener(seen.append)
    (event,) = seen
    assert (event.event_id, event.event_type, event.subject, event.topic) == ("x", "Bad", "", "")


def test_log_records_carry_the_id_only_once_it_is_known(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="amlevents")
    logger = logging.getLogger("amlevents.test")

    def dispatch() -> DispatchResult:
        logger.info("before annotate")
        telemetry.annotate(facts(event_id="e-42"))
        logger.info("after annotate")
        return result(Outcome.DONE)

    telemetry.observe("on_run_status", dispatch)
    by_message = {r.getMessage(): getattr(r, LOG_EVENT_ID, None) for r in caplog.records}
    assert by_message == {"before annotate": None, "after annotate": "e-42"}


def test_annotate_outside_a_delivery_does_nothing(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    telemetry.annotate(facts())
    assert otel[0].get_finished_spans() == ()


def test_configure_without_a_connection_string_reports_whether_telemetry_is_on(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    assert telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}) is True
    telemetry.disable()
    assert telemetry.configure({}) is False
    telemetry.disable()  # twice is harmless
    assert not telemetry.enabled()


def test_disable_gives_back_the_log_record_factory(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    telemetry.enable()  # a second enable changes nothing
    assert logging.getLogRecordFactory() is telemetry._record_factory
    telemetry.disable()
    assert logging.getLogRecordFactory() is not telemetry._record_factory


def test_every_instrument_has_its_name_unit_and_description(
        otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    _, reader = otel
    # WHEN every instrument records once
    telemetry.observe("on_run_status", lambda: result(Outcome.RETRY, duplicate=True))
    telemetry.run_action(RUN, lambda: result(Outcome.DONE))
    telemetry.record_digest("teams", 2)
    # THEN each metric carries the unit and description App Insights shows with it
    data = reader.get_metrics_data()
    assert data is not None
    described = {metric.name: (metric.unit, metric.description)
                 for resource in data.resource_metrics for scope in resource.scope_metrics
                 for metric in scope.metrics}
    assert described == {
        "amlevents.events": ("{event}", "deliveries, by type and outcome"),
        "amlevents.action.duration": ("s", "time the handler took"),
        "amlevents.retries": ("{event}", "deliveries handed back to Event Grid (retry, in "
                                         "progress elsewhere)"),
        "amlevents.duplicates": ("{event}", "deliveries of an event already settled (nothing "
                                            "done again)"),
        "amlevents.notify.digests": ("{digest}", "storm-control digests sent")}
