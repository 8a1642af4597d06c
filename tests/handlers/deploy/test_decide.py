"""The tag contract: every tag's default, every invalid value, every guardrail, and ordering."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handlers.deploy import decide as dbt
from handlers.deploy import order as deploy_order
from handlers.deploy import policy as dp
from handlers.deploy.plan import DeploymentPlan
from handlers.errors import InvalidEvent
from handlers.events.parse import ModelRegistered, parse_event
from handlers.events.workspace import WorkspaceRef
from handlers.outcome import ActionResult, Outcome
from tests.handlers.deploy.builders import OPEN, Sample, plan_of, registered


def refusal(event: ModelRegistered, policy: dp.DeployPolicy = OPEN) -> str:
    decision = dbt.decide(event, policy)
    assert isinstance(decision, ActionResult) and decision.outcome is Outcome.REFUSED, decision
    return decision.detail


# --- opt-in -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["true", "TRUE", "yes", "1", " True "])
def test_opt_in_values(sample: Sample, value: str) -> None:
    assert plan_of(registered(sample, deploy=value)).model_version == "20"


@pytest.mark.parametrize("value", ["false", "no", "0", "", "y", "enabled"])
def test_anything_else_skips_with_the_reason(sample: Sample, value: str) -> None:
    decision = dbt.decide(registered(sample, deploy=value), OPEN)
    assert isinstance(decision, ActionResult) and decision.outcome is Outcome.SKIPPED
    assert "set deploy=true" in decision.detail


def test_the_documented_sample_is_skipped(sample: Sample) -> None:
    event = parse_event(sample("model_registered"))
    assert isinstance(event, ModelRegistered)
    decision = dbt.decide(event, dp.DeployPolicy())
    assert isinstance(decision, ActionResult) and decision.outcome is Outcome.SKIPPED
    assert decision.detail == "tag deploy is absent; set deploy=true to deploy"


def test_tag_names_are_case_insensitive(sample: Sample) -> None:
    plan = plan_of(registered(sample, Deploy="true", DEPLOY_INSTANCE_COUNT="2"))
    assert plan.instance_count == 2


# --- defaults ---------------------------------------------------------------------------------

def test_every_default(sample: Sample) -> None:
    plan = plan_of(registered(sample, deploy="true"), dp.DeployPolicy())
    assert plan == DeploymentPlan(
        workspace=WorkspaceRef("{subscription-id}", "{resource-group-name}", "{workspace-name}"),
        model_name="sklearn_regression_model", model_version="20", target="managed",
        endpoint="sklearn-regression-model", deployment="v20", instance_type="Standard_DS3_v2",
        instance_count=1, traffic=100, compute="", environment="", scoring_script="",
        cpu_cores=0.0, memory_gb=0.0)
    assert plan.summary() == ("deploy sklearn_regression_model:20 to managed endpoint "
                              "sklearn-regression-model as v20 (100% traffic)")
    assert plan.as_dict()["workspace"].endswith("/workspaces/{workspace-name}")


def test_v1_defaults(sample: Sample) -> None:
    plan = plan_of(registered(sample, deploy="true", deploy_target="aks"))
    assert (plan.target, plan.compute, plan.cpu_cores, plan.memory_gb) == ("aks", "aks-1", 1.0, 2.0)
    assert plan.instance_type == ""
    aci = plan_of(registered(sample, deploy="true", deploy_target="aci"))
    assert (aci.compute, aci.cpu_cores, aci.memory_gb) == ("", 1.0, 2.0)


def test_kubernetes_defaults(sample: Sample) -> None:
    plan = plan_of(registered(sample, deploy="true", deploy_target="Kubernetes"))
    assert (plan.target, plan.compute, plan.instance_type) == (
        "kubernetes", "aks-1", "defaultinstancetype")


def test_workspace_setting_overrides_topic(sample: Sample) -> None:
    ws = WorkspaceRef("s", "rg", "w")
    assert plan_of(registered(sample, deploy="true"), replace(OPEN, workspace=ws)).workspace == ws


def test_topic_that_is_not_a_workspace_is_invalid(sample: Sample) -> None:
    raw = sample("model_registered")
    raw["topic"] = "/subscriptions/s/resourceGroups/rg"
    raw["data"]["ModelTags"] = {"deploy": "true"}
    event = parse_event(raw)
    assert isinstance(event, ModelRegistered)
    with pytest.raises(InvalidEvent):
        dbt.decide(event, OPEN)


@pytest.mark.parametrize(("model", "endpoint"), [
    ("sklearn_regression_model", "sklearn-regression-model"),
    ("My.Model", "my-model"),
    ("42-answers", "m-42-answers"),
    ("ab", "ab0"),
    ("x" * 40, "x" * 32),
    ("a" + "-" * 31 + "b", "a-b"),
])
def test_endpoint_name_derived_from_model(model: str, endpoint: str) -> None:
    assert dbt.endpoint_name_for(model) == endpoint


@pytest.mark.parametrize(("version", "name"), [
    ("20", "v20"), ("1", "v-1"), ("1.2.0", "v1-2-0"), ("", "v-0"), ("9" * 40, "v" + "9" * 31),
])
def test_deployment_name_derived_from_version(version: str, name: str) -> None:
    assert dbt.deployment_name_for(version) == name


def test_explicit_values(sample: Sample) -> None:
    plan = plan_of(registered(
        sample, deploy="true", deploy_endpoint="Fraud-EP", deploy_name="blue",
        deploy_instance_type="standard_f2s_v2", deploy_instance_count="3", deploy_traffic="10",
        deploy_environment="azureml:sk-env:3", deploy_scoring_script="score-code:2/src/score.py"))
    assert (plan.endpoint, plan.deployment, plan.instance_type) == (
        "Fraud-EP", "blue", "Standard_F2s_v2")
    assert (plan.instance_count, plan.traffic) == (3, 10)
    assert (plan.environment, plan.code, plan.script_path) == (
        "azureml:sk-env:3", "score-code:2", "src/score.py")


def test_v1_explicit_sizes(sample: Sample) -> None:
    plan = plan_of(registered(sample, deploy="true", deploy_target="aci", deploy_cpu_cores="0.5",
                              deploy_memory_gb="1.5"))
    assert (plan.cpu_cores, plan.memory_gb) == (0.5, 1.5)


# --- invalid values -> refused naming the tag -------------------------------------------------

@pytest.mark.parametrize(("tags", "expected"), [
    ({"deploy_target": "serverless"}, "tag deploy_target: must be one of managed, kubernetes"),
    ({"deploy_endpoint": "ab"}, "tag deploy_endpoint: 'ab' is not a valid name"),
    ({"deploy_endpoint": "1abc"}, "tag deploy_endpoint"),
    ({"deploy_endpoint": "abc-"}, "tag deploy_endpoint"),
    ({"deploy_endpoint": "a_bc"}, "tag deploy_endpoint"),
    ({"deploy_endpoint": "a" * 33}, "tag deploy_endpoint"),
    ({"deploy_name": "x"}, "tag deploy_name: 'x' is not a valid name"),
    ({"deploy_instance_type": "Standard_NC24"}, "tag deploy_instance_type: 'Standard_NC24' is "
                                                "not allowed by AMLEVENTS_DEPLOY_ALLOWED_INSTANCE"),
    ({"deploy_instance_count": "0"},
     "tag deploy_instance_count: must be a whole number from 1 to 3"),
    ({"deploy_instance_count": "4"}, "(limit AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT)"),
    ({"deploy_instance_count": "1.5"}, "tag deploy_instance_count"),
    ({"deploy_instance_count": "-1"}, "tag deploy_instance_count"),
    ({"deploy_traffic": "101"}, "tag deploy_traffic: must be a whole number from 0 to 100"),
    ({"deploy_traffic": "half"}, "tag deploy_traffic"),
    ({"deploy_environment": "env:1"}, "tag deploy_scoring_script: is required together with "
                                      "deploy_environment"),
    ({"deploy_scoring_script": "c:1/s.py"}, "tag deploy_environment: is required together"),
    ({"deploy_environment": "env", "deploy_scoring_script": "c:1/s.py"},
     "tag deploy_environment: must be a registered environment"),
    ({"deploy_environment": "env:1", "deploy_scoring_script": "score.py"},
     "tag deploy_scoring_script: must be code-asset:version/path"),
    ({"deploy_target": "aci", "deploy_cpu_cores": "0"}, "tag deploy_cpu_cores: must be a number "
                                                        "above 0 and at most 2"),
    ({"deploy_target": "aci", "deploy_cpu_cores": "3"}, "(limit AMLEVENTS_DEPLOY_MAX_CPU_CORES)"),
    ({"deploy_target": "aks", "deploy_memory_gb": "5"}, "(limit AMLEVENTS_DEPLOY_MAX_MEMORY_GB)"),
    ({"deploy_target": "aks", "deploy_memory_gb": "1e3"}, "tag deploy_memory_gb"),
    ({"deploy_target": "aci", "deploy_traffic": "50"}, "tag deploy_traffic: canary traffic needs"),
    ({"deploy_target": "aci", "deploy_environment": "e:1", "deploy_scoring_script": "c:1/s.py"},
     "tag deploy_environment: is supported for managed and kubernetes targets only"),
    ({"deploy_target": "kubernetes", "deploy_compute": "other"},
     "tag deploy_compute: 'other' is not allowed by AMLEVENTS_DEPLOY_ALLOWED_COMPUTES"),
    ({"deploy_target": "kubernetes", "deploy_instance_type": "Standard_DS3_v2"},
     "not allowed by AMLEVENTS_DEPLOY_ALLOWED_K8S_INSTANCE_TYPES"),
])
def test_invalid_value_is_refused_naming_the_tag(sample: Sample, tags: dict[str, str],
                                                 expected: str) -> None:
    assert expected in refusal(registered(sample, deploy="true", **tags))


def test_every_problem_is_reported(sample: Sample) -> None:
    detail = refusal(registered(sample, deploy="true", deploy_traffic="x",
                                deploy_instance_count="9"))
    assert "tag deploy_traffic" in detail and "tag deploy_instance_count" in detail


# --- guardrails -------------------------------------------------------------------------------

def test_default_policy_allows_managed_only(sample: Sample) -> None:
    for target in ("kubernetes", "aci", "aks"):
        detail = refusal(registered(sample, deploy="true", deploy_target=target), dp.DeployPolicy())
        assert f"tag deploy_target: '{target}' is not allowed by AMLEVENTS_DEPLOY_ALLOWED_TARGETS"\
               " (allowed: managed)" in detail


def test_default_policy_caps_instance_count_at_two(sample: Sample) -> None:
    assert plan_of(registered(sample, deploy="true", deploy_instance_count="2"),
                   dp.DeployPolicy()).instance_count == 2
    assert "from 1 to 2" in refusal(registered(sample, deploy="true", deploy_instance_count="3"),
                                    dp.DeployPolicy())


def test_compute_target_needs_an_allowed_compute(sample: Sample) -> None:
    policy = replace(OPEN, allowed_computes=())
    assert "tag deploy_compute: no compute is allowed: set AMLEVENTS_DEPLOY_ALLOWED_COMPUTES" in \
        refusal(registered(sample, deploy="true", deploy_target="aks"), policy)


def test_model_name_pattern(sample: Sample) -> None:
    policy = replace(OPEN, model_pattern=dp.re.compile("prod-.*"))
    assert "does not match AMLEVENTS_DEPLOY_MODEL_PATTERN" in refusal(
        registered(sample, deploy="true"), policy)
    assert plan_of(registered(sample, name="prod-fraud", deploy="true"), policy)


def test_endpoint_name_pattern(sample: Sample) -> None:
    policy = replace(OPEN, endpoint_pattern=dp.re.compile("team-a-.*"))
    assert "tag deploy_endpoint: endpoint 'sklearn-regression-model' does not match " \
           "AMLEVENTS_DEPLOY_ENDPOINT_PATTERN" in refusal(registered(sample, deploy="true"), policy)
    assert plan_of(registered(sample, deploy="true", deploy_endpoint="team-a-x"), policy)


def test_required_tags(sample: Sample) -> None:
    policy = dp.DeployPolicy.from_mapping({dp.REQUIRED_TAGS: "stage=production,ncd=true"})
    detail = refusal(registered(sample, deploy="true", stage="dev"), policy)
    assert ("tag stage: AMLEVENTS_DEPLOY_REQUIRED_TAGS requires stage=production, got 'dev'"
            in detail)
    assert "tag ncd: AMLEVENTS_DEPLOY_REQUIRED_TAGS requires ncd=true, got 'absent'" in detail
    assert plan_of(registered(sample, deploy="true", stage="Production", ncd="true"), policy)


def test_required_tags_do_not_replace_opt_in(sample: Sample) -> None:
    policy = dp.DeployPolicy.from_mapping({dp.REQUIRED_TAGS: "stage=production"})
    decision = dbt.decide(registered(sample, stage="production"), policy)
    assert isinstance(decision, ActionResult) and decision.outcome is Outcome.SKIPPED


# --- ordering state (pure) --------------------------------------------------------------------

@pytest.mark.parametrize(("older", "newer"), [("9", "10"), ("20", "21"), ("1.9", "1.10"),
                                              ("1.0", "1.0.1")])
def test_version_key_orders_numerically(older: str, newer: str) -> None:
    assert deploy_order.version_key(older) < deploy_order.version_key(newer)


def test_reserve_and_settle(sample: Sample) -> None:
    v21, v20 = plan_of(registered(sample, 21, deploy="true")), plan_of(
        registered(sample, 20, deploy="true"))
    key = deploy_order.order_key(v21)
    assert key == deploy_order.order_key(v20) and "/" not in key
    held = deploy_order.reserve(v21, 100.0, 60.0)(None)
    assert held == {"model": v21.model_name, "pending_version": "21", "pending_until_s": 160.0}
    assert deploy_order.reserve(v20, 100.0, 60.0)(held) is None  # a newer version holds the endpoint
    assert deploy_order.reserve(v20, 161.0, 60.0)(held) is not None  # ... until its hold expires
    deployed = deploy_order.settle(v21, deployed=True)(held)
    assert deployed == {"model": v21.model_name, "deployed_version": "21"}
    assert deploy_order.reserve(v20, 1e9, 60.0)(deployed) is None  # older than deployed: never
    assert deploy_order.settle(v21, deployed=True)(deployed) is None  # nothing changes
    released = deploy_order.settle(v21, deployed=False)(held)
    assert released == {"model": v21.model_name}
    # an older version that was deployed after all never lowers the deployed version
    assert deploy_order.settle(v20, deployed=True)(deployed) is None


# --- poison tag values (issue 12, row 1) --------------------------------------------------------

# `str.isdigit()` and `\d` accept superscripts, Arabic-Indic and full-width digits that int() and
# float() refuse, and int() refuses more than 4300 digits: each used to escape as a ValueError
# (HTTP 500, retried forever). Whole-number tags take ASCII digits only, of bounded length.
_NOT_ASCII_NUMBERS = ["²", "³", "١", "١٠", "１", "1" * 5000, "0" * 4000 + "1", "9" * 20]


def _id(value: str) -> str:
    """An ASCII test id: mutmut hands node ids back to pytest, which cannot find escaped ones."""
    return "".join(c if c.isascii() else f"U+{ord(c):04X}" for c in value[:4]) + f"({len(value)})"


@pytest.mark.parametrize("tag", ["deploy_instance_count", "deploy_traffic"])
@pytest.mark.parametrize("value", _NOT_ASCII_NUMBERS, ids=_id)
def test_whole_number_tags_take_ascii_digits_only(sample: Sample, tag: str, value: str) -> None:
    detail = refusal(registered(sample, deploy="true", **{tag: value}))
    assert f"tag {tag}: must be a whole number" in detail
    assert len(detail) < 400  # the value is shown, but not 5,000 digits of it


@pytest.mark.parametrize("tag", ["deploy_cpu_cores", "deploy_memory_gb"])
@pytest.mark.parametrize("value", ["²", "١.٥", "１", "1" * 5000, "1." + "5" * 5000, "0." + "0" * 400],
                         ids=_id)
def test_amount_tags_take_ascii_decimals_only(sample: Sample, tag: str, value: str) -> None:
    detail = refusal(registered(sample, deploy="true", deploy_target="aci", **{tag: value}))
    assert f"tag {tag}: must be a number" in detail
    assert len(detail) < 400


def test_long_tag_values_are_shown_shortened(sample: Sample) -> None:
    detail = refusal(registered(sample, deploy="true", deploy_endpoint="x" * 10_000,
                                deploy_target="y" * 10_000))
    assert "tag deploy_endpoint" in detail and "tag deploy_target" in detail
    assert len(detail) < 1000


# --- whole refusals: the text an operator reads, compared whole ------------------------------

_NAME_RULE = ("is not a valid name: 3-32 characters, a letter first, letters, digits and "
              "hyphens, ending with a letter or digit")
_V1_SCORING = ("is supported for managed and kubernetes targets only; aci and aks deploy models "
               "registered with a framework (no scoring script)")


@pytest.mark.parametrize(("tags", "detail"), [
    ({"deploy_target": "gke"},
     "tag deploy_target: must be one of managed, kubernetes, aci, aks, got 'gke'"),
    ({"deploy_endpoint": "ab"}, f"tag deploy_endpoint: 'ab' {_NAME_RULE}"),
    ({"deploy_name": "x"}, f"tag deploy_name: 'x' {_NAME_RULE}"),
    ({"deploy_instance_type": "Standard_NC24"},
     "tag deploy_instance_type: 'Standard_NC24' is not allowed by "
     "AMLEVENTS_DEPLOY_ALLOWED_INSTANCE_TYPES (allowed: Standard_DS3_v2, Standard_F2s_v2)"),
    ({"deploy_instance_count": "0"}, "tag deploy_instance_count: must be a whole number from 1 "
                                     "to 3 (limit AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT), got '0'"),
    ({"deploy_instance_count": "4"}, "tag deploy_instance_count: must be a whole number from 1 "
                                     "to 3 (limit AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT), got '4'"),
    ({"deploy_traffic": "101"}, "tag deploy_traffic: must be a whole number from 0 to 100, "
                                "got '101'"),
    ({"deploy_environment": "env:1"}, "tag deploy_scoring_script: is required together with "
                                      "deploy_environment (MLflow models deploy with neither)"),
    ({"deploy_scoring_script": "c:1/s.py"}, "tag deploy_environment: is required together with "
                                            "deploy_scoring_script (MLflow models deploy with "
                                            "neither)"),
    ({"deploy_environment": "env", "deploy_scoring_script": "c:1/s.py"},
     "tag deploy_environment: must be a registered environment as name:version or name@latest, "
     "got 'env'"),
    ({"deploy_environment": "env:1", "deploy_scoring_script": "score.py"},
     "tag deploy_scoring_script: must be code-asset:version/path/to/script.py, got 'score.py'"),
    ({"deploy_target": "aci", "deploy_cpu_cores": "0"},
     "tag deploy_cpu_cores: must be a number above 0 and at most 2 "
     "(limit AMLEVENTS_DEPLOY_MAX_CPU_CORES), got '0'"),
    ({"deploy_target": "aks", "deploy_memory_gb": "4.5"},
     "tag deploy_memory_gb: must be a number above 0 and at most 4 "
     "(limit AMLEVENTS_DEPLOY_MAX_MEMORY_GB), got '4.5'"),
    ({"deploy_target": "aci", "deploy_traffic": "50"},
     "tag deploy_traffic: canary traffic needs a managed or kubernetes target, not aci"),
    ({"deploy_target": "aci", "deploy_environment": "e:1"}, f"tag deploy_environment: {_V1_SCORING}"),
    ({"deploy_target": "aks", "deploy_scoring_script": "c:1/s.py"},
     f"tag deploy_scoring_script: {_V1_SCORING}"),
    ({"deploy_target": "kubernetes", "deploy_compute": "other"},
     "tag deploy_compute: 'other' is not allowed by AMLEVENTS_DEPLOY_ALLOWED_COMPUTES "
     "(allowed: aks-1, k8s-1)"),
])
def test_each_refusal_is_one_whole_sentence(sample: Sample, tags: dict[str, str],
                                            detail: str) -> None:
    decision = dbt.decide(registered(sample, deploy="true", **tags), OPEN)
    assert decision == ActionResult(Outcome.REFUSED, "refused", detail)


@pytest.mark.parametrize(("policy", "tags", "detail"), [
    (replace(OPEN, allowed_computes=()), {"deploy_target": "aks"},
     "tag deploy_compute: no compute is allowed: set AMLEVENTS_DEPLOY_ALLOWED_COMPUTES"),
    (replace(OPEN, allowed_targets=()), {},
     "tag deploy_target: 'managed' is not allowed by AMLEVENTS_DEPLOY_ALLOWED_TARGETS "
     "(allowed: none)"),
    (replace(OPEN, allowed_instance_types=()), {},
     "tag deploy_instance_type: no instance type is allowed: set "
     "AMLEVENTS_DEPLOY_ALLOWED_INSTANCE_TYPES"),
    (dp.DeployPolicy(), {"deploy_target": "kubernetes"},
     "tag deploy_target: 'kubernetes' is not allowed by AMLEVENTS_DEPLOY_ALLOWED_TARGETS "
     "(allowed: managed); tag deploy_compute: no compute is allowed: set "
     "AMLEVENTS_DEPLOY_ALLOWED_COMPUTES"),
])
def test_each_policy_refusal_is_whole(sample: Sample, policy: dp.DeployPolicy,
                                      tags: dict[str, str], detail: str) -> None:
    decision = dbt.decide(registered(sample, deploy="true", **tags), policy)
    assert decision == ActionResult(Outcome.REFUSED, "refused", detail)


def test_a_skip_names_the_tag_value_shortened(sample: Sample) -> None:
    assert dbt.decide(registered(sample, deploy="x" * 61), OPEN) == ActionResult.skipped(
        f"tag deploy is {'x' * 60!r}... (61 characters); set deploy=true to deploy")
    assert dbt.decide(registered(sample), OPEN) == ActionResult.skipped(
        "tag deploy is absent; set deploy=true to deploy")


@pytest.mark.parametrize(("raw", "expected"), [
    ("a" * 60, repr("a" * 60)), ("a" * 61, f"{'a' * 60!r}... (61 characters)"),
    ("a\nb", "'a\\nb'")])
def test_shown_quotes_and_shortens_at_sixty(raw: str, expected: str) -> None:
    assert dbt.shown(raw) == expected


def test_the_bounds_of_each_number_are_accepted(sample: Sample) -> None:
    # counts and traffic are inclusive of both ends; sizes of their maximum
    assert (plan_of(registered(sample, deploy="true", deploy_instance_count="3",
                               deploy_traffic="0")).instance_count,
            plan_of(registered(sample, deploy="true", deploy_traffic="0")).traffic,
            plan_of(registered(sample, deploy="true", deploy_instance_count="1")).instance_count,
            ) == (3, 0, 1)
    plan = plan_of(registered(sample, deploy="true", deploy_target="aks", deploy_cpu_cores="2",
                              deploy_memory_gb="4"))
    assert (plan.cpu_cores, plan.memory_gb) == (2.0, 4.0)


def test_default_sizes_are_capped_by_the_policy(sample: Sample) -> None:
    small = replace(OPEN, max_cpu_cores=0.5, max_memory_gb=1.0)
    plan = plan_of(registered(sample, deploy="true", deploy_target="aci"), small)
    assert (plan.cpu_cores, plan.memory_gb) == (0.5, 1.0)
    refused = dbt.decide(registered(sample, deploy="true", deploy_target="aci",
                                    deploy_cpu_cores="0.75"), small)
    assert refused == ActionResult(Outcome.REFUSED, "refused", (
        "tag deploy_cpu_cores: must be a number above 0 and at most 0.5 "
        "(limit AMLEVENTS_DEPLOY_MAX_CPU_CORES), got '0.75'"))


def test_allowed_values_are_matched_in_any_case_and_spelled_as_listed(sample: Sample) -> None:
    plan = plan_of(registered(sample, deploy="true", deploy_target="AKS",
                              deploy_compute="AKS-1"))
    assert (plan.target, plan.compute) == ("aks", "aks-1")
    plan = plan_of(registered(sample, deploy="true", deploy_instance_type="standard_f2s_v2"))
    assert plan.instance_type == "Standard_F2s_v2"
