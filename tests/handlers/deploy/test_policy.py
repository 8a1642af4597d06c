"""Operator guardrail settings: conservative defaults, parsing, and errors naming the setting."""

from __future__ import annotations

import pytest

from handlers.deploy import policy as dp
from handlers.errors import SettingError
from handlers.events.workspace import WorkspaceRef

WS = ("/subscriptions/sub-1/resourceGroups/rg-1/providers/"
      "Microsoft.MachineLearningServices/workspaces/ws-1")


def test_defaults_are_conservative() -> None:
    policy = dp.DeployPolicy.from_mapping({})
    assert policy.allowed_targets == ("managed",)
    assert policy.allowed_instance_types == ("Standard_DS3_v2", "Standard_F2s_v2")
    assert policy.allowed_computes == ()
    assert policy.max_instance_count == 2
    assert policy.required_tags == ()
    assert policy.workspace is None
    assert policy.model_pattern.fullmatch("anything")
    assert policy == dp.DeployPolicy()


def test_every_setting_is_read() -> None:
    policy = dp.DeployPolicy.from_mapping({
        dp.ALLOWED_TARGETS: "Managed, kubernetes;aks",
        dp.ALLOWED_INSTANCE_TYPES: "Standard_E4s_v3",
        dp.ALLOWED_K8S_INSTANCE_TYPES: "gpu-small,cpu-small",
        dp.ALLOWED_COMPUTES: "aks-prod",
        dp.MAX_INSTANCE_COUNT: "5",
        dp.MAX_CPU_CORES: "4",
        dp.MAX_MEMORY_GB: "8.5",
        dp.MODEL_PATTERN: "prod-.*",
        dp.ENDPOINT_PATTERN: "ep-[a-z]+",
        dp.REQUIRED_TAGS: "stage=production, ncd=true, approved",
        dp.WORKSPACE: WS,
        dp.ORDER_HOLD_S: "60",
    })
    assert policy.allowed_targets == ("managed", "kubernetes", "aks")
    assert policy.allowed_instance_types == ("Standard_E4s_v3",)
    assert policy.instance_types_for("kubernetes") == ("gpu-small", "cpu-small")
    assert policy.instance_types_for("managed") == ("Standard_E4s_v3",)
    assert policy.instance_types_setting("kubernetes") == dp.ALLOWED_K8S_INSTANCE_TYPES
    assert policy.allowed_computes == ("aks-prod",)
    assert (policy.max_instance_count, policy.max_cpu_cores, policy.max_memory_gb) == (5, 4.0, 8.5)
    assert policy.model_pattern.fullmatch("prod-x") and not policy.model_pattern.fullmatch("x")
    assert [str(t) for t in policy.required_tags] == ["stage=production", "ncd=true", "approved"]
    assert policy.workspace == WorkspaceRef("sub-1", "rg-1", "ws-1")
    assert policy.order_hold_s == 60.0


def test_required_tags_match_ignoring_case() -> None:
    stage, approved = dp.DeployPolicy.from_mapping(
        {dp.REQUIRED_TAGS: "stage=Production,approved"}).required_tags
    assert stage.satisfied_by({"stage": "production"})
    assert not stage.satisfied_by({"stage": "dev"})
    assert not stage.satisfied_by({})
    assert approved.satisfied_by({"approved": "bob"})
    assert not approved.satisfied_by({"approved": " "})


@pytest.mark.parametrize(("setting", "value"), [
    (dp.ALLOWED_TARGETS, "managed,serverless"),
    (dp.MAX_INSTANCE_COUNT, "0"),
    (dp.MAX_INSTANCE_COUNT, "many"),
    (dp.MAX_CPU_CORES, "-1"),
    (dp.MAX_MEMORY_GB, "lots"),
    (dp.MODEL_PATTERN, "(unclosed"),
    (dp.ENDPOINT_PATTERN, "[z-a]"),
    (dp.REQUIRED_TAGS, "stage.name=prod"),
    (dp.WORKSPACE, "/subscriptions/x/resourceGroups/y"),
    (dp.ORDER_HOLD_S, "-5"),
])
def test_invalid_setting_is_named(setting: str, value: str) -> None:
    with pytest.raises(SettingError) as caught:
        dp.DeployPolicy.from_mapping({setting: value})
    assert caught.value.setting == setting


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingError) as caught:
        dp.DeployPolicy.from_mapping({dp.MAX_INSTANCE_COUNT: "0", dp.WORKSPACE: "nope"})
    assert {name for name, _ in caught.value.problems} == {dp.MAX_INSTANCE_COUNT, dp.WORKSPACE}


def test_every_refusal_is_spelled_out_whole() -> None:
    with pytest.raises(SettingError) as caught:
        dp.DeployPolicy.from_mapping({
            dp.ALLOWED_TARGETS: "Managed,serverless", dp.MAX_INSTANCE_COUNT: "101",
            dp.MAX_CPU_CORES: "0.05", dp.MAX_MEMORY_GB: "513", dp.REQUIRED_TAGS: "stage.name=x",
            dp.WORKSPACE: "/subscriptions/x/resourceGroups/y", dp.ORDER_HOLD_S: "-1"})
    assert caught.value.problems == (
        (dp.ALLOWED_TARGETS, "'serverless' is not a target; use managed, kubernetes, aci, aks"),
        (dp.MAX_INSTANCE_COUNT, "must be between 1 and 100, got 101"),
        (dp.MAX_CPU_CORES, "must be between 0.1 and 64.0, got 0.05"),
        (dp.MAX_MEMORY_GB, "must be between 0.1 and 512.0, got 513"),
        (dp.REQUIRED_TAGS, "'stage.name' is not a tag name (letters, digits, _ and -)"),
        (dp.WORKSPACE, "must be a workspace resource id: /subscriptions/{id}/resourceGroups/"
                       "{rg}/providers/Microsoft.MachineLearningServices/workspaces/{name}"),
        (dp.ORDER_HOLD_S, "must be between 0.0 and 604800.0, got -1"),
    )


def test_the_bounds_themselves_are_allowed() -> None:
    low = dp.DeployPolicy.from_mapping({dp.MAX_INSTANCE_COUNT: "1", dp.MAX_CPU_CORES: "0.1",
                                        dp.MAX_MEMORY_GB: "0.1", dp.ORDER_HOLD_S: "0"})
    assert (low.max_instance_count, low.max_cpu_cores, low.max_memory_gb, low.order_hold_s) == (
        1, 0.1, 0.1, 0.0)  # a hold of 0: deploy in arrival order without waiting
    high = dp.DeployPolicy.from_mapping({dp.MAX_INSTANCE_COUNT: "100", dp.MAX_CPU_CORES: "64",
                                         dp.MAX_MEMORY_GB: "512", dp.ORDER_HOLD_S: "604800"})
    assert (high.max_instance_count, high.max_cpu_cores, high.max_memory_gb,
            high.order_hold_s) == (100, 64.0, 512.0, 604800.0)


def test_the_defaults_whole() -> None:
    policy = dp.DeployPolicy.from_mapping({})
    assert (policy.allowed_k8s_instance_types, policy.max_cpu_cores, policy.max_memory_gb,
            policy.order_hold_s) == (("defaultinstancetype",), 2.0, 4.0, 3600.0)
    assert policy.instance_types_for("aks") == dp.DEFAULT_INSTANCE_TYPES
    assert policy.instance_types_setting("managed") == dp.ALLOWED_INSTANCE_TYPES
    assert policy.endpoint_pattern.pattern == ".*"
    # A required tag with a value prints as the setting spells it; a bare one by its name.
    assert (str(dp.RequiredTag("stage", "prod")), str(dp.RequiredTag("ok", None))) == (
        "stage=prod", "ok")
    assert dp.RequiredTag("Stage", "prod").satisfied_by({"stage": " PROD "})
