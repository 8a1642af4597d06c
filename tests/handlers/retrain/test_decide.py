"""Drift → retraining decisions: threshold, routing, parameters, placeholder under dry-run."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from handlers.events import parse as ev
from handlers.outcome import ActionResult, Outcome
from handlers.retrain.decide import decide, request_id_for
from handlers.retrain.plan import RetrainPlan
from handlers.retrain.settings import (
    DEFAULT_TARGET,
    MONITOR_THRESHOLDS,
    PARAMETER_NAMES,
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
