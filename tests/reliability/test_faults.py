"""Faults: Azure (fake ARM), SMTP and webhooks answering 429/503/timeouts N times, then success.

Each event goes through the HTTP host and is redelivered like Event Grid does (again while the
host answers 500). Transient faults (409 Conflict included: another operation in progress) → done
exactly once after the redeliveries, nothing lost; a 400 → failed at once, and its redelivery is a
duplicate that touches nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from handlers.outcome import Outcome
from handlers.runtime.routing import ON_DRIFT_DETECTED, ON_MODEL_REGISTERED, ON_RUN_STATUS
from tests.fakes.arm import FakeArm
from tests.fakes.notify import http_receiver
from tests.reliability.conftest import (
    CREATE_RUN,
    DEPLOYMENT_PUT,
    ENDPOINT,
    MODEL,
    PIPELINE,
    Figures,
    FlakySmtp,
    Host,
    drift_event,
    failed_run_event,
    ledger_rows,
    live_env,
    model_event,
    smtp_env,
)

MODEL_GET = rf"/models/{MODEL}/versions/20$"


@dataclass(frozen=True)
class Fault:
    """What the fake ARM does wrong, and what must come of it."""

    name: str
    inject: Callable[[FakeArm], None]
    deliveries: int  # until the host answers 202
    outcome: Outcome = Outcome.DONE
    env: tuple[tuple[str, str], ...] = ()


RETRAIN_FAULTS = [
    Fault("429 Retry-After x3", lambda arm: arm.fail_next(
        "POST", CREATE_RUN, 429, times=3, headers={"Retry-After": "1"}), 4),
    Fault("503 x2", lambda arm: arm.fail_next("POST", CREATE_RUN, 503, times=2), 3),
    Fault("409 Conflict", lambda arm: arm.fail_next(
        "POST", CREATE_RUN, 409, headers={"Retry-After": "1"}), 2),
    Fault("gateway timeout x2", lambda arm: arm.fail_next(
        "POST", CREATE_RUN, 504, times=2, delay_s=1.5), 3,
          env=(("AMLEVENTS_RETRAIN_TIMEOUT_S", "1"),
               ("AMLEVENTS_RETRAIN_RECONCILE_GRACE_S", "0"))),
    Fault("accepted, answer timed out", lambda arm: arm.adf.accept_then_time_out(
        PIPELINE, seconds=1.5), 2, env=(("AMLEVENTS_RETRAIN_TIMEOUT_S", "1"),)),
    Fault("400", lambda arm: arm.fail_next("POST", CREATE_RUN, 400), 1, Outcome.FAILED),
]

DEPLOY_FAULTS = [
    Fault("429 Retry-After x2", lambda arm: arm.fail_next(
        "PUT", DEPLOYMENT_PUT, 429, times=2, headers={"Retry-After": "1"}), 3),
    Fault("503 x2", lambda arm: arm.fail_next("GET", MODEL_GET, 503, times=2), 3),
    Fault("409 Conflict", lambda arm: arm.fail_next(
        "PUT", DEPLOYMENT_PUT, 409, headers={"Retry-After": "1"}), 2),
    Fault("timeout x1", lambda arm: arm.delay_next("GET", MODEL_GET, 2.0), 2,
          env=(("AMLEVENTS_DEPLOY_HTTP_TIMEOUT_S", "1"),)),
    Fault("400", lambda arm: arm.fail_next("PUT", DEPLOYMENT_PUT, 400), 1, Outcome.FAILED),
]


def settled(host: Host, function: str, raw: dict[str, object]) -> tuple[list[int], int]:
    """Deliver until accepted, then once more (a duplicate); (statuses, duplicate's status)."""
    statuses = host.redeliver(function, [raw])
    duplicate, _ = host.post(function, [raw])
    return statuses, duplicate


@pytest.mark.parametrize("fault", RETRAIN_FAULTS, ids=lambda f: f.name)
def test_retrain_faults(fault: Fault, arm: FakeArm, start_host: Callable[..., Host],
                        tmp_path: object, figures: Figures) -> None:
    env = live_env(arm, AMLEVENTS_LEDGER_PATH=f"{tmp_path}/l.sqlite3", **dict(fault.env))
    host = start_host(env)
    fault.inject(arm)
    statuses, duplicate = settled(host, ON_DRIFT_DETECTED, drift_event("fault-drift"))
    (row,) = ledger_rows(env)
    runs = arm.adf.runs()
    sent = len(arm.requests_matching("POST", CREATE_RUN))
    assert statuses == [500] * (fault.deliveries - 1) + [202] and duplicate == 202
    assert row.outcome is fault.outcome, row.detail
    assert len(runs) == (1 if fault.outcome is Outcome.DONE else 0)
    if runs:
        assert json.loads(row.detail)["run_id"] == runs[0].run_id
    figures.record(f"faults [retrain {fault.name}]",
                   f"{len(statuses)} deliveries ({statuses}) -> '{row.outcome.value}', "
                   f"{sent} createRun sent, {len(runs)} pipeline run; redelivery -> duplicate")


@pytest.mark.parametrize("fault", DEPLOY_FAULTS, ids=lambda f: f.name)
def test_deploy_faults(fault: Fault, arm: FakeArm, start_host: Callable[..., Host],
                       tmp_path: object, figures: Figures) -> None:
    env = live_env(arm, AMLEVENTS_LEDGER_PATH=f"{tmp_path}/l.sqlite3", **dict(fault.env))
    host = start_host(env)
    fault.inject(arm)
    statuses, duplicate = settled(host, ON_MODEL_REGISTERED, model_event(arm, 20))
    (row,) = ledger_rows(env)
    puts = len(arm.requests_matching("PUT", DEPLOYMENT_PUT))
    deployments = arm.ml.deployments(ENDPOINT)
    assert statuses == [500] * (fault.deliveries - 1) + [202] and duplicate == 202
    assert row.outcome is fault.outcome, row.detail
    if fault.outcome is Outcome.DONE:
        assert len(deployments) == 1 and arm.ml.endpoint(ENDPOINT).traffic == {"v20": 100}
    assert len(arm.requests_matching("PUT", DEPLOYMENT_PUT)) == puts  # the duplicate: nothing
    figures.record(f"faults [deploy {fault.name}]",
                   f"{len(statuses)} deliveries ({statuses}) -> '{row.outcome.value}', "
                   f"{puts} deployment PUT sent, {len(deployments)} deployment; "
                   "redelivery -> duplicate")


def test_notification_faults(smtp: FlakySmtp, start_host: Callable[..., Host],
                             base_env: dict[str, str], figures: Figures) -> None:
    # GIVEN SMTP answering 451 twice and the webhook 500 then 429, then both fine
    smtp.refuse = 2
    with http_receiver() as webhook:
        webhook.statuses = [500, 429]
        env = {**base_env, **smtp_env(smtp), "AMLEVENTS_DRY_RUN_NOTIFY": "false",
               "AMLEVENTS_NOTIFY_WEBHOOK_URL": webhook.url}
        host = start_host(env)
        # WHEN a failed run is delivered until accepted, then once more
        statuses, duplicate = settled(host, ON_RUN_STATUS, failed_run_event(1))
        # AND another one meets a webhook answering 400
        webhook.statuses = [400]
        refused, refused_again = settled(host, ON_RUN_STATUS, failed_run_event(2))
    rows = {r.event_id: r for r in ledger_rows(env)}
    first, second = rows["run-failed-sweep-a-1"], rows["run-failed-sweep-a-2"]
    # THEN the first is done with one email and one webhook call; the second failed at once
    assert statuses == [500, 500, 202] and duplicate == 202
    assert first.outcome is Outcome.DONE, first.detail
    assert refused == [202] and refused_again == 202 and second.outcome is Outcome.FAILED
    assert "webhook: HTTP 400" in second.detail
    assert len(smtp.messages) == 2 and smtp.attempts == 4  # 451, 451, sent, sent (event 2)
    assert [p["summary"]["eventId"] for p in webhook.payloads()] == ["run-failed-sweep-a-1"]
    assert webhook.attempts == 4  # 500, 429, 200, then the 400
    figures.record("faults [notify smtp 451x2 + webhook 500,429]",
                   f"{len(statuses)} deliveries ({statuses}) -> '{first.outcome.value}', "
                   f"1 email of {smtp.attempts - 1} SMTP attempts, 1 webhook call of 3 attempts")
    figures.record("faults [notify webhook 400]",
                   f"1 delivery -> '{second.outcome.value}' (not retried), email still sent "
                   "once; redelivery -> duplicate")


def test_retrain_createrun_landing_after_the_timeout_starts_one_run(
        arm: FakeArm, start_host: Callable[..., Host], tmp_path: object,
        figures: Figures) -> None:
    # GIVEN ADF takes createRun in only after our 1 s timeout (it hangs 2 s, then takes effect)
    env = live_env(arm, AMLEVENTS_LEDGER_PATH=f"{tmp_path}/l.sqlite3",
                   AMLEVENTS_RETRAIN_TIMEOUT_S="1", AMLEVENTS_RETRAIN_RECONCILE_GRACE_S="30")
    host = start_host(env)
    arm.delay_next("POST", CREATE_RUN, 2.0, process_first=False)
    # WHEN Event Grid redelivers while that request is still in flight, and after it landed
    statuses = host.redeliver(ON_DRIFT_DETECTED, [drift_event("late-landing")], interval_s=0.5)
    time.sleep(1.5)
    # THEN the redeliveries wait for it (busy 500s) and reconcile: still one pipeline run
    assert statuses[0] == 500 and statuses[-1] == 202
    assert len(arm.adf.runs()) == 1
    figures.record("faults [retrain createRun landing after our timeout]",
                   f"deliveries {statuses} -> 1 pipeline run (reconciled through the intent)")
