"""The way every event travels: parse, topic check, type check, claim, handle, record.

Errors come in two kinds (docs/architecture.md): retryable ones make the trigger raise so Event Grid
redelivers; permanent ones are recorded and never retried. Every received event ends up in
the ledger with its outcome.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from handlers.adapters import Adapters
from handlers.errors import (
    InvalidEvent,
    PermanentError,
    PolicyRefused,
    RetryableError,
    RetryLater,
    SettingError,
)
from handlers.events import parse as ev
from handlers.ledger.ledger import (
    EventFacts,
    Ledger,
    LedgerEntry,
    ReceivedEvent,
    body_key,
    event_key,
)
from handlers.ledger.store import open_store
from handlers.outcome import ActionResult, Outcome
from handlers.publish.publish import published
from handlers.runtime import telemetry
from handlers.runtime.context import HandlerContext
from handlers.runtime.redaction import (
    install_redaction,
    json_forms,
    may_need_masking,
    redact,
    secret_values,
)
from handlers.runtime.routing import CONCERN_HANDLERS, accepts, concern_key, concerns_for
from handlers.runtime.settings import ALLOWED_TOPICS, CoreSettings
from handlers.runtime.worker_tuning import widen_strptime_cache
from handlers.settings import SettingsCache

log = logging.getLogger("amlevents")


@dataclass(frozen=True)
class DispatchResult:
    """What became of one delivery of one event."""

    key: str
    event_id: str
    event_type: str
    outcome: Outcome
    action: str
    detail: str
    duplicate: bool = False
    also: tuple[DispatchResult, ...] = ()  # the other concerns that acted on the same event

    @property
    def should_retry(self) -> bool:
        """True when the trigger must fail so Event Grid redelivers (any concern's outcome)."""
        return (self.outcome in (Outcome.RETRY, Outcome.IN_PROGRESS)
                or any(other.should_retry for other in self.also))


class Dispatcher:
    """Dispatches events for one app instance; settings, ledger and adapters are built once."""

    def __init__(self, env: Mapping[str, str], *, ledger: Ledger | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.env = dict(env)
        self.cache = SettingsCache(self.env)  # each concern's settings, parsed once
        self.clock = clock
        self._ledger = ledger
        self._context: HandlerContext | None = None
        self._fallback: Ledger | None = None  # the ledger while other settings are invalid
        self._lock = threading.Lock()
        self._secrets = secret_values(self.env)
        # Masks the strings of stored events; most repeat from event to event (topic, types).
        self._clean_cached = functools.lru_cache(maxsize=4096)(self._clean)
        # One check of a stored event's JSON spares masking its strings one by one.
        self._screen = functools.partial(may_need_masking, secrets=json_forms(self._secrets))

    @property
    def ledger(self) -> Ledger:
        """The ledger, opened on first use."""
        return self.context().ledger

    def context(self) -> HandlerContext:
        """Settings, ledger and adapters, validated and built on first use."""
        built = self._context
        if built is not None:  # every event after the first: no lock
            return built
        with self._lock:
            if self._context is None:
                settings = self.cache.of(CoreSettings.from_mapping)
                ledger = self._ledger or Ledger(open_store(self.env),
                                                claim_timeout_s=settings.claim_timeout_s,
                                                clock=self.clock)
                self._context = HandlerContext(
                    cache=self.cache, settings=settings, ledger=ledger,
                    adapters=Adapters(self.cache, ledger, settings), clock=self.clock)
            return self._context

    def dispatch(self, event: Any, *, function: str) -> DispatchResult:
        """Handle one event delivered to `function`; never raises for a bad event."""
        return telemetry.observe(function, self._dispatch_guarded, event, function)  # its span

    def _dispatch_guarded(self, event: Any, function: str) -> DispatchResult:
        try:
            return self._dispatch(event, function)
        except (RetryableError, PermanentError) as exc:
            # The ledger itself failed (unreachable, throttled, access denied): without it the
            # event cannot be acted on exactly once, so Event Grid must redeliver it.
            log.error("ledger unavailable, event will be retried: %s", exc)
            from handlers.events.salvage import salvage  # only for events that went wrong

            readable = salvage(event)
            return DispatchResult("", readable.event_id, readable.event_type, Outcome.RETRY,
                                  "ledger unavailable", self._clean(f"{type(exc).__name__}: {exc}"))

    def _dispatch(self, event: Any, function: str) -> DispatchResult:
        try:
            envelope = ev.parse_envelope(event)
        except InvalidEvent as exc:
            return self._invalid_envelope(event, function, exc)
        # The event itself is stored with its row (masked, bounded): `amlevents show`, replay.
        facts = ReceivedEvent(key=event_key(envelope.topic, envelope.event_type, envelope.id),
                              event_id=envelope.id, event_type=envelope.event_type,
                              subject=envelope.subject, topic=envelope.topic, function=function,
                              raw=envelope.raw, schema=envelope.schema,
                              clean=self._clean_stored, screen=self._screen)
        telemetry.annotate(facts)
        try:
            ctx = self.context()
        except SettingError as exc:
            # Misconfiguration: keep the event (retry) so it is acted on once settings are fixed.
            log.error("settings invalid, event %s will be retried: %s", facts.event_id, exc)
            return self._record_unconfigured(facts, exc)
        verdict = self._precheck(envelope, function, ctx)
        if verdict is not None:
            return self._record(ctx.ledger, facts, verdict)
        try:
            typed = ev.parse_data(envelope)
        except InvalidEvent as exc:
            return self._record(ctx.ledger, facts,
                                ActionResult(Outcome.INVALID, "rejected", str(exc)))
        return self._act(ctx, facts, typed)

    def _precheck(self, envelope: ev.EventEnvelope, function: str,
                  ctx: HandlerContext) -> ActionResult | None:
        settings = ctx.settings
        if not settings.allowed_topics:
            return ActionResult(Outcome.REFUSED, "refused",
                                f"no topic is allowed: set {ALLOWED_TOPICS}")
        if not settings.topic_allowed(envelope.topic):
            return ActionResult(Outcome.REFUSED, "refused",
                                f"topic {envelope.topic} is not in {ALLOWED_TOPICS}")
        if not envelope.known_type:
            return ActionResult.skipped(f"event type {envelope.event_type} is not handled")
        if not accepts(function, envelope.event_type):
            return ActionResult.skipped(
                f"function {function} does not handle {envelope.event_type}")
        return None

    def _act(self, ctx: HandlerContext, facts: EventFacts, typed: ev.MlEvent) -> DispatchResult:
        """Every concern that wants the event acts on it once; the home concern's result first."""
        concerns = concerns_for(typed, ctx)
        if len(concerns) == 1:
            return self._act_once(ctx, facts, typed, concerns[0])
        results = [self._act_once(ctx, replace(facts, key=concern_key(
            facts.key, concern, facts.event_type)), typed, concern) for concern in concerns]
        return replace(results[0], also=tuple(results[1:]))

    def _act_once(self, ctx: HandlerContext, facts: EventFacts, typed: ev.MlEvent,
                  concern: str) -> DispatchResult:
        claim = ctx.ledger.claim(facts)
        if claim.status == "done":  # not acted on again; its outcome event, if pending, is sent
            return published(ctx, claim.entry, self._result(claim.entry, duplicate=True))
        if claim.status == "busy":
            return DispatchResult(facts.key, facts.event_id, facts.event_type,
                                  Outcome.IN_PROGRESS, "in progress elsewhere",
                                  "another delivery holds the claim", duplicate=True)
        result = telemetry.run_action(facts.event_type, self._run_handler, ctx, typed, concern)
        entry = ctx.ledger.finish(claim.entry, result.outcome, self._clean(result.action),
                                  self._clean(result.detail))
        self._log(entry)
        return published(ctx, entry, self._result(entry))  # topic down: `retry`, not redone

    def _run_handler(self, ctx: HandlerContext, typed: ev.MlEvent, concern: str) -> ActionResult:
        """Only known transient failures retry; anything else is recorded once, for good."""
        handler = CONCERN_HANDLERS[concern]
        try:
            return handler(typed, ctx)
        except InvalidEvent as exc:
            return ActionResult(Outcome.INVALID, "rejected", str(exc))
        except PolicyRefused as exc:
            return ActionResult(Outcome.REFUSED, "refused", str(exc))
        except PermanentError as exc:
            return ActionResult(Outcome.FAILED, "failed", f"{type(exc).__name__}: {exc}")
        except (RetryableError, SettingError, TimeoutError, ConnectionError) as exc:
            # Throttling, 5xx, timeouts, a dropped connection: a later delivery may succeed.
            # A bad setting is the operator's to fix: keep the event until it is.
            return ActionResult(Outcome.RETRY, "will retry", f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            # Nobody classified it, so nothing says a redelivery would fare better: retrying
            # would fail the same way for 24 hours (a poison event). Recorded once, with why.
            log.error("handler for %s failed unexpectedly: %s: %s", typed.envelope.event_type,
                      type(exc).__name__, self._clean(str(exc)), exc_info=True)
            return ActionResult(Outcome.FAILED, "failed unexpectedly",
                                f"{type(exc).__name__}: {exc}")

    def _invalid_envelope(self, event: Any, function: str, exc: InvalidEvent) -> DispatchResult:
        # What can be read is kept in the row; the key comes from the content, so the same
        # delivery always gets the same key (func objects included). Imported here: off the
        # path of every valid event (cold start).
        from handlers.events.salvage import salvage

        readable = salvage(event)
        facts = EventFacts(key=body_key(readable.key_material), event_id=readable.event_id,
                           event_type=readable.event_type, subject=readable.subject,
                           topic=readable.topic, function=function)
        telemetry.annotate(facts)
        try:
            ledger = self.context().ledger
        except SettingError as setting_exc:
            return self._record_unconfigured(facts, setting_exc)
        return self._record(ledger, facts, ActionResult(Outcome.INVALID, "rejected", str(exc)))

    def _record(self, ledger: Ledger, facts: EventFacts, result: ActionResult) -> DispatchResult:
        entry, first = ledger.record(facts, result.outcome, self._clean(result.action),
                                     self._clean(result.detail))
        if first:
            self._log(entry)
        return self._result(entry, duplicate=not first)

    def _record_unconfigured(self, facts: EventFacts, exc: SettingError) -> DispatchResult:
        """Record a `retry` in the ledger the settings point at, if those settings are sound."""
        try:
            with self._lock:
                if self._fallback is None:
                    self._fallback = Ledger(open_store(self.env), clock=self.clock)
            return self._record(self._fallback, facts, ActionResult(
                Outcome.RETRY, "settings invalid", str(exc)))
        except SettingError:
            return self._unrecorded(facts, Outcome.RETRY, "settings invalid", str(exc))

    def _unrecorded(self, facts: EventFacts, outcome: Outcome, action: str,
                    detail: str) -> DispatchResult:
        return DispatchResult(facts.key, facts.event_id, facts.event_type, outcome, action,
                              self._clean(detail))

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)

    def _clean_stored(self, text: str) -> str:
        # Short strings repeat (topic, types, tag names): cached; long ones are not held.
        return self._clean_cached(text) if len(text) <= 256 else self._clean(text)

    @staticmethod
    def _result(entry: LedgerEntry, *, duplicate: bool = False) -> DispatchResult:
        return DispatchResult(entry.key, entry.event_id, entry.event_type, entry.outcome,
                              entry.action, entry.detail, duplicate)

    @staticmethod
    def _log(entry: LedgerEntry) -> None:
        log.info("event %s %s -> %s: %s", entry.event_id, entry.event_type, entry.outcome.value,
                 entry.action)


@functools.lru_cache(maxsize=1)
def default_dispatcher() -> Dispatcher:
    """The process-wide dispatcher over os.environ (built on the first event, not at import)."""
    dispatcher = Dispatcher(os.environ)
    widen_strptime_cache()  # the worker's eventTime decoding, for every later event
    install_redaction(secret_values(dispatcher.env))
    telemetry.configure(dispatcher.env)  # Application Insights, when its connection string is set
    return dispatcher


def handle_trigger(event: Any, function: str) -> DispatchResult:
    """Entry point for a trigger: dispatch, and raise RetryLater so Event Grid redelivers."""
    result = default_dispatcher().dispatch(event, function=function)
    if result.should_retry:
        raise RetryLater(f"event {result.event_id} ({result.outcome.value}): {result.detail}")
    return result
