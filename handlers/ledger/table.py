"""Azure Table Storage ledger store: the shared ledger of a scaled-out app (several instances).

One table. Events are spread over 16 partitions (one partition serves ~2,000 entities/s):
PartitionKey `ev-<hex digit>`, RowKey `k-<key>` holds the entry and `seq`, the store's clock at
first receipt; RowKey `t-<seq>-<key>` is an order index created in the same transaction, because
Table Storage sorts only by (PartitionKey, RowKey) and `entries(limit=N)` must not read the whole
table. Handler state lives in PartitionKey `state`, its value as JSON. Where the table is, and
the client for it: table_settings.py.
The received event is stored with its row at insert (stored_event.py), split over binary
properties `ev0`..`ev3` (each under the 64 KiB property limit); reads of the row select the other
properties only, so claims and listings never download it. Compatible across versions: properties
are only ever added, and a property an older row lacks reads as its default.
Dedupe is the conditional insert (409 EntityAlreadyExists); every update carries the ETag
(If-Match, 412 on mismatch). azure.data.tables is imported only inside functions (cold start).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from itertools import islice
from typing import TYPE_CHECKING, Any

from handlers.errors import PermanentError, RetryableError
from handlers.ledger.ledger import LedgerEntry, LedgerQuery, StateItem
from handlers.ledger.stored_event import MAX_CHUNKS, chunks
from handlers.ledger.table_settings import (
    DEFAULT_TABLE_NAME,
    DEV_CONNECTION_STRING,
    LEDGER_TABLE_CONNECTION,
    LEDGER_TABLE_ENDPOINT,
    LEDGER_TABLE_NAME,
    WEBJOBS_ACCOUNT,
    WEBJOBS_CLIENT_ID,
    WEBJOBS_STORAGE,
    WEBJOBS_TABLE_URI,
    TableLedgerSettings,
    table_client,
)
from handlers.outcome import Outcome

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient

# Re-exported: the settings are imported from here by the ledger's callers and tests.
__all__ = ["DEFAULT_TABLE_NAME", "DEV_CONNECTION_STRING", "LEDGER_TABLE_CONNECTION",
           "LEDGER_TABLE_ENDPOINT", "LEDGER_TABLE_NAME", "WEBJOBS_ACCOUNT", "WEBJOBS_CLIENT_ID",
           "WEBJOBS_STORAGE", "WEBJOBS_TABLE_URI", "TableLedgerSettings", "TableLedgerStore",
           "storage_errors", "table_client"]

_SAFE_KEY = re.compile(r"[A-Za-z0-9._:=@+,;!$()*-]{1,400}")  # RowKey forbids / \ # ? and controls
_PARTITIONS = 16
_STATE = "state"
_EVENT_RANGE = ("PartitionKey ge 'ev-' and PartitionKey lt 'ev.' "
                "and RowKey ge 'k-' and RowKey lt 'k.'")
_MAX_TEXT_BYTES = 60_000  # a string property holds 64 KiB of UTF-16
_FIELDS = ("event_id", "event_type", "subject", "topic", "function", "received_at",
           "updated_at", "action", "detail", "history")
_EVENT_PROPERTIES = tuple(f"ev{i}" for i in range(MAX_CHUNKS))
# What a read of a row selects: everything but the stored event.
_ROW = ["key", "seq", "outcome", "attempts", "claim_expires_at_s", *_FIELDS]
_BATCH = 100  # operations in one entity group transaction


@contextmanager
def storage_errors(doing: str) -> Iterator[None]:
    """Map SDK errors: throttling, 5xx, timeouts, unreachable, auth → RetryableError."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise RetryableError(f"ledger table unreachable while {doing}: "
                             f"{type(exc).__name__}") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status in (408, 429) or status >= 500:
            raise RetryableError(f"ledger table answered {status} while {doing}",
                                 _retry_after(exc)) from exc
        if status in (401, 403) or isinstance(exc, ClientAuthenticationError):
            # Retry: the event is kept until access is fixed (role assignment, key rotation).
            raise RetryableError(
                f"ledger table denied access ({status or 'no token'}) while {doing}: the app's "
                "identity needs the role Storage Table Data Contributor, or check the key") from exc
        code = getattr(exc, "error_code", None)
        raise PermanentError(f"ledger table refused {doing}: {status} "
                             f"{getattr(code, 'value', code) or ''}".rstrip()) from exc


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


class TableLedgerStore:
    """A LedgerStore in one Azure Storage table; safe to share between instances and processes."""

    def __init__(self, client: TableClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, env: Mapping[str, str], *,
                      credential: TokenCredential | None = None) -> TableLedgerStore:
        """Open (and create if missing) the table the settings name."""
        store = cls(table_client(TableLedgerSettings.from_mapping(env), credential))
        store.create_table()
        return store

    def create_table(self) -> None:
        """Create the table unless it exists."""
        from azure.core.exceptions import ResourceExistsError

        with storage_errors("creating the table"):
            try:
                self.client.create_table()
            except ResourceExistsError:
                pass

    def insert(self, entry: LedgerEntry, *, event: bytes = b"") -> LedgerEntry | None:
        """Create the entry (with the stored event) and its order index in one transaction; None
        if the key exists."""
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import TableTransactionError

        partition, row = _partition(entry.key), _row(entry.key)
        seq = f"{time.time_ns():020d}"
        pieces = dict(zip(_EVENT_PROPERTIES, chunks(event)))
        operations: list[Any] = [
            ("create", {**_to_entity(entry, partition, row), "seq": seq, **pieces}),
            ("create", {"PartitionKey": partition, "RowKey": f"t-{seq}-{row}", "row": row})]
        with storage_errors("inserting an entry"):
            try:
                written = self.client.submit_transaction(operations)
            except (TableTransactionError, ResourceExistsError) as exc:
                if exc.status_code == 409:
                    return None
                raise
        return replace(entry, etag=str(written[0]["etag"]))

    def get(self, key: str) -> LedgerEntry | None:
        """The entry for a key, or None."""
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("reading an entry"):
            try:
                entity = self.client.get_entity(_partition(key), "k-" + _row(key), select=_ROW)
            except ResourceNotFoundError:
                return None
        return _to_entry(entity, key)

    def get_event(self, key: str) -> bytes | None:
        """The stored event (b"" when none), or None without the row."""
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("reading an event"):
            try:
                entity = self.client.get_entity(_partition(key), "k-" + _row(key),
                                                select=["key", *_EVENT_PROPERTIES])
            except ResourceNotFoundError:
                return None
        return b"".join(bytes(entity.get(name) or b"") for name in _EVENT_PROPERTIES)

    def query(self, query: LedgerQuery) -> list[LedgerEntry]:
        """Rows oldest first: outcome, time and id filtered by the service, the rest here."""
        conditions = [_EVENT_RANGE]
        parameters: dict[str, Any] = {}
        if query.outcomes:
            names = []
            for index, outcome in enumerate(sorted(o.value for o in query.outcomes)):
                parameters[f"o{index}"] = outcome
                names.append(f"outcome eq @o{index}")
            conditions.append("( " + " or ".join(names) + " )")  # @names need spaces around
        for name, operator, value in (("since", "ge", query.since), ("until", "lt", query.until),
                                      ("event_id", "eq", query.event_id)):
            if value:
                parameters[name] = value
                column = "received_at" if name in ("since", "until") else name
                conditions.append(f"{column} {operator} @{name}")
        with storage_errors("querying entries"):
            entities = list(self.client.query_entities(" and ".join(conditions),
                                                       parameters=parameters, select=_ROW))
        entities.sort(key=lambda e: (str(e.get("seq", "")), str(e.get("key", ""))))
        return query.narrow([_to_entry(entity) for entity in entities])

    def prune(self, updated_before: str, *, now_s: float) -> int:
        """Delete rows last updated before the time (and their order index), except live claims;
        one transaction per partition and batch."""
        with storage_errors("listing entries to prune"):
            old = [e for e in self.client.query_entities(
                f"{_EVENT_RANGE} and updated_at lt @before", parameters={"before": updated_before},
                select=["PartitionKey", "RowKey", "seq", "outcome", "claim_expires_at_s"])
                if not (e.get("outcome") == "in_progress"
                        and float(e.get("claim_expires_at_s", 0)) > now_s)]
        by_partition: dict[str, list[Any]] = {}
        for entity in old:
            operations = by_partition.setdefault(entity["PartitionKey"], [])
            operations.append(("delete", {"PartitionKey": entity["PartitionKey"],
                                          "RowKey": entity["RowKey"]}))
            if entity.get("seq"):
                operations.append(("delete", {
                    "PartitionKey": entity["PartitionKey"],
                    "RowKey": f"t-{entity['seq']}-{entity['RowKey'][2:]}"}))
        with storage_errors("pruning entries"):
            for operations in by_partition.values():
                for start in range(0, len(operations), _BATCH):
                    self._delete_batch(operations[start:start + _BATCH])
        return len(old)

    def _delete_batch(self, operations: list[Any]) -> None:
        from azure.data.tables import TableTransactionError

        try:
            self.client.submit_transaction(operations)
        except TableTransactionError as exc:
            if exc.status_code != 404:
                raise
            # One of them was gone already (pruned by someone else): delete the rest one by one.
            for _, entity in operations:
                self.client.delete_entity(entity["PartitionKey"], entity["RowKey"])

    def replace(self, entry: LedgerEntry, *, etag: str) -> LedgerEntry | None:
        """Merge the entry's fields if the stored ETag still matches (`seq` stays as it was)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        if not etag:
            return None
        entity = _to_entity(entry, _partition(entry.key), _row(entry.key))
        with storage_errors("updating an entry"):
            try:
                written = self.client.update_entity(entity, mode=UpdateMode.MERGE, etag=etag,
                                                    match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                return None
        return replace(entry, etag=str(written["etag"]))

    def entries(self, *, limit: int | None = None) -> list[LedgerEntry]:
        """Entries oldest first: all sorted after one query, or the first N through the index."""
        if limit is not None:
            return self._first(limit)
        with storage_errors("listing entries"):
            entities = list(self.client.query_entities(_EVENT_RANGE, select=_ROW))
        entities.sort(key=lambda e: (str(e.get("seq", "")), str(e.get("key", ""))))
        return [_to_entry(entity) for entity in entities]

    def _first(self, limit: int) -> list[LedgerEntry]:
        if limit <= 0:
            return []
        heads: list[list[tuple[str, str, str]]] = []
        with storage_errors("listing entries"):
            for index in range(_PARTITIONS):
                pages = self.client.query_entities(
                    f"PartitionKey eq 'ev-{index:x}' and RowKey ge 't-' and RowKey lt 't.'",
                    results_per_page=min(limit, 1000), select=["PartitionKey", "RowKey", "row"])
                heads.append([(e["RowKey"], e["PartitionKey"], e["row"])
                              for e in islice(pages, limit)])
            oldest = list(islice(heapq.merge(*heads), limit))
            return [_to_entry(self.client.get_entity(partition, "k-" + row, select=_ROW))
                    for _, partition, row in oldest]

    def get_state(self, key: str) -> StateItem | None:
        """A state item, or None."""
        from azure.core.exceptions import ResourceNotFoundError

        with storage_errors("reading state"):
            try:
                entity = self.client.get_entity(_STATE, _row(key))
            except ResourceNotFoundError:
                return None
        return StateItem(key, json.loads(entity["value"]), str(entity.metadata["etag"]))

    def put_state(self, key: str, value: Mapping[str, Any], *,
                  etag: str | None) -> StateItem | None:
        """Create (etag None) or replace if the ETag matches; None on conflict."""
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        text = json.dumps(value, sort_keys=True)  # ASCII: one UTF-16 unit per character
        if len(text) * 2 > _MAX_TEXT_BYTES:
            raise PermanentError(f"ledger state {key!r} is {len(text)} characters as JSON; "
                                 f"at most {_MAX_TEXT_BYTES // 2} fit a table property")
        entity = {"PartitionKey": _STATE, "RowKey": _row(key), "key": _text(key), "value": text}
        with storage_errors("writing state"):
            try:
                if etag is None:
                    written = self.client.create_entity(entity)
                else:
                    written = self.client.update_entity(
                        entity, mode=UpdateMode.REPLACE, etag=etag,
                        match_condition=MatchConditions.IfNotModified)
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                return None
        return StateItem(key, json.loads(text), str(written["etag"]))

    def delete_table(self) -> None:
        """Drop the whole table (tests, and `amlevents` maintenance)."""
        with storage_errors("deleting the table"):
            self.client.delete_table()

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.close()


def _partition(key: str) -> str:
    return f"ev-{zlib.crc32(key.encode('utf-8', 'surrogatepass')) % _PARTITIONS:x}"


def _row(key: str) -> str:
    """A RowKey for any key: itself when safe, else `~` and its SHA-256 (`~` is never kept)."""
    if _SAFE_KEY.fullmatch(key):
        return key
    return "~" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _text(value: str) -> str:
    # Lone surrogates (from hostile JSON) cannot be stored; text over 64 KiB is cut to fit.
    clean = value.encode("utf-8", "replace").decode("utf-8")
    if len(clean) * 2 <= _MAX_TEXT_BYTES:
        return clean
    return clean.encode("utf-16-le")[:_MAX_TEXT_BYTES].decode("utf-16-le", "ignore")


def _to_entity(entry: LedgerEntry, partition: str, row: str) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": "k-" + row,
                              "key": _text(entry.key), "outcome": entry.outcome.value,
                              "attempts": min(int(entry.attempts), 2**31 - 1),
                              "claim_expires_at_s": float(entry.claim_expires_at_s)}
    entity.update({name: _text(str(getattr(entry, name))) for name in _FIELDS})
    return entity


def _to_entry(entity: Any, key: str | None = None) -> LedgerEntry:
    return LedgerEntry(key=key if key is not None else str(entity["key"]),
                       outcome=Outcome(entity["outcome"]), attempts=int(entity["attempts"]),
                       claim_expires_at_s=float(entity["claim_expires_at_s"]),
                       etag=str(entity.metadata["etag"]),
                       **{name: str(entity.get(name, "")) for name in _FIELDS})
