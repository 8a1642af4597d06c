"""The ledger: every received event and its outcome, and the idempotency that rests on it.

As in AWS Lambda Powertools' idempotency utility, the `Ledger` does the work (claims, expiry,
in-progress vs completed) and a `LedgerStore` only stores: conditional insert, read,
conditional replace (ETag), list, plus a small conditional key/value space for handler state
(highest deployed version per endpoint, last pipeline run per monitor, notification windows).
One conditional insert claims an event; there is no read-then-write race.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from handlers.errors import RetryableError
from handlers.outcome import TERMINAL, Outcome


def utc_iso(epoch_s: float) -> str:
    """ISO 8601 UTC timestamp with milliseconds."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds")


def storable(text: str) -> str:
    """Text any store accepts: lone surrogates (valid JSON, invalid UTF-8) become U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def event_key(topic: str, event_type: str, event_id: str) -> str:
    """The dedupe key: Event Grid ids are unique per topic and type (the samples reuse one id)."""
    material = "\n".join((topic.strip().lower(), event_type.strip().lower(), event_id.strip()))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def body_key(raw: bytes) -> str:
    """The key of an event too malformed to have an id: its content."""
    return "raw-" + hashlib.sha256(raw).hexdigest()[:36]


@dataclass(frozen=True, kw_only=True)
class EventFacts:
    """What the ledger records about an event before anything is known of its outcome."""

    key: str
    event_id: str
    event_type: str
    subject: str
    topic: str
    function: str


@dataclass(frozen=True, kw_only=True)
class LedgerEntry(EventFacts):
    """One row of the ledger: the event's facts (by key) and what became of it."""

    received_at: str
    updated_at: str
    outcome: Outcome
    action: str = ""
    detail: str = ""
    attempts: int = 1
    claim_expires_at_s: float = 0.0
    etag: str = ""

    def evolve(self, **changes: Any) -> LedgerEntry:
        """A copy with `changes`: dataclasses.replace without its per-call cost (hot path)."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"LedgerEntry has no field(s) {sorted(unknown)}")
        copy = object.__new__(LedgerEntry)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    def as_json(self) -> dict[str, Any]:
        """The public JSON shape (`amlevents ledger --json`)."""
        return {"id": self.event_id, "key": self.key, "type": self.event_type,
                "subject": self.subject, "topic": self.topic, "function": self.function,
                "received_at": self.received_at, "updated_at": self.updated_at,
                "outcome": self.outcome.value, "action": self.action, "detail": self.detail,
                "attempts": self.attempts}


@dataclass(frozen=True)
class StateItem:
    """A handler's small piece of shared state, with the ETag for conditional updates."""

    key: str
    value: Mapping[str, Any]
    etag: str


class LedgerStore(Protocol):
    """Storage for the ledger; implementations: SQLite (embedded) and Azure Table Storage."""

    def insert(self, entry: LedgerEntry) -> LedgerEntry | None:
        """Insert if the key is absent; the stored entry (with ETag), or None if it exists."""

    def get(self, key: str) -> LedgerEntry | None:
        """The entry for a key, or None."""

    def replace(self, entry: LedgerEntry, *, etag: str) -> LedgerEntry | None:
        """Replace if the stored ETag still matches; the stored entry, or None on mismatch."""

    def entries(self, *, limit: int | None = None) -> list[LedgerEntry]:
        """Entries in the order they were first received (oldest first)."""

    def get_state(self, key: str) -> StateItem | None:
        """A state item, or None."""

    def put_state(self, key: str, value: Mapping[str, Any], *, etag: str | None) -> StateItem | None:
        """Write if `etag` matches (None: only if absent); the stored item, or None on conflict."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class Claim:
    """The result of claiming an event: `claimed` (act now), `done` (duplicate), `busy`."""

    status: str
    entry: LedgerEntry


class Ledger:
    """Idempotency over a LedgerStore: claim, finish, record, and conditional handler state."""

    def __init__(self, store: LedgerStore, *, claim_timeout_s: float = 600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.claim_timeout_s = claim_timeout_s
        self.clock = clock

    def _new(self, facts: EventFacts, outcome: Outcome, now: float, **extra: Any) -> LedgerEntry:
        return LedgerEntry(key=facts.key, event_id=storable(facts.event_id),
                           event_type=storable(facts.event_type), subject=storable(facts.subject),
                           topic=storable(facts.topic), function=facts.function,
                           received_at=utc_iso(now), updated_at=utc_iso(now), outcome=outcome,
                           **extra)

    def claim(self, facts: EventFacts) -> Claim:
        """Claim an event for processing, unless it is done or another delivery holds it."""
        now = self.clock()
        expires = now + self.claim_timeout_s
        stored = self.store.insert(self._new(facts, Outcome.IN_PROGRESS, now,
                                             claim_expires_at_s=expires))
        if stored is not None:
            return Claim("claimed", stored)
        for _ in range(5):
            current = self.store.get(facts.key)
            if current is None:  # removed meanwhile; claim it afresh
                stored = self.store.insert(self._new(facts, Outcome.IN_PROGRESS, now,
                                                     claim_expires_at_s=expires))
                if stored is not None:
                    return Claim("claimed", stored)
                continue
            if current.outcome in TERMINAL:
                self._count_delivery(current, now)
                return Claim("done", current)
            if current.outcome is Outcome.IN_PROGRESS and current.claim_expires_at_s > now:
                return Claim("busy", current)
            # A retry, or a claim whose holder died: take it over, conditionally.
            taken = self.store.replace(current.evolve(
                outcome=Outcome.IN_PROGRESS, attempts=current.attempts + 1,
                claim_expires_at_s=expires, updated_at=utc_iso(now), function=facts.function),
                etag=current.etag)
            if taken is not None:
                return Claim("claimed", taken)
        return Claim("busy", current if current is not None else self._new(
            facts, Outcome.IN_PROGRESS, now))

    def _count_delivery(self, current: LedgerEntry, now: float) -> None:
        # Best effort: a lost race here only loses a count, never an outcome.
        self.store.replace(current.evolve(attempts=current.attempts + 1,
                                   updated_at=utc_iso(now)), etag=current.etag)

    def finish(self, claimed: LedgerEntry, outcome: Outcome, action: str,
               detail: str) -> LedgerEntry:
        """Record the outcome of a claimed event."""
        now = self.clock()
        done = claimed.evolve(outcome=outcome, action=storable(action), detail=storable(detail),
                       updated_at=utc_iso(now), claim_expires_at_s=0.0)
        stored = self.store.replace(done, etag=claimed.etag)
        if stored is not None:
            return stored
        # Our claim expired and another delivery took over; its record wins.
        current = self.store.get(claimed.key)
        return current if current is not None else done

    def record(self, facts: EventFacts, outcome: Outcome, action: str,
               detail: str) -> tuple[LedgerEntry, bool]:
        """Record an event that is decided without a claim (invalid, refused); (entry, first?)."""
        now = self.clock()
        action, detail = storable(action), storable(detail)
        stored = self.store.insert(self._new(facts, outcome, now, action=action, detail=detail))
        if stored is not None:
            return stored, True
        current = self.store.get(facts.key)
        if current is None:
            return self._new(facts, outcome, now, action=action, detail=detail), False
        if current.outcome in TERMINAL:
            self._count_delivery(current, now)
            return current, False
        # An earlier delivery of it is retrying or in progress: this verdict is final.
        taken = self.store.replace(current.evolve(outcome=outcome, action=action, detail=detail,
                                           attempts=current.attempts + 1,
                                           updated_at=utc_iso(now), claim_expires_at_s=0.0),
                                   etag=current.etag)
        return (taken or current), taken is not None

    def entries(self, *, limit: int | None = None) -> list[LedgerEntry]:
        """All entries, oldest first."""
        return self.store.entries(limit=limit)

    def get(self, key: str) -> LedgerEntry | None:
        """One entry by key."""
        return self.store.get(key)

    def update_state(self, key: str,
                     change: Callable[[Mapping[str, Any] | None], Mapping[str, Any] | None],
                     *, attempts: int = 20) -> Mapping[str, Any] | None:
        """Apply `change` to a state item with optimistic concurrency; return what was stored.

        `change` receives the current value (None when absent) and returns the new value, or None
        to leave it as it is. It may run more than once when writers race, so it must be pure.
        """
        for attempt in range(attempts):
            current = self.store.get_state(key)
            new_value = change(current.value if current else None)
            if new_value is None:
                return current.value if current else None
            stored = self.store.put_state(key, new_value, etag=current.etag if current else None)
            if stored is not None:
                return stored.value
            # Lost a race: back off with jitter so racing writers spread out.
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** attempt)))
        raise RetryableError(f"ledger state {key!r} changed under us {attempts} times in a row")

    def get_state(self, key: str) -> Mapping[str, Any] | None:
        """A state item's value, or None."""
        item = self.store.get_state(key)
        return item.value if item else None

    def close(self) -> None:
        """Release the store."""
        self.store.close()
