"""Replay recorded events through the same dispatch again, exactly once.

Event Grid has no replay. This does it from the ledger: each row keeps the event it was created
for (handlers/ledger/stored_event.py), and a replay delivers that event again, either in this
process (a Dispatcher over the local settings, which may point at the deployed app's shared Table
ledger) or through a Functions host's Event Grid webhook (`--url`: the deployed app, or
`amlevents serve`). Exactly-once is the ledger's, as for any delivery:

- a row that did not settle (`retry`; `in_progress` whose claim expired) is simply delivered again;
- a row that ended without acting (`failed`, `refused`, `invalid`) is reopened (made `retry`,
  ETag-checked) and delivered again, so its next claim acts;
- a row that settled (`done`, `planned`, `skipped`) is left alone: nothing is done again, unless
  `force`, which reopens it too (and says so in its history);
- a quarantined row is never replayed, unless `force`;
- a row whose claim another delivery holds is left alone.

Every replay is written into the row's history first (who, when, how, forced or not, why, and the
outcome it had), then the event is delivered, then the row is read back.
"""

from __future__ import annotations

import getpass
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from handlers.ledger.ledger import Ledger, LedgerEntry
from handlers.ledger.stored_event import StoredEventError
from handlers.outcome import Outcome

# Rows that acted or decided: replayed only with force.
SETTLED = frozenset({Outcome.DONE, Outcome.PLANNED, Outcome.SKIPPED})
# Rows that ended without acting: reopened, then delivered again.
REOPENED = frozenset({Outcome.FAILED, Outcome.REFUSED, Outcome.INVALID})


def operator() -> str:
    """Who is replaying: user@host (recorded in the row's history)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: who asks, why, forced or not, for real or not, and how it is delivered."""

    by: str
    reason: str = ""
    force: bool = False
    dry_run: bool = False
    via: str = "local"  # "local", a host URL, or "deadletter ..." (recorded)


@dataclass(frozen=True)
class Replayed:
    """What a replay did to one event: `status` is replayed, would replay, skipped or error."""

    status: str
    event_id: str
    event_type: str
    function: str
    before: str  # the rows' outcomes before ("" for an event the ledger never saw)
    after: str = ""  # after the delivery
    note: str = ""

    @property
    def unsettled(self) -> bool:
        """True when the event still waits (retry, in progress) or the replay failed."""
        return self.status == "error" or any(
            part.strip() in (Outcome.RETRY.value, Outcome.IN_PROGRESS.value)
            for part in self.after.split(","))


class Deliverer(Protocol):
    """Delivers one event to a function, as Event Grid would."""

    def deliver(self, event: Mapping[str, Any], function: str) -> str:
        """Deliver; a short note on what the receiver answered."""
        ...


class LocalDeliverer:
    """Through a Dispatcher in this process (the settings' ledger, adapters and dry run)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        from handlers.runtime.dispatch import Dispatcher

        self.dispatcher = Dispatcher(env)

    def deliver(self, event: Mapping[str, Any], function: str) -> str:
        """Dispatch in-process."""
        result = self.dispatcher.dispatch(dict(event), function=function)
        return f"dispatched here: {result.outcome.value}"

    def close(self) -> None:
        """Release the dispatcher's ledger."""
        from handlers.errors import SettingError

        try:
            self.dispatcher.ledger.close()
        except SettingError:  # settings invalid: the dispatcher opened no ledger to close
            pass


class HttpDeliverer:
    """Through a Functions host's Event Grid webhook (the deployed app, or `amlevents serve`)."""

    def __init__(self, url: str, key: str | None = None, *, timeout_s: float = 120) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s

    def deliver(self, event: Mapping[str, Any], function: str) -> str:
        """POST the event as Event Grid does; the status code is the note."""
        request = urllib.request.Request(
            f"{self.url}/runtime/webhooks/EventGrid?functionName={function}",
            data=json.dumps([event]).encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json", "aeg-event-type": "Notification",
                     **({"x-functions-key": self.key} if self.key else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"


class Replayer:
    """Replays events over one ledger and one deliverer, with the rules above."""

    def __init__(self, ledger: Ledger, deliverer: Deliverer, options: ReplayOptions) -> None:
        self.ledger = ledger
        self.deliverer = deliverer
        self.options = options

    # --- from the ledger ------------------------------------------------------------------

    def replay_rows(self, rows: Iterable[LedgerEntry]) -> list[Replayed]:
        """Replay each row's stored event (rows of one event are replayed once)."""
        return [self.replay_row(row) for row in rows]

    def replay_row(self, row: LedgerEntry) -> Replayed:
        """Replay one row with the event stored with it."""
        try:
            stored = self.ledger.stored_event(row.key)
        except StoredEventError as exc:
            return self._line("error", row, str(exc))
        if stored is None:
            return self._line("error", row, "no event is stored with this row (it was recorded "
                              "before events were kept, or its envelope could not be read)")
        if not stored.replayable:
            return self._line("error", row, "the stored event was truncated (too large to "
                              f"keep: {stored.truncated}); replay it from its dead letter")
        return self._replay(stored.event, row.function, [row])

    # --- from elsewhere (dead letters) ----------------------------------------------------

    def replay_event(self, event: Mapping[str, Any], function: str,
                     rows: Sequence[LedgerEntry]) -> Replayed:
        """Replay an event from outside the ledger; `rows` are the ledger's rows for it."""
        return self._replay(event, function, list(rows))

    # --- the rules ------------------------------------------------------------------------

    def _replay(self, event: Mapping[str, Any], function: str,
                rows: list[LedgerEntry]) -> Replayed:
        first = rows[0] if rows else None
        event_id = first.event_id if first else str(_field(event, "id"))
        event_type = first.event_type if first else str(_field(event, "eventType", "type"))
        before = ",".join(r.outcome.value for r in rows)
        plans = [(row, self._verdict(row)) for row in rows]
        acting = [(row, verdict) for row, verdict in plans if verdict in ("note", "reopen")]
        if rows and not acting:
            reasons = sorted({verdict for _, verdict in plans})
            return Replayed("skipped", event_id, event_type, function, before,
                            note="; ".join(reasons))
        if self.options.dry_run:
            return Replayed("would replay", event_id, event_type, function, before,
                            note="dry run: nothing recorded, nothing delivered")
        for row, verdict in acting:
            if not self._mark(row, verdict):
                return Replayed("error", event_id, event_type, function, before,
                                note=f"row {row.key} changed while replaying; try again")
        note = self.deliverer.deliver(event, function)
        after_rows = [self.ledger.get(row.key) for row in rows] if rows else \
            self._rows_for(event_id, event_type)
        after = ",".join(r.outcome.value for r in after_rows if r is not None)
        return Replayed("replayed", event_id, event_type, function, before, after, note)

    def _verdict(self, row: LedgerEntry) -> str:
        """`note` (deliver as is), `reopen` (then deliver), or why the row is left alone."""
        force = self.options.force
        if row.quarantined and not force:
            return "quarantined: never replayed (--force to replay anyway)"
        if row.outcome is Outcome.IN_PROGRESS:
            if row.claim_expires_at_s > self.ledger.clock():
                return "in progress: another delivery holds the claim"
            return "note"
        if row.outcome is Outcome.RETRY:
            return "note"
        if row.outcome in REOPENED or force:
            return "reopen"
        return f"already {row.outcome.value}: nothing done again (--force to run it again)"

    def _mark(self, row: LedgerEntry, verdict: str) -> bool:
        item: dict[str, Any] = {"replay": {
            "by": self.options.by, "via": self.options.via, "force": self.options.force,
            "was": row.outcome.value, **({"reason": self.options.reason}
                                         if self.options.reason else {})}}
        for _ in range(3):
            marked = (self.ledger.reopen(row, item) if verdict == "reopen"
                      else self.ledger.note(row, item))
            if marked is not None:
                return True
            fresh = self.ledger.get(row.key)  # a duplicate delivery counted meanwhile
            if fresh is None or fresh.outcome is not row.outcome:
                return False
            row = fresh
        return False

    def _rows_for(self, event_id: str, event_type: str) -> list[LedgerEntry | None]:
        return [r for r in self.ledger.find(event_id) if r.event_type == event_type]

    def _line(self, status: str, row: LedgerEntry, note: str) -> Replayed:
        return Replayed(status, row.event_id, row.event_type, row.function, row.outcome.value,
                        note=note)


def rows_of_event(ledger: Ledger, event: Mapping[str, Any]) -> list[LedgerEntry]:
    """Every ledger row of one event: its own key, and one per other concern acting on it."""
    from handlers.errors import InvalidEvent
    from handlers.events import parse as ev
    from handlers.ledger.ledger import event_key
    from handlers.runtime.routing import CONCERN_HANDLERS

    try:
        envelope = ev.parse_envelope(dict(event))
    except InvalidEvent:  # delivered as it is, the dispatcher records it as `invalid`
        return []
    key = event_key(envelope.topic, envelope.event_type, envelope.id)
    keys = [key, *(f"{key}-{concern}" for concern in CONCERN_HANDLERS)]
    return [row for row in (ledger.get(k) for k in keys) if row is not None]


def _field(event: Mapping[str, Any], *names: str) -> Any:
    lowered = {str(k).lower(): v for k, v in event.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return ""
