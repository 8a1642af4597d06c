"""Crash in the middle: a worker claims an event, starts the action and dies (SIGKILL).

The claim keeps other deliveries off until it expires (AMLEVENTS_CLAIM_TIMEOUT_S); then a
redelivery takes over. Data Factory's createRun is not idempotent: the takeover finds the run
through the intent the dead worker recorded. Deployment is idempotent: the takeover waits for
the deployment in flight instead of creating another.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from handlers.ledger.ledger import LedgerEntry
from handlers.outcome import Outcome
from handlers.runtime.routing import ON_DRIFT_DETECTED, ON_MODEL_REGISTERED
from tests.fakes.arm import FakeArm
from tests.reliability.conftest import (
    CREATE_RUN,
    DEPLOYMENT_PUT,
    ENDPOINT,
    Figures,
    Host,
    drift_event,
    ledger_rows,
    live_env,
    model_event,
)
from tests.reliability.workers import dispatch_once

CLAIM_TIMEOUT_S = "5"


def crash_while_holding(arm: FakeArm, env: dict[str, str], raw: dict[str, Any], function: str,
                        method: str, path: str) -> float:
    """Run a worker until the fake ARM has taken its `method path` request, then SIGKILL it."""
    arm.delay_next(method, path, 60, process_first=True)  # the request takes effect, no answer
    spawn = multiprocessing.get_context("spawn")
    done = spawn.Queue()
    worker = spawn.Process(target=dispatch_once, args=(env, raw, function, done), daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while not arm.requests_matching(method, path):
        assert worker.is_alive() and time.monotonic() < deadline, "worker never reached ARM"
        time.sleep(0.02)
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(timeout=10)
    assert worker.exitcode == -signal.SIGKILL and done.empty()
    return time.time()


def only_row(env: dict[str, str], event_id: str) -> LedgerEntry:
    (row,) = [r for r in ledger_rows(env) if r.event_id == event_id]
    return row


def wait_for_expiry(row: LedgerEntry) -> None:
    time.sleep(max(0.0, row.claim_expires_at_s - time.time() + 0.05))


def test_dead_worker_adf_run_is_reconciled_not_started_twice(
        arm: FakeArm, table_env: dict[str, str], start_host: Callable[..., Host],
        figures: Figures) -> None:
    env = live_env(arm, **table_env, AMLEVENTS_CLAIM_TIMEOUT_S=CLAIM_TIMEOUT_S,
                   AMLEVENTS_RETRAIN_TIMEOUT_S="60")
    raw = drift_event("crash-drift")
    # GIVEN a worker that claimed the event, recorded its intent, sent createRun (which ADF
    # accepted) and was killed before it heard back
    crash_while_holding(arm, env, raw, ON_DRIFT_DETECTED, "POST", CREATE_RUN)
    claimed = only_row(env, "crash-drift")
    assert claimed.outcome is Outcome.IN_PROGRESS and len(arm.adf.runs()) == 1
    host = start_host(env)
    # WHEN Event Grid redelivers before the claim expired THEN it is refused as busy (retry)
    busy_status, busy_body = host.post(ON_DRIFT_DETECTED, [raw])
    assert time.time() < claimed.claim_expires_at_s, "the busy delivery came too late"
    assert busy_status == 500 and "in_progress" in busy_body["failed"][0]["error"], busy_body
    # WHEN it redelivers after the claim expired THEN it completes, with the run ADF started
    wait_for_expiry(claimed)
    assert host.post(ON_DRIFT_DETECTED, [raw])[0] == 202
    row = only_row(env, "crash-drift")
    detail = json.loads(row.detail)
    (run,) = arm.adf.runs()
    assert row.outcome is Outcome.DONE and detail["run_id"] == run.run_id and detail["reconciled"]
    creates = arm.requests_matching("POST", CREATE_RUN)
    assert len(creates) == 1
    figures.record("crash [adf, table]",
                   f"worker SIGKILLed after createRun -> ledger '{claimed.outcome.value}', "
                   f"redelivery before expiry -> {busy_status} busy, after expiry -> "
                   f"'{row.outcome.value}' (reconciled={detail['reconciled']}); "
                   f"{len(creates)} createRun, {len(arm.adf.runs())} pipeline run")


def test_dead_worker_deployment_is_not_made_twice(
        arm: FakeArm, backend_env: dict[str, str], start_host: Callable[..., Host],
        figures: Figures) -> None:
    env = live_env(arm, **backend_env, AMLEVENTS_CLAIM_TIMEOUT_S=CLAIM_TIMEOUT_S,
                   AMLEVENTS_DEPLOY_HTTP_TIMEOUT_S="60")
    raw = model_event(arm, 20, "crash-deploy")
    # GIVEN a worker killed after Azure ML accepted its deployment PUT
    crash_while_holding(arm, env, raw, ON_MODEL_REGISTERED, "PUT", DEPLOYMENT_PUT)
    claimed = only_row(env, "crash-deploy")
    assert claimed.outcome is Outcome.IN_PROGRESS
    assert arm.ml.deployment(ENDPOINT, "v20").provisioning_state == "Creating"
    host = start_host(env)
    busy_status, _ = host.post(ON_MODEL_REGISTERED, [raw])
    assert busy_status == 500 and time.time() < claimed.claim_expires_at_s
    # WHEN the claim has expired and Azure ML finishes the deployment a moment after the
    # redelivery arrived
    wait_for_expiry(claimed)
    finish = threading.Timer(1.0, arm.ml.set_provisioning_state, (ENDPOINT, "Succeeded", "v20"))
    finish.start()
    status, _ = host.post(ON_MODEL_REGISTERED, [raw])
    finish.join()
    # THEN the redelivery waited for that deployment: one deployment, one deployment PUT
    row = only_row(env, "crash-deploy")
    puts = arm.requests_matching("PUT", DEPLOYMENT_PUT)
    bodies = {json.dumps(p.body, sort_keys=True) for p in puts}
    assert status == 202 and row.outcome is Outcome.DONE, row.detail
    assert len(arm.ml.deployments(ENDPOINT)) == 1 and len(bodies) == 1
    assert len(puts) == 1
    assert arm.ml.endpoint(ENDPOINT).traffic == {"v20": 100}
    figures.record(f"crash [deploy, {backend_env['AMLEVENTS_LEDGER']}]",
                   f"worker SIGKILLed after the deployment PUT -> ledger "
                   f"'{claimed.outcome.value}', redelivery before expiry -> {busy_status} busy, "
                   f"after expiry -> '{row.outcome.value}'; {len(puts)} deployment PUT, "
                   f"{len(arm.ml.deployments(ENDPOINT))} deployment")
