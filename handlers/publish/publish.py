"""Publish each outcome once, and again later if the topic was down, without redoing the action.

After the dispatcher records an outcome (`ledger.finish`), `publish_outcome(ctx, entry)` publishes
its event (catalogue.py). What was published is kept in the ledger's state, keyed by the ledger
row (`outcome-event-{ledger key}`):

    {"status": "sending", "token": ..., "lease_until_s": ...}   one delivery holds the right to send
    {"status": "published", "id": ..., "type": ..., "time": ..., "published_at": ...}   never again
    {"status": "pending", "last_error": ...}                     the topic was unavailable
    {"status": "refused", "last_error": ...}                     the topic refused it (400/413): kept

When the topic is unavailable, `published()` turns the delivery's result into `retry`, so the
trigger fails and Event Grid redelivers the Azure ML event. The ledger row is already terminal,
so the redelivery's claim answers `done` and the handler does not run again; the dispatcher calls
`published()` on that branch too, which publishes the pending event. Every later delivery of the
same event (a duplicate, a replayed dead letter) does the same, and one that finds `published`
sends nothing. While a delivery holds the lease, others leave the send to it.

At most once per outcome, as far as it can be known: if the topic accepted a send but the answer
was lost, the next attempt sends the event again with the same id, source, type, subject and time
(the first attempt's, kept in the state; CloudEvents' id + source identify an event: consumers
dedupe on them).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol, TypeVar, cast

from handlers.errors import AmlEventsError, PermanentError, RetryableError, SettingError
from handlers.ledger.ledger import LedgerEntry, utc_iso
from handlers.outcome import TERMINAL, Outcome
from handlers.publish.catalogue import OutcomeEvent, build_event
from handlers.publish.settings import TOPIC_ENDPOINT, OutcomeTopicSettings
from handlers.runtime.context import HandlerContext
from handlers.runtime.redaction import redact, secret_values

log = logging.getLogger("amlevents.publish")

STATE_PREFIX = "outcome-event-"
LEASE_S = 120.0  # longer than one send can take (timeouts and the SDK's one retry)
STUDIO_ENDPOINT = "AMLEVENTS_NOTIFY_STUDIO_ENDPOINT"  # the notify concern's studio link setting
R = TypeVar("R")


class OutcomePublisher(Protocol):
    """Sends one outcome event (handlers/adapters/outcome_topic.py implements it)."""

    def send(self, event: OutcomeEvent) -> None:
        """Publish, or raise RetryableError / PermanentError."""
        ...


def state_key(ledger_key: str) -> str:
    """The ledger state item recording the outcome event of one ledger row."""
    return STATE_PREFIX + ledger_key


def _publisher(env: Mapping[str, str]) -> OutcomePublisher:
    """The process's publisher (built once through the settings cache; the SDK on first send)."""
    from handlers.adapters.outcome_topic import OutcomeTopicPublisher

    return OutcomeTopicPublisher(OutcomeTopicSettings.from_mapping(env))


def _secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    return secret_values(env)


def published(ctx: HandlerContext, entry: LedgerEntry, result: R) -> R:
    """`result` (a DispatchResult) once the entry's outcome event is published; else the same
    result as `retry`, so Event Grid redelivers the event to publish it (never to redo it)."""
    pending = publish_outcome(ctx, entry)
    if pending is None:
        return result
    retry: R = replace(cast(Any, result), outcome=Outcome.RETRY,
                       action="outcome event not published",
                       detail=redact(f"the action is recorded as {entry.outcome.value}; its "
                                     f"outcome event is not published yet ({pending}); a "
                                     "redelivery publishes it without acting again",
                                     ctx.settings_of(_secrets)))
    return retry


def publish_outcome(ctx: HandlerContext, entry: LedgerEntry) -> str | None:
    """Publish the outcome event of a finished ledger row unless it was published already.

    None: nothing is pending (published now or before, or nothing to publish). Otherwise why the
    event is still pending; the caller has the event redelivered. Never raises for the topic or
    its settings; a ledger failure (RetryableError) propagates as for any ledger call.
    """
    if entry.outcome not in TERMINAL:
        return None  # `retry`, `in_progress`: not an outcome yet
    try:
        settings = ctx.settings_of(OutcomeTopicSettings.from_mapping)
    except SettingError as exc:
        if not str(ctx.env.get(TOPIC_ENDPOINT) or "").strip():
            return None  # a bad companion setting of a topic that is off
        return str(exc)  # the operator fixes it; the event waits
    if not settings.enabled:
        return None
    from handlers.runtime.routing import concern_of  # not at import: routing imports the handlers

    concern = concern_of(entry.key, entry.event_type)
    dry_run = ctx.adapters.is_dry_run(concern) if concern else False
    if dry_run and not settings.publish_dry_run:
        return None
    event = build_event(entry, concern, source=settings.source, dry_run=dry_run,
                        secrets=ctx.settings_of(_secrets),
                        studio=str(ctx.env.get(STUDIO_ENDPOINT) or "https://ml.azure.com"))
    if event is None:
        return None
    try:
        return _publish_once(ctx, entry, event)
    except RetryableError:
        raise  # the ledger: handled by the dispatcher as for any ledger call
    except Exception as exc:  # a bug must not lose the outcome: keep it pending
        log.exception("publishing outcome event %s failed unexpectedly", event.id)
        return f"{type(exc).__name__}: {exc}"


def _publish_once(ctx: HandlerContext, entry: LedgerEntry, event: OutcomeEvent) -> str | None:
    key = state_key(entry.key)
    token = uuid.uuid4().hex
    now = ctx.clock()

    def take(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        state = dict(current or {})
        if state.get("status") in ("published", "refused"):
            return None
        if state.get("status") == "sending" and float(state.get("lease_until_s", 0)) > now:
            return None
        return {**state, "status": "sending", "token": token, "lease_until_s": now + LEASE_S,
                "id": event.id, "type": event.type, "time": state.get("time") or event.time,
                "attempts": int(state.get("attempts", 0)) + 1}

    held = ctx.ledger.update_state(key, take) or {}
    if held.get("token") != token:
        if held.get("status") == "sending":
            log.info("outcome event %s: another delivery is sending it", event.id)
        return None  # published, refused, or another delivery is sending it
    event = replace(event, time=str(held["time"]))  # the first attempt's, on every attempt
    try:
        ctx.settings_of(_publisher).send(event)
    except PermanentError as exc:
        log.error("outcome event %s (%s) refused by the topic, not retried: %s", event.id,
                  event.type, exc)
        _settle(ctx, key, token, {"status": "refused", "last_error": str(exc)})
        return None
    except (AmlEventsError, OSError) as exc:  # RetryableError, SettingError: publish later
        log.warning("outcome event %s (%s) not published, will retry: %s", event.id, event.type,
                    exc)
        _settle(ctx, key, token, {"status": "pending", "last_error": str(exc)})
        return f"{type(exc).__name__}: {exc}"
    _settle(ctx, key, token, {"status": "published", "published_at": utc_iso(ctx.clock())})
    log.info("outcome event %s %s published (%s)", event.id, event.type, entry.subject)
    return None


def _settle(ctx: HandlerContext, key: str, token: str, changes: Mapping[str, Any]) -> None:
    """Record how our send ended, unless another delivery took the lease over meanwhile."""
    def change(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        state = dict(current or {})
        if state.get("token") != token and changes.get("status") != "published":
            return None  # ours expired and another delivery holds it: its result counts
        state.pop("token", None)
        state.pop("lease_until_s", None)
        return {**state, **changes}

    ctx.ledger.update_state(key, change)
