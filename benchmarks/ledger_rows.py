"""Shared by the benchmarks: SQLite files as the ledger keeps them, and the ledger's own two writes
(the claim, the outcome) with minimal Python: its schema, indexes and SQL, the event stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

AT = "2026-11-30T12:00:00.000+00:00"
FUNCTION = "on_ml_event"
HISTORY = f'[{{"n":1,"at":"{AT}","function":"{FUNCTION}","outcome":"in_progress"}}]'


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection as the ledger's: autocommit (each statement its own commit), NORMAL sync."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def create(path: str | Path, *, ledger: bool) -> sqlite3.Connection:
    """A new WAL file, with the ledger's schema and indexes when `ledger`."""
    conn = connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    if ledger:
        from handlers.ledger import sqlite as store

        conn.executescript(store._SCHEMA)
        conn.executescript(store._INDEXES)
    return conn


def claim(conn: sqlite3.Connection, key: str, event: dict[str, str], stored: str) -> None:
    """The ledger's claim: a new in-progress row with the event stored in it."""
    from handlers.ledger import sqlite as store

    conn.execute(store._INSERT, (key, event["id"], event["eventType"], event["subject"],
                                 event["topic"], FUNCTION, AT, AT, "in_progress", "", "", 1, 1e12,
                                 HISTORY, stored))


def finish(conn: sqlite3.Connection, key: str) -> None:
    """The ledger's outcome: the row's conditional update."""
    from handlers.ledger import sqlite as store

    conn.execute(store._UPDATE, (FUNCTION, AT, "planned", "notify", "{}", 1, 0.0, HISTORY, key, 1))
