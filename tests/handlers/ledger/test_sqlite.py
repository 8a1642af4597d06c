"""The SQLite store on its own: the file it writes (schema, pragmas), each statement's answer
compared whole, conditional writes at their boundaries, and opening a file another connection
holds. (The ledger's behaviour over every store is in test_ledger.py.)"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from handlers.errors import SettingError
from handlers.ledger.ledger import LedgerEntry, LedgerQuery, StateItem
from handlers.ledger.sqlite import SYNC_PRAGMAS, SqliteLedgerStore
from handlers.ledger.stored_event import encode_event
from handlers.outcome import Outcome

COLUMNS = [  # (name, type, not null, default, primary key) as PRAGMA table_info gives them
    ("seq", "INTEGER", 0, None, 1), ("key", "TEXT", 1, None, 0), ("event_id", "TEXT", 1, None, 0),
    ("event_type", "TEXT", 1, None, 0), ("subject", "TEXT", 1, None, 0),
    ("topic", "TEXT", 1, None, 0), ("function", "TEXT", 1, None, 0),
    ("received_at", "TEXT", 1, None, 0), ("updated_at", "TEXT", 1, None, 0),
    ("outcome", "TEXT", 1, None, 0), ("action", "TEXT", 1, None, 0),
    ("detail", "TEXT", 1, None, 0), ("attempts", "INTEGER", 1, None, 0),
    ("claim_expires_at_s", "REAL", 1, None, 0), ("version", "INTEGER", 1, None, 0),
    ("history", "TEXT", 1, "''", 0), ("event", "TEXT", 1, "''", 0)]


def row(n: int, *, received_at: str = "2024-05-01T10:00:00Z", updated_at: str = "",
        outcome: Outcome = Outcome.DONE, claim_expires_at_s: float = 0.0) -> LedgerEntry:
    return LedgerEntry(key=f"k{n}", event_id=f"id-{n}", event_type="T", subject=f"s{n}",
                       topic="/t", function="on_x", received_at=received_at,
                       updated_at=updated_at or received_at, outcome=outcome,
                       action=f"action {n}", detail=f'{{"n": {n}}}', attempts=n,
                       claim_expires_at_s=claim_expires_at_s, history=f'[{{"n": {n}}}]')


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "deep" / "er" / "ledger.sqlite3")


@pytest.fixture
def store(path: str) -> SqliteLedgerStore:
    return SqliteLedgerStore(path)


def raw(path: str, sql: str) -> list[tuple[object, ...]]:
    """What is in the file, read by a connection of the test's own."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


# --- opening -------------------------------------------------------------------------------------

def test_a_new_file_gets_the_schema_and_only_the_indexes_queries_need(
        store: SqliteLedgerStore, path: str) -> None:
    assert (store.path, store.busy_timeout_ms, store.sync) == (path, 10_000, "normal")
    assert [tuple(c[1:]) for c in raw(path, "PRAGMA table_info(events)")] == COLUMNS
    assert [tuple(c[1:]) for c in raw(path, "PRAGMA table_info(state)")] == [
        ("key", "TEXT", 0, None, 1), ("value", "TEXT", 1, None, 0),
        ("version", "INTEGER", 1, None, 0)]
    assert raw(path, "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT "
                     "NULL ORDER BY name") == [
        ("events_event_id", "CREATE INDEX events_event_id ON events (event_id)"),
        ("events_received_at", "CREATE INDEX events_received_at ON events (received_at)")]


def test_each_connection_is_in_wal_autocommit_with_the_busy_timeout_and_sync(path: str) -> None:
    store = SqliteLedgerStore(path, busy_timeout_ms=2500, sync="full")
    conn = store._conn()
    assert conn is store._conn()  # one per thread, kept
    assert conn.isolation_level is None
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (2500,)
    assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert SqliteLedgerStore(path)._conn().execute("PRAGMA synchronous").fetchone() == (1,)
    assert SYNC_PRAGMAS == {"normal": "NORMAL", "full": "FULL"}


def test_an_unknown_sync_is_refused_by_name(path: str) -> None:
    with pytest.raises(ValueError) as caught:
        SqliteLedgerStore(path, sync="FULL")
    assert str(caught.value) == "sync must be one of normal, full, got 'FULL'"
    assert not os.path.exists(os.path.dirname(path))  # refused before anything is made


def test_a_scratch_ledger_in_memory_works_and_makes_no_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqliteLedgerStore(":memory:")
    assert store.insert(row(1)) is not None and store.get("k1") is not None
    assert os.listdir(tmp_path) == []


def test_a_path_that_cannot_be_created_names_the_setting_the_path_and_the_cause(
        tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = str(tmp_path / "file" / "ledger.sqlite3")
    with pytest.raises(SettingError) as caught:
        SqliteLedgerStore(path)
    assert caught.value.setting == "AMLEVENTS_LEDGER_PATH"
    cause = caught.value.__cause__
    assert isinstance(cause, OSError)
    assert caught.value.message == (f"the SQLite ledger at {path} cannot be created or written "
                                    f"({cause}); set it to a writable path")


def test_a_file_that_is_not_a_database_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"not a database, " * 100)
    with pytest.raises(SettingError) as caught:
        SqliteLedgerStore(str(path))
    assert caught.value.message == (f"the SQLite ledger at {path} cannot be created or written "
                                    f"(file is not a database); set it to a writable path")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only files")
def test_a_read_only_file_is_found_at_open(path: str) -> None:
    SqliteLedgerStore(path).close()
    os.chmod(path, 0o444)
    with pytest.raises(SettingError) as caught:
        SqliteLedgerStore(path)
    assert caught.value.message == (f"the SQLite ledger at {path} cannot be created or written "
                                    f"({path} is read-only); set it to a writable path")


def test_an_older_file_gains_the_added_columns_and_loses_the_unneeded_index(path: str) -> None:
    # GIVEN a file of the first release: no history or event column, an updated_at index
    os.makedirs(os.path.dirname(path))
    old = [c for c in COLUMNS if c[0] not in ("history", "event")]
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (" + ", ".join(
            f"{name} {kind}{' PRIMARY KEY' if pk else ''}{' NOT NULL' if notnull else ''}"
            for name, kind, notnull, _, pk in old) + ")")
        conn.execute("CREATE INDEX events_updated_at ON events (updated_at)")
        conn.execute("INSERT INTO events VALUES (1, 'k1', 'id-1', 'T', 's', '/t', 'on_x', 'r', "
                     "'u', 'done', 'a', 'd', 2, 0.0, 3)")
    store = SqliteLedgerStore(path)
    # THEN the columns are added with their defaults, the old row reads back whole
    assert [tuple(c[1:]) for c in raw(path, "PRAGMA table_info(events)")] == COLUMNS
    assert [name for (name,) in raw(path, "SELECT name FROM sqlite_master WHERE type = 'index' "
                                          "AND sql IS NOT NULL ORDER BY name")] == [
        "events_event_id", "events_received_at"]
    assert store.get("k1") == LedgerEntry(
        key="k1", event_id="id-1", event_type="T", subject="s", topic="/t", function="on_x",
        received_at="r", updated_at="u", outcome=Outcome.DONE, action="a", detail="d",
        attempts=2, claim_expires_at_s=0.0, etag="3", history="")
    assert store.get_event("k1") == b""
    SqliteLedgerStore(path).close()  # opening it again changes nothing


def test_opening_waits_for_another_connection_switching_the_journal(path: str) -> None:
    # GIVEN a fresh file another connection holds locked (as a process creating it would)
    os.makedirs(os.path.dirname(path))
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    # WHEN the store opens it THEN it waits the lock out and opens
    started = time.monotonic()
    store = SqliteLedgerStore(path, busy_timeout_ms=5000)
    assert 0.25 <= time.monotonic() - started < 10  # waited for the holder (bounds loose: CI may be slow)
    assert store._conn().execute("PRAGMA journal_mode").fetchone() == ("wal",)
    release.join()
    holder.close()


def test_opening_a_file_held_past_the_busy_timeout_fails_naming_the_lock(path: str) -> None:
    os.makedirs(os.path.dirname(path))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    try:
        with pytest.raises(SettingError) as caught:
            SqliteLedgerStore(path, busy_timeout_ms=400)
    finally:
        holder.close()
    # the wait is bounded by the timeout (pauses of 5 ms doubling up to 100 ms, jittered)
    assert 0.25 <= time.monotonic() - started < 10  # bounded (a loaded CI machine is slow)
    assert caught.value.message == (f"the SQLite ledger at {path} cannot be created or written "
                                    f"(database is locked); set it to a writable path")


# --- rows ----------------------------------------------------------------------------------------

def test_insert_is_conditional_and_stores_every_column(store: SqliteLedgerStore,
                                                       path: str) -> None:
    stored = encode_event({"id": "id-1"}, schema="EventGridSchema")
    first = row(1)
    inserted = store.insert(first, event=stored)
    assert inserted == LedgerEntry(**{**first.__dict__, "etag": "1"})
    assert store.insert(row(1), event=b"other") is None  # the key is taken: nothing written
    assert raw(path, "SELECT * FROM events") == [
        (1, "k1", "id-1", "T", "s1", "/t", "on_x", "2024-05-01T10:00:00Z",
         "2024-05-01T10:00:00Z", "done", "action 1", '{"n": 1}', 1, 0.0, 1, '[{"n": 1}]',
         'j{"v":1,"schema":"EventGridSchema","event":{"id":"id-1"},"masked":0}')]
    assert store.get("k1") == inserted and store.get("k2") is None
    assert store.get_event("k1") == stored and store.get_event("k2") is None
    store.insert(row(2))
    assert store.get_event("k2") == b""


def test_replace_writes_what_changes_only_while_the_version_matches(
        store: SqliteLedgerStore) -> None:
    store.insert(row(1))
    later = LedgerEntry(**{**row(1).__dict__, "event_id": "changed", "subject": "changed",
                           "function": "on_y", "updated_at": "2024-05-01T11:00:00Z",
                           "outcome": Outcome.FAILED, "action": "b", "detail": "{}",
                           "attempts": 5, "claim_expires_at_s": 9.5, "history": "[]"})
    assert store.replace(later, etag="2") is None  # a stale or future ETag writes nothing
    assert store.replace(later, etag="") is None  # no ETag is no version
    assert store.replace(later, etag="0") is None
    replaced = store.replace(later, etag="1")
    assert replaced == LedgerEntry(**{**later.__dict__, "etag": "2"})
    # the event's facts were fixed at insert: only the mutable columns changed
    assert store.get("k1") == LedgerEntry(**{**later.__dict__, "event_id": "id-1",
                                             "subject": "s1", "etag": "2"})
    assert store.replace(later, etag="1") is None
    assert store.replace(row(9), etag="1") is None  # no such row


def test_entries_are_oldest_first_and_the_limit_takes_the_oldest(
        store: SqliteLedgerStore) -> None:
    for n in (3, 1, 2):
        store.insert(row(n))
    assert [e.key for e in store.entries()] == ["k3", "k1", "k2"]
    assert [e.key for e in store.entries(limit=2)] == ["k3", "k1"]
    assert store.entries(limit=0) == []
    assert store.entries()[0] == LedgerEntry(**{**row(3).__dict__, "etag": "1"})


def test_query_filters_by_outcome_time_window_and_id_oldest_first(
        store: SqliteLedgerStore) -> None:
    times = ["2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z",
             "2024-05-01T12:00:00Z"]
    outcomes = [Outcome.DONE, Outcome.FAILED, Outcome.RETRY, Outcome.DONE]
    for n, (at, outcome) in enumerate(zip(times, outcomes), start=1):
        store.insert(row(n, received_at=at, outcome=outcome))

    def keys(**asked: object) -> list[str]:
        return [e.key for e in store.query(LedgerQuery(**asked))]  # type: ignore[arg-type]

    assert keys() == ["k1", "k2", "k3", "k4"]
    assert keys(outcomes=frozenset({Outcome.DONE})) == ["k1", "k4"]
    assert keys(outcomes=frozenset({Outcome.FAILED, Outcome.RETRY})) == ["k2", "k3"]
    # since is inclusive, until exclusive
    assert keys(since=times[1]) == ["k2", "k3", "k4"]
    assert keys(until=times[2]) == ["k1", "k2"]
    assert keys(since=times[1], until=times[3], outcomes=frozenset({Outcome.RETRY})) == ["k3"]
    assert keys(event_id="id-2") == ["k2"]
    assert keys(event_id="id-9") == []
    assert keys(subject="s[34]", limit=1) == ["k4"]  # the rest by the query's own rules
    assert store.query(LedgerQuery(event_id="id-1")) == [
        LedgerEntry(**{**row(1, received_at=times[0]).__dict__, "etag": "1"})]


def test_prune_deletes_rows_updated_before_the_time_but_never_a_live_claim(
        store: SqliteLedgerStore) -> None:
    cut = "2024-05-01T10:00:00Z"
    before, at = "2024-05-01T09:00:00Z", cut
    store.insert(row(1, received_at=before))  # old: deleted
    store.insert(row(2, received_at=at))  # received at the cut: kept (strictly before)
    store.insert(row(3, received_at=before, updated_at=at))  # updated at the cut: kept
    store.insert(row(4, received_at=before, outcome=Outcome.IN_PROGRESS,
                     claim_expires_at_s=100.5))  # a live claim: kept
    store.insert(row(5, received_at=before, outcome=Outcome.IN_PROGRESS,
                     claim_expires_at_s=100.0))  # expired exactly now: deleted
    store.insert(row(6, received_at=before, outcome=Outcome.DONE,
                     claim_expires_at_s=500.0))  # not in progress: its expiry means nothing
    assert store.prune(cut, now_s=100.0) == 3
    assert [e.key for e in store.entries()] == ["k2", "k3", "k4"]
    assert store.prune(cut, now_s=100.0) == 0


# --- state ---------------------------------------------------------------------------------------

def test_state_is_created_once_then_replaced_by_its_etag(store: SqliteLedgerStore,
                                                         path: str) -> None:
    assert store.get_state("s") is None
    value = {"b": 1, "a": [1, 2]}
    created = store.put_state("s", value, etag=None)
    assert created == StateItem("s", {"b": 1, "a": [1, 2]}, "1")
    assert created is not None and created.value is not value  # a copy
    assert store.put_state("s", {"c": 3}, etag=None) is None  # exists: nothing written
    assert raw(path, "SELECT key, value, version FROM state") == [
        ("s", '{"a": [1, 2], "b": 1}', 1)]
    assert store.get_state("s") == StateItem("s", value, "1")
    assert store.put_state("s", {"c": 3}, etag="2") is None
    assert store.put_state("s", {"c": 3}, etag="0") is None
    assert store.put_state("s", {"c": 3}, etag="1") == StateItem("s", {"c": 3}, "2")
    assert store.put_state("s", {"d": 4}, etag="1") is None
    assert store.get_state("s") == StateItem("s", {"c": 3}, "2")
    assert json.loads(str(raw(path, "SELECT value FROM state")[0][0])) == {"c": 3}
    assert store.put_state("other", {}, etag="1") is None  # no row to update


# --- connections ---------------------------------------------------------------------------------

def test_each_thread_has_its_own_connection_and_close_closes_them_all(
        store: SqliteLedgerStore) -> None:
    mine = store._conn()
    theirs: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: theirs.append(store._conn()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    store.close()  # from this thread, the other thread's connection included
    for conn in (mine, theirs[0]):
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    # the store opens a new connection when used again
    assert store._conn() is not mine and store.insert(row(1)) is not None
    store.close()
    store.close()  # twice is harmless


def test_a_write_is_seen_at_once_by_another_store_on_the_file(store: SqliteLedgerStore,
                                                              path: str) -> None:
    other = SqliteLedgerStore(path)
    store.insert(row(1))
    assert other.get("k1") is not None  # autocommit: no transaction left open
    assert not store._conn().in_transaction
    other.close()
