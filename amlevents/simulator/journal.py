"""Where every published event ends: the journal, and dead-letter records and their writers.

Each (event, subscription) pair ends in exactly one journal entry: `delivered`, `filtered`
(with the reason), `dead_lettered` (with the dead-letter file), `dropped` (a subscription
without a dead-letter destination, which Event Grid drops too) or `not_delivered` (an Event Hub
or Service Bus destination, which has no local emulator: what it would have received is
recorded, with the file in `location`). `function` names the destination: the function, or
`webhook HOST`, `queue NAME`, `EventHub NAME`.

Dead-letter records follow https://learn.microsoft.com/azure/event-grid/delivery-and-retry
("Delivery event formats"): the event as delivered plus deadLetterReason, deliveryAttempts,
lastDeliveryOutcome, lastHttpStatusCode, publishTime, lastDeliveryAttemptTime (lower-case names
for CloudEvents). Blob names are Event Grid's
`{container}/{TOPIC}/{SUBSCRIPTION}/{year}/{month}/{day}/{hour}/{guid}.json`, "the non-zero padded
date and hour (UTC)" (https://learn.microsoft.com/azure/event-grid/manage-event-delivery, e.g.
`.../2019/8/8/5/{guid}.json`), each blob a JSON array.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from amlevents.simulator import jsonnum

DELIVERED = "delivered"
FILTERED = "filtered"
DEAD_LETTERED = "dead_lettered"
DROPPED = "dropped"
NOT_DELIVERED = "not_delivered"  # simulator only: a destination without a local emulator

# deadLetterReason values. The two limits of the retry policy are documented (delivery-and-retry:
# the retry count reached, the time-to-live passed at the next scheduled attempt).
MAX_DELIVERY_ATTEMPTS_EXCEEDED = "MaxDeliveryAttemptsExceeded"
TIME_TO_LIVE_EXCEEDED = "TimeToLiveExceeded"
# An answer that is never retried (400, 413; 401 and 403 for WebHooks, 403 for Azure resources):
# the reason the service writes in its dead-letter blobs (no list of reasons is documented; seen
# in real blobs, e.g. Azure/azure-sdk-for-net#26198). lastDeliveryOutcome keeps the real answer.
UNDELIVERABLE_DUE_TO_CLIENT_ERROR = "UndeliverableDueToProbationCausedByClientError"
SIMULATOR_STOPPED = "SimulatorStopped"  # simulator only: pending retries at shutdown
SIMULATOR_ERROR = "SimulatorError"  # simulator only: a bug in delivery, logged


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a Z, as Event Grid writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class JournalEntry:
    """The end of one event's journey through one subscription."""

    time: str
    outcome: str
    event_id: str
    event_type: str
    subscription: str
    function: str
    reason: str
    delivery_attempts: int = 0
    last_http_status_code: int | None = None
    location: str = ""


class Journal:
    """Thread-safe, in memory, optionally appended to a JSONL file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._entries: list[JournalEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: JournalEntry) -> None:
        """Add one entry (and one JSONL line)."""
        with self._lock:
            self._entries.append(entry)
            if self._path is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with self._path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(asdict(entry)) + "\n")

    def entries(self) -> tuple[JournalEntry, ...]:
        """A snapshot of every entry so far."""
        with self._lock:
            return tuple(self._entries)

    def for_event(self, event_id: str) -> tuple[JournalEntry, ...]:
        """The entries of one event id."""
        return tuple(e for e in self.entries() if e.event_id == event_id)


class DeadLetterWriter(Protocol):
    """Stores dead-letter records; an Azure Blob writer would upload `blob_name` in `container`."""

    def write(self, container: str, blob_name: str,
              records: Sequence[Mapping[str, Any]]) -> str:
        """Store the records; return where they went."""
        ...


class FolderDeadLetterWriter:
    """Writes dead-letter blobs as JSON files under a local folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def write(self, container: str, blob_name: str,
              records: Sequence[Mapping[str, Any]]) -> str:
        """Write one JSON array file; return its path."""
        path = self.root / container / blob_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(jsonnum.dumps(list(records), indent=2), encoding="utf-8")
        return str(path)


def blob_name(topic_name: str, subscription_name: str, moment: datetime) -> str:
    """Event Grid's dead-letter blob layout under the container: names upper-cased, the date and
    hour (UTC) not zero-padded."""
    utc = moment.astimezone(UTC)
    return (f"{topic_name.upper()}/{subscription_name.upper()}/"
            f"{utc.year}/{utc.month}/{utc.day}/{utc.hour}/{uuid.uuid4()}.json")


@dataclass(frozen=True)
class DeadLetterInfo:
    """Why and how an event failed, as the dead-letter record reports it."""

    reason: str
    delivery_attempts: int
    last_delivery_outcome: str
    last_http_status_code: int | None
    publish_time: datetime
    last_delivery_attempt_time: datetime | None


def dead_letter_record(event: Mapping[str, Any], info: DeadLetterInfo,
                       cloud_event: bool) -> dict[str, Any]:
    """The event as delivered plus the documented dead-letter properties."""
    extra: dict[str, Any] = {
        "deadLetterReason": info.reason,
        "deliveryAttempts": info.delivery_attempts,
        "lastDeliveryOutcome": info.last_delivery_outcome,
        "lastHttpStatusCode": info.last_http_status_code,
        "publishTime": iso(info.publish_time),
    }
    if info.last_delivery_attempt_time is not None:
        extra["lastDeliveryAttemptTime"] = iso(info.last_delivery_attempt_time)
    if cloud_event:
        extra = {name.lower(): value for name, value in extra.items()}
    return {**event, **extra}
