"""Telemetry: one span per event, metrics, logs that carry the event id, and per-event listeners.

Off unless APPLICATIONINSIGHTS_CONNECTION_STRING is set: then, on the first event, the Azure
Monitor OpenTelemetry distro is configured (handlers/adapters/azure_monitor.py) and every event
gets a span. OpenTelemetry is imported only then, never at import (cold start); while telemetry
is off, `observe` is one check and a call.

    span      `amlevents {function}` (kind CONSUMER: an App Insights request), attributes
              cloudevents.event_id / event_type / event_subject / event_source, amlevents.function,
              amlevents.outcome, amlevents.duplicate, amlevents.action; status ERROR for `failed`
              and `retry`. Child spans: `amlevents.action {Type}` around the handler, and the Azure
              SDK calls (azure-core tracing), the ledger's Table Storage calls included.
    metrics   amlevents.events            counter    every delivery, by type, outcome, function
              amlevents.action.duration   histogram  seconds the handler took, by type, outcome
              amlevents.retries           counter    deliveries handed back to Event Grid
              amlevents.duplicates        counter    deliveries of an event already settled
              amlevents.notify.digests    counter    storm-control digests sent (record_digest)
    logs      while an event is handled, every log record carries `amlevents.event_id` (App
              Insights: customDimensions["amlevents.event_id"]), and the span's trace and span
              ids. (A dotted name: it cannot collide with a logging call's `extra`.)

Listeners (`add_listener`) get one `EventSeen` per delivery, with or without OpenTelemetry:
`amlevents serve` prints its one line per event through one.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from handlers.events.types import ML_EVENT_TYPES
from handlers.outcome import Outcome

if TYPE_CHECKING:
    from handlers.ledger.ledger import EventFacts

log = logging.getLogger("amlevents.telemetry")

APP_INSIGHTS_CONNECTION = "APPLICATIONINSIGHTS_CONNECTION_STRING"
SCOPE = "amlevents"
LOG_EVENT_ID = "amlevents.event_id"  # the log record attribute that carries the event id
_ERROR_OUTCOMES = frozenset({Outcome.FAILED, Outcome.RETRY})
R = TypeVar("R")


@dataclass(frozen=True)
class EventSeen:
    """One delivery, as a listener sees it once its outcome is known."""

    at: float  # epoch seconds when the delivery arrived
    function: str
    event_id: str
    event_type: str
    subject: str
    topic: str
    outcome: Outcome
    action: str
    detail: str
    duplicate: bool
    duration_s: float


class _Observation:
    """What is known of the delivery being handled (a plain class: cheap to import and make)."""

    __slots__ = ("event_id", "event_type", "function", "span", "subject", "topic")

    def __init__(self, function: str) -> None:
        self.function = function
        self.event_id = self.event_type = self.subject = self.topic = ""
        self.span: Any = None


class _Instruments:
    """The tracer and the metric instruments, from the global providers."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace

        self.trace = trace
        self.tracer = trace.get_tracer(SCOPE)
        meter = metrics.get_meter(SCOPE)
        self.events = meter.create_counter(
            "amlevents.events", unit="{event}", description="deliveries, by type and outcome")
        self.action_duration = meter.create_histogram(
            "amlevents.action.duration", unit="s", description="time the handler took")
        self.retries = meter.create_counter(
            "amlevents.retries", unit="{event}",
            description="deliveries handed back to Event Grid (retry, in progress elsewhere)")
        self.duplicates = meter.create_counter(
            "amlevents.duplicates", unit="{event}",
            description="deliveries of an event already settled (nothing done again)")
        self.digests = meter.create_counter(
            "amlevents.notify.digests", unit="{digest}",
            description="storm-control digests sent")


_lock = threading.Lock()
_instruments: _Instruments | None = None
_listeners: list[Callable[[EventSeen], None]] = []
_current: contextvars.ContextVar[_Observation | None] = contextvars.ContextVar(
    "amlevents_event", default=None)
_factory_before: Callable[..., logging.LogRecord] | None = None


def configure(env: Mapping[str, str]) -> bool:
    """Turn telemetry on when the settings name an Application Insights resource; True if on."""
    connection = env.get(APP_INSIGHTS_CONNECTION, "").strip()
    if not connection:
        return enabled()
    try:
        from handlers.adapters.azure_monitor import configure_azure_monitor

        configure_azure_monitor(connection)
        enable(sdk_tracing=False)  # the distro turned azure-core tracing on itself
    except Exception as exc:  # noqa: BLE001 - telemetry must never stop an event being handled
        # The message may quote the connection string: only its type is logged.
        log.error("telemetry off: %s is set but Application Insights could not be configured "
                  "(%s)", APP_INSIGHTS_CONNECTION, type(exc).__name__)
        return False
    return True


def enable(*, sdk_tracing: bool = True) -> None:
    """Spans, metrics and log correlation through the global OpenTelemetry providers.

    `configure` calls it after the distro; tests call it after installing in-memory exporters.
    """
    global _instruments, _factory_before
    with _lock:
        if _instruments is not None:
            return
        _instruments = _Instruments()
        if sdk_tracing:
            from handlers.adapters.azure_monitor import enable_sdk_tracing

            enable_sdk_tracing()
        _factory_before = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_record_factory)


def disable() -> None:
    """Back to no telemetry (tests)."""
    global _instruments, _factory_before
    with _lock:
        if _instruments is None:
            return
        _instruments = None
        if _factory_before is not None:
            logging.setLogRecordFactory(_factory_before)
            _factory_before = None
        from handlers.adapters.azure_monitor import disable_sdk_tracing

        disable_sdk_tracing()


def enabled() -> bool:
    """True while spans and metrics are recorded."""
    return _instruments is not None


def add_listener(listener: Callable[[EventSeen], None]) -> None:
    """Call `listener` after every delivery (it must be quick; its errors are logged)."""
    with _lock:
        _listeners.append(listener)


def remove_listener(listener: Callable[[EventSeen], None]) -> None:
    """Stop calling `listener`."""
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def observe(function: str, call: Callable[..., R], *args: Any) -> R:
    """Run one dispatch (`call(*args)`, returning a DispatchResult) inside the event's span."""
    instruments = _instruments
    if instruments is None and not _listeners:
        return call(*args)
    seen = _Observation(function)
    token = _current.set(seen)
    started, clock = time.time(), time.perf_counter()
    try:
        if instruments is None:
            result = call(*args)
        else:
            with instruments.tracer.start_as_current_span(
                    f"{SCOPE} {function}", kind=instruments.trace.SpanKind.CONSUMER,
                    attributes={"amlevents.function": function,
                                "messaging.system": "eventgrid"}) as span:
                seen.span = span
                result = call(*args)
                _settle(instruments, span, seen, result)
    finally:
        _current.reset(token)
    if _listeners:
        _tell(seen, result, started, time.perf_counter() - clock)
    return result


def annotate(facts: EventFacts) -> None:
    """What the dispatcher learnt of the event (once parsed): onto its span, logs and listeners."""
    seen = _current.get()
    if seen is None:
        return
    seen.event_id, seen.event_type = facts.event_id, facts.event_type
    seen.subject, seen.topic = facts.subject, facts.topic
    if seen.span is not None:
        seen.span.set_attributes({"cloudevents.event_id": facts.event_id,
                                  "cloudevents.event_type": facts.event_type,
                                  "cloudevents.event_subject": facts.subject,
                                  "cloudevents.event_source": facts.topic})


def run_action(event_type: str, call: Callable[..., R], *args: Any) -> R:
    """Run a handler (`call(*args)`, returning an ActionResult) in a child span, timed."""
    instruments = _instruments
    if instruments is None:
        return call(*args)
    short = event_type.rsplit(".", 1)[-1]
    with instruments.tracer.start_as_current_span(f"{SCOPE}.action {short}") as span:
        clock = time.perf_counter()
        result = call(*args)
        elapsed = time.perf_counter() - clock
        outcome = getattr(result, "outcome", None)
        value = outcome.value if isinstance(outcome, Outcome) else str(outcome)
        span.set_attribute("amlevents.outcome", value)
        instruments.action_duration.record(elapsed, {"cloudevents.event_type": _kind(event_type),
                                                     "amlevents.outcome": value})
    return result


def record_digest(channel: str, notifications: int) -> None:
    """Count one storm-control digest sent on `channel` (a no-op while telemetry is off)."""
    instruments = _instruments
    if instruments is not None:
        instruments.digests.add(1, {"amlevents.channel": channel,
                                    "amlevents.notifications": int(notifications)})


def _settle(instruments: _Instruments, span: Any, seen: _Observation, result: Any) -> None:
    outcome: Outcome = result.outcome
    kind = _kind(seen.event_type or result.event_type)
    span.set_attributes({"amlevents.outcome": outcome.value,
                         "amlevents.duplicate": bool(result.duplicate),
                         "amlevents.action": str(result.action)[:256]})
    if not seen.event_id and result.event_id:
        span.set_attribute("cloudevents.event_id", result.event_id)
    if outcome in _ERROR_OUTCOMES:
        status = instruments.trace.Status(instruments.trace.StatusCode.ERROR,
                                          f"{outcome.value}: {result.action}"[:256])
        span.set_status(status)
    attributes = {"cloudevents.event_type": kind, "amlevents.outcome": outcome.value,
                  "amlevents.function": seen.function}
    instruments.events.add(1, attributes)
    # The other concerns that acted on the same event count too (a CI/CD or retraining row that
    # failed must reach the failed/retry alert), and make the event's span an error.
    for other in getattr(result, "also", ()):
        instruments.events.add(1, {**attributes, "amlevents.outcome": other.outcome.value})
        if other.outcome in _ERROR_OUTCOMES and outcome not in _ERROR_OUTCOMES:
            span.set_status(instruments.trace.Status(
                instruments.trace.StatusCode.ERROR,
                f"{other.outcome.value}: {other.action}"[:256]))
    if result.should_retry:
        instruments.retries.add(1, attributes)
    if result.duplicate:
        instruments.duplicates.add(1, {"cloudevents.event_type": kind,
                                       "amlevents.function": seen.function})


def _kind(event_type: str) -> str:
    """A bounded metric dimension: the Azure ML types by name, anything else `other`."""
    return event_type if event_type in ML_EVENT_TYPES else "other"


def _tell(seen: _Observation, result: Any, started: float, elapsed: float) -> None:
    event = EventSeen(at=started, function=seen.function,
                      event_id=seen.event_id or str(result.event_id),
                      event_type=seen.event_type or str(result.event_type), subject=seen.subject,
                      topic=seen.topic, outcome=result.outcome, action=str(result.action),
                      detail=str(result.detail), duplicate=bool(result.duplicate),
                      duration_s=elapsed)
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:  # a listener must never fail a delivery
            log.exception("event listener %r failed", listener)


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    factory = _factory_before or logging.LogRecord
    record = factory(*args, **kwargs)
    seen = _current.get()
    if seen is not None and seen.event_id:
        setattr(record, LOG_EVENT_ID, seen.event_id)
    return record
