"""A dry run rehearses the live run: the live adapters' settings are validated, and reported the
same way (`retry`, naming the setting), before the dry-run twin records the plan."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from handlers.outcome import ActionResult, Outcome
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.routing import ON_MODEL_REGISTERED, ON_RUN_STATUS

Sample = Callable[[str], dict[str, Any]]

NOTIFY_CASES = [
    ({"AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com", "AMLEVENTS_NOTIFY_SMTP_PORT": "abc"},
     "AMLEVENTS_NOTIFY_SMTP_PORT"),
    ({"AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com"}, "AMLEVENTS_NOTIFY_SMTP_FROM"),
    ({"AMLEVENTS_NOTIFY_TEAMS_URL": "http://contoso.webhook.office.com/x"},
     "AMLEVENTS_NOTIFY_TEAMS_URL"),
    ({"AMLEVENTS_NOTIFY_STORM_MAX": "0"}, "AMLEVENTS_NOTIFY_STORM_MAX"),
    ({"AMLEVENTS_NOTIFY_RULES": '[{"name": "sweeps", "channels": ["slack"]}]'},
     "AMLEVENTS_NOTIFY_RULES"),
    ({"AMLEVENTS_NOTIFY_OUTBOX_DIR": ""}, "AMLEVENTS_NOTIFY_SMTP_HOST"),  # no channel at all
]


@pytest.mark.parametrize(("settings", "named"), NOTIFY_CASES, ids=[c[1] for c in NOTIFY_CASES])
@pytest.mark.parametrize("dry_run", ["true", "false"])
def test_a_misconfigured_channel_is_reported_in_dry_run_as_live(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample, settings: dict[str, str],
        named: str, dry_run: str) -> None:
    raw = sample("run_status_changed")
    raw["data"]["runStatus"] = "Failed"
    result = make_dispatcher(AMLEVENTS_DRY_RUN=dry_run, **settings).dispatch(
        raw, function=ON_RUN_STATUS)
    assert result.outcome is Outcome.RETRY and named in result.detail


@pytest.mark.parametrize("dry_run", ["true", "false"])
def test_a_bad_deploy_adapter_setting_is_reported_in_dry_run_as_live(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample, dry_run: str) -> None:
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = {"deploy": "true"}
    result = make_dispatcher(AMLEVENTS_DRY_RUN=dry_run, AMLEVENTS_DEPLOY_WAIT_S="abc").dispatch(
        raw, function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.RETRY and "AMLEVENTS_DEPLOY_WAIT_S" in result.detail


def test_a_sound_dry_run_plans(make_dispatcher: Callable[..., Dispatcher],
                               sample: Sample) -> None:
    raw = sample("run_status_changed")
    raw["data"]["runStatus"] = "Failed"
    result = make_dispatcher().dispatch(raw, function=ON_RUN_STATUS)
    assert result.outcome is Outcome.PLANNED


def test_the_rehearsed_cooldown_ends_exactly_when_it_has_lasted(
        sample: Sample, make_dispatcher: Callable[..., Dispatcher]) -> None:
    from handlers.retrain.handler import handle
    from tests.handlers.retrain.test_handler import drift, rehearsal

    # GIVEN a planned (dry-run) retraining at t and a cooldown of 3600 s
    now = [1_000_000.0]
    ctx = rehearsal(make_dispatcher, now).context()
    assert handle(drift(sample, "d-1"), ctx).outcome is Outcome.PLANNED
    # THEN at t + 3599 s it cools down, and at t + 3600 s another run is planned (as live)
    now[0] += 3599
    assert handle(drift(sample, "d-2"), ctx).outcome is Outcome.SKIPPED
    now[0] += 1
    assert handle(drift(sample, "d-3"), ctx).outcome is Outcome.PLANNED


# -- the rehearsal runner on its own: a real (SQLite, in memory) ledger and a settable clock ------

def _runner(now: list[float], cooldown_s: str = "100") -> Any:
    from handlers.adapters.dry_run import DryRunRetrainRunner
    from handlers.ledger.ledger import Ledger
    from handlers.ledger.sqlite import SqliteLedgerStore
    from handlers.retrain.settings import RetrainSettings

    ledger = Ledger(SqliteLedgerStore(":memory:"), clock=lambda: now[0])
    return DryRunRetrainRunner(ledger, RetrainSettings.from_mapping(
        {"AMLEVENTS_RETRAIN_COOLDOWN_S": cooldown_s}))


def _plan(sample: Sample, event_id: str, *, placeholder: bool = False) -> Any:
    from handlers.retrain.decide import decide
    from handlers.retrain.plan import RetrainPlan
    from handlers.retrain.settings import RetrainSettings
    from tests.handlers.retrain.test_handler import TARGET, drift

    env = {} if placeholder else {"AMLEVENTS_RETRAIN_DEFAULT_TARGET": json.dumps(TARGET)}
    plan = decide(drift(sample, event_id), RetrainSettings.from_mapping(env),
                  dry_run=placeholder)
    assert isinstance(plan, RetrainPlan) and plan.placeholder is placeholder
    return plan


def test_a_rehearsed_run_records_when_it_started(sample: Sample) -> None:
    from handlers.adapters.dry_run import rehearsal_state_key

    now = [1000.0]
    runner, first = _runner(now), _plan(sample, "d-1")
    assert runner.start(first) == ActionResult.planned(first)
    key = rehearsal_state_key(first.monitor_key)
    assert runner.ledger.get_state(key) == {
        "last": {"request_id": first.request_id, "started_at_s": 1000.0}}
    # a redelivery of the same event is planned again and keeps the first start
    now[0] = 1050.0
    assert runner.start(first) == ActionResult.planned(first)
    assert runner.ledger.get_state(key) == {
        "last": {"request_id": first.request_id, "started_at_s": 1000.0}}
    # so the cooldown counts from the first start: over at 1100, not at 1150
    now[0] = 1099.0
    assert runner.start(_plan(sample, "d-2")) == ActionResult.skipped(
        "cooldown: the last retraining run (planned) for monitor myDriftMonitor started 99 s ago "
        "(AMLEVENTS_RETRAIN_COOLDOWN_S=100)", action="retraining cooling down")
    now[0] = 1100.0
    second = _plan(sample, "d-3")
    assert runner.start(second) == ActionResult.planned(second)
    assert runner.ledger.get_state(key) == {
        "last": {"request_id": second.request_id, "started_at_s": 1100.0}}


def test_a_placeholder_plan_starts_no_cooldown(sample: Sample) -> None:
    from handlers.adapters.dry_run import rehearsal_state_key

    now = [1000.0]
    runner, placeholder = _runner(now), _plan(sample, "d-1", placeholder=True)
    assert runner.start(placeholder) == ActionResult.planned(placeholder)
    assert runner.ledger.get_state(rehearsal_state_key(placeholder.monitor_key)) is None


def test_the_rehearsal_key_is_a_hash_of_the_monitor_any_case() -> None:
    import hashlib

    from handlers.adapters.dry_run import rehearsal_state_key

    digest = hashlib.sha256(b"my/monitor").hexdigest()[:32]
    assert rehearsal_state_key(" My/Monitor ") == f"retrain-rehearsal-{digest}"


def test_the_notify_twin_holds_no_digest() -> None:
    from handlers.adapters.dry_run import DryRunNotifier

    assert DryRunNotifier().flush() == []


def test_the_cicd_twin_records_the_exact_requests_as_planned(sample: Sample) -> None:
    from handlers.adapters.cicd.dry_run import DryRunCicdDispatcher
    from handlers.cicd.decide import decide
    from handlers.cicd.plan import CicdPlan
    from handlers.cicd.settings import CicdSettings
    from handlers.events.parse import parse_event

    rule = {"name": "release", "when": {"types": ["ModelRegistered"]},
            "github": {"repository": "contoso/ml-release", "workflow": "release.yml",
                       "ref": "main", "inputs": {"model": "{data.ModelName}"}}}
    plan = decide(parse_event(sample("model_registered")), CicdSettings.from_mapping(
        {"AMLEVENTS_CICD_RULES": json.dumps([rule])}))
    assert isinstance(plan, CicdPlan)
    (dispatch,) = plan.dispatches
    result = DryRunCicdDispatcher().dispatch(plan)
    assert result.outcome is Outcome.PLANNED
    assert result.action == ("start GitHub workflow release.yml in contoso/ml-release on main "
                             "(rule 'release')")
    assert json.loads(result.detail) == {"dispatches": [{
        "rule": "release", "requestId": dispatch.request_id,
        "target": {"service": "github", "repository": "contoso/ml-release",
                   "workflow": "release.yml", "ref": "main"},
        "request": {"method": "POST", "url": "https://api.github.com/repos/contoso/ml-release/"
                                             "actions/workflows/release.yml/dispatches",
                    "body": {"ref": "main", "return_run_details": True, "inputs": {
                        "model": parse_event(sample("model_registered")).envelope.data[
                            "ModelName"], "amlevents_request_id": dispatch.request_id}}}}]}
    assert result.detail == json.dumps(json.loads(result.detail), sort_keys=True,
                                       separators=(",", ":"))
