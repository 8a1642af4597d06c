"""Event Grid's dead letters in Blob Storage: list them, and replay them through the same dispatch.

Event Grid writes one JSON array per blob, named
`{TOPIC}/{SUBSCRIPTION}/{year}/{month}/{day}/{hour}/{guid}.json` (names upper-cased, date and hour
not zero-padded), each record the event as it was delivered plus deadLetterReason,
deliveryAttempts, lastDeliveryOutcome, lastHttpStatusCode, publishTime and lastDeliveryAttemptTime
(lower-case for CloudEvents): https://learn.microsoft.com/azure/event-grid/delivery-and-retry.
The local simulator writes the same blobs to Azurite (amlevents/simulator/blob_deadletter.py).

A replay strips the dead-letter properties, delivers the event to the function of the blob's
subscription (infra/subscriptions.json; by event type if the subscription is not there) with the
rules of amlevents/replay.py, then MARKS the blob (metadata `amlevents_replayed_at`,
`amlevents_replayed_by`, `amlevents_replay_result`): blobs are never deleted, and a marked blob is
left out of later replays unless named or `again`. azure-storage-blob is imported on first use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlevents.replay import Replayed, Replayer, rows_of_event
from handlers.ledger.ledger import Ledger

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

DEAD_LETTER_FIELDS = ("deadLetterReason", "deliveryAttempts", "lastDeliveryOutcome",
                      "lastHttpStatusCode", "publishTime", "lastDeliveryAttemptTime")
_DEAD_LETTER_KEYS = frozenset(name.lower() for name in DEAD_LETTER_FIELDS)
MARK_AT, MARK_BY, MARK_RESULT = ("amlevents_replayed_at", "amlevents_replayed_by",
                                 "amlevents_replay_result")
DEFAULT_SUBSCRIPTIONS = Path(__file__).resolve().parent.parent / "infra" / "subscriptions.json"
_NOT_ASCII = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event: the event as delivered, and why Event Grid gave up."""

    blob: str
    index: int
    event: Mapping[str, Any]
    reason: str
    delivery_attempts: int | None
    last_delivery_outcome: str
    last_http_status_code: int | None
    publish_time: str
    last_delivery_attempt_time: str

    @property
    def event_id(self) -> str:
        """The event's id."""
        return str(_get(self.event, "id") or "")

    @property
    def event_type(self) -> str:
        """The event's type (Event Grid `eventType`, CloudEvents `type`)."""
        return str(_get(self.event, "eventType", "type") or "")

    @property
    def subject(self) -> str:
        """The event's subject."""
        return str(_get(self.event, "subject") or "")


@dataclass(frozen=True)
class DeadLetterBlob:
    """One dead-letter blob: where it is, its records, and the replay mark if it has one."""

    container: str
    name: str
    last_modified: str
    records: tuple[DeadLetter, ...] = ()
    mark: Mapping[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def subscription(self) -> str:
        """The subscription name from the blob's path (upper-cased, as Event Grid writes it)."""
        parts = self.name.split("/")
        return parts[1] if len(parts) > 2 else ""

    @property
    def replayed(self) -> bool:
        """True when a replay marked it."""
        return MARK_AT in self.mark


def parse_records(blob: str, data: bytes) -> tuple[list[DeadLetter], str]:
    """The records of a blob, and an error ('' when it reads as a JSON array of events)."""
    try:
        loaded = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return [], f"not JSON: {exc}"
    if isinstance(loaded, dict):
        loaded = [loaded]
    if not isinstance(loaded, list):
        return [], f"not a JSON array of events but {type(loaded).__name__}"
    records = []
    for index, record in enumerate(loaded):
        if not isinstance(record, dict):
            continue
        event = {k: v for k, v in record.items() if str(k).lower() not in _DEAD_LETTER_KEYS}
        records.append(DeadLetter(
            blob=blob, index=index, event=event,
            reason=str(_get(record, "deadLetterReason") or ""),
            delivery_attempts=_int(_get(record, "deliveryAttempts")),
            last_delivery_outcome=str(_get(record, "lastDeliveryOutcome") or ""),
            last_http_status_code=_int(_get(record, "lastHttpStatusCode")),
            publish_time=str(_get(record, "publishTime") or ""),
            last_delivery_attempt_time=str(_get(record, "lastDeliveryAttemptTime") or "")))
    return records, ""


class DeadLetterStore:
    """Reads dead-letter blobs and marks the replayed ones (connection string or identity)."""

    def __init__(self, service: BlobServiceClient) -> None:
        self.service = service

    @classmethod
    def from_connection_string(cls, connection: str) -> DeadLetterStore:
        """A store over a connection string (`UseDevelopmentStorage=true`: Azurite)."""
        from azure.storage.blob import BlobServiceClient

        from amlevents.simulator.blob_deadletter import expand_development_storage

        return cls(BlobServiceClient.from_connection_string(
            expand_development_storage(connection), connection_timeout=5, read_timeout=30))

    @classmethod
    def from_account_url(cls, url: str) -> DeadLetterStore:
        """A store reached with `az login` / managed identity (the process's credential)."""
        from azure.storage.blob import BlobServiceClient

        from handlers.adapters.credential import shared_credential

        return cls(BlobServiceClient(url, credential=shared_credential(),
                                     connection_timeout=5, read_timeout=30))

    def blobs(self, container: str, *, prefix: str = "",
              names: Sequence[str] = ()) -> list[DeadLetterBlob]:
        """The container's dead-letter blobs (under `prefix`, or just `names`), oldest first."""
        from azure.core.exceptions import ResourceNotFoundError

        client = self.service.get_container_client(container)
        try:
            if names:
                listed = [client.get_blob_client(n).get_blob_properties() for n in names]
            else:
                listed = list(client.list_blobs(name_starts_with=prefix or None,
                                                include=["metadata"]))
        except ResourceNotFoundError:
            return []
        found = []
        for item in sorted(listed, key=lambda b: (b.last_modified, b.name)):
            data = client.download_blob(item.name).readall()
            records, error = parse_records(item.name, data)
            found.append(DeadLetterBlob(container, item.name, _iso(item.last_modified),
                                        tuple(records), dict(item.metadata or {}), error))
        return found

    def mark(self, blob: DeadLetterBlob, *, by: str, result: str) -> None:
        """Record the replay on the blob (its metadata; the blob itself is kept as it is)."""
        client = self.service.get_blob_client(blob.container, blob.name)
        current = dict(client.get_blob_properties().metadata or {})
        current.update({MARK_AT: datetime.now(UTC).isoformat(timespec="seconds"),
                        MARK_BY: _ascii(by), MARK_RESULT: _ascii(result)})
        client.set_blob_metadata(current)

    def close(self) -> None:
        """Close the HTTP session."""
        self.service.close()


def subscription_functions(path: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """From the subscriptions file: subscription name (upper-cased) → function, and the
    dead-letter containers it names."""
    document = json.loads((path or DEFAULT_SUBSCRIPTIONS).read_text(encoding="utf-8"))
    functions: dict[str, str] = {}
    containers: list[str] = []
    for sub in document.get("subscriptions", []):
        if sub.get("function"):
            functions[str(sub.get("name", "")).upper()] = str(sub["function"])
        container = (sub.get("deadLetter") or {}).get("blobContainerName")
        if container and container not in containers:
            containers.append(str(container))
    return functions, containers


def function_for_record(blob: DeadLetterBlob, record: DeadLetter,
                        functions: Mapping[str, str]) -> str:
    """The function the dead-lettered delivery was for: its subscription's, else by type."""
    from handlers.runtime.routing import function_for

    return functions.get(blob.subscription.upper()) or function_for(record.event_type)


def replay_blobs(store: DeadLetterStore, blobs: Iterable[DeadLetterBlob], replayer: Replayer,
                 ledger: Ledger, functions: Mapping[str, str], *, again: bool = False,
                 named: bool = False) -> list[tuple[DeadLetterBlob, list[Replayed]]]:
    """Replay every record of every blob (marked ones only when named or `again`), then mark."""
    done: list[tuple[DeadLetterBlob, list[Replayed]]] = []
    for blob in blobs:
        if blob.error or (blob.replayed and not (again or named)):
            done.append((blob, []))
            continue
        results = [replayer.replay_event(record.event, function_for_record(blob, record,
                                                                            functions),
                                         rows_of_event(ledger, record.event))
                   for record in blob.records]
        if not replayer.options.dry_run:
            summary = ", ".join(f"{r.event_id} {r.status} {r.after or r.before}".strip()
                                for r in results)
            store.mark(blob, by=replayer.options.by, result=summary[:2000])
        done.append((blob, results))
    return done


def _get(record: Mapping[str, Any], *names: str) -> Any:
    lowered = {str(k).lower(): v for k, v in record.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _iso(moment: Any) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else ""


def _ascii(text: str) -> str:
    """Blob metadata values are ASCII."""
    return _NOT_ASCII.sub("?", text)
