"""Which events notify (statuses, flags, rules) and what the plan says: pure decisions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from handlers.errors import SettingError
from handlers.events.parse import parse_event
from handlers.ledger.ledger import event_key
from handlers.notify.decide import build_notice, decide
from handlers.notify.plan import NotificationPlan
from handlers.notify.settings import NotifySettings
from handlers.outcome import ActionResult, Outcome

Sample = Callable[[str], dict[str, Any]]


def ctx(**env: str) -> NotifySettings:
    """The notification settings `decide` reads, from these app settings."""
    return NotifySettings.from_mapping(env)


def run_event(sample: Sample, status: str = "Failed", experiment: str = "hd-sweep",
              tags: dict[str, str] | None = None) -> Any:
    raw = sample("run_status_changed")
    raw["data"].update(runStatus=status, experimentName=experiment, runTags=tags or {})
    return parse_event(raw)


@pytest.mark.parametrize("status", ["failed", "Failed", "FAILED", " failed "])
def test_failed_runs_notify_in_any_casing(sample: Sample, status: str) -> None:
    plan = decide(run_event(sample, status), ctx())
    assert isinstance(plan, NotificationPlan)
    assert plan.channels is None and plan.rule == "default"


@pytest.mark.parametrize("status", ["Running", "Completed", "Finalizing", "Canceled", "Queued"])
def test_other_statuses_are_skipped_by_default(sample: Sample, status: str) -> None:
    decision = decide(run_event(sample, status), ctx())
    assert isinstance(decision, ActionResult) and decision.outcome is Outcome.SKIPPED
    assert "AMLEVENTS_NOTIFY_RUN_STATUSES" in decision.detail


def test_the_status_list_is_a_setting(sample: Sample) -> None:
    context = ctx(AMLEVENTS_NOTIFY_RUN_STATUSES="Failed, Canceled")
    assert isinstance(decide(run_event(sample, "canceled"), context), NotificationPlan)
    assert isinstance(decide(run_event(sample, "Completed"), context), ActionResult)


def test_run_completed_and_model_deployed_are_off_until_turned_on(sample: Sample) -> None:
    completed, deployed = parse_event(sample("run_completed")), parse_event(
        sample("model_deployed"))
    assert "AMLEVENTS_NOTIFY_RUN_COMPLETED" in str(decide(completed, ctx()))
    assert "AMLEVENTS_NOTIFY_MODEL_DEPLOYED" in str(decide(deployed, ctx()))
    on = ctx(AMLEVENTS_NOTIFY_RUN_COMPLETED="true", AMLEVENTS_NOTIFY_MODEL_DEPLOYED="yes")
    plan = decide(completed, on)
    assert isinstance(plan, NotificationPlan) and plan.notice.status == "Completed"
    plan = decide(deployed, on)
    assert isinstance(plan, NotificationPlan)
    assert plan.notice.title == "Model deployed to my-sklearn-service"
    assert dict(plan.notice.facts)["Models"] == ("sklearn_regression_model:1, "
                                                 "sklearn_regression_model:2")
    assert plan.notice.link.startswith("https://ml.azure.com/endpoints?wsid=")


def test_drift_events_do_not_notify(sample: Sample) -> None:
    decision = decide(parse_event(sample("dataset_drift_detected")), ctx())
    assert isinstance(decision, ActionResult) and "does not notify" in decision.detail


def test_the_plan_carries_the_ledger_key_and_no_raw_event(sample: Sample) -> None:
    raw = sample("run_status_changed")
    plan = decide(parse_event(raw), ctx())
    assert isinstance(plan, NotificationPlan)
    assert plan.event_key == event_key(raw["topic"], raw["eventType"], raw["id"])
    detail = json.dumps(plan.as_dict())
    assert "pipeline_spec" not in detail  # runProperties stay out of the ledger
    assert plan.notice.event["data"]["runProperties"]["pipeline_spec"]  # ... but reach webhooks
    assert plan.summary().startswith("notify: Run failed: AutoML_ad912b2d")


RULES = [
    {"name": "vision sweeps", "experiment": "HD-*", "tags": {"team": "vision"},
     "channels": ["slack"]},
    {"name": "mute scratch", "experiment": "scratch-*", "channels": []},
    {"name": "deploys", "events": ["ModelDeployed"], "channels": ["teams"]},
    {"name": "canceled", "statuses": ["canceled"], "channels": ["webhook"]},
    {"name": "rest", "events": ["RunStatusChanged"], "channels": ["smtp", "teams"]},
]


def rules_ctx(**env: str) -> NotifySettings:
    return ctx(AMLEVENTS_NOTIFY_RULES=json.dumps(RULES),
               AMLEVENTS_NOTIFY_RUN_STATUSES="failed,canceled", **env)


@pytest.mark.parametrize(("experiment", "tags", "status", "rule", "channels"), [
    ("hd-sweep", {"Team": "Vision"}, "failed", "vision sweeps", ("slack",)),
    ("hd-sweep", {"team": "nlp"}, "failed", "rest", ("smtp", "teams")),
    ("hd-sweep", {}, "canceled", "canceled", ("webhook",)),
    ("nightly", {"team": "vision"}, "failed", "rest", ("smtp", "teams")),
])
def test_first_matching_rule_picks_the_channels(sample: Sample, experiment: str,
                                               tags: dict[str, str], status: str, rule: str,
                                               channels: tuple[str, ...]) -> None:
    plan = decide(run_event(sample, status, experiment, tags), rules_ctx())
    assert isinstance(plan, NotificationPlan)
    assert (plan.rule, plan.channels) == (rule, channels)


def test_a_rule_without_channels_mutes(sample: Sample) -> None:
    decision = decide(run_event(sample, experiment="scratch-42"), rules_ctx())
    assert isinstance(decision, ActionResult) and "mutes" in decision.detail


def test_no_matching_rule_skips(sample: Sample) -> None:
    context = ctx(AMLEVENTS_NOTIFY_RULES='[{"experiment": "prod-*"}]')
    decision = decide(run_event(sample, experiment="dev"), context)
    assert isinstance(decision, ActionResult) and "no rule" in decision.detail


def test_rules_match_model_deployed_on_service_tags(sample: Sample) -> None:
    context = ctx(AMLEVENTS_NOTIFY_MODEL_DEPLOYED="true", AMLEVENTS_NOTIFY_RULES=json.dumps(
        [{"experiment": "*", "channels": ["smtp"]},
         {"tags": {"area": "diab*"}, "channels": ["teams"]}]))
    plan = decide(parse_event(sample("model_deployed")), context)
    assert isinstance(plan, NotificationPlan) and plan.channels == ("teams",)


def test_bad_rules_raise_a_setting_error(sample: Sample) -> None:
    with pytest.raises(SettingError) as info:
        decide(run_event(sample), ctx(AMLEVENTS_NOTIFY_RULES='[{"channel": ["sms"]}]'))
    assert info.value.setting == "AMLEVENTS_NOTIFY_RULES"


def test_a_topic_that_is_not_a_workspace_still_notifies_without_a_link(sample: Sample) -> None:
    raw = sample("run_status_changed")
    raw["topic"] = "/subscriptions/s/resourceGroups/rg"
    plan = decide(parse_event(raw), ctx())
    assert isinstance(plan, NotificationPlan) and plan.notice.link == ""


def _breach_with(sample: Sample, metrics: int) -> Any:
    """The breach sample with this many breached metrics (one feature each)."""
    raw = sample("model_monitor_breach")
    raw["topic"] = ("/subscriptions/s1/resourceGroups/rg1/providers/"
                    "Microsoft.MachineLearningServices/workspaces/ws1")
    found = [json.dumps({"group": f"f{n}", "metric_value": 0.5, "metric_name": "psi",
                         "threshold_value": 0.1}) for n in range(metrics)]
    raw["data"]["runTags"]["azureml_modelmonitor_threshold_breached"] = (
        "The signal 'sig' has failed due to one or more features violating metric thresholds.\n"
        "The feature names and their corresponding computed metric values violating the "
        f"threshold are \n{found!r}\n")
    return parse_event(raw)


@pytest.mark.parametrize(("metrics", "more"), [(10, None), (11, "+1 more")])
def test_a_breach_lists_ten_metrics_then_counts_the_rest(sample: Sample, metrics: int,
                                                        more: str | None) -> None:
    notice = build_notice(_breach_with(sample, metrics), "https://ml.azure.com")
    breached = dict(notice.facts)["Breached"].split("; ")
    assert breached[:10] == [f"f{n}: psi 0.5 > 0.1" for n in range(10)]
    assert breached[10:] == ([more] if more else [])
    assert notice.workspace == "ws1" and notice.link.startswith("https://ml.azure.com/runs/")
