"""Retraining settings: routes, default target, per-monitor thresholds, parameter names, limits."""

from __future__ import annotations

import json

import pytest

from handlers.errors import SettingError
from handlers.retrain.settings import (
    AML_BATCH_ENDPOINT,
    AML_COMPONENT,
    ARM_ENDPOINT,
    COOLDOWN_S,
    DATA_FACTORY,
    DEFAULT_ARM_ENDPOINT,
    DEFAULT_PARAMETER_NAMES,
    DEFAULT_TARGET,
    MONITOR_THRESHOLDS,
    PARAMETER_NAMES,
    READ_RETRIES,
    RECONCILE_GRACE_S,
    ROUTES,
    TIMEOUT_S,
    BatchEndpointTarget,
    ComponentTarget,
    DataFactoryTarget,
    RetrainSettings,
    target_from_dict,
)

SUB = "11111111-2222-3333-4444-555555555555"
TARGET = {"subscription": SUB, "resourceGroup": "rg-ml", "factory": "adf-ml",
          "pipeline": "retrain-model"}
PIPELINE_ID = (f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.DataFactory"
               "/factories/adf-ml/pipelines/retrain-model")
MONITOR_ID = "01d29aa4-e6a4-470a-9ef3-66660d21f8ef"
ML_WS = (f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices"
         "/workspaces/ws-ml")


def test_no_settings_means_no_targets_and_documented_defaults() -> None:
    settings = RetrainSettings.from_mapping({})
    assert not settings.has_targets
    assert settings.target_for("myDriftMonitor", MONITOR_ID) is None
    assert settings.threshold_for("myDriftMonitor", MONITOR_ID, 0.3) == 0.3
    assert dict(settings.parameter_names) == dict(DEFAULT_PARAMETER_NAMES)
    assert settings.cooldown_s == 0.0
    assert settings.arm_endpoint == DEFAULT_ARM_ENDPOINT
    assert settings.timeout_s == 30.0
    assert settings.read_retries == 2


def test_routes_by_name_then_id_then_default() -> None:
    other = {**TARGET, "pipeline": "retrain-other"}
    settings = RetrainSettings.from_mapping({
        ROUTES: json.dumps({"myDriftMonitor": TARGET, MONITOR_ID.upper(): other,
                            "quietMonitor": None}),
        DEFAULT_TARGET: PIPELINE_ID.replace("retrain-model", "retrain-default")})
    assert settings.target_for("myDriftMonitor", "x") == DataFactoryTarget(
        SUB, "rg-ml", "adf-ml", "retrain-model")
    assert settings.target_for("renamed", MONITOR_ID) == DataFactoryTarget.from_dict(other)
    assert settings.target_for("quietMonitor", "y") is None
    assert settings.target_for("unknown", "z") == DataFactoryTarget.from_dict(
        {**TARGET, "pipeline": "retrain-default"})


def test_a_route_may_be_an_arm_pipeline_id() -> None:
    settings = RetrainSettings.from_mapping({ROUTES: json.dumps({"m": PIPELINE_ID})})
    assert settings.target_for("m", "") == DataFactoryTarget(SUB, "rg-ml", "adf-ml",
                                                             "retrain-model")


def test_default_target_as_json_object() -> None:
    settings = RetrainSettings.from_mapping({DEFAULT_TARGET: json.dumps(TARGET)})
    assert settings.has_targets
    assert settings.target_for("any", "") == DataFactoryTarget.from_dict(TARGET)


def test_per_monitor_thresholds_by_name_or_id() -> None:
    settings = RetrainSettings.from_mapping(
        {MONITOR_THRESHOLDS: json.dumps({"myDriftMonitor": 0.9, MONITOR_ID: 0.1})})
    assert settings.threshold_for("myDriftMonitor", "other", 0.3) == 0.9
    assert settings.threshold_for("renamed", MONITOR_ID, 0.3) == 0.1
    assert settings.threshold_for("unknown", "none", 0.3) == 0.3


def test_parameter_names_can_be_renamed_and_dropped() -> None:
    settings = RetrainSettings.from_mapping({PARAMETER_NAMES: json.dumps(
        {"monitorName": "monitor", "windowStart": "", "windowEnd": None})})
    # renamed in place, dropped ones gone (empty or null alike), the rest as documented
    expected = {**DEFAULT_PARAMETER_NAMES, "monitorName": "monitor"}
    del expected["windowStart"], expected["windowEnd"]
    assert dict(settings.parameter_names) == expected


_ACCEPTED = ("must be a JSON object or the resource id of a Data Factory pipeline "
             "(/subscriptions/…/factories/…/pipelines/…), an Azure ML component "
             "(…/workspaces/…/components/NAME[/versions/V]) or an Azure ML batch endpoint "
             "(…/workspaces/…/batchEndpoints/NAME)")
_NOT_JSON = ("is not valid JSON: Expecting property name enclosed in double quotes: line 1 "
             "column 2 (char 1)")


# Each refusal is compared whole: the operator reads exactly this in the health check and logs.
@pytest.mark.parametrize(("env", "setting", "messages"), [
    ({ROUTES: "{not json"}, ROUTES, [_NOT_JSON]),
    ({ROUTES: "[1]"}, ROUTES, ["must be a JSON object"]),
    ({ROUTES: json.dumps({"m": {**TARGET, "factory": "a_b"}})}, ROUTES,
     ["monitor 'm': factory 'a_b' is not a valid Data Factory name"]),
    ({ROUTES: json.dumps({"m": {**TARGET, "subscription": "prod"}})}, ROUTES,
     ["monitor 'm': subscription 'prod' is not a subscription id (GUID)"]),
    ({ROUTES: json.dumps({"m": {"factory": "adf"}})}, ROUTES,
     ["monitor 'm': subscription is required", "monitor 'm': resourceGroup is required",
      "monitor 'm': pipeline is required"]),
    ({ROUTES: json.dumps({"m": {**TARGET, "extra": 1}})}, ROUTES,
     ["monitor 'm': unknown key 'extra'"]),
    ({ROUTES: json.dumps({"m": {**TARGET, "pipeline": "a/b"}})}, ROUTES,
     ["monitor 'm': pipeline 'a/b' is not a valid pipeline name"]),
    ({ROUTES: json.dumps({"m": "/subscriptions/x"})}, ROUTES, ["monitor 'm': " + _ACCEPTED]),
    ({DEFAULT_TARGET: "adf-ml/retrain"}, DEFAULT_TARGET, [_ACCEPTED]),
    ({DEFAULT_TARGET: "{bad"}, DEFAULT_TARGET, [_NOT_JSON]),
    ({MONITOR_THRESHOLDS: json.dumps({"m": 1.5})}, MONITOR_THRESHOLDS,
     ["monitor 'm': must be a number between 0 and 1, got 1.5"]),
    ({MONITOR_THRESHOLDS: json.dumps({"m": True})}, MONITOR_THRESHOLDS,
     ["monitor 'm': must be a number between 0 and 1, got True"]),
    ({PARAMETER_NAMES: json.dumps({"nope": "x"})}, PARAMETER_NAMES,
     ["unknown field 'nope' (known: monitorName, monitorId, driftRunId, baseDatasetId, "
      "targetDatasetId, driftCoefficient, windowStart, windowEnd, signalName, features, "
      "violations, requestId)"]),
    ({PARAMETER_NAMES: json.dumps({"requestId": ""})}, PARAMETER_NAMES,
     ["requestId cannot be turned off: redeliveries use it to find a run already started"]),
    ({PARAMETER_NAMES: json.dumps({"requestId": None})}, PARAMETER_NAMES,
     ["requestId cannot be turned off: redeliveries use it to find a run already started"]),
    ({PARAMETER_NAMES: json.dumps({"monitorId": "bad name"})}, PARAMETER_NAMES,
     ["monitorId: 'bad name' is not a valid parameter name"]),
    ({PARAMETER_NAMES: json.dumps({"monitorId": 7})}, PARAMETER_NAMES,
     ["monitorId: 7 is not a valid parameter name"]),
    ({PARAMETER_NAMES: json.dumps({"monitorId": "monitorName"})}, PARAMETER_NAMES,
     ["parameter name 'monitorName' is used twice"]),
    ({COOLDOWN_S: "-1"}, COOLDOWN_S, ["must be between 0.0 and 2592000.0, got -1"]),
    ({ARM_ENDPOINT: "http://insecure.example"}, ARM_ENDPOINT,
     ["must be an https:// URL, got 'http://insecure.example'"]),
    ({TIMEOUT_S: "0"}, TIMEOUT_S, ["must be between 0.05 and 600.0, got 0"]),
    ({READ_RETRIES: "many"}, READ_RETRIES, ["must be a whole number, got 'many'"]),
    ({ROUTES: json.dumps({"m": ML_WS.replace(SUB, "prod") + "/components/c"})}, ROUTES,
     ["monitor 'm': subscription 'prod' is not a subscription id (GUID)"]),
    ({ROUTES: json.dumps({"m": ML_WS.replace("/ws-ml", "/w") + "/components/c"})}, ROUTES,
     ["monitor 'm': workspace 'w' is not a valid Azure ML workspace name"]),
    ({ROUTES: json.dumps({"m": ML_WS + "/components/-c/versions/1"})}, ROUTES,
     ["monitor 'm': component '-c' is not a valid component name"]),
    ({ROUTES: json.dumps({"m": ML_WS + "/components/c/versions/a b"})}, ROUTES,
     ["monitor 'm': component version 'a b' is not a valid version"]),
    ({ROUTES: json.dumps({"m": ML_WS + "/batchEndpoints/1be"})}, ROUTES,
     ["monitor 'm': batch endpoint '1be' is not a valid endpoint name (3-32 characters, a "
      "letter first, letters, digits and hyphens)"]),
    ({DEFAULT_TARGET: ML_WS + "/onlineEndpoints/e"}, DEFAULT_TARGET, [_ACCEPTED]),
])
def test_bad_settings_are_named(env: dict[str, str], setting: str, messages: list[str]) -> None:
    with pytest.raises(SettingError) as caught:
        RetrainSettings.from_mapping(env)
    assert caught.value.setting == setting
    assert caught.value.problems == tuple((setting, message) for message in messages)


def test_the_target_kind_follows_from_the_resource_type() -> None:
    # GIVEN one route of each kind: a Data Factory pipeline, an Azure ML pipeline component (a
    # version, or the latest) and an Azure ML batch endpoint
    settings = RetrainSettings.from_mapping({ROUTES: json.dumps({
        "adf": PIPELINE_ID, "pinned": ML_WS + "/components/retrain_model/versions/3",
        "latest": ML_WS + "/components/retrain_model", "batch": ML_WS + "/batchEndpoints/retrain-be"})})
    assert settings.target_for("adf", "") == DataFactoryTarget(SUB, "rg-ml", "adf-ml",
                                                               "retrain-model")
    assert settings.target_for("pinned", "") == ComponentTarget(SUB, "rg-ml", "ws-ml",
                                                                "retrain_model", "3")
    latest = settings.target_for("latest", "")
    assert latest == ComponentTarget(SUB, "rg-ml", "ws-ml", "retrain_model", None)
    batch = settings.target_for("batch", "")
    assert batch == BatchEndpointTarget(SUB, "rg-ml", "ws-ml", "retrain-be")
    assert [t.kind for t in (settings.target_for("adf", ""), latest, batch) if t] == [
        DATA_FACTORY, AML_COMPONENT, AML_BATCH_ENDPOINT]
    # AND each round-trips through the ledger state's shape
    for target in (settings.target_for("adf", ""), latest, batch):
        assert target is not None and target_from_dict(target.as_dict()) == target
    assert isinstance(latest, ComponentTarget) and latest.resource_id == \
        ML_WS + "/components/retrain_model"


def test_breaches_route_per_signal_then_per_monitor() -> None:
    monitor, signal = "fraud_monitor", "fraud_monitor_data_drift"
    settings = RetrainSettings.from_mapping({
        ROUTES: json.dumps({"FRAUD_MONITOR_DATA_DRIFT": PIPELINE_ID, "fraud": None,
                            monitor: ML_WS + "/batchEndpoints/retrain-be"}),
        DEFAULT_TARGET: ML_WS + "/components/retrain_model",
        MONITOR_THRESHOLDS: json.dumps({monitor: 0.5})})
    # the signal's own route (any case) first
    assert settings.breach_target(signal, "")[0] == "FRAUD_MONITOR_DATA_DRIFT"
    # then the monitor, named by the event or as the longest prefix of the signal before `_`
    assert settings.breach_target("fraud_monitor_data_quality", monitor)[0] == monitor
    assert settings.breach_target("fraud_monitor_data_quality", "")[0] == monitor
    assert settings.breach_target("fraud_other", "")[0] == "fraud"  # routed to null: no retraining
    assert settings.breach_target("fraud_other", "")[1] is None
    # else the default
    assert settings.breach_target("churn_data_drift", "churn") == (
        None, ComponentTarget(SUB, "rg-ml", "ws-ml", "retrain_model"))
    assert settings.breach_threshold("fraud_monitor_prediction_drift", "") == (monitor, 0.5)
    assert settings.breach_threshold("churn_data_drift", "churn") is None


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingError) as caught:
        RetrainSettings.from_mapping({ROUTES: "{", COOLDOWN_S: "soon", ARM_ENDPOINT: "ftp://x"})
    named = {name for name, _ in caught.value.problems}
    assert named == {ROUTES, COOLDOWN_S, ARM_ENDPOINT}


def test_the_default_drift_threshold_is_0_3() -> None:
    from handlers.retrain.settings import RetrainSettings

    assert RetrainSettings.from_mapping({}).drift_threshold == 0.3


@pytest.mark.parametrize(("value", "valid"), [("0", True), ("1", True), ("-0.01", False),
                                              ("1.01", False)])
def test_the_drift_threshold_is_a_share_from_0_to_1(value: str, valid: bool) -> None:
    from handlers.retrain.settings import DRIFT_THRESHOLD, RetrainSettings

    if valid:
        assert RetrainSettings.from_mapping({DRIFT_THRESHOLD: value}).drift_threshold == float(value)
        return
    with pytest.raises(SettingError) as caught:
        RetrainSettings.from_mapping({DRIFT_THRESHOLD: value})
    assert caught.value.setting == DRIFT_THRESHOLD


def test_each_target_describes_itself_and_names_its_resource() -> None:
    adf = DataFactoryTarget(SUB, "rg-ml", "adf-ml", "retrain-model")
    assert adf.describe() == "Data Factory pipeline retrain-model in factory adf-ml"
    assert adf.resource_id == PIPELINE_ID
    assert adf.as_dict() == TARGET and DataFactoryTarget.from_dict(TARGET) == adf
    pinned = ComponentTarget(SUB, "rg-ml", "ws-ml", "retrain_model", "3")
    assert pinned.describe() == "Azure ML pipeline component retrain_model:3 in workspace ws-ml"
    assert pinned.workspace_id == ML_WS
    assert pinned.as_dict() == {"kind": AML_COMPONENT,
                                "id": ML_WS + "/components/retrain_model/versions/3"}
    latest = ComponentTarget(SUB, "rg-ml", "ws-ml", "retrain_model")
    assert latest.describe() == \
        "Azure ML pipeline component retrain_model:latest in workspace ws-ml"
    batch = BatchEndpointTarget(SUB, "rg-ml", "ws-ml", "retrain-be")
    assert batch.describe() == "Azure ML batch endpoint retrain-be in workspace ws-ml"
    assert batch.as_dict() == {"kind": AML_BATCH_ENDPOINT, "id": ML_WS + "/batchEndpoints/retrain-be"}


def test_a_stored_target_that_no_longer_reads_is_refused_naming_why() -> None:
    stored = {"kind": AML_COMPONENT, "id": ML_WS + "/components/-bad"}
    with pytest.raises(ValueError) as caught:
        target_from_dict(stored)
    assert str(caught.value) == (f"stored retraining target {stored!r}: component '-bad' is not "
                                 "a valid component name")


def test_every_limit_has_its_documented_default() -> None:
    settings = RetrainSettings.from_mapping({})
    assert (settings.drift_threshold, settings.cooldown_s, settings.timeout_s,
            settings.read_retries, settings.reconcile_grace_s) == (0.3, 0.0, 30.0, 2, 120.0)
    assert dict(settings.routes) == {} and dict(settings.thresholds) == {}
    assert settings.default_target is None


# Each limit at both ends: the bound itself is accepted, one step beyond is refused whole.
@pytest.mark.parametrize(("setting", "field", "lowest", "highest", "below", "above", "message"), [
    (COOLDOWN_S, "cooldown_s", "0", "2592000", "-0.5", "2592000.5",
     "must be between 0.0 and 2592000.0, got {}"),
    (TIMEOUT_S, "timeout_s", "0.05", "600", "0.04", "600.5",
     "must be between 0.05 and 600.0, got {}"),
    (READ_RETRIES, "read_retries", "0", "10", "-1", "11", "must be between 0 and 10, got {}"),
    (RECONCILE_GRACE_S, "reconcile_grace_s", "0", "86400", "-1", "86401",
     "must be between 0.0 and 86400.0, got {}"),
])
def test_each_limit_takes_its_bounds_and_refuses_beyond_them(
        setting: str, field: str, lowest: str, highest: str, below: str, above: str,
        message: str) -> None:
    for value in (lowest, highest):
        assert getattr(RetrainSettings.from_mapping({setting: value}), field) == float(value)
    for value in (below, above):
        with pytest.raises(SettingError) as caught:
            RetrainSettings.from_mapping({setting: value})
        assert caught.value.problems == ((setting, message.format(value)),)


@pytest.mark.parametrize("written", ["None", " NONE ", "none"])
def test_a_route_written_none_means_no_retraining(written: str) -> None:
    settings = RetrainSettings.from_mapping({
        ROUTES: json.dumps({"quietMonitor": written, "myDriftMonitor": TARGET}),
        DEFAULT_TARGET: PIPELINE_ID})
    assert dict(settings.routes) == {"quietMonitor": None,
                                     "myDriftMonitor": DataFactoryTarget.from_dict(TARGET)}
    assert settings.target_for("quietMonitor", "") is None  # not the default
