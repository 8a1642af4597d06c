"""Duplicates: 100 deliveries of one drift event, from several processes, to two app instances."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable

from handlers.outcome import Outcome
from handlers.runtime.routing import ON_DRIFT_DETECTED
from tests.fakes.arm import FakeArm
from tests.reliability.conftest import (
    CREATE_RUN,
    Figures,
    Host,
    drift_event,
    ledger_rows,
    live_env,
)
from tests.reliability.workers import post_concurrently, serve_instance

DELIVERIES = 100
POSTERS = 2


def test_100_deliveries_from_several_processes_start_one_run(
        arm: FakeArm, backend_env: dict[str, str], start_host: Callable[..., Host],
        figures: Figures) -> None:
    # GIVEN two app instances (this process and a spawned one) sharing one ledger, retraining
    # live against the fake ARM, whose createRun answers slowly (so deliveries overlap)
    env = live_env(arm, **backend_env)
    host = start_host(env)
    arm.delay_next("POST", CREATE_RUN, 0.5, process_first=True)
    spawn = multiprocessing.get_context("spawn")
    ready, stop, gate = spawn.Queue(), spawn.Event(), spawn.Event()
    instance = spawn.Process(target=serve_instance, args=(ready, stop), daemon=True)
    instance.start()
    try:
        ports = [host.port, ready.get(timeout=60)]
        body = json.dumps([drift_event("storm-of-duplicates")]).encode()
        # WHEN 2 poster processes deliver the same event 100 times at once, to both instances
        results = spawn.Queue()
        posters = [spawn.Process(target=post_concurrently, daemon=True, args=(
            ports, ON_DRIFT_DETECTED, body, DELIVERIES // POSTERS, 5, gate, results))
            for _ in range(POSTERS)]
        for poster in posters:
            poster.start()
        time.sleep(0.3)  # let the posters reach the gate
        gate.set()
        statuses = Counter(s for _ in posters for s in results.get(timeout=120))
        for poster in posters:
            poster.join(timeout=10)
        # AND Event Grid redelivers what was answered 500 (busy) until accepted
        final = host.redeliver(ON_DRIFT_DETECTED, [drift_event("storm-of-duplicates")])
    finally:
        stop.set()
        instance.join(timeout=10)
    # THEN the fake ARM received exactly one createRun, and the ledger has one row, done
    creates = arm.requests_matching("POST", CREATE_RUN)
    rows = [r for r in ledger_rows(env) if r.event_id == "storm-of-duplicates"]
    assert sum(statuses.values()) == DELIVERIES and set(statuses) <= {202, 500}, statuses
    assert final[-1] == 202
    assert len(creates) == 1 and len(arm.adf.runs()) == 1
    assert len(rows) == 1 and rows[0].outcome is Outcome.DONE, rows
    assert json.loads(rows[0].detail)["run_id"] == arm.adf.runs()[0].run_id
    figures.record(
        f"duplicates [{backend_env['AMLEVENTS_LEDGER']}]",
        f"{DELIVERIES} deliveries from {POSTERS} processes to 2 instances -> "
        f"{len(creates)} createRun, {len(rows)} ledger row '{rows[0].outcome.value}' "
        f"({statuses[202]} answered 202, {statuses[500]} busy 500 -> redelivered)")
