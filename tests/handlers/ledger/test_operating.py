"""Operating the ledger on every store (SQLite, and Table Storage on Azurite): the stored event,
queries, find, history, reopen, quarantine, prune. One suite, both stores, the same answers."""

from __future__ import annotations

import base64
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.ledger.ledger import (
    HISTORY_KEEP,
    EventFacts,
    Ledger,
    LedgerQuery,
    LedgerStore,
    ReceivedEvent,
    event_key,
    parse_history,
    utc_iso,
)
from handlers.ledger.sqlite import SqliteLedgerStore
from handlers.ledger.stored_event import MAX_STORED_BYTES
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.routing import function_for
from tests.fakes.clock import T0, Clock

Sample = Callable[[str], dict[str, Any]]
RUN = "Microsoft.MachineLearningServices.RunStatusChanged"
MODEL = "Microsoft.MachineLearningServices.ModelRegistered"


def received(n: int, *, event_type: str = RUN, subject: str = "", raw: Any = None,
             function: str = "on_ml_event") -> ReceivedEvent:
    """Test event number n, with its event (a small one unless given)."""
    event = raw if raw is not None else {"id": f"id-{n}", "eventType": event_type,
                                         "subject": subject or f"experiments/x/runs/{n}",
                                         "topic": "/t", "data": {"n": n}}
    return ReceivedEvent(key=event_key("/t", event_type, f"id-{n}"), event_id=f"id-{n}",
                         event_type=event_type, subject=subject or f"experiments/x/runs/{n}",
                         topic="/t", function=function, raw=event, schema="EventGridSchema")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(ledger_store: LedgerStore, clock: Clock) -> Iterator[Ledger]:
    yield Ledger(ledger_store, claim_timeout_s=60, clock=clock)


def settle(ledger: Ledger, facts: EventFacts, outcome: Outcome, action: str = "acted") -> None:
    claim = ledger.claim(facts)
    assert claim.status == "claimed"
    ledger.finish(claim.entry, outcome, action, "")


# --- the stored event --------------------------------------------------------------------------

def test_dispatch_stores_the_received_event_with_its_row(
        backend_env: dict[str, str], base_env: dict[str, str], sample: Sample) -> None:
    # GIVEN a dispatcher on the store, and an event carrying a secret setting's value in a tag
    secret = "https://hooks.example.com/services/T000/B000/sEcReT0123"
    dispatcher = Dispatcher({**base_env, **backend_env, "AMLEVENTS_NOTIFY_WEBHOOK_URL": secret})
    event = sample("model_registered")
    event["data"]["ModelTags"]["hook"] = secret
    # WHEN it is dispatched, then delivered again
    first = dispatcher.dispatch(event, function="on_model_registered")
    dispatcher.dispatch(event, function="on_model_registered")
    # THEN the row holds the event as received, the secret masked, and stored once
    stored = dispatcher.ledger.stored_event(first.key)
    assert stored is not None and stored.replayable and stored.schema == "EventGridSchema"
    assert stored.event["id"] == event["id"] and stored.event["subject"] == event["subject"]
    assert stored.event["data"]["ModelTags"] == {**event["data"]["ModelTags"], "hook": "***"}
    assert stored.masked == 1
    dispatcher.ledger.close()


def test_large_events_are_split_within_the_property_limit_and_huge_ones_truncated(
        ledger: Ledger) -> None:
    # GIVEN an event of ~150 KB of base64 (~110 KB compressed: two 60 KB chunks), and one that
    # stays past the bound compressed
    big = base64.b64encode(os.urandom(110_000)).decode()
    huge = base64.b64encode(os.urandom(MAX_STORED_BYTES)).decode()
    facts_big = received(1, raw={"id": "id-1", "eventType": RUN, "data": {"blob": big}})
    facts_huge = received(2, raw={"id": "id-2", "eventType": RUN, "data": {"blob": huge}})
    # WHEN both are claimed (the Table store would refuse a property over 64 KiB)
    ledger.claim(facts_big)
    ledger.record(facts_huge, Outcome.INVALID, "rejected", "too big")
    # THEN the first reads back whole; the second is its envelope with the truncation marker
    back = ledger.stored_event(facts_big.key)
    assert back is not None and back.event["data"]["blob"] == big and back.stored_bytes > 100_000
    cut = ledger.stored_event(facts_huge.key)
    assert cut is not None and not cut.replayable and "data" not in cut.event
    assert cut.truncated["bytes"] > MAX_STORED_BYTES
    # AND reading the rows does not need (or return) the event
    assert [e.event_id for e in ledger.entries()] == ["id-1", "id-2"]


def test_a_row_without_an_event_says_so(ledger: Ledger) -> None:
    plain = EventFacts(key="k-plain", event_id="p", event_type=RUN, subject="s", topic="/t",
                       function="f")
    ledger.record(plain, Outcome.INVALID, "rejected", "")
    assert ledger.stored_event("k-plain") is None
    assert ledger.stored_event("absent") is None


# --- queries, find ----------------------------------------------------------------------------

def test_queries_answer_the_same_on_every_store(ledger: Ledger, clock: Clock) -> None:
    # GIVEN six events an hour apart, of two types, with various outcomes and subjects
    outcomes = [Outcome.DONE, Outcome.FAILED, Outcome.RETRY, Outcome.FAILED, Outcome.SKIPPED,
                Outcome.PLANNED]
    for n, outcome in enumerate(outcomes, start=1):
        clock.now = T0 + n * 3600
        kind = MODEL if n % 2 else RUN
        subject = f"models/churn:{n}" if kind == MODEL else f"experiments/e/runs/{n}"
        settle(ledger, received(n, event_type=kind, subject=subject), outcome)

    def ids(**query: Any) -> list[str]:
        return [e.event_id for e in ledger.query(LedgerQuery(**query))]

    # THEN each filter, and their combinations, select the same rows on each store
    assert ids() == [f"id-{n}" for n in range(1, 7)]
    assert ids(outcomes=frozenset({Outcome.FAILED})) == ["id-2", "id-4"]
    assert ids(outcomes=frozenset({Outcome.FAILED, Outcome.RETRY})) == ["id-2", "id-3", "id-4"]
    assert ids(types=("modelregistered",)) == ["id-1", "id-3", "id-5"]
    assert ids(types=(RUN,)) == ["id-2", "id-4", "id-6"]
    assert ids(since=utc_iso(T0 + 3 * 3600)) == ["id-3", "id-4", "id-5", "id-6"]
    assert ids(since=utc_iso(T0 + 2 * 3600), until=utc_iso(T0 + 4 * 3600)) == ["id-2", "id-3"]
    assert ids(subject="models/churn:[15]") == ["id-1", "id-5"]
    assert ids(subject="Models/*") == []  # globs are case-sensitive
    assert ids(limit=2) == ["id-5", "id-6"]  # the most recent, oldest first
    assert ids(limit=0) == []
    assert ids(outcomes=frozenset({Outcome.FAILED}), since=utc_iso(T0 + 3 * 3600)) == ["id-4"]
    assert ids(event_id="id-3") == ["id-3"]


def test_find_takes_a_key_an_event_id_or_a_key_prefix(ledger: Ledger) -> None:
    # GIVEN two events sharing one id (the documented samples do), and another
    settle(ledger, received(1, event_type=RUN), Outcome.DONE)
    shared = ReceivedEvent(key=event_key("/t", MODEL, "id-1"), event_id="id-1",
                           event_type=MODEL, subject="models/m:1", topic="/t", function="f")
    settle(ledger, shared, Outcome.SKIPPED)
    other = received(3)
    settle(ledger, other, Outcome.DONE)
    # THEN the key names one row, the id both of its rows, a key prefix its row
    assert [e.key for e in ledger.find(other.key)] == [other.key]
    assert sorted(e.event_type for e in ledger.find("id-1")) == [MODEL, RUN]
    assert [e.key for e in ledger.find(other.key[:10])] == [other.key]
    assert ledger.find("nothing-like-it") == [] and ledger.find("") == []


# --- history -----------------------------------------------------------------------------------

def test_history_records_every_attempt_duplicate_and_takeover(ledger: Ledger,
                                                              clock: Clock) -> None:
    facts = received(1, function="on_run_status")
    first = ledger.claim(facts)
    ledger.finish(first.entry, Outcome.RETRY, "will retry", "503")
    clock.now += 10
    second = ledger.claim(facts)
    ledger.finish(second.entry, Outcome.DONE, "notified", "")
    clock.now += 10
    assert ledger.claim(facts).status == "done"
    row = ledger.get(facts.key)
    assert row is not None
    items = row.events()
    assert [(i["n"], i["outcome"]) for i in items] == [(1, "retry"), (2, "done"),
                                                      (3, "duplicate")]
    assert items[1]["after"] == "retry" and items[1]["action"] == "notified"
    assert items[0]["function"] == "on_run_status" and items[0]["at"] == utc_iso(T0)


def test_history_is_bounded_and_keeps_the_first_attempt(ledger: Ledger, clock: Clock) -> None:
    facts = received(1)
    settle(ledger, facts, Outcome.DONE)
    for _ in range(HISTORY_KEEP + 15):
        clock.now += 1
        ledger.claim(facts)
    row = ledger.get(facts.key)
    assert row is not None and row.attempts == HISTORY_KEEP + 16
    items = row.events()
    assert len(items) == HISTORY_KEEP
    assert items[0]["n"] == 1 and items[1] == {"omitted": 16 - 1 + 2}
    assert items[-1]["n"] == HISTORY_KEEP + 16


# --- reopen, note, quarantine --------------------------------------------------------------

def test_a_reopened_row_is_claimed_again_and_says_why(ledger: Ledger) -> None:
    facts = received(1)
    settle(ledger, facts, Outcome.FAILED, "failed")
    row = ledger.get(facts.key)
    assert row is not None and ledger.claim(facts).status == "done"
    row = ledger.get(facts.key)
    assert row is not None
    reopened = ledger.reopen(row, {"replay": {"by": "ops@host", "was": "failed"}})
    assert reopened is not None and reopened.outcome is Outcome.RETRY
    assert ledger.reopen(row, {"replay": {}}) is None  # stale ETag: refused
    again = ledger.claim(facts)
    assert again.status == "claimed"
    ledger.finish(again.entry, Outcome.DONE, "acted", "")
    final = ledger.get(facts.key)
    assert final is not None and final.outcome is Outcome.DONE
    assert [i.get("replay", {}).get("by") for i in final.events() if "replay" in i] == ["ops@host"]
    # the reopening is in the history when it happened, and the detail says what the row was
    assert {"at": utc_iso(T0), "replay": {"by": "ops@host", "was": "failed"}} in final.events()
    assert reopened.detail == "was failed: failed" and reopened.action == "reopened for replay"


def test_a_quarantined_event_is_never_acted_on_again(ledger: Ledger, clock: Clock) -> None:
    # GIVEN a poison event stuck in retry
    facts = received(1)
    settle(ledger, facts, Outcome.RETRY, "will retry")
    row = ledger.get(facts.key)
    assert row is not None
    # WHEN an operator quarantines it
    done = ledger.quarantine(row, by="ops@host", reason="poison: crashes the SDK")
    assert done is not None and done.quarantined and done.outcome is Outcome.FAILED
    # THEN the next delivery is a duplicate: nothing is done, Event Grid stops retrying
    assert ledger.claim(facts).status == "done"
    stored = ledger.get(facts.key)
    assert stored is not None and stored.quarantined
    assert stored.detail == "quarantined by ops@host: poison: crashes the SDK"
    assert {"at": utc_iso(T0), "quarantined": {"by": "ops@host", "reason": "poison: crashes "
                                               "the SDK", "was": "retry"}} in stored.events()
    # AND a row a live claim holds cannot be quarantined under its holder
    busy = received(2)
    held = ledger.claim(busy).entry
    assert ledger.quarantine(held, by="ops", reason="") is None


# --- prune -------------------------------------------------------------------------------------

def test_prune_deletes_rows_not_updated_since_but_never_a_live_claim(
        ledger: Ledger, clock: Clock) -> None:
    # GIVEN rows last updated 100, 50 and 1 days ago, and a claim held for longer than that
    day = 86400.0
    clock.now = T0
    settle(ledger, received(1), Outcome.DONE)
    long_claim = Ledger(ledger.store, claim_timeout_s=200 * day, clock=clock)
    long_claim.claim(received(4))
    clock.now = T0 + 50 * day
    settle(ledger, received(2), Outcome.FAILED)
    clock.now = T0 + 99 * day
    settle(ledger, received(3), Outcome.DONE)
    clock.now = T0 + 100 * day
    # WHEN rows older than 30 days are pruned
    assert ledger.prune(older_than_s=30 * day) == 2
    # THEN only the recent row and the live claim remain, and the order index still works
    assert [e.event_id for e in ledger.entries()] == ["id-4", "id-3"]
    assert [e.event_id for e in ledger.entries(limit=1)] == ["id-4"]
    assert ledger.prune(older_than_s=30 * day) == 0
    # AND a pruned event is new again to the ledger (hence the retention's minimum)
    assert ledger.claim(received(1)).status == "claimed"


def test_prune_takes_a_claim_that_expired_long_ago(ledger: Ledger, clock: Clock) -> None:
    # GIVEN a claim whose worker died 100 days ago (it expired after 60 s, nobody finished it)
    day = 86400.0
    clock.now = T0
    assert ledger.claim(received(1)).status == "claimed"
    clock.now = T0 + 100 * day
    # WHEN rows older than 30 days are pruned THEN the dead claim goes too
    assert ledger.prune(older_than_s=30 * day) == 1
    assert ledger.entries() == []


def test_a_verdict_recorded_without_a_claim_starts_its_history_with_the_action(
        ledger: Ledger, clock: Clock) -> None:
    entry, first = ledger.record(received(1), Outcome.REFUSED, "refused " + "x" * 200, "why")
    assert first
    assert parse_history(entry.history) == [{
        "n": 1, "at": utc_iso(T0), "function": "on_ml_event", "outcome": "refused",
        "action": "refused " + "x" * 152}]  # the action cut to 160 characters


# --- versions ----------------------------------------------------------------------------------

def test_an_older_sqlite_ledger_file_is_upgraded_in_place(tmp_path: Path) -> None:
    # GIVEN a ledger file as the previous version wrote it (no history, no event columns)
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE events (seq INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,
              event_id TEXT NOT NULL, event_type TEXT NOT NULL, subject TEXT NOT NULL,
              topic TEXT NOT NULL, function TEXT NOT NULL, received_at TEXT NOT NULL,
              updated_at TEXT NOT NULL, outcome TEXT NOT NULL, action TEXT NOT NULL,
              detail TEXT NOT NULL, attempts INTEGER NOT NULL, claim_expires_at_s REAL NOT NULL,
              version INTEGER NOT NULL);
            CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL,
              version INTEGER NOT NULL);
            INSERT INTO events VALUES (1, 'old-key', 'old', 't', 's', '/t', 'f',
              '2024-01-01T00:00:00.000+00:00', '2024-01-01T00:00:00.000+00:00', 'failed',
              'failed', 'boom', 1, 0, 1);""")
    conn.close()
    # WHEN this version opens it (twice: the upgrade runs once)
    SqliteLedgerStore(str(path)).close()
    ledger = Ledger(SqliteLedgerStore(str(path)))
    # THEN the old row reads as before, without history or event, and new rows get both
    (old,) = ledger.entries()
    assert (old.event_id, old.outcome, old.history) == ("old", Outcome.FAILED, "")
    assert ledger.stored_event("old-key") is None
    settle(ledger, received(1), Outcome.DONE)
    assert ledger.stored_event(received(1).key) is not None
    assert [e.event_id for e in ledger.query(LedgerQuery(event_id="old"))] == ["old"]
    ledger.close()


def test_every_store_answers_the_replayed_route(backend_env: dict[str, str],
                                                base_env: dict[str, str],
                                                sample: Sample) -> None:
    # A delivery's function is recorded with the stored event: what a replay routes by.
    dispatcher = Dispatcher({**base_env, **backend_env})
    event = sample("dataset_drift_detected")
    result = dispatcher.dispatch(event, function=function_for(event["eventType"]))
    row = dispatcher.ledger.get(result.key)
    assert row is not None and row.function == "on_drift_detected"
    dispatcher.ledger.close()


def test_only_the_indexes_the_queries_use_are_kept(tmp_path: Path) -> None:
    # GIVEN a file with the updated_at index the previous version created (every update wrote it)
    path = tmp_path / "indexed.sqlite3"
    SqliteLedgerStore(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE INDEX events_updated_at ON events (updated_at)")
    conn.close()
    # WHEN this version opens it THEN the index is gone, and prune finds old rows by received_at
    clock = [1_700_000_000.0]
    ledger = Ledger(SqliteLedgerStore(str(path)), clock=lambda: clock[0])
    with sqlite3.connect(path) as conn:
        indexes = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
            "AND sql IS NOT NULL")}
        plan = " ".join(str(row) for row in conn.execute(
            "EXPLAIN QUERY PLAN DELETE FROM events WHERE received_at < ? AND updated_at < ? "
            "AND NOT (outcome = 'in_progress' AND claim_expires_at_s > ?)", ("x", "x", 0.0)))
    conn.close()
    assert indexes == {"events_event_id", "events_received_at"}
    assert "events_received_at" in plan
    settle(ledger, received(1), Outcome.DONE)
    clock[0] += 10 * 86_400
    settle(ledger, received(2), Outcome.DONE)
    assert ledger.prune(older_than_s=86_400) == 1
    assert [e.key for e in ledger.entries()] == [received(2).key]
    ledger.close()
