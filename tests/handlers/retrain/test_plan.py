"""What retraining decides (handlers/retrain/plan.py): the plan's key, lines and details."""

from __future__ import annotations

import dataclasses

from handlers.events.types import Violation
from handlers.retrain.plan import BreachFacts, RetrainPlan
from handlers.retrain.settings import BatchEndpointTarget, ComponentTarget, DataFactoryTarget

FACTORY = DataFactoryTarget("sub-1", "rg-1", "adf-1", "retrain")
COMPONENT = ComponentTarget("sub-1", "rg-1", "ws-1", "train", "3")
BATCH = BatchEndpointTarget("sub-1", "rg-1", "ws-1", "retrain-ep")
WS_ID = ("/subscriptions/sub-1/resourceGroups/rg-1/providers/"
         "Microsoft.MachineLearningServices/workspaces/ws-1")
TOPIC = WS_ID


def _drift(**changes: object) -> RetrainPlan:
    plan = RetrainPlan(monitor="myDriftMonitor", monitor_id="drift-id", drift_run_id="run-1",
                       coefficient=0.8350349, threshold=0.3, target=FACTORY,
                       parameters={"requestId": "req-1"}, request_id="req-1",
                       request_parameter="requestId")
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


def _breach(*features: str) -> BreachFacts:
    violations = tuple(Violation(f, "jensen_shannon_distance", 0.41, 0.1) for f in features)
    return BreachFacts(signal="data-drift", monitor="fraud-monitor", monitoring_run_id="mrun-1",
                       topic=f" {TOPIC.upper()} ", violations=violations)


def test_a_drift_plan_whole() -> None:
    plan = _drift()
    assert (plan.monitor_key, plan.source) == ("drift-id", "DatasetDriftDetected")
    assert _drift(monitor_id="").monitor_key == "myDriftMonitor"
    assert plan.reason() == "drift monitor myDriftMonitor (drift 0.835 >= 0.300)"
    assert _drift(threshold=None).reason() == "drift monitor myDriftMonitor"
    assert _drift(coefficient=None).reason() == "drift monitor myDriftMonitor"
    assert plan.summary() == ("start Data Factory pipeline retrain in factory adf-1 for drift "
                              "monitor myDriftMonitor (drift 0.835 >= 0.300)")
    assert plan.as_dict() == {
        "monitor": "myDriftMonitor", "monitor_id": "drift-id", "drift_run_id": "run-1",
        "coefficient": 0.8350349, "threshold": 0.3,
        "target": {"subscription": "sub-1", "resourceGroup": "rg-1", "factory": "adf-1",
                   "pipeline": "retrain"},
        "parameters": {"requestId": "req-1"}, "request_id": "req-1", "placeholder": False}


def test_a_placeholder_plan_says_which_settings_to_set() -> None:
    assert _drift(placeholder=True).summary().endswith(
        " [placeholder target: set AMLEVENTS_RETRAIN_ROUTES or "
        "AMLEVENTS_RETRAIN_DEFAULT_TARGET]")
    assert _drift(placeholder=True).as_dict()["placeholder"] is True


def test_azure_ml_targets_name_the_job() -> None:
    component = _drift(target=COMPONENT, job_name="amlevents-retrain-1", experiment="retrain")
    assert component.summary() == (
        "submit Azure ML pipeline job amlevents-retrain-1 from component train:3 in workspace "
        "ws-1 for drift monitor myDriftMonitor (drift 0.835 >= 0.300)")
    latest = _drift(target=dataclasses.replace(COMPONENT, version=None), job_name="j")
    assert "from component train:latest in workspace ws-1" in latest.summary()
    details = component.as_dict()
    assert (details["target"], details["job_name"], details["experiment"]) == (
        {"kind": "aml_pipeline_component", "id": f"{WS_ID}/components/train/versions/3"},
        "amlevents-retrain-1", "retrain")
    batch = _drift(target=BATCH, job_name="j-2")
    assert batch.summary().startswith(
        "invoke Azure ML batch endpoint retrain-ep in workspace ws-1 (job j-2) for drift")
    assert batch.as_dict()["target"] == {"kind": "aml_batch_endpoint",
                                         "id": f"{WS_ID}/batchEndpoints/retrain-ep"}


def test_a_breach_plan_leads_with_what_breached() -> None:
    breach = _breach("age", "income", "age")
    plan = _drift(breach=breach, monitor="fraud-monitor", coefficient=None, threshold=None,
                  target=COMPONENT, job_name="j", confirmation="confirmed: run mrun-1 failed")
    assert plan.monitor_key == f"breach:{TOPIC.lower()}/fraud-monitor"
    assert plan.source == "model monitor breach"
    assert breach.features == ("age", "income")
    assert plan.reason() == "model monitor breach of signal data-drift (features age, income)"
    assert plan.summary() == (
        "retrain on breach of signal data-drift (features age, income): submit Azure ML "
        "pipeline job j from component train:3 in workspace ws-1")
    details = plan.as_dict()
    assert details["source"] == "model monitor breach"
    assert details["breach"] == {
        "signal": "data-drift", "monitor": "fraud-monitor", "monitoring_run_id": "mrun-1",
        "features": ["age", "income"],
        "violations": ["age: jensen_shannon_distance 0.41 > 0.1",
                       "income: jensen_shannon_distance 0.41 > 0.1",
                       "age: jensen_shannon_distance 0.41 > 0.1"]}
    assert details["breach_confirmation"] == "confirmed: run mrun-1 failed"
    assert "breach_confirmation" not in _drift().as_dict()


def test_a_breach_shows_five_features_and_counts_the_rest() -> None:
    assert _breach(*"abcdefg").describe() == "signal data-drift (features a, b, c, d, e, +2 more)"
    assert _breach(*"abcde").describe() == "signal data-drift (features a, b, c, d, e)"
    assert _breach("").describe() == "signal data-drift"  # a violation of no one feature
