"""Drift → retraining decisions: threshold, routing, parameters, placeholder under dry-run, for
v1 DatasetDriftDetected and v2 model-monitor breaches alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from handlers.events import parse as ev
from handlers.outcome import ActionResult, Outcome
from handlers.retrain.decide import decide, decide_breach, experiment_for, request_id_for
from handlers.retrain.plan import RetrainPlan
from handlers.retrain.settings import (
    DEFAULT_TARGET,
    MONITOR_THRESHOLDS,
    PARAMETER_NAMES,
    PLACEHOLDER_COMPONENT,
    PLACEHOLDER_TARGET,
    ROUTES,
    RetrainSettings,
)
from handlers.runtime.dispatch import Dispatcher

Sample = Callable[[str], dict[str, Any]]
SUB = "11111111-2222-3333-4444-555555555555"
TARGET = {"subscription": SUB, "resourceGroup": "rg-ml", "factory": "adf-ml",
          "pipeline": "retrain-model"}


def drift_event(sample: Sample, **data: Any) -> ev.DatasetDriftDetected:
    raw = sample("dataset_drift_detected")
    raw["data"].update(data)
    event = ev.parse_event(raw)
    assert isinstance(event, ev.DatasetDriftDetected)
    return event


def settings(**env: str) -> RetrainSettings:
    return RetrainSettings.from_mapping(env)


def test_below_threshold_is_skipped_naming_coefficient_and_threshold(sample: Sample) -> None:
    result = decide(drift_event(sample, DriftCoefficient=0.25), settings())
    assert isinstance(result, ActionResult)
    assert result.outcome is Outcome.SKIPPED
    assert "0.2500" in result.detail and "0.3000" in result.detail


def test_per_monitor_threshold_overrides_the_core_one(sample: Sample) -> None:
    strict = settings(**{MONITOR_THRESHOLDS: json.dumps({"myDriftMonitor": 0.9}),
                         DEFAULT_TARGET: json.dumps(TARGET)})
    result = decide(drift_event(sample), strict)
    assert isinstance(result, ActionResult) and "0.9000" in result.detail
    lenient = settings(**{MONITOR_THRESHOLDS: json.dumps({"myDriftMonitor": 0.1}),
                          DEFAULT_TARGET: json.dumps(TARGET)})
    plan = decide(drift_event(sample, DriftCoefficient=0.2), lenient)
    assert isinstance(plan, RetrainPlan) and plan.threshold == 0.1


def test_coefficient_equal_to_threshold_retrains(sample: Sample) -> None:
    plan = decide(drift_event(sample, DriftCoefficient=0.3),
                  settings(**{DEFAULT_TARGET: json.dumps(TARGET)}))
    assert isinstance(plan, RetrainPlan)


def test_routed_monitor_gets_its_target_and_parameters(sample: Sample) -> None:
    event = drift_event(sample)
    plan = decide(event, settings(**{ROUTES: json.dumps({"myDriftMonitor": TARGET})}))
    assert isinstance(plan, RetrainPlan)
    assert plan.target.as_dict() == TARGET
    assert plan.parameters == {
        "monitorName": "myDriftMonitor", "monitorId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef",
        "driftRunId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380",
        "baseDatasetId": "3c56d136-0f64-4657-a0e8-5162089a88a3",
        "targetDatasetId": "d7e74d2e-c972-4266-b5fb-6c9c182d2a74",
        "driftCoefficient": 0.8350349068479208,
        "windowStart": "2019-07-04T00:00:00+00:00", "windowEnd": "2019-07-05T00:00:00+00:00",
        "amleventsRequestId": request_id_for(event)}
    assert "retrain-model" in plan.summary() and "adf-ml" in plan.summary()


def test_request_id_is_stable_per_event_and_differs_between_events(sample: Sample) -> None:
    first, again = drift_event(sample), drift_event(sample)
    assert request_id_for(first) == request_id_for(again)
    raw = sample("dataset_drift_detected")
    raw["id"] = "another-event"
    other = ev.parse_event(raw)
    assert isinstance(other, ev.DatasetDriftDetected)
    assert request_id_for(other) != request_id_for(first)


def test_renamed_and_dropped_parameters(sample: Sample) -> None:
    renamed = settings(**{DEFAULT_TARGET: json.dumps(TARGET), PARAMETER_NAMES: json.dumps(
        {"monitorName": "monitor", "windowStart": None, "windowEnd": None,
         "requestId": "reqId"})})
    plan = decide(drift_event(sample), renamed)
    assert isinstance(plan, RetrainPlan)
    assert plan.parameters["monitor"] == "myDriftMonitor"
    assert "windowStart" not in plan.parameters and "monitorName" not in plan.parameters
    assert plan.request_parameter == "reqId" and plan.parameters["reqId"] == plan.request_id


def test_unrouted_monitor_is_skipped_with_a_clear_reason(sample: Sample) -> None:
    routed_elsewhere = settings(**{ROUTES: json.dumps({"otherMonitor": TARGET})})
    for dry_run in (False, True):
        result = decide(drift_event(sample), routed_elsewhere, dry_run=dry_run)
        assert isinstance(result, ActionResult) and result.outcome is Outcome.SKIPPED
        assert "myDriftMonitor" in result.detail and ROUTES in result.detail


def test_monitor_routed_to_none_is_skipped_even_with_a_default(sample: Sample) -> None:
    off = settings(**{ROUTES: json.dumps({"myDriftMonitor": None}),
                      DEFAULT_TARGET: json.dumps(TARGET)})
    result = decide(drift_event(sample), off)
    assert isinstance(result, ActionResult) and result.outcome is Outcome.SKIPPED


def test_no_settings_and_dry_run_uses_the_placeholder(sample: Sample) -> None:
    plan = decide(drift_event(sample), settings(), dry_run=True)
    assert isinstance(plan, RetrainPlan) and plan.placeholder
    assert plan.target == PLACEHOLDER_TARGET
    assert PLACEHOLDER_TARGET.pipeline in plan.summary() and DEFAULT_TARGET in plan.summary()
    real = decide(drift_event(sample), settings(), dry_run=False)
    assert isinstance(real, ActionResult) and real.outcome is Outcome.SKIPPED


def test_demo_defaults_plan_the_sample_run(make_dispatcher: Callable[..., Dispatcher],
                                          sample: Sample) -> None:
    # GIVEN only the embedded defaults WHEN the sample drift event arrives THEN a planned run
    result = make_dispatcher().dispatch(sample("dataset_drift_detected"),
                                        function="on_drift_detected")
    assert result.outcome is Outcome.PLANNED
    assert PLACEHOLDER_TARGET.pipeline in result.action and "0.835" in result.action
    detail = json.loads(result.detail)
    assert detail["parameters"]["driftCoefficient"] == 0.8350349068479208
    assert detail["placeholder"] is True


def test_bad_retrain_settings_keep_the_event_for_retry_naming_the_setting(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    result = make_dispatcher(**{ROUTES: "{oops"}).dispatch(
        sample("dataset_drift_detected"), function="on_drift_detected")
    # A bad setting is the operator's to fix: the event is retried, not lost.
    assert result.outcome is Outcome.RETRY and ROUTES in result.detail


# -- v2 model-monitor breaches (RunStatusChanged carrying the breach tag) ------------------------

SIGNAL, MONITOR = "credit_card_fraud_monitor_data_drift", "credit_card_fraud_monitor"
WS = (f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices"
      "/workspaces/ws-ml")
COMPONENT = WS + "/components/retrain_fraud/versions/4"
TAG = "azureml_modelmonitor_threshold_breached"


def breach_event(sample: Sample, *, status: str = "Failed", message: str | None = None,
                 event_id: str | None = None) -> ev.RunStatusChanged:
    raw = sample("model_monitor_breach")
    raw["data"]["runStatus"] = status
    if message is not None:
        raw["data"]["runTags"] = {TAG: message}
    if event_id is not None:
        raw["id"] = event_id
    event = ev.parse_event(raw)
    assert isinstance(event, ev.RunStatusChanged)
    return event


def only_js(value: float) -> str:
    """A breach message with one violation (Jensen-Shannon distance over 0.1)."""
    return (f"The signal '{SIGNAL}' has failed due to one or more features violating metric "
            f"thresholds.\nThe feature names and their corresponding computed metric values "
            f"violating the threshold are \n['{{\"group\":\"Amount\",\"metric_value\":{value},"
            f"\"metric_name\":\"jensen_shannon_distance\",\"threshold_value\":0.1}}']\n")


def test_a_breach_plans_one_job_with_what_breached(sample: Sample) -> None:
    event = breach_event(sample)
    plan = decide(event, settings(**{ROUTES: json.dumps({MONITOR: COMPONENT})}))
    assert isinstance(plan, RetrainPlan) and plan.breach is not None
    assert (plan.breach.signal, plan.breach.monitor) == (SIGNAL, MONITOR)
    assert plan.breach.features == ("TransactionAmount", "MerchantCategory")
    assert plan.target.as_dict() == {"kind": "aml_pipeline_component", "id": COMPONENT}
    assert plan.job_name == f"amlevents-{request_id_for(event)}"
    assert plan.experiment == f"amlevents-retrain-{MONITOR}"
    assert plan.parameters == {
        "monitorName": MONITOR, "signalName": SIGNAL, "driftRunId": event.run_id,
        "features": "TransactionAmount,MerchantCategory",
        "violations": json.dumps([
            {"feature": "TransactionAmount", "metric": "jensen_shannon_distance", "value": 0.41,
             "threshold": 0.1},
            {"feature": "MerchantCategory", "metric": "pearsons_chi_squared_test", "value": 0.012,
             "threshold": 0.05}], separators=(",", ":")),
        "windowEnd": event.envelope.event_time, "amleventsRequestId": request_id_for(event)}
    assert plan.tags["amlevents.eventId"] == event.envelope.id
    assert plan.tags["amlevents.signal"] == SIGNAL
    assert plan.coefficient is None and plan.threshold is None
    detail = plan.as_dict()
    assert detail["breach"]["features"] == ["TransactionAmount", "MerchantCategory"]
    assert "TransactionAmount: jensen_shannon_distance 0.41 > 0.1" in detail["breach"]["violations"]
    assert plan.summary().startswith(f"retrain on breach of signal {SIGNAL} (features "
                                     "TransactionAmount, MerchantCategory): submit Azure ML")


def test_the_drift_threshold_does_not_apply_to_breaches_but_an_own_one_does(
        sample: Sample) -> None:
    # The monitor applied its own thresholds; AMLEVENTS_DRIFT_THRESHOLD is v1's coefficient.
    routed = {ROUTES: json.dumps({MONITOR: COMPONENT})}
    assert isinstance(decide(breach_event(sample), settings(
        **routed, AMLEVENTS_DRIFT_THRESHOLD="1")), RetrainPlan)
    # a threshold set for the signal or its monitor raises the bar
    strict = settings(**routed, **{MONITOR_THRESHOLDS: json.dumps({MONITOR: 0.5})})
    skipped = decide(breach_event(sample, message=only_js(0.41)), strict)
    assert isinstance(skipped, ActionResult) and skipped.outcome is Outcome.SKIPPED
    assert "0.5000" in skipped.detail and MONITOR_THRESHOLDS in skipped.detail
    plan = decide(breach_event(sample, message=only_js(0.62)), strict)
    assert isinstance(plan, RetrainPlan) and plan.threshold == 0.5


def test_the_transition_back_is_recorded_not_acted_on(sample: Sample) -> None:
    result = decide(breach_event(sample, status="Completed"),
                    settings(**{ROUTES: json.dumps({MONITOR: COMPONENT})}))
    assert isinstance(result, ActionResult) and result.outcome is Outcome.SKIPPED
    assert result.action == "monitor recovered" and "Completed" in result.detail
    assert result.detail.endswith("the monitor recovered (or this event is late); "
                                  "nothing to retrain")


def test_a_breach_message_naming_no_signal_is_skipped(sample: Sample) -> None:
    result = decide(breach_event(sample, message="something new happened"),
                    settings(**{DEFAULT_TARGET: COMPONENT}))
    assert isinstance(result, ActionResult) and result.outcome is Outcome.SKIPPED
    assert "names no signal" in result.detail


def test_an_unrouted_breach_is_skipped_and_dry_run_plans_a_placeholder_component(
        sample: Sample) -> None:
    unrouted = decide(breach_event(sample), settings(**{ROUTES: json.dumps({"other": COMPONENT})}))
    assert isinstance(unrouted, ActionResult) and SIGNAL in unrouted.detail
    assert ROUTES in unrouted.detail and DEFAULT_TARGET in unrouted.detail
    muted = decide(breach_event(sample), settings(**{ROUTES: json.dumps({SIGNAL: None}),
                                                     DEFAULT_TARGET: COMPONENT}), dry_run=True)
    assert isinstance(muted, ActionResult) and "is null" in muted.detail
    plan = decide(breach_event(sample), settings(), dry_run=True)
    assert isinstance(plan, RetrainPlan) and plan.placeholder
    assert plan.target == PLACEHOLDER_COMPONENT and DEFAULT_TARGET in plan.summary()


def test_breach_parameters_follow_the_renaming_and_dropping_rules(sample: Sample) -> None:
    plan = decide(breach_event(sample), settings(**{
        DEFAULT_TARGET: COMPONENT,
        PARAMETER_NAMES: json.dumps({"signalName": "signal", "violations": None})}))
    assert isinstance(plan, RetrainPlan)
    assert plan.parameters["signal"] == SIGNAL
    assert "violations" not in plan.parameters and "signalName" not in plan.parameters


def test_demo_defaults_plan_the_breach_sample_and_record_its_recovery(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN only the embedded defaults WHEN the breach sample arrives on on_run_status
    dispatcher = make_dispatcher()
    result = dispatcher.dispatch(sample("model_monitor_breach"), function="on_run_status")
    # THEN people are told what breached, and a retraining run is planned with the details
    assert result.outcome is Outcome.PLANNED and "Model monitor breach" in result.action
    [retrain] = result.also
    assert retrain.outcome is Outcome.PLANNED and SIGNAL in retrain.action
    detail = json.loads(retrain.detail)
    assert detail["breach"]["signal"] == SIGNAL and detail["placeholder"] is True
    assert detail["breach"]["features"] == ["TransactionAmount", "MerchantCategory"]
    # AND the recovery is recorded, nothing planned
    recovered = dispatcher.dispatch(sample("model_monitor_recovered"), function="on_run_status")
    assert recovered.outcome is Outcome.SKIPPED and recovered.also == ()


def test_the_default_threshold_retrains_at_0_4_and_skips_at_0_29(sample: Sample) -> None:
    routed = settings(**{DEFAULT_TARGET: json.dumps(TARGET)})  # no AMLEVENTS_DRIFT_THRESHOLD
    plan = decide(drift_event(sample, DriftCoefficient=0.4), routed)
    assert isinstance(plan, RetrainPlan) and plan.threshold == 0.3
    below = decide(drift_event(sample, DriftCoefficient=0.29), routed)
    assert isinstance(below, ActionResult) and below.outcome is Outcome.SKIPPED


# -- whole messages, tags and boundaries (an operator reads these verbatim) ----------------------

ROUTES_NOWHERE = "add the signal or the monitor to AMLEVENTS_RETRAIN_ROUTES or set " \
    "AMLEVENTS_RETRAIN_DEFAULT_TARGET"


def breach_message(signal: str, *values: float) -> str:
    """A breach message naming `signal`, one Jensen-Shannon violation per value (F0, F1, ...)."""
    items = ",".join(
        f"'{{\"group\":\"F{i}\",\"metric_value\":{value},"
        f"\"metric_name\":\"jensen_shannon_distance\",\"threshold_value\":0.1}}'"
        for i, value in enumerate(values))
    return (f"The signal '{signal}' has failed due to one or more features violating metric "
            f"thresholds.\nThe feature names and their corresponding computed metric values "
            f"violating the threshold are \n[{items}]\n")


def test_drift_skips_read_whole(sample: Sample) -> None:
    below = decide(drift_event(sample, DriftCoefficient=0.25), settings())
    assert below == ActionResult.skipped(
        "drift coefficient 0.2500 of monitor myDriftMonitor is below threshold 0.3000",
        action="no retraining")
    unrouted = decide(drift_event(sample), settings(**{ROUTES: json.dumps({"other": TARGET})}))
    assert unrouted == ActionResult.skipped(
        "no retraining target for drift monitor myDriftMonitor "
        "(01d29aa4-e6a4-470a-9ef3-66660d21f8ef): add it to AMLEVENTS_RETRAIN_ROUTES or set "
        "AMLEVENTS_RETRAIN_DEFAULT_TARGET", action="no retraining")


def test_a_drift_plan_carries_its_identity_and_tags(sample: Sample) -> None:
    event = drift_event(sample)
    plan = decide(event, settings(**{DEFAULT_TARGET: json.dumps(TARGET)}))
    assert isinstance(plan, RetrainPlan)
    request_id = request_id_for(event)
    assert (plan.monitor, plan.monitor_id, plan.drift_run_id) == (
        "myDriftMonitor", "01d29aa4-e6a4-470a-9ef3-66660d21f8ef",
        "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380")
    assert (plan.coefficient, plan.threshold, plan.placeholder) == (0.8350349068479208, 0.3, False)
    assert (plan.request_id, plan.request_parameter, plan.event_id) == (
        request_id, "amleventsRequestId", "831e1650-001e-001b-66ab-eeb76e069631")
    assert (plan.job_name, plan.experiment, plan.breach) == (
        f"amlevents-{request_id}", "amlevents-retrain-myDriftMonitor", None)
    assert plan.tags == {
        "amlevents.eventId": "831e1650-001e-001b-66ab-eeb76e069631",
        "amlevents.eventType": "Microsoft.MachineLearningServices.DatasetDriftDetected",
        "amlevents.requestId": request_id, "amlevents.monitor": "myDriftMonitor",
        "amlevents.source": "DatasetDriftDetected",
        "amlevents.monitoringRunId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380"}


def test_a_breach_plan_carries_its_identity_and_tags(sample: Sample) -> None:
    event = breach_event(sample)
    plan = decide(event, settings(**{DEFAULT_TARGET: COMPONENT}))
    assert isinstance(plan, RetrainPlan) and plan.breach is not None
    request_id = request_id_for(event)
    run_id = "credit_card_fraud_monitor_data_drift_evaluate_5e8a0c"
    assert (plan.monitor, plan.monitor_id, plan.drift_run_id, plan.placeholder) == (
        MONITOR, "", run_id, False)
    assert (plan.request_id, plan.request_parameter, plan.event_id) == (
        request_id, "amleventsRequestId", "6a1f0e52-3c2b-4d8e-9f47-b2d1c0a9e8f7")
    assert (plan.breach.monitoring_run_id, plan.breach.topic) == (run_id, event.envelope.topic)
    assert plan.breach.violations == event.monitor_breach.violations  # type: ignore[union-attr]
    assert plan.tags == {
        "amlevents.eventId": "6a1f0e52-3c2b-4d8e-9f47-b2d1c0a9e8f7",
        "amlevents.eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "amlevents.requestId": request_id, "amlevents.monitor": MONITOR,
        "amlevents.source": "model monitor breach", "amlevents.monitoringRunId": run_id,
        "amlevents.signal": SIGNAL}


def test_tags_are_cut_to_256_characters(sample: Sample) -> None:
    # Azure ML refuses longer tag values; the signal is the one the event author controls.
    signal = "s" * 300
    plan = decide(breach_event(sample, message=breach_message(signal, 0.4)),
                  settings(**{DEFAULT_TARGET: COMPONENT}))
    assert isinstance(plan, RetrainPlan)
    assert plan.tags["amlevents.signal"] == "s" * 256
    assert plan.parameters["signalName"] == signal  # parameters are not tags: kept whole


def test_breach_skips_read_whole(sample: Sample) -> None:
    routed = settings(**{ROUTES: json.dumps({MONITOR: COMPONENT})})
    run = "credit_card_fraud_monitor_data_drift_evaluate_5e8a0c"
    assert decide(breach_event(sample, status="Completed"), routed) == ActionResult.skipped(
        f"monitoring run {run} of signal {SIGNAL} is Completed, not Failed: the monitor "
        "recovered (or this event is late); nothing to retrain", action="monitor recovered")
    assert decide(breach_event(sample, message="something new happened"), routed) == \
        ActionResult.skipped(
            f"monitoring run {run} failed on a threshold, but its breach message names no signal "
            "amlevents can read; nothing is routed", action="no retraining")
    unrouted = decide(breach_event(sample), settings(**{ROUTES: json.dumps({"other": COMPONENT})}))
    assert unrouted == ActionResult.skipped(
        f"no retraining target for signal {SIGNAL} of monitor {MONITOR} (no route): "
        + ROUTES_NOWHERE, action="no retraining")
    muted = decide(breach_event(sample), settings(**{ROUTES: json.dumps({SIGNAL: None}),
                                                     DEFAULT_TARGET: COMPONENT}), dry_run=True)
    assert muted == ActionResult.skipped(
        f"no retraining target for signal {SIGNAL} of monitor {MONITOR} (route {SIGNAL!r} is "
        "null): " + ROUTES_NOWHERE, action="no retraining")


def test_a_breach_without_a_monitor_name_says_so(sample: Sample) -> None:
    # "zz" has no prefix the experiment name starts with: the monitor cannot be told.
    unrouted = decide(breach_event(sample, message=breach_message("zz", 0.4)),
                      settings(**{ROUTES: json.dumps({"other": COMPONENT})}))
    assert unrouted == ActionResult.skipped(
        "no retraining target for signal zz of monitor ? (no route): " + ROUTES_NOWHERE,
        action="no retraining")


def test_an_own_threshold_skip_names_up_to_three_violations(sample: Sample) -> None:
    strict = settings(**{ROUTES: json.dumps({MONITOR: COMPONENT}),
                         MONITOR_THRESHOLDS: json.dumps({SIGNAL: 0.9})})
    skipped = decide(breach_event(sample, message=breach_message(SIGNAL, 0.2, 0.3, 0.4, 0.5)),
                     strict)
    assert skipped == ActionResult.skipped(
        f"no breached metric of signal {SIGNAL} goes beyond 0.9000, its threshold in "
        f"AMLEVENTS_DRIFT_MONITOR_THRESHOLDS ({SIGNAL!r}): F0: jensen_shannon_distance 0.2 > 0.1; "
        "F1: jensen_shannon_distance 0.3 > 0.1; F2: jensen_shannon_distance 0.4 > 0.1",
        action="no retraining")


def test_an_own_threshold_skip_with_no_readable_violation_says_so(sample: Sample) -> None:
    strict = settings(**{ROUTES: json.dumps({MONITOR: COMPONENT}),
                         MONITOR_THRESHOLDS: json.dumps({MONITOR: 0.5})})
    skipped = decide(breach_event(sample, message=breach_message(SIGNAL)), strict)
    assert skipped == ActionResult.skipped(
        f"no breached metric of signal {SIGNAL} goes beyond 0.5000, its threshold in "
        f"AMLEVENTS_DRIFT_MONITOR_THRESHOLDS ({MONITOR!r}): none readable",
        action="no retraining")


def test_a_metric_exactly_at_the_own_threshold_goes_beyond_it(sample: Sample) -> None:
    # higher is worse for a distance: reaching the operator's bar is enough
    strict = settings(**{ROUTES: json.dumps({MONITOR: COMPONENT}),
                         MONITOR_THRESHOLDS: json.dumps({MONITOR: 0.5})})
    plan = decide(breach_event(sample, message=breach_message(SIGNAL, 0.5)), strict)
    assert isinstance(plan, RetrainPlan) and plan.threshold == 0.5
    # lower is worse for a p-value: a p-value at the bar goes beyond it, one just over does not
    p_value = breach_message(SIGNAL, 0.02).replace("jensen_shannon_distance",
                                                    "pearsons_chi_squared_test")
    for bar, retrains in ((0.02, True), (0.0199, False)):
        own = settings(**{ROUTES: json.dumps({MONITOR: COMPONENT}),
                          MONITOR_THRESHOLDS: json.dumps({MONITOR: bar})})
        assert isinstance(decide(breach_event(sample, message=p_value), own),
                          RetrainPlan) is retrains


def test_experiment_names_keep_only_safe_characters() -> None:
    assert experiment_for("my monitor/v2") == "amlevents-retrain-my-monitor-v2"
    assert experiment_for("  ") == "amlevents-retrain-monitor"
    assert experiment_for("a_b-c") == "amlevents-retrain-a_b-c"
    assert experiment_for("-XmonX-") == "amlevents-retrain-XmonX"  # only hyphens are trimmed
    assert experiment_for("m" * 300) == ("amlevents-retrain-" + "m" * 300)[:255]
    assert len(experiment_for("m" * 300)) == 255


def test_a_recovery_naming_no_signal_says_so(sample: Sample) -> None:
    result = decide(breach_event(sample, status="Completed", message="something else"),
                    settings(**{DEFAULT_TARGET: COMPONENT}))
    assert result == ActionResult.skipped(
        "monitoring run credit_card_fraud_monitor_data_drift_evaluate_5e8a0c of signal ? is "
        "Completed, not Failed: the monitor recovered (or this event is late); nothing to retrain",
        action="monitor recovered")


def test_a_breach_is_decided_live_unless_told_otherwise(sample: Sample) -> None:
    # called directly (as the handler may), no dry run means no placeholder plan
    result = decide_breach(breach_event(sample), settings())
    assert isinstance(result, ActionResult) and result.outcome is Outcome.SKIPPED
    assert isinstance(decide_breach(breach_event(sample), settings(), dry_run=True), RetrainPlan)


def test_the_monitor_the_event_names_wins_over_a_longer_prefix_of_the_signal(
        sample: Sample) -> None:
    # "credit_card_fraud_monitor_data" is a longer prefix of the signal than the monitor's name,
    # but the event says which monitor breached: its route and threshold apply
    other = COMPONENT.replace("retrain_fraud", "retrain_other")
    longer = f"{MONITOR}_data"
    plan = decide(breach_event(sample), settings(**{ROUTES: json.dumps({MONITOR: COMPONENT,
                                                                        longer: other})}))
    assert isinstance(plan, RetrainPlan) and plan.target.as_dict()["id"] == COMPONENT
    strict = settings(**{ROUTES: json.dumps({MONITOR: COMPONENT}),
                         MONITOR_THRESHOLDS: json.dumps({MONITOR: 0.9, longer: 0.01})})
    skipped = decide(breach_event(sample, message=only_js(0.41)), strict)
    assert isinstance(skipped, ActionResult) and skipped.detail.startswith(
        f"no breached metric of signal {SIGNAL} goes beyond 0.9000, its threshold in "
        f"AMLEVENTS_DRIFT_MONITOR_THRESHOLDS ({MONITOR!r}):")


def test_drift_is_decided_live_unless_told_otherwise(sample: Sample) -> None:
    # no dry run given: no placeholder plan, even with no target configured at all
    assert decide(drift_event(sample), settings()) == ActionResult.skipped(
        "no retraining target for drift monitor myDriftMonitor "
        "(01d29aa4-e6a4-470a-9ef3-66660d21f8ef): add it to AMLEVENTS_RETRAIN_ROUTES or set "
        "AMLEVENTS_RETRAIN_DEFAULT_TARGET", action="no retraining")
