"""The ledger on every store (SQLite and Azure Table Storage on Azurite): one suite, parametrised.

Each test gets a fresh store from the `ledger_store` / `backend_env` fixtures (tests/handlers/
conftest.py), so every claim, ETag and ordering rule is checked against both implementations.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from handlers.errors import RetryableError
from handlers.ledger.ledger import EventFacts, Ledger, LedgerEntry, LedgerStore, utc_iso
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.routing import function_for
from tests.fakes.azurite import ACCOUNT_KEY
from tests.fakes.clock import Clock

Sample = Callable[[str], dict[str, Any]]
ROOT = Path(__file__).resolve().parents[3]


def facts(n: int = 1, *, function: str = "on_ml_event") -> EventFacts:
    """The facts of test event number n (keys deliberately not in numeric order)."""
    key = f"{(n * 7919) % 1000:03d}key{n}"
    return EventFacts(key=key, event_id=f"id-{n}", event_type="Microsoft.MachineLearningServices"
                      ".RunStatusChanged", subject=f"experiments/x/runs/{n}", topic="/t",
                      function=function)


def entry(n: int = 1) -> LedgerEntry:
    """A fresh in-progress entry for event n."""
    f = facts(n)
    return LedgerEntry(key=f.key, event_id=f.event_id, event_type=f.event_type,
                       subject=f.subject, topic=f.topic, function=f.function,
                       received_at=utc_iso(0), updated_at=utc_iso(0),
                       outcome=Outcome.IN_PROGRESS, claim_expires_at_s=60.0)


def comparable(item: LedgerEntry) -> LedgerEntry:
    """An entry without its ETag (whose format differs between stores)."""
    return replace(item, etag="")


# --- the store protocol ----------------------------------------------------------------------

def test_insert_is_conditional_and_get_reads_it_back(ledger_store: LedgerStore) -> None:
    stored = ledger_store.insert(entry(1))
    assert stored is not None and stored.etag
    assert ledger_store.insert(replace(entry(1), detail="second")) is None
    fetched = ledger_store.get(entry(1).key)
    assert fetched is not None and fetched.etag == stored.etag
    assert comparable(fetched) == comparable(entry(1))
    assert ledger_store.get("absent") is None


def test_replace_needs_the_current_etag(ledger_store: LedgerStore) -> None:
    stored = ledger_store.insert(entry(1))
    assert stored is not None
    first = ledger_store.replace(replace(stored, outcome=Outcome.DONE, attempts=2),
                                 etag=stored.etag)
    assert first is not None and first.etag != stored.etag
    # GIVEN the ETag is stale WHEN another replace comes THEN it is refused, nothing changes
    assert ledger_store.replace(replace(stored, outcome=Outcome.FAILED), etag=stored.etag) is None
    current = ledger_store.get(stored.key)
    assert current is not None and (current.outcome, current.attempts) == (Outcome.DONE, 2)
    assert ledger_store.replace(replace(entry(2)), etag=stored.etag) is None  # absent key


def test_entries_come_oldest_first_and_limit_takes_the_oldest(ledger_store: LedgerStore) -> None:
    inserted = [ledger_store.insert(entry(n)) for n in range(1, 21)]
    assert all(inserted)
    # an update must not move an entry
    third = ledger_store.get(entry(3).key)
    assert third is not None
    assert ledger_store.replace(replace(third, outcome=Outcome.DONE), etag=third.etag)
    keys = [entry(n).key for n in range(1, 21)]
    assert sorted(keys) != keys  # so the order cannot come from the keys
    assert [e.key for e in ledger_store.entries()] == keys
    assert [e.key for e in ledger_store.entries(limit=5)] == keys[:5]
    assert ledger_store.entries(limit=0) == []
    assert ledger_store.entries()[2].outcome is Outcome.DONE


def test_state_is_created_once_and_replaced_by_etag(ledger_store: LedgerStore) -> None:
    key = "deploy/endpoint#1?x"  # characters a Table RowKey cannot hold
    assert ledger_store.get_state(key) is None
    created = ledger_store.put_state(key, {"version": 1, "nested": {"a": [1, 2]}}, etag=None)
    assert created is not None
    assert ledger_store.put_state(key, {"version": 9}, etag=None) is None
    updated = ledger_store.put_state(key, {"version": 2}, etag=created.etag)
    assert updated is not None and updated.value == {"version": 2}
    assert ledger_store.put_state(key, {"version": 3}, etag=created.etag) is None
    item = ledger_store.get_state(key)
    assert item is not None and (item.key, item.value, item.etag) == (key, {"version": 2},
                                                                      updated.etag)
    assert ledger_store.get_state("deploy/endpoint#2?x") is None


# --- the Ledger's claims over each store -----------------------------------------------------

def test_claim_finish_then_duplicates_are_done_and_counted(ledger_store: LedgerStore) -> None:
    clock = Clock()
    ledger = Ledger(ledger_store, claim_timeout_s=60, clock=clock)
    claim = ledger.claim(facts())
    assert claim.status == "claimed"
    assert ledger.claim(facts()).status == "busy"
    ledger.finish(claim.entry, Outcome.PLANNED, "planned", "notify 2 channels")
    for _ in range(3):
        again = ledger.claim(facts())
        assert again.status == "done" and again.entry.outcome is Outcome.PLANNED
    # a duplicate counts as activity on the row (pruning goes by the last update)
    clock.now += 30
    ledger.claim(facts())
    counted = ledger.get(facts().key)
    assert counted is not None and counted.updated_at == utc_iso(clock.now)
    assert counted.events()[-1] == {"n": 5, "at": utc_iso(clock.now), "outcome": "duplicate",
                                    "function": "on_ml_event"}
    final = ledger.get(facts().key)
    assert final is not None
    assert (final.outcome, final.attempts, final.detail) == (Outcome.PLANNED, 5,
                                                             "notify 2 channels")
    assert final.claim_expires_at_s == 0.0


def test_an_expired_claim_is_taken_over_and_the_late_finish_loses(
        ledger_store: LedgerStore) -> None:
    # GIVEN a delivery claimed the event and its worker died (no finish)
    clock = Clock()
    ledger = Ledger(ledger_store, claim_timeout_s=60, clock=clock)
    crashed = ledger.claim(facts()).entry
    clock.now += 59
    assert ledger.claim(facts()).status == "busy"
    # WHEN a later delivery comes after the claim expired THEN it takes the event over
    clock.now += 2
    second = ledger.claim(facts(function="on_run_status"))
    assert second.status == "claimed"
    assert (second.entry.attempts, second.entry.function) == (2, "on_run_status")
    assert second.entry.claim_expires_at_s == clock.now + 60
    # AND the first worker, if it wakes up, cannot overwrite it
    late = ledger.finish(crashed, Outcome.DONE, "deployed", "late")
    assert late.outcome is Outcome.IN_PROGRESS
    final = ledger.finish(second.entry, Outcome.DONE, "deployed", "by the second delivery")
    assert (final.outcome, final.detail) == (Outcome.DONE, "by the second delivery")
    assert [e.detail for e in ledger.entries()] == ["by the second delivery"]


def test_a_ledger_built_without_a_timeout_holds_a_claim_ten_minutes(
        ledger_store: LedgerStore) -> None:
    # GIVEN a ledger built as the CLI builds it (no claim timeout given), and a claimed event
    clock = Clock()
    ledger = Ledger(ledger_store, clock=clock)
    assert ledger.claim(facts()).status == "claimed"
    # THEN it stays busy for the settings' default (600 s), and is taken over after
    clock.now += 599
    assert ledger.claim(facts()).status == "busy"
    clock.now += 2
    taken = ledger.claim(facts())
    assert taken.status == "claimed" and taken.entry.claim_expires_at_s == clock.now + 600


def test_a_retry_outcome_is_taken_over_by_the_next_delivery(ledger_store: LedgerStore) -> None:
    ledger = Ledger(ledger_store, claim_timeout_s=60, clock=Clock())
    first = ledger.claim(facts())
    ledger.finish(first.entry, Outcome.RETRY, "will retry", "503 from ARM")
    again = ledger.claim(facts())
    assert again.status == "claimed" and again.entry.attempts == 2
    ledger.finish(again.entry, Outcome.DONE, "deployed", "")
    assert ledger.claim(facts()).status == "done"


def test_record_is_final_once_and_counts_duplicates(ledger_store: LedgerStore) -> None:
    ledger = Ledger(ledger_store, claim_timeout_s=60, clock=Clock())
    firsts = [ledger.record(facts(1), Outcome.REFUSED, "refused", "foreign")[1] for _ in range(2)]
    assert firsts == [True, False]
    stored = ledger.get(facts(1).key)
    assert stored is not None and (stored.outcome, stored.attempts) == (Outcome.REFUSED, 2)
    # a verdict over an in-progress claim is final
    ledger.claim(facts(2))
    verdict, taken = ledger.record(facts(2), Outcome.INVALID, "rejected", "bad data")
    assert taken and verdict.outcome is Outcome.INVALID
    assert ledger.claim(facts(2)).status == "done"


def test_a_verdict_recorded_over_a_retrying_row_is_its_next_attempt(
        ledger_store: LedgerStore) -> None:
    # GIVEN an event whose first attempt is to be retried
    clock = Clock()
    ledger = Ledger(ledger_store, claim_timeout_s=60, clock=clock)
    first = ledger.claim(facts())
    ledger.finish(first.entry, Outcome.RETRY, "will retry", "settings invalid")
    # WHEN a later delivery is decided without a claim (found invalid)
    clock.now += 5
    row, first_time = ledger.record(facts(function="on_run_status"), Outcome.INVALID,
                                    "rejected", "data.runId is missing")
    # THEN that verdict settles the row as attempt 2, and its history says so
    assert first_time and (row.outcome, row.attempts, row.detail) == (
        Outcome.INVALID, 2, "data.runId is missing")
    assert row.events()[-1] == {"n": 2, "at": utc_iso(clock.now), "function": "on_run_status",
                                "outcome": "invalid", "action": "rejected"}


def test_racing_state_updates_lose_no_increment(ledger_store: LedgerStore) -> None:
    ledger = Ledger(ledger_store)
    threads_n, each = 4, 15
    barrier = threading.Barrier(threads_n)
    conflicts: list[RetryableError] = []

    def bump(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
        return {"count": (value or {}).get("count", 0) + 1}

    def run() -> None:
        barrier.wait()
        for _ in range(each):
            while True:
                try:
                    ledger.update_state("counter", bump)
                    break
                except RetryableError as exc:  # what Event Grid redelivery would do
                    conflicts.append(exc)

    threads = [threading.Thread(target=run) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.get_state("counter") == {"count": threads_n * each}


# --- through the Dispatcher, across processes ------------------------------------------------

def deliver_many(env: dict[str, str], event: dict[str, Any], times: int,
                 barrier: Any, results: Any) -> None:
    """Child process: one Dispatcher delivering the same event `times` times."""
    dispatcher = Dispatcher(env)
    dispatcher.context()
    barrier.wait()
    found = [dispatcher.dispatch(event, function=function_for(event["eventType"]))
             for _ in range(times)]
    results.put([(r.outcome.value, r.duplicate) for r in found])
    dispatcher.ledger.close()


def collect(workers: list[Any], results: Any, timeout_s: float = 60) -> list[tuple[str, bool]]:
    """Every worker's results; fails at once when a worker dies instead of reporting."""
    found: list[tuple[str, bool]] = []
    deadline = time.monotonic() + timeout_s
    for _ in workers:
        while True:
            try:
                found += results.get(timeout=0.5)
                break
            except queue.Empty:
                dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
                assert not dead and time.monotonic() < deadline, f"workers failed: {dead}"
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return found


def test_processes_racing_on_one_event_act_once(backend_env: dict[str, str],
                                                base_env: dict[str, str], sample: Sample,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN 3 processes, each with its own Dispatcher on the shared ledger
    monkeypatch.syspath_prepend(str(ROOT))  # spawned children import this module by name
    env = {**base_env, **backend_env}
    event = sample("run_status_changed")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=deliver_many, args=(env, event, 50, barrier, results))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    # WHEN each delivers the same event 50 times
    outcomes = collect(workers, results)
    # THEN one delivery acted (planned); the rest saw a duplicate or a busy claim
    assert len(outcomes) == 150
    assert [o for o in outcomes if not o[1]] == [("planned", False)]
    assert {o[0] for o in outcomes} <= {"planned", "in_progress"}
    ledger = Dispatcher(env).ledger
    [row] = ledger.entries()
    assert row.outcome is Outcome.PLANNED
    assert 1 < row.attempts <= 150  # duplicate counts are best effort under races
    ledger.close()


def test_the_account_key_never_reaches_logs_or_the_ledger(
        table_env: dict[str, str], base_env: dict[str, str], sample: Sample,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's HTTP logging included
    dispatcher = Dispatcher({**base_env, **table_env})
    foreign = sample("run_status_changed") | {"id": "foreign", "topic": "/subscriptions/x"}
    broken = sample("dataset_drift_detected") | {"id": "broken", "data": {"driftCoefficient": []}}
    for event in (sample("run_status_changed"), sample("dataset_drift_detected"), foreign,
                  broken, {"not": "an event"}, sample("run_status_changed")):
        dispatcher.dispatch(event, function=function_for(str(event.get("eventType", ""))))
    rows = dispatcher.ledger.entries()
    assert len(rows) == 5
    assert {r.name for r in caplog.records} >= {"amlevents",
                                                "azure.core.pipeline.policies.http_logging_policy"}
    text = "\n".join([str(row.as_json()) for row in rows] + [
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records])
    assert ACCOUNT_KEY not in text and ACCOUNT_KEY[:20] not in text
    assert table_env["AMLEVENTS_LEDGER_TABLE_CONNECTION"] not in text


def test_failed_is_final_like_every_verdict(ledger_store: LedgerStore) -> None:
    # GIVEN an event whose action failed for good (a 400 from Azure, a bug)
    ledger = Ledger(ledger_store, claim_timeout_s=60, clock=Clock())
    claim = ledger.claim(facts())
    ledger.finish(claim.entry, Outcome.FAILED, "failed", "HTTP 400")
    # WHEN Event Grid delivers it again (even long after) THEN it is not acted on again
    for _ in range(2):
        again = ledger.claim(facts())
        assert again.status == "done" and again.entry.outcome is Outcome.FAILED
    # AND a later verdict does not overwrite it
    verdict, first = ledger.record(facts(), Outcome.INVALID, "rejected", "later")
    assert not first and verdict.outcome is Outcome.FAILED
    stored = ledger.get(facts().key)
    assert stored is not None and (stored.outcome, stored.attempts) == (Outcome.FAILED, 4)


class RacingStore:
    """A real store with another writer that always changes a row (or state item) between our
    read and our conditional write: every write of ours loses the race."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def replace(self, entry: LedgerEntry, *, etag: str) -> LedgerEntry | None:
        current = self.store.get(entry.key)
        if current is not None:  # the other writer gets there first
            self.store.replace(current.evolve(detail=f"other writer {self.lost}"),
                               etag=current.etag)
        self.lost += 1
        return self.store.replace(entry, etag=etag)

    def put_state(self, key: str, value: Mapping[str, Any], *,
                  etag: str | None) -> Any:
        current = self.store.get_state(key)
        self.store.put_state(key, {"other": self.lost}, etag=current.etag if current else None)
        self.lost += 1
        return self.store.put_state(key, value, etag=etag)


def test_the_ledger_gives_up_after_repeated_conflicts(ledger_store: LedgerStore) -> None:
    clock = Clock()
    racing = RacingStore(ledger_store)
    ledger = Ledger(racing, claim_timeout_s=60, clock=clock)  # type: ignore[arg-type]
    # GIVEN an event to retry (a row that a delivery may take over)
    first = ledger.claim(facts())
    Ledger(ledger_store, claim_timeout_s=60, clock=clock).finish(
        first.entry, Outcome.RETRY, "will retry", "503")
    # WHEN every take-over loses to another writer THEN the claim gives up as busy (Event Grid
    # redelivers), after a bounded number of tries
    claim = ledger.claim(facts())
    assert claim.status == "busy" and racing.lost == 5
    assert claim.entry is not None and claim.entry.key == facts().key  # the row as last read:
    assert claim.entry.outcome is Outcome.RETRY  # the stored retry, not a claim of its own
    assert claim.entry.detail == "other writer 3"  # as the fifth try found it
    # AND a state update that always loses gives up with a retryable error naming the item
    racing.lost = 0
    with pytest.raises(RetryableError, match="changed under us 3 times"):
        ledger.update_state("cooldown/monitor", lambda current: {"n": 1}, attempts=3)
    assert racing.lost == 3
