"""The ledger: every received event and its outcome, and the idempotency that rests on it.

As in AWS Lambda Powertools' idempotency utility, the `Ledger` does the work (claims, expiry,
in-progress vs completed) and a `LedgerStore` only stores: conditional insert, read,
conditional replace (ETag), list, plus a small conditional key/value space for handler state
(highest deployed version per endpoint, last pipeline run per monitor, notification windows).
One conditional insert claims an event; there is no read-then-write race.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from handlers.errors import RetryableError
from handlers.outcome import TERMINAL, Outcome

if TYPE_CHECKING:  # stored_event.py is imported when an event is stored or read (cold start)
    from handlers.ledger.stored_event import StoredEvent

HISTORY_KEEP = 30  # a row's history keeps its first item and the latest ones, and counts the rest
QUARANTINED = "quarantined"  # the action of a quarantined row (outcome `failed`)
_HISTORY_ACTION_CHARS = 160


def utc_iso(epoch_s: float) -> str:
    """ISO 8601 UTC timestamp with milliseconds (as datetime.isoformat writes it)."""
    # datetime's own rounding (to microseconds, half to even), then its whole seconds, which
    # repeat from event to event: a third of the cost of formatting a datetime each time.
    fraction, whole = math.modf(epoch_s)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    return f"{_utc_second(int(whole))}.{micros // 1000:03d}+00:00"


@functools.lru_cache(maxsize=64)
def _utc_second(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="seconds")[:-6]


def storable(text: str) -> str:
    """Text any store accepts: lone surrogates (valid JSON, invalid UTF-8) become U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def event_key(topic: str, event_type: str, event_id: str) -> str:
    """The dedupe key: Event Grid ids are unique per topic and type (the samples reuse one id)."""
    if len(topic) + len(event_type) + len(event_id) <= _CACHED_KEY_CHARS:
        return _cached_event_key(topic, event_type, event_id)
    return _event_key(topic, event_type, event_id)  # hostile sizes: never held in the cache


def _event_key(topic: str, event_type: str, event_id: str) -> str:
    material = "\n".join((topic.strip().lower(), event_type.strip().lower(), event_id.strip()))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:40]


# The dispatcher and the concern's plan both ask for an event's key: it is hashed once.
_cached_event_key = functools.lru_cache(maxsize=1024)(_event_key)
_CACHED_KEY_CHARS = 1024  # real topics, types and ids are a few hundred characters at most


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
class ReceivedEvent(EventFacts):
    """EventFacts with the event itself, stored with the row when the row is created.

    `raw` is the event as it arrived (its envelope's wire form), `clean` the dispatcher's secret
    masking; the stored form is built only when a row is created, never for a duplicate.
    """

    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    schema: str = ""
    clean: Callable[[str], str] | None = field(default=None, repr=False, compare=False)
    # False when no string of a JSON document needs `clean` (redaction.may_need_masking).
    screen: Callable[[str], bool] | None = field(default=None, repr=False, compare=False)

    def stored(self) -> bytes:
        """The stored form (stored_event.py), or b"" when there is no event."""
        if not self.raw:
            return b""
        from handlers.ledger.stored_event import encode_event

        return encode_event(self.raw, schema=self.schema, clean=self.clean, screen=self.screen)


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
    history: str = ""  # JSON list: every attempt, replay and quarantine (bounded; see `events`)

    def evolve(self, **changes: Any) -> LedgerEntry:
        """A copy with `changes`: dataclasses.replace without its per-call cost (hot path)."""
        if not _ENTRY_FIELDS.issuperset(changes):
            unknown = sorted(set(changes) - _ENTRY_FIELDS)
            raise TypeError(f"LedgerEntry has no field(s) {unknown}")
        copy = object.__new__(LedgerEntry)
        values = copy.__dict__
        values.update(self.__dict__)
        values.update(changes)
        return copy

    @staticmethod
    def of(values: Mapping[str, Any]) -> LedgerEntry:
        """An entry from its fields (the defaults for those left out), without the frozen
        dataclass __init__'s cost (one attribute set at a time): the stores and claims build one
        or two per event. The caller passes known fields of the right types."""
        entry = object.__new__(LedgerEntry)
        entry.__dict__.update(_ENTRY_DEFAULTS)
        entry.__dict__.update(values)
        return entry

    def as_json(self) -> dict[str, Any]:
        """The public JSON shape (`amlevents ledger --json`)."""
        return {"id": self.event_id, "key": self.key, "type": self.event_type,
                "subject": self.subject, "topic": self.topic, "function": self.function,
                "received_at": self.received_at, "updated_at": self.updated_at,
                "outcome": self.outcome.value, "action": self.action, "detail": self.detail,
                "attempts": self.attempts}

    def events(self) -> list[dict[str, Any]]:
        """The row's history, oldest first: attempts (`n`, `outcome`...), replays, quarantines."""
        return parse_history(self.history)

    @property
    def quarantined(self) -> bool:
        """True when an operator quarantined the event: never acted on or replayed again."""
        return self.outcome is Outcome.FAILED and self.action == QUARANTINED


_ENTRY_FIELDS = frozenset(f.name for f in fields(LedgerEntry))
_ENTRY_DEFAULTS = {f.name: f.default for f in fields(LedgerEntry) if f.default is not MISSING}


@dataclass(frozen=True)
class StateItem:
    """A handler's small piece of shared state, with the ETag for conditional updates."""

    key: str
    value: Mapping[str, Any]
    etag: str


@dataclass(frozen=True, kw_only=True)
class LedgerQuery:
    """Which rows to list; every store gives the same answer (`matches` is the definition).

    Times compare with `received_at` (ISO 8601 UTC): `since` inclusive, `until` exclusive. Types
    match the whole name or its last part (`ModelRegistered`), any case; `subject` is a
    case-sensitive glob (`*`, `?`, `[...]`). `limit` keeps the most recently received matches.
    """

    outcomes: frozenset[Outcome] = frozenset()
    types: tuple[str, ...] = ()
    since: str = ""
    until: str = ""
    subject: str = ""
    event_id: str = ""
    key_prefix: str = ""
    event_id_prefix: str = ""
    limit: int | None = None

    def matches(self, entry: LedgerEntry) -> bool:
        """True when the row is one the query asks for (the limit aside)."""
        if self.outcomes and entry.outcome not in self.outcomes:
            return False
        if self.since and entry.received_at < self.since:
            return False
        if self.until and entry.received_at >= self.until:
            return False
        if self.event_id and entry.event_id != self.event_id:
            return False
        if self.key_prefix and not entry.key.startswith(self.key_prefix):
            return False
        if self.event_id_prefix and not entry.event_id.startswith(self.event_id_prefix):
            return False
        if self.types:
            kind = entry.event_type.lower()
            wanted = {t.lower() for t in self.types}
            if kind not in wanted and kind.rsplit(".", 1)[-1] not in wanted:
                return False
        return not self.subject or fnmatch.fnmatchcase(entry.subject, self.subject)

    def narrow(self, entries: list[LedgerEntry]) -> list[LedgerEntry]:
        """The matches of `entries` (oldest first), keeping the latest `limit`."""
        found = [e for e in entries if self.matches(e)]
        if self.limit is not None:
            found = found[max(0, len(found) - self.limit):] if self.limit > 0 else []
        return found


def parse_history(text: str) -> list[dict[str, Any]]:
    """A row's history; a damaged one reads as empty (it is for people, never decided on)."""
    if not text:
        return []
    try:
        items = json.loads(text)
    except ValueError:
        return []
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


# Built once: json.dumps with options builds an encoder per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def add_history(text: str, item: Mapping[str, Any]) -> str:
    """The history with `item` appended: the first item and the latest kept, the rest counted."""
    if not text:
        return _COMPACT_JSON([dict(item)])  # a new row's first item
    items = parse_history(text)
    items.append(dict(item))
    if len(items) > HISTORY_KEEP:
        first, rest, omitted = items[0], items[1:], 0
        if "omitted" in rest[0]:
            omitted, rest = int(rest[0]["omitted"]), rest[1:]
        keep = HISTORY_KEEP - 2
        omitted += max(0, len(rest) - keep)
        items = [first, {"omitted": omitted}, *rest[-keep:]]
    return _COMPACT_JSON(items)


_FRESH_CLAIM_START, _IN_PROGRESS_END = '[{"n":1,', ',"outcome":"in_progress"}]'


def _settle_history(text: str, attempt: int, outcome: Outcome, action: str, at: str) -> str:
    """The attempt `attempt` ends with `outcome` (a new item if it is not the last one)."""
    settled = {"outcome": outcome.value, "action": action[:_HISTORY_ACTION_CHARS], "done_at": at}
    if (attempt == 1 and text.startswith(_FRESH_CLAIM_START) and text.endswith(_IN_PROGRESS_END)
            and text.count("{") == 1):
        # A first claim's only item, as `claim` wrote it (outcome its last key): the same text
        # the general way below gives, without decoding and re-encoding it (every event).
        return f"{text[:-len(_IN_PROGRESS_END)]},{_COMPACT_JSON(settled)[1:-1]}}}]"
    items = parse_history(text)
    if items and items[-1].get("n") == attempt and items[-1].get("outcome") == "in_progress":
        items[-1].update(settled)
        return _COMPACT_JSON(items)
    return add_history(text, {"n": attempt, "at": at, "outcome": outcome.value,
                              "action": action[:_HISTORY_ACTION_CHARS]})


class LedgerStore(Protocol):
    """Storage for the ledger; implementations: SQLite (embedded) and Azure Table Storage."""

    def insert(self, entry: LedgerEntry, *, event: bytes = b"") -> LedgerEntry | None:
        """Insert if the key is absent, with the stored event; the stored entry (with ETag), or
        None if it exists."""

    def get_event(self, key: str) -> bytes | None:
        """The stored event of a row (b"" when none was stored), or None without the row."""

    def query(self, query: LedgerQuery) -> list[LedgerEntry]:
        """The rows the query asks for, oldest first."""

    def prune(self, updated_before: str, *, now_s: float) -> int:
        """Delete rows last updated before the ISO time (never a live claim); how many."""

    def get(self, key: str) -> LedgerEntry | None:
        """The entry for a key, or None."""

    def replace(self, entry: LedgerEntry, *, etag: str) -> LedgerEntry | None:
        """Replace if the stored ETag still matches; the stored entry, or None on mismatch.

        What a row's later writes change: function, updated_at, outcome, action, detail,
        attempts, claim_expires_at_s, history. The event's facts (key, id, type, subject, topic)
        and received_at are fixed when the row is inserted; a store may leave them unwritten."""

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

    def _new(self, facts: EventFacts, outcome: Outcome, at: str, **extra: Any) -> LedgerEntry:
        first = {"n": 1, "at": at, "function": facts.function, "outcome": outcome.value}
        if extra.get("action"):
            first["action"] = str(extra["action"])[:_HISTORY_ACTION_CHARS]
        return LedgerEntry.of({
            "key": facts.key, "event_id": storable(facts.event_id),
            "event_type": storable(facts.event_type), "subject": storable(facts.subject),
            "topic": storable(facts.topic), "function": facts.function, "received_at": at,
            "updated_at": at, "outcome": outcome, "history": add_history("", first), **extra})

    @staticmethod
    def _stored_event(facts: EventFacts) -> bytes:
        return facts.stored() if isinstance(facts, ReceivedEvent) else b""

    def claim(self, facts: EventFacts) -> Claim:
        """Claim an event for processing, unless it is done or another delivery holds it."""
        now = self.clock()
        at = utc_iso(now)  # one timestamp per write
        expires = now + self.claim_timeout_s
        event = self._stored_event(facts)
        stored = self.store.insert(self._new(facts, Outcome.IN_PROGRESS, at,
                                             claim_expires_at_s=expires), event=event)
        if stored is not None:
            return Claim("claimed", stored)
        for _ in range(5):
            current = self.store.get(facts.key)
            if current is None:  # removed meanwhile; claim it afresh
                stored = self.store.insert(self._new(facts, Outcome.IN_PROGRESS, at,
                                                     claim_expires_at_s=expires), event=event)
                if stored is not None:
                    return Claim("claimed", stored)
                continue
            if current.outcome in TERMINAL:
                self._count_delivery(current, at, facts.function)
                return Claim("done", current)
            if current.outcome is Outcome.IN_PROGRESS and current.claim_expires_at_s > now:
                return Claim("busy", current)
            # A retry, or a claim whose holder died: take it over, conditionally.
            attempt = current.attempts + 1
            taken = self.store.replace(current.evolve(
                outcome=Outcome.IN_PROGRESS, attempts=attempt,
                claim_expires_at_s=expires, updated_at=at, function=facts.function,
                history=add_history(current.history, {
                    "n": attempt, "at": at, "function": facts.function,
                    "outcome": Outcome.IN_PROGRESS.value, "after": current.outcome.value})),
                etag=current.etag)
            if taken is not None:
                return Claim("claimed", taken)
        return Claim("busy", current if current is not None else self._new(
            facts, Outcome.IN_PROGRESS, at))

    def _count_delivery(self, current: LedgerEntry, at: str, function: str = "") -> None:
        # Best effort: a lost race here only loses a count, never an outcome.
        attempt = current.attempts + 1
        item = {"n": attempt, "at": at, "outcome": "duplicate"}
        if function:
            item["function"] = function
        self.store.replace(current.evolve(attempts=attempt, updated_at=at,
                                          history=add_history(current.history, item)),
                           etag=current.etag)

    def finish(self, claimed: LedgerEntry, outcome: Outcome, action: str,
               detail: str) -> LedgerEntry:
        """Record the outcome of a claimed event."""
        at = utc_iso(self.clock())
        action = storable(action)
        done = claimed.evolve(outcome=outcome, action=action, detail=storable(detail),
                              updated_at=at, claim_expires_at_s=0.0,
                              history=_settle_history(claimed.history, claimed.attempts,
                                                      outcome, action, at))
        stored = self.store.replace(done, etag=claimed.etag)
        if stored is not None:
            return stored
        # Our claim expired and another delivery took over; its record wins.
        current = self.store.get(claimed.key)
        return current if current is not None else done

    def record(self, facts: EventFacts, outcome: Outcome, action: str,
               detail: str) -> tuple[LedgerEntry, bool]:
        """Record an event that is decided without a claim (invalid, refused); (entry, first?)."""
        at = utc_iso(self.clock())
        action, detail = storable(action), storable(detail)
        stored = self.store.insert(self._new(facts, outcome, at, action=action, detail=detail),
                                   event=self._stored_event(facts))
        if stored is not None:
            return stored, True
        current = self.store.get(facts.key)
        if current is None:
            return self._new(facts, outcome, at, action=action, detail=detail), False
        if current.outcome in TERMINAL:
            self._count_delivery(current, at, facts.function)
            return current, False
        # An earlier delivery of it is retrying or in progress: this verdict is final.
        attempt = current.attempts + 1
        taken = self.store.replace(current.evolve(
            outcome=outcome, action=action, detail=detail, attempts=attempt,
            updated_at=at, claim_expires_at_s=0.0,
            history=add_history(current.history, {
                "n": attempt, "at": at, "function": facts.function,
                "outcome": outcome.value, "action": action[:_HISTORY_ACTION_CHARS]})),
            etag=current.etag)
        return (taken or current), taken is not None

    # --- operating: find, show, replay, quarantine, prune ------------------------------------

    def query(self, query: LedgerQuery) -> list[LedgerEntry]:
        """The rows a query asks for, oldest first."""
        return self.store.query(query)

    def find(self, ref: str) -> list[LedgerEntry]:
        """The rows `ref` names: a ledger key, else an event id (several types may share one),
        else (6 characters or more) a key prefix, else an event id prefix."""
        ref = ref.strip()
        if not ref:
            return []
        exact = self.store.get(ref)
        if exact is not None:
            return [exact]
        by_id = self.store.query(LedgerQuery(event_id=ref))
        if by_id or len(ref) < 6:
            return by_id
        if all(c in "0123456789abcdef" for c in ref.lower()):
            by_key = self.store.query(LedgerQuery(key_prefix=ref.lower()))
            if by_key:
                return by_key
        return self.store.query(LedgerQuery(event_id_prefix=ref))

    def stored_event(self, key: str) -> StoredEvent | None:
        """The event stored with a row; None when the row has none (or is gone).

        Raises StoredEventError when stored bytes cannot be read (a newer format: upgrade).
        """
        from handlers.ledger.stored_event import decode_event

        stored = self.store.get_event(key)
        return decode_event(stored) if stored else None

    def note(self, entry: LedgerEntry, item: Mapping[str, Any]) -> LedgerEntry | None:
        """Add an item to a row's history (ETag-checked); None when the row changed meanwhile."""
        now = utc_iso(self.clock())
        return self.store.replace(entry.evolve(updated_at=now, history=add_history(
            entry.history, {"at": now, **item})), etag=entry.etag)

    def reopen(self, entry: LedgerEntry, item: Mapping[str, Any]) -> LedgerEntry | None:
        """Make a finished row `retry` again, so the next delivery of its event acts on it (a
        replay); `item` (who, why, forced or not) joins its history. ETag-checked: None when the
        row changed meanwhile. The caller decides whether the row may be reopened."""
        now = utc_iso(self.clock())
        return self.store.replace(entry.evolve(
            outcome=Outcome.RETRY, action="reopened for replay",
            detail=f"was {entry.outcome.value}: {entry.action}"[:1000], updated_at=now,
            claim_expires_at_s=0.0, history=add_history(entry.history, {"at": now, **item})),
            etag=entry.etag)

    def quarantine(self, entry: LedgerEntry, *, by: str, reason: str) -> LedgerEntry | None:
        """Settle a (poison) event for good: `failed`, action `quarantined`; deliveries and
        replays leave it alone. None when the row changed meanwhile or a live claim holds it."""
        now = self.clock()
        if entry.outcome is Outcome.IN_PROGRESS and entry.claim_expires_at_s > now:
            return None
        at = utc_iso(now)
        return self.store.replace(entry.evolve(
            outcome=Outcome.FAILED, action=QUARANTINED,
            detail=storable(f"quarantined by {by}: {reason or 'no reason given'}"),
            updated_at=at, claim_expires_at_s=0.0, history=add_history(entry.history, {
                "at": at, "quarantined": {"by": by, "reason": reason,
                                          "was": entry.outcome.value}})),
            etag=entry.etag)

    def prune(self, *, older_than_s: float) -> int:
        """Delete rows not updated for `older_than_s` seconds (never a live claim); how many."""
        now = self.clock()
        return self.store.prune(utc_iso(now - older_than_s), now_s=now)

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
