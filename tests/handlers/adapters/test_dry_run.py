"""A dry run rehearses the live run: the live adapters' settings are validated, and reported the
same way (`retry`, naming the setting), before the dry-run twin records the plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from handlers.outcome import Outcome
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
