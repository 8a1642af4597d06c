"""Which events notify (statuses, flags, rules) and what the plan says: pure decisions."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from handlers.errors import SettingError
from handlers.events.parse import ModelDeployed, RunCompleted, RunStatusChanged, parse_event
from handlers.ledger.ledger import event_key
from handlers.notify.decide import build_notice, decide
from handlers.notify.message import Notice
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


# --- whole outputs: every skip reason, every notice field, the plan's ledger detail ------------

WS_TOPIC = ("/subscriptions/s1/resourceGroups/rg1/providers/"
            "Microsoft.MachineLearningServices/workspaces/ws1")
RUN_ID = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
RUN_LINK = f"https://ml.azure.com/runs/{RUN_ID}?wsid=/subscriptions/s1/resourcegroups/rg1/workspaces/ws1"
WS_FACTS = (("Workspace", "ws1"), ("Resource group", "rg1"))


def notice_of(raw: dict[str, Any], studio: str) -> Notice:
    """What people are told about this raw event."""
    event = parse_event(raw)
    assert isinstance(event, RunStatusChanged | RunCompleted | ModelDeployed)
    return build_notice(event, studio)


def in_ws1(sample: Sample, name: str) -> dict[str, Any]:
    """A sample event from workspace ws1 (the samples' topic has placeholders, not a workspace)."""
    raw = sample(name)
    raw["topic"] = WS_TOPIC
    return raw


@pytest.mark.parametrize(("statuses", "status", "reason"), [
    ("", "Running", "run status 'Running' is not in AMLEVENTS_NOTIFY_RUN_STATUSES (failed)"),
    ("Failed,Canceled", " Queued ",
     "run status ' Queued ' is not in AMLEVENTS_NOTIFY_RUN_STATUSES (canceled, failed)")])
def test_a_skipped_status_names_the_setting_and_its_statuses(sample: Sample, statuses: str,
                                                            status: str, reason: str) -> None:
    context = ctx(AMLEVENTS_NOTIFY_RUN_STATUSES=statuses) if statuses else ctx()
    assert decide(run_event(sample, status), context) == ActionResult.skipped(reason)


def test_every_skip_reason_whole(sample: Sample) -> None:
    # Each skip is what the ledger shows the operator: the reason names the setting to change.
    assert decide(parse_event(sample("run_completed")), ctx()) == ActionResult(
        Outcome.SKIPPED, "nothing to do",
        "RunCompleted notifications are off (AMLEVENTS_NOTIFY_RUN_COMPLETED)")
    assert decide(parse_event(sample("model_deployed")), ctx()) == ActionResult(
        Outcome.SKIPPED, "nothing to do",
        "ModelDeployed notifications are off (AMLEVENTS_NOTIFY_MODEL_DEPLOYED)")
    assert decide(parse_event(sample("dataset_drift_detected")), ctx()) == ActionResult(
        Outcome.SKIPPED, "nothing to do",
        "Microsoft.MachineLearningServices.DatasetDriftDetected does not notify")
    assert decide(run_event(sample, experiment="scratch-42"), rules_ctx()) == ActionResult(
        Outcome.SKIPPED, "nothing to do", "rule 'mute scratch' mutes this event (no channels)")
    context = ctx(AMLEVENTS_NOTIFY_RULES='[{"experiment": "prod-*"}]')
    assert decide(run_event(sample, experiment="dev"), context) == ActionResult(
        Outcome.SKIPPED, "nothing to do", "no rule in AMLEVENTS_NOTIFY_RULES matches this event")


def test_a_rule_with_every_channel_is_not_a_mute(sample: Sample) -> None:
    # A rule without "channels" picks every configured channel (None), not none of them.
    context = ctx(AMLEVENTS_NOTIFY_RULES='[{"name": "all of them", "experiment": "hd-*"}]')
    plan = decide(run_event(sample), context)
    assert isinstance(plan, NotificationPlan)
    assert (plan.rule, plan.channels) == ("all of them", None)


def test_the_first_of_two_matching_rules_wins(sample: Sample) -> None:
    context = ctx(AMLEVENTS_NOTIFY_RULES=json.dumps([
        {"name": "one", "channels": ["teams"]}, {"name": "two", "channels": ["slack"]}]))
    plan = decide(run_event(sample), context)
    assert isinstance(plan, NotificationPlan) and (plan.rule, plan.channels) == ("one", ("teams",))


def test_a_failed_run_plan_whole(sample: Sample) -> None:
    raw = in_ws1(sample, "run_status_changed")
    plan = decide(parse_event(raw), ctx())
    assert plan == NotificationPlan(
        event_key=event_key(WS_TOPIC, raw["eventType"], raw["id"]),
        notice=Notice(
            event_id="831e1650-001e-001b-66ab-eeb76e069631",
            event_type="Microsoft.MachineLearningServices.RunStatusChanged",
            title=f"Run failed: {RUN_ID} in automl-local-regression", status="failed",
            event_time="2017-06-26T18:41:00.9584103Z", workspace="ws1", topic=WS_TOPIC,
            link=RUN_LINK, group="failed runs in experiment automl-local-regression",
            facts=(("Event", "RunStatusChanged"), ("Status", "failed"),
                   ("Experiment", "automl-local-regression"), ("Run", RUN_ID),
                   ("Run type", "-"), ("Time", "2017-06-26T18:41:00.9584103Z"), *WS_FACTS)),
        rule="default", channels=None)
    assert plan.notice.event == raw  # the webhook gets the event whole


def test_the_plan_as_dict_whole(sample: Sample) -> None:
    # The ledger's detail: the notice summary (no raw event), the rule, the channels.
    plan = decide(parse_event(in_ws1(sample, "run_status_changed")), ctx())
    assert isinstance(plan, NotificationPlan)
    assert plan.as_dict() == {
        "notice": {"eventId": "831e1650-001e-001b-66ab-eeb76e069631",
                   "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
                   "title": f"Run failed: {RUN_ID} in automl-local-regression",
                   "status": "failed", "eventTime": "2017-06-26T18:41:00.9584103Z",
                   "workspace": "ws1", "topic": WS_TOPIC, "link": RUN_LINK,
                   "group": "failed runs in experiment automl-local-regression",
                   "facts": {"Event": "RunStatusChanged", "Status": "failed",
                             "Experiment": "automl-local-regression", "Run": RUN_ID,
                             "Run type": "-", "Time": "2017-06-26T18:41:00.9584103Z",
                             "Workspace": "ws1", "Resource group": "rg1"}},
        "rule": "default", "channels": "all"}
    assert plan.summary() == f"notify: Run failed: {RUN_ID} in automl-local-regression"
    routed = decide(run_event(sample, experiment="nightly"), rules_ctx())
    assert isinstance(routed, NotificationPlan)
    assert (routed.as_dict()["rule"], routed.as_dict()["channels"]) == ("rest", ["smtp", "teams"])


def test_a_plan_summary_is_one_bounded_line(sample: Sample) -> None:
    plan = decide(run_event(sample), ctx())
    assert isinstance(plan, NotificationPlan)
    long = replace(plan, notice=replace(plan.notice, title="t\n" + "x" * 300))
    assert long.summary() == "notify: t " + "x" * 247 + "…"


def test_a_completed_run_notice_whole(sample: Sample) -> None:
    raw = in_ws1(sample, "run_completed")
    raw["data"]["runType"] = "azureml.StepRun"
    notice = notice_of(raw, "https://ml.azure.us")
    assert notice == Notice(
        event_id="831e1650-001e-001b-66ab-eeb76e069631",
        event_type="Microsoft.MachineLearningServices.RunCompleted",
        title=f"Run completed: {RUN_ID} in automl-local-regression", status="Completed",
        event_time="2017-06-26T18:41:00.9584103Z", workspace="ws1", topic=WS_TOPIC,
        link=RUN_LINK.replace("ml.azure.com", "ml.azure.us"),
        group="completed runs in experiment automl-local-regression",
        facts=(("Event", "RunCompleted"), ("Status", "Completed"),
               ("Experiment", "automl-local-regression"), ("Run", RUN_ID),
               ("Run type", "azureml.StepRun"), ("Time", "2017-06-26T18:41:00.9584103Z"),
               *WS_FACTS))
    assert notice.event == raw


def test_a_model_deployed_notice_whole(sample: Sample) -> None:
    raw = in_ws1(sample, "model_deployed")
    notice = notice_of(raw, "https://ml.azure.com")
    assert notice == Notice(
        event_id="831e1650-001e-001b-66ab-eeb76e069631",
        event_type="Microsoft.MachineLearningServices.ModelDeployed",
        title="Model deployed to my-sklearn-service", status="deployed",
        event_time="2017-06-26T18:41:00.9584103Z", workspace="ws1", topic=WS_TOPIC,
        link="https://ml.azure.com/endpoints?wsid=/subscriptions/s1/resourcegroups/rg1/workspaces/ws1",
        group="deployments to my-sklearn-service",
        facts=(("Event", "ModelDeployed"), ("Service", "my-sklearn-service"),
               ("Compute", "ACI"),
               ("Models", "sklearn_regression_model:1, sklearn_regression_model:2"),
               ("Time", "2017-06-26T18:41:00.9584103Z"), *WS_FACTS))
    assert notice.event == raw


@pytest.mark.parametrize("name", ["run_status_changed", "model_deployed", "model_monitor_breach"])
def test_without_a_workspace_the_topic_is_named_and_nothing_links(sample: Sample,
                                                                   name: str) -> None:
    raw = sample(name)
    raw["topic"] = "/subscriptions/s/resourceGroups/rg"
    notice = notice_of(raw, "https://ml.azure.com")
    assert (notice.workspace, notice.link, notice.topic) == ("", "", raw["topic"])
    assert notice.facts[-1] == ("Workspace", "/subscriptions/s/resourceGroups/rg")
    assert "Resource group" not in dict(notice.facts)


def test_a_monitor_breach_notice_whole(sample: Sample) -> None:
    raw = in_ws1(sample, "model_monitor_breach")
    notice = notice_of(raw, "https://ml.azure.com")
    run = "credit_card_fraud_monitor_data_drift_evaluate_5e8a0c"
    assert notice == Notice(
        event_id="6a1f0e52-3c2b-4d8e-9f47-b2d1c0a9e8f7",
        event_type="Microsoft.MachineLearningServices.RunStatusChanged",
        title="Model monitor breach: credit_card_fraud_monitor_data_drift "
              "(TransactionAmount, MerchantCategory)",
        status="Failed", event_time="2024-06-03T00:12:47.3124512Z", workspace="ws1",
        topic=WS_TOPIC,
        link=f"https://ml.azure.com/runs/{run}?wsid=/subscriptions/s1/resourcegroups/rg1/workspaces/ws1",
        group="model monitor breaches of credit_card_fraud_monitor",
        facts=(("Event", "RunStatusChanged (model monitor breach)"),
               ("Signal", "credit_card_fraud_monitor_data_drift"),
               ("Monitor", "credit_card_fraud_monitor"),
               ("Features", "TransactionAmount, MerchantCategory"),
               ("Breached", "TransactionAmount: jensen_shannon_distance 0.41 > 0.1; "
                            "MerchantCategory: pearsons_chi_squared_test 0.012 < 0.05"),
               ("Monitoring run", run), ("Experiment", "credit_card_fraud_monitor"),
               ("Time", "2024-06-03T00:12:47.3124512Z"), *WS_FACTS))
    assert notice.event == raw


def test_a_breach_of_a_signal_the_experiment_does_not_name_groups_by_the_signal(
        sample: Sample) -> None:
    # The signal 'sig' is not "<experiment>_<signal>": no monitor told apart, the signal routes.
    notice = build_notice(_breach_with(sample, 1), "https://ml.azure.com")
    assert notice.title == "Model monitor breach: sig (f0)"
    assert notice.group == "model monitor breaches of sig"
    assert dict(notice.facts)["Monitor"] == "-"


def test_a_breach_naming_no_signal_or_feature_falls_back(sample: Sample) -> None:
    # GIVEN a breach tag that names neither the signal nor any breached metric
    raw = in_ws1(sample, "model_monitor_breach")
    raw["data"]["runTags"]["azureml_modelmonitor_threshold_breached"] = "thresholds breached"
    notice = notice_of(raw, "https://ml.azure.com")
    # THEN the notice says so, and groups by the monitoring run's experiment
    assert notice.title == "Model monitor breach: (signal not named)"
    assert notice.group == "model monitor breaches of credit_card_fraud_monitor"
    facts = dict(notice.facts)
    assert (facts["Signal"], facts["Monitor"], facts["Features"], facts["Breached"]) == (
        "(signal not named)", "-", "-", "thresholds breached")


def test_a_notice_is_printable_and_bounded(sample: Sample) -> None:
    # Event data is data: long or multi-line values are cut to one line of bounded length.
    raw = in_ws1(sample, "run_status_changed")
    raw["data"].update(experimentName="e\n" + "x" * 2000, runId="r1")
    notice = notice_of(raw, "https://ml.azure.com")
    experiment = "e " + "x" * 2000
    assert notice.title == ("Run failed: r1 in " + experiment)[:249] + "…"
    assert notice.group == ("failed runs in experiment " + experiment)[:299] + "…"
    assert dict(notice.facts)["Experiment"] == experiment[:999] + "…"
    assert dict(notice.facts)["Run"] == "r1"
