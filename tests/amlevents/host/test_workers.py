"""Worker processes (FUNCTIONS_WORKER_PROCESS_COUNT): one host, two spawned workers, one ledger.

The pool and the host around it are shared by the module (each worker imports the app, which
takes a second or two); each test sends its own fresh events and looks at those events' rows.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import function_app
from amlevents.host.server import FunctionsHost, LocalServer, load_functions
from amlevents.host.workers import (
    WORKER_PROCESS_COUNT,
    WorkerError,
    WorkerPool,
    worker_process_count,
)
from handlers.ledger.ledger import Ledger, LedgerEntry
from handlers.ledger.store import open_store
from tests.conftest import SAMPLE_TOPIC, load_sample

ROOT = Path(__file__).resolve().parents[3]
WEBHOOK = "/runtime/webhooks/EventGrid?functionName=on_ml_event"
FINAL = {"planned", "skipped", "done"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Dry run on the samples' topic, a fresh SQLite ledger, a local outbox; a claim left by a
    killed worker expires after a second (the shortest allowed), so a redelivery can complete."""
    folder = tmp_path_factory.mktemp("workers")
    return {"AMLEVENTS_ALLOWED_TOPICS": SAMPLE_TOPIC, "AMLEVENTS_DRY_RUN": "true",
            "AMLEVENTS_LEDGER_PATH": str(folder / "ledger.sqlite3"),
            "AMLEVENTS_NOTIFY_OUTBOX_DIR": str(folder / "outbox"),
            "AMLEVENTS_CLAIM_TIMEOUT_S": "1"}


@pytest.fixture(scope="module")
def pool(settings: dict[str, str]) -> Iterator[WorkerPool]:
    """Two worker processes over the module's settings."""
    with WorkerPool(2, env={**os.environ, **settings}) as started:
        yield started


@pytest.fixture(scope="module")
def host(pool: WorkerPool) -> Iterator[LocalServer]:
    """The local host handing its Event Grid invocations to the pool."""
    server = LocalServer(FunctionsHost(load_functions(function_app.app), pool=pool), port=0)
    with server:
        yield server


def fresh_events(count: int) -> list[dict[str, Any]]:
    """Distinct failed-run and drift events (half each), from the documented samples."""
    samples = [load_sample("run_status_changed"), load_sample("dataset_drift_detected")]
    return [{**samples[i % 2], "id": str(uuid.uuid4())} for i in range(count)]


def deliver(server: LocalServer, events: list[dict[str, Any]]) -> tuple[int, Any]:
    """One Event Grid delivery; (status, parsed JSON body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.request("POST", WEBHOOK, json.dumps(events).encode(),
                 {"aeg-event-type": "Notification", "Content-Type": "application/json"})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    return response.status, json.loads(raw) if raw else None


def rows_of(settings: dict[str, str], events: list[dict[str, Any]]) -> list[LedgerEntry]:
    """The ledger rows of these events (read through a ledger of this process)."""
    ids = {event["id"] for event in events}
    return [entry for entry in Ledger(open_store(settings)).entries() if entry.event_id in ids]


def test_a_batch_is_ledgered_once_and_both_workers_did_work(
        host: LocalServer, pool: WorkerPool, settings: dict[str, str]) -> None:
    # GIVEN two worker processes, WHEN a batch of 200 distinct events arrives
    before = pool.events_by_process()
    events = fresh_events(200)
    status, body = deliver(host, events)
    # THEN every event has exactly one row, acted on (planned in dry run)
    assert (status, body) == (202, None)
    rows = rows_of(settings, events)
    assert sorted(row.event_id for row in rows) == sorted(event["id"] for event in events)
    assert {row.outcome.value for row in rows} == {"planned"}
    # AND each worker process handled part of it (the pids the workers reported themselves)
    after = pool.events_by_process()
    handled = {pid: after[pid] - before.get(pid, 0) for pid in after}
    assert set(pool.pids) == {pid for pid, count in handled.items() if count > 0}
    assert len(pool.pids) == 2 and os.getpid() not in pool.pids
    assert sum(handled.values()) == 200 and min(handled[pid] for pid in pool.pids) >= 50


def test_a_redelivered_batch_acts_on_none_again(host: LocalServer,
                                                 settings: dict[str, str]) -> None:
    events = fresh_events(200)
    assert deliver(host, events)[0] == 202
    first = {row.key: row for row in rows_of(settings, events)}
    # WHEN Event Grid delivers the same batch again (to both workers again)
    assert deliver(host, events)[0] == 202
    again = {row.key: row for row in rows_of(settings, events)}
    # THEN nothing is done again: same rows, same outcomes and actions, one more attempt each
    assert again.keys() == first.keys() and len(again) == 200
    assert all(again[key].attempts == first[key].attempts + 1 for key in first)
    assert all((again[key].outcome, again[key].action) == (first[key].outcome, first[key].action)
               for key in first)


def test_failures_are_reported_as_the_in_process_host_reports_them(
        host: LocalServer, pool: WorkerPool, monkeypatch: pytest.MonkeyPatch,
        settings: dict[str, str], tmp_path: Path) -> None:
    # A bad eventTime fails its invocation in the worker's converter; events on either side of it
    # (in both workers' chunks) are still handled.
    events = fresh_events(6)
    events[1]["eventTime"] = events[4]["eventTime"] = "26 June 2017"
    through_workers = deliver(host, events)
    for name, value in {**settings, "AMLEVENTS_LEDGER_PATH": str(tmp_path / "l.sqlite3")}.items():
        monkeypatch.setenv(name, value)
    with LocalServer(FunctionsHost(load_functions(function_app.app)), port=0) as in_process:
        here = deliver(in_process, events)
    assert through_workers == here
    status, body = here
    assert status == 500 and body["accepted"] == 4
    assert [failure["id"] for failure in body["failed"]] == [events[1]["id"], events[4]["id"]]
    assert all(failure["error"].startswith("EventDecodeError: ") for failure in body["failed"])


def test_a_killed_worker_fails_what_it_had_not_finished_and_is_replaced(
        host: LocalServer, pool: WorkerPool, settings: dict[str, str]) -> None:
    events = fresh_events(2000)  # 1000 per worker: the kill lands while both are working
    answer: list[tuple[int, Any]] = []
    request = threading.Thread(target=lambda: answer.append(deliver(host, events)))
    victim = pool.pids[0]
    request.start()
    deadline = time.monotonic() + 60
    while len(rows_of(settings, events)) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(victim, signal.SIGKILL)
    request.join(timeout=60)
    # THEN the request is answered (not hung): 500, so Event Grid redelivers
    assert not request.is_alive()
    [(status, body)] = answer
    assert status == 500
    failed = [failure["id"] for failure in body["failed"]]
    assert failed and body["accepted"] == 2000 - len(failed)
    assert all(f"worker process {victim} exited" in failure["error"]
               for failure in body["failed"])
    # The failed events are the end of one worker's chunk (one half of the batch); the rest are
    # settled in the ledger
    halves = [{event["id"] for event in events[:1000]}, {event["id"] for event in events[1000:]}]
    assert any(set(failed) <= half for half in halves)
    settled = {row.event_id for row in rows_of(settings, events) if row.outcome.value in FINAL}
    assert {event["id"] for event in events} - set(failed) <= settled
    # AND a new worker took the dead one's place
    assert victim not in pool.pids and len(set(pool.pids)) == 2 and 0 not in pool.pids
    # AND Event Grid's redelivery (after the dead worker's claim expired) completes the batch:
    # every event ledgered exactly once
    time.sleep(1.1)
    assert deliver(host, events) == (202, None)
    rows = rows_of(settings, events)
    assert sorted(row.event_id for row in rows) == sorted(event["id"] for event in events)
    assert {row.outcome.value for row in rows} <= FINAL


@pytest.mark.parametrize("value", ["0", "11", "two", "-1", "1.5", "+2", "٢"])
def test_an_invalid_worker_process_count_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(WorkerError, match=WORKER_PROCESS_COUNT):
        worker_process_count({WORKER_PROCESS_COUNT: value})


@pytest.mark.parametrize(("env", "count"), [({}, 1), ({WORKER_PROCESS_COUNT: ""}, 1),
                                            ({WORKER_PROCESS_COUNT: "1"}, 1),
                                            ({WORKER_PROCESS_COUNT: " 2 "}, 2),
                                            ({WORKER_PROCESS_COUNT: "10"}, 10)])
def test_the_worker_process_count_defaults_to_one(env: dict[str, str], count: int) -> None:
    assert worker_process_count(env) == count


def test_serve_refuses_an_invalid_count_before_it_listens(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLEVENTS_")}
    result = subprocess.run([sys.executable, "-m", "amlevents.cli", "serve", "--port", "0"],
                            cwd=tmp_path, env={**env, WORKER_PROCESS_COUNT: "two"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{WORKER_PROCESS_COUNT} must be a whole number from 1 to 10" in result.stderr
    assert "amlevents host on" not in result.stdout


def test_serve_runs_worker_processes_and_stops_them(tmp_path: Path) -> None:
    # `amlevents serve` with local.settings.json asking for 2 worker processes: it says so, its
    # workers print each delivery's line, and Ctrl-C stops them with the host.
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"IsEncrypted": False, "Values": {WORKER_PROCESS_COUNT: "2"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLEVENTS_")}
    process = subprocess.Popen([sys.executable, "-m", "amlevents.cli", "serve", "--port", "0"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
        port = int(first.split("http://127.0.0.1:")[1].split(" ")[0])
        assert f"run in 2 worker processes ({WORKER_PROCESS_COUNT}=2; pids " in second
        pids = [int(pid) for pid in second.split("pids ")[1].rstrip(")\n").split(", ")]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", WEBHOOK, json.dumps(fresh_events(4)).encode(),
                     {"aeg-event-type": "Notification"})
        assert conn.getresponse().status == 202
        conn.close()
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.count("on_ml_event  planned") == 4  # the workers' deliveries, printed by serve
    for pid in pids:  # the workers were stopped and reaped, not left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_stopped_pool_refuses_work_and_its_processes_are_gone(
        settings: dict[str, str]) -> None:
    pool = WorkerPool(1, env={**os.environ, **settings})
    [pid] = pool.pids
    pool.close()
    pool.close()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(WorkerError, match="stopped"):
        pool.invoke("on_ml_event", fresh_events(1))
