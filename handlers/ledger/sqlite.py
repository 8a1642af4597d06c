"""SQLite ledger store: the embedded default for local runs and tests.

WAL journal so readers never block the writer; one connection per thread; every write is a
single conditional statement (atomic on its own in autocommit mode), so several threads and
processes can share one file.

Compatible across versions: columns are only ever added (with a default), when a file written by an
older version is opened; older versions ignore columns they do not know.
"""

from __future__ import annotations

import json
import operator
import os
import random
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import Any

from handlers.errors import SettingError
from handlers.ledger.ledger import LedgerEntry, LedgerQuery, StateItem
from handlers.ledger.settings import LEDGER_PATH
from handlers.ledger.stored_event import as_text, from_text
from handlers.outcome import Outcome

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,  -- rowid: increasing (pruning deletes old rows, never the newest)
    key TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    subject TEXT NOT NULL,
    topic TEXT NOT NULL,
    function TEXT NOT NULL,
    received_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    claim_expires_at_s REAL NOT NULL,
    version INTEGER NOT NULL,
    history TEXT NOT NULL DEFAULT '',
    event TEXT NOT NULL DEFAULT ''  -- the stored event (stored_event.as_text)
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL
);
"""
# Columns added after the first release, with their definitions (added to older files on open).
_ADDED = {"history": "TEXT NOT NULL DEFAULT ''", "event": "TEXT NOT NULL DEFAULT ''"}
# Every index is written by every claim (and an index on a column an update sets, by every
# update): only those the queries need. `prune` finds old rows through received_at (a row is
# updated after it is received), so updated_at has none; files that have one lose it on open.
_INDEXES = """
CREATE INDEX IF NOT EXISTS events_event_id ON events (event_id);
CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at);
DROP INDEX IF EXISTS events_updated_at;
"""
_COLUMNS = ("key", "event_id", "event_type", "subject", "topic", "function", "received_at",
            "updated_at", "outcome", "action", "detail", "attempts", "claim_expires_at_s",
            "history")
# What `replace` writes: an event's facts (id, type, subject, topic, received_at) are fixed when
# its row is inserted, and an UPDATE that names an indexed column rewrites that index too.
_MUTABLE = ("function", "updated_at", "outcome", "action", "detail", "attempts",
            "claim_expires_at_s", "history")
_SELECT = f"SELECT {', '.join(_COLUMNS)}, version FROM events"
# Built once (not per call): the statements every event runs.
_INSERT = (f"INSERT OR IGNORE INTO events ({', '.join(_COLUMNS)}, version, event) "
           f"VALUES ({', '.join('?' * len(_COLUMNS))}, 1, ?)")
_UPDATE = (f"UPDATE events SET {', '.join(f'{name} = ?' for name in _MUTABLE)}, "
           "version = version + 1 WHERE key = ? AND version = ?")
_GET = f"{_SELECT} WHERE key = ?"
_column_values = operator.attrgetter(*_COLUMNS)  # Outcome is a str: SQLite stores its value
_mutable_values = operator.attrgetter(*_MUTABLE)
# synchronous, by AMLEVENTS_LEDGER_SYNC (handlers/ledger/settings.py; docs/ledger.md).
SYNC_PRAGMAS = {"normal": "NORMAL", "full": "FULL"}


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    values = dict(zip(_COLUMNS, row))
    values["outcome"] = Outcome(values["outcome"])
    values["etag"] = str(row[-1])
    return LedgerEntry.of(values)


class SqliteLedgerStore:
    """A LedgerStore in one SQLite file (or ':memory:' for a single-thread scratch ledger)."""

    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000, sync: str = "normal") -> None:
        if sync not in SYNC_PRAGMAS:
            raise ValueError(f"sync must be one of {', '.join(SYNC_PRAGMAS)}, got {sync!r}")
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.sync = sync
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            conn = self._conn()
            conn.executescript(_SCHEMA)
            _add_missing_columns(conn)
            conn.executescript(_INDEXES)
            if path != ":memory:":
                _check_writable(path)
        except (OSError, sqlite3.Error) as exc:
            # A read-only app folder (run from package) must fail loudly, naming the setting.
            raise SettingError(LEDGER_PATH, f"the SQLite ledger at {path} cannot be created or "
                                            f"written ({exc}); set it to a writable path") from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            _enter_wal(conn, self.busy_timeout_ms / 1000)
            # NORMAL (the default) is durable across application crashes in WAL mode, and syncs
            # to disk at checkpoints only: a power loss can lose the last commits. FULL syncs
            # every commit (AMLEVENTS_LEDGER_SYNC=full).
            conn.execute(f"PRAGMA synchronous={SYNC_PRAGMAS[self.sync]}")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def insert(self, entry: LedgerEntry, *, event: bytes = b"") -> LedgerEntry | None:
        """Insert if the key is absent (INSERT OR IGNORE is the conditional insert)."""
        cursor = self._conn().execute(_INSERT, (*_column_values(entry), as_text(event)))
        return _with_etag(entry, "1") if cursor.rowcount == 1 else None

    def get(self, key: str) -> LedgerEntry | None:
        """The entry for a key, or None."""
        row = self._conn().execute(_GET, (key,)).fetchone()
        return _entry(row) if row else None

    def replace(self, entry: LedgerEntry, *, etag: str) -> LedgerEntry | None:
        """Replace the row's outcome when its version still matches the ETag (the event's facts
        never change: see _MUTABLE)."""
        cursor = self._conn().execute(
            _UPDATE, (*_mutable_values(entry), entry.key, int(etag or 0)))
        return _with_etag(entry, str(int(etag) + 1)) if cursor.rowcount == 1 else None

    def entries(self, *, limit: int | None = None) -> list[LedgerEntry]:
        """Entries oldest first."""
        sql = f"{_SELECT} ORDER BY seq" + (" LIMIT ?" if limit is not None else "")
        params: tuple[Any, ...] = (limit,) if limit is not None else ()
        return [_entry(row) for row in self._conn().execute(sql, params).fetchall()]

    def get_event(self, key: str) -> bytes | None:
        """The stored event (b"" when none), or None without the row."""
        row = self._conn().execute("SELECT event FROM events WHERE key = ?", (key,)).fetchone()
        return from_text(str(row[0] or "")) if row else None

    def query(self, query: LedgerQuery) -> list[LedgerEntry]:
        """Rows oldest first: the indexed conditions in SQL, the rest by `query.matches`."""
        where, params = [], []
        if query.outcomes:
            where.append(f"outcome IN ({', '.join('?' * len(query.outcomes))})")
            params += sorted(o.value for o in query.outcomes)
        if query.since:
            where += ["received_at >= ?"]
            params.append(query.since)
        if query.until:
            where += ["received_at < ?"]
            params.append(query.until)
        if query.event_id:
            where += ["event_id = ?"]
            params.append(query.event_id)
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq"
        rows = self._conn().execute(sql, params).fetchall()
        return query.narrow([_entry(row) for row in rows])

    def prune(self, updated_before: str, *, now_s: float) -> int:
        """Delete rows last updated before the time, except live claims."""
        # received_at <= updated_at: the received_at index finds the candidates.
        cursor = self._conn().execute(
            "DELETE FROM events WHERE received_at < ? AND updated_at < ? AND NOT "
            "(outcome = 'in_progress' AND claim_expires_at_s > ?)",
            (updated_before, updated_before, now_s))
        return int(cursor.rowcount)

    def get_state(self, key: str) -> StateItem | None:
        """A state item, or None."""
        row = self._conn().execute("SELECT value, version FROM state WHERE key = ?",
                                   (key,)).fetchone()
        return StateItem(key, json.loads(row[0]), str(row[1])) if row else None

    def put_state(self, key: str, value: Mapping[str, Any], *,
                  etag: str | None) -> StateItem | None:
        """Conditional write of a state item."""
        text = json.dumps(value, sort_keys=True)
        conn = self._conn()
        if etag is None:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO state (key, value, version) VALUES (?, ?, 1)",
                (key, text))
            new_etag = "1"
        else:
            cursor = conn.execute(
                "UPDATE state SET value = ?, version = version + 1 "
                "WHERE key = ? AND version = ?", (text, key, int(etag)))
            new_etag = str(int(etag) + 1)
        written = cursor.rowcount == 1
        return StateItem(key, dict(value), new_etag) if written else None

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


def _enter_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Switch the file to WAL, waiting out other openers for up to `timeout_s`.

    Changing the journal mode answers "database is locked" at once, without the busy handler,
    while another connection is switching it or creating the schema: processes opening one fresh
    file together (FUNCTIONS_WORKER_PROCESS_COUNT above 1) would otherwise fail at random.
    """
    deadline = time.monotonic() + timeout_s
    pause_s = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + pause_s > deadline:
                raise
        time.sleep(pause_s * (0.5 + random.random()))  # jittered: openers do not step together
        pause_s = min(pause_s * 2, 0.1)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older version up to date (columns are only ever added)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    for name, definition in _ADDED.items():
        if name in present:
            continue
        try:
            conn.execute(f"ALTER TABLE events ADD COLUMN {name} {definition}")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise


def _check_writable(path: str) -> None:
    """A read-only file opens and reads, then fails every write: find out at open (health 503,
    the setting named), not at the first event. Without taking a lock: WAL also writes beside it."""
    folder = os.path.dirname(os.path.abspath(path))
    for target in (path, folder):
        if not os.access(target, os.W_OK):
            raise PermissionError(f"{target} is read-only")


def _with_etag(entry: LedgerEntry, etag: str) -> LedgerEntry:
    return entry.evolve(etag=etag)
