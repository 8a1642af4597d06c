"""Retraining settings: routes, default target, per-monitor thresholds, parameter names, limits."""

from __future__ import annotations

import json

import pytest

from handlers.errors import SettingError
from handlers.retrain.settings import (
    ARM_ENDPOINT,
    COOLDOWN_S,
    DEFAULT_ARM_ENDPOINT,
    DEFAULT_PARAMETER_NAMES,
    DEFAULT_TARGET,
    MONITOR_THRESHOLDS,
    PARAMETER_NAMES,
    READ_RETRIES,
    ROUTES,
    TIMEOUT_S,
    DataFactoryTarget,
    RetrainSettings,
)

SUB = "11111111-2222-3333-4444-555555555555"
TARGET = {"subscription": SUB, "resourceGroup": "rg-ml", "factory": "adf-ml",
          "pipeline": "retrain-model"}
PIPELINE_ID = (f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/Microsoft.DataFactory"
               "/factories/adf-ml/pipelines/retrain-model")
MONITOR_ID = "01d29aa4-e6a4-470a-9ef3-66660d21f8ef"


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
    names = settings.parameter_names
    assert names["monitorName"] == "monitor"
    assert "windowStart" not in names and "windowEnd" not in names
    assert names["requestId"] == "amleventsRequestId"


@pytest.mark.parametrize(("env", "setting", "fragment"), [
    ({ROUTES: "{not json"}, ROUTES, "not valid JSON"),
    ({ROUTES: "[1]"}, ROUTES, "JSON object"),
    ({ROUTES: json.dumps({"m": {**TARGET, "factory": "a_b"}})}, ROUTES, "factory 'a_b'"),
    ({ROUTES: json.dumps({"m": {**TARGET, "subscription": "prod"}})}, ROUTES, "GUID"),
    ({ROUTES: json.dumps({"m": {"factory": "adf"}})}, ROUTES, "pipeline is required"),
    ({ROUTES: json.dumps({"m": {**TARGET, "extra": 1}})}, ROUTES, "unknown key 'extra'"),
    ({ROUTES: json.dumps({"m": {**TARGET, "pipeline": "a/b"}})}, ROUTES, "pipeline 'a/b'"),
    ({ROUTES: json.dumps({"m": "/subscriptions/x"})}, ROUTES, "resource id"),
    ({DEFAULT_TARGET: "adf-ml/retrain"}, DEFAULT_TARGET, "resource id"),
    ({DEFAULT_TARGET: "{bad"}, DEFAULT_TARGET, "not valid JSON"),
    ({MONITOR_THRESHOLDS: json.dumps({"m": 1.5})}, MONITOR_THRESHOLDS, "between 0 and 1"),
    ({MONITOR_THRESHOLDS: json.dumps({"m": True})}, MONITOR_THRESHOLDS, "between 0 and 1"),
    ({PARAMETER_NAMES: json.dumps({"nope": "x"})}, PARAMETER_NAMES, "unknown field 'nope'"),
    ({PARAMETER_NAMES: json.dumps({"requestId": ""})}, PARAMETER_NAMES, "cannot be turned off"),
    ({PARAMETER_NAMES: json.dumps({"monitorId": "bad name"})}, PARAMETER_NAMES, "not a valid"),
    ({PARAMETER_NAMES: json.dumps({"monitorId": "monitorName"})}, PARAMETER_NAMES, "used twice"),
    ({COOLDOWN_S: "-1"}, COOLDOWN_S, "between"),
    ({ARM_ENDPOINT: "http://insecure.example"}, ARM_ENDPOINT, "https://"),
    ({TIMEOUT_S: "0"}, TIMEOUT_S, "between"),
    ({READ_RETRIES: "many"}, READ_RETRIES, "whole number"),
])
def test_bad_settings_are_named(env: dict[str, str], setting: str, fragment: str) -> None:
    with pytest.raises(SettingError) as caught:
        RetrainSettings.from_mapping(env)
    assert caught.value.setting == setting
    assert fragment in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingError) as caught:
        RetrainSettings.from_mapping({ROUTES: "{", COOLDOWN_S: "soon", ARM_ENDPOINT: "ftp://x"})
    named = {name for name, _ in caught.value.problems}
    assert named == {ROUTES, COOLDOWN_S, ARM_ENDPOINT}
