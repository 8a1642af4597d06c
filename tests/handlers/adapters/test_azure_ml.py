"""The real azure-ai-ml SDK, end to end through the Dispatcher, against the fake ARM over HTTPS."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handlers.adapters.azure_ml import (
    AzureMlDeployer,
    AzureMlSettings,
    build_deployer,
    classify,
    split_traffic,
)
from handlers.deploy.decide import decide
from handlers.deploy.plan import DeploymentPlan
from handlers.deploy.policy import DeployPolicy
from handlers.errors import PermanentError, RetryableError, SettingError
from handlers.events.parse import ModelRegistered, parse_event
from handlers.events.workspace import WorkspaceRef
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher, DispatchResult
from handlers.runtime.routing import ON_MODEL_REGISTERED
from tests.fakes.arm import FakeArm, fake_arm_fixture

Sample = Callable[[str], dict[str, Any]]
MODEL = "sklearn_regression_model"
ENDPOINT = "sklearn-regression-model"
EP_PATH = r"/onlineEndpoints/sklearn-regression-model$"
DEP_PATH = r"/onlineEndpoints/sklearn-regression-model/deployments/[^/]+$"


arm = fake_arm_fixture()


@pytest.fixture
def live(arm: FakeArm, tmp_path: Path) -> Callable[..., Dispatcher]:
    """A dispatcher for the fake workspace with real deployment (dry-run off for deploy)."""
    def build(**overrides: str) -> Dispatcher:
        env = {"AMLEVENTS_ALLOWED_TOPICS": workspace_id(arm),
               "AMLEVENTS_LEDGER_PATH": str(tmp_path / "ledger.sqlite3"),
               "AMLEVENTS_DRY_RUN_DEPLOY": "false", "AMLEVENTS_DEPLOY_SDK_RETRIES": "0",
               "AMLEVENTS_DEPLOY_WAIT_S": "20", "AMLEVENTS_DEPLOY_POLL_S": "0.05"}
        return Dispatcher({**env, **overrides})
    return build


def workspace_id(arm: FakeArm) -> str:
    return (f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{arm.workspace_name}")


def event(sample: Sample, arm: FakeArm, version: int = 20, **tags: str) -> dict[str, Any]:
    """The documented ModelRegistered sample, from the fake workspace, with these tags."""
    raw = sample("model_registered")
    raw["topic"] = workspace_id(arm)
    raw["id"] = f"registered-{version}-{len(tags)}"
    raw["data"].update(ModelVersion=version, ModelTags={"deploy": "true", **tags})
    return raw


def send(dispatcher: Dispatcher, raw: dict[str, Any]) -> DispatchResult:
    return dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)


def puts(arm: FakeArm, path: str) -> list[Any]:
    return arm.requests_matching("PUT", path)


# --- a full rollout ---------------------------------------------------------------------------

def test_new_endpoint_and_deployment_over_https(arm: FakeArm, live: Callable[..., Dispatcher],
                                                sample: Sample) -> None:
    model_id = arm.ml.add_model(MODEL, "20")
    result = send(live(), event(sample, arm, deploy_instance_count="2"))
    assert result.outcome is Outcome.DONE, result.detail
    # The fake saw the documented calls, each with a token from the managed-identity endpoint.
    assert arm.requests_matching("GET", r"/models/sklearn_regression_model/versions/20$")
    (endpoint_put,) = puts(arm, EP_PATH)[:1]
    assert endpoint_put.body["properties"]["authMode"].lower() == "key"
    deployment_put = puts(arm, DEP_PATH)
    assert [r.path.rsplit("/", 1)[-1] for r in deployment_put] == ["v20"]
    body = deployment_put[0].body
    assert body["properties"]["instanceType"] == "Standard_DS3_v2"
    assert body["sku"]["capacity"] == 2
    assert body["properties"]["model"].lower() == model_id.lower()
    assert body["properties"]["endpointComputeType"] == "Managed"
    assert arm.ml.endpoint(ENDPOINT).traffic == {"v20": 100}
    assert all(r.bearer_token for r in arm.requests if r.path != "/metadata/endpoints")
    assert arm.token_requests
    assert '"deployment_state":"deployed"' in result.detail and '"endpoint_created":true' in result.detail


def test_redelivery_makes_one_deployment(arm: FakeArm, live: Callable[..., Dispatcher],
                                         sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    dispatcher = live()
    raw = event(sample, arm)
    first = send(dispatcher, raw)
    writes = len(arm.requests_matching("PUT")) + len(arm.requests_matching("PATCH"))
    assert len(puts(arm, EP_PATH)) == 2  # creation (no traffic yet), then the traffic
    second = send(dispatcher, raw)
    assert (first.outcome, second.outcome, second.duplicate) == (Outcome.DONE, Outcome.DONE, True)
    # Another event for the same registration (a second subscription, say) deploys nothing.
    again = dict(raw, id="another-delivery-id")
    assert send(dispatcher, again).outcome is Outcome.SKIPPED
    assert len(arm.requests_matching("PUT")) + len(arm.requests_matching("PATCH")) == writes
    assert len(puts(arm, DEP_PATH)) == 1


def test_existing_endpoint_is_updated_and_canary_keeps_the_old_deployment(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.ml.add_model(MODEL, "21")
    dispatcher = live()
    assert send(dispatcher, event(sample, arm, 20)).outcome is Outcome.DONE
    result = send(dispatcher, event(sample, arm, 21, deploy_traffic="10"))
    assert result.outcome is Outcome.DONE, result.detail
    assert arm.ml.endpoint(ENDPOINT).traffic == {"v20": 90, "v21": 10}
    assert {d.name for d in arm.ml.deployments(ENDPOINT)} == {"v20", "v21"}
    # One endpoint creation, then a traffic update on the existing endpoint.
    traffic_puts = [r.body["properties"].get("traffic") for r in puts(arm, EP_PATH)]
    assert traffic_puts[-1] == {"v20": 90, "v21": 10}


def test_out_of_order_v21_then_v20_deploys_only_v21(arm: FakeArm, live: Callable[..., Dispatcher],
                                                    sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.ml.add_model(MODEL, "21")
    dispatcher = live()
    assert send(dispatcher, event(sample, arm, 21)).outcome is Outcome.DONE
    older = send(dispatcher, event(sample, arm, 20))
    assert older.outcome is Outcome.SKIPPED and "version 21 is deployed" in older.detail
    assert [r.path.rsplit("/", 1)[-1] for r in puts(arm, DEP_PATH)] == ["v21"]
    assert arm.ml.endpoint(ENDPOINT).traffic == {"v21": 100}


def test_kubernetes_target(arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    dispatcher = live(AMLEVENTS_DEPLOY_ALLOWED_TARGETS="managed,kubernetes",
                      AMLEVENTS_DEPLOY_ALLOWED_COMPUTES="k8s-prod")
    result = send(dispatcher, event(sample, arm, deploy_target="kubernetes"))
    assert result.outcome is Outcome.DONE, result.detail
    endpoint = arm.ml.endpoint(ENDPOINT)
    assert endpoint is not None and endpoint.compute and endpoint.compute.endswith("/k8s-prod")
    deployment = arm.ml.deployment(ENDPOINT, "v20")
    assert deployment is not None and deployment.compute_type == "Kubernetes"
    assert deployment.instance_type == "defaultinstancetype"


def test_custom_model_needs_environment_and_script(arm: FakeArm, live: Callable[..., Dispatcher],
                                                   sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20", mlflow=False)
    result = send(live(), event(sample, arm))
    assert result.outcome is Outcome.FAILED
    assert "set tags deploy_environment and deploy_scoring_script" in result.detail
    assert not puts(arm, DEP_PATH)


# --- faults -----------------------------------------------------------------------------------

def test_429_with_retry_after_is_retried_then_succeeds(arm: FakeArm,
                                                       live: Callable[..., Dispatcher],
                                                       sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.fail_next("PUT", DEP_PATH, 429, headers={"Retry-After": "7"})
    dispatcher, raw = live(), event(sample, arm)
    first = send(dispatcher, raw)
    assert first.outcome is Outcome.RETRY and first.should_retry
    assert "429" in first.detail
    second = send(dispatcher, raw)  # Event Grid redelivers the same event
    assert second.outcome is Outcome.DONE, second.detail
    assert arm.ml.endpoint(ENDPOINT).traffic == {"v20": 100}
    assert len(arm.ml.deployments(ENDPOINT)) == 1


def test_sdk_retries_absorb_a_short_throttle(arm: FakeArm, live: Callable[..., Dispatcher],
                                             sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.fail_next("PUT", DEP_PATH, 429, headers={"Retry-After": "0"})
    result = send(live(AMLEVENTS_DEPLOY_SDK_RETRIES="2"), event(sample, arm))
    assert result.outcome is Outcome.DONE, result.detail
    assert len(puts(arm, DEP_PATH)) == 2


def test_503_is_retried(arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.fail_next("GET", r"/models/sklearn_regression_model/versions/20$", 503)
    dispatcher, raw = live(), event(sample, arm)
    assert send(dispatcher, raw).outcome is Outcome.RETRY
    assert send(dispatcher, raw).outcome is Outcome.DONE


def test_400_fails_with_the_arm_message(arm: FakeArm, live: Callable[..., Dispatcher],
                                        sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.fail_next("PUT", DEP_PATH, 400, body={"error": {
        "code": "BadArgument", "message": "Not enough quota for Standard_DS3_v2 in westeurope."}})
    dispatcher, raw = live(), event(sample, arm)
    result = send(dispatcher, raw)
    assert result.outcome is Outcome.FAILED and not result.should_retry
    assert "Not enough quota for Standard_DS3_v2" in result.detail and "400" in result.detail
    # Recorded, not retried: the redelivery is a duplicate, and the endpoint hold is released.
    assert send(dispatcher, raw).duplicate


def test_failed_operation_fails(arm: FakeArm, live: Callable[..., Dispatcher],
                                sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.fail_next_lro("PUT", DEP_PATH, code="ImageBuildFailure", message="Image build failed.")
    result = send(live(), event(sample, arm))
    assert result.outcome is Outcome.FAILED
    assert "Image build failed." in result.detail


def test_slow_operation_retries_then_resumes(arm: FakeArm, live: Callable[..., Dispatcher],
                                             sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.lro_in_progress_polls, arm.lro_retry_after_ms = 30, 50
    dispatcher, raw = live(AMLEVENTS_DEPLOY_WAIT_S="0.3"), event(sample, arm)
    first = send(dispatcher, raw)
    assert first.outcome is Outcome.RETRY and "still" in first.detail
    arm.lro_in_progress_polls = 0
    deadline = time.monotonic() + 10
    result = send(dispatcher, raw)
    while result.outcome is Outcome.RETRY and time.monotonic() < deadline:
        result = send(dispatcher, raw)
    assert result.outcome is Outcome.DONE, result.detail
    assert len(puts(arm, DEP_PATH)) == 1  # the redelivery waited for it instead of starting again


def test_adapter_alone_is_idempotent(arm: FakeArm, sample: Sample, tmp_path: Path) -> None:
    arm.ml.add_model(MODEL, "20")
    env = {"AMLEVENTS_DEPLOY_SDK_RETRIES": "0"}
    deployer = build_deployer(AzureMlSettings.from_mapping(env), env, None)  # type: ignore[arg-type]
    event_ = parse_event(event(sample, arm))
    assert isinstance(event_, ModelRegistered)
    plan = decide(event_, DeployPolicy())
    assert isinstance(plan, DeploymentPlan)
    first, second = deployer.deploy(plan), deployer.deploy(plan)
    assert '"deployment_state":"deployed"' in first.detail
    assert '"deployment_state":"already deployed"' in second.detail
    assert len(puts(arm, DEP_PATH)) == 1 and len(puts(arm, EP_PATH)) == 2


def test_hung_request_times_out_and_retries(arm: FakeArm, live: Callable[..., Dispatcher],
                                            sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.delay_next("GET", r"/models/sklearn_regression_model/versions/20$", 3.0)
    result = send(live(AMLEVENTS_DEPLOY_HTTP_TIMEOUT_S="1"), event(sample, arm))
    assert result.outcome is Outcome.RETRY


# --- what the strict fake exposed (issue 11, item 5) ---------------------------------------------

def seed_endpoint(arm: FakeArm, *deployments: str, traffic: dict[str, int] | None = None) -> None:
    """An existing managed endpoint with these deployments of MODEL v20, made with the real SDK."""
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint
    from azure.identity import DefaultAzureCredential

    ml = MLClient(DefaultAzureCredential(), arm.subscription_id, arm.resource_group,
                  arm.workspace_name, retry_total=0, polling_interval=0.01)
    model_id = arm.ml.add_model(MODEL, "20")
    endpoint = ManagedOnlineEndpoint(name=ENDPOINT, auth_mode="key")
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    for name in deployments:
        ml.online_deployments.begin_create_or_update(ManagedOnlineDeployment(
            name=name, endpoint_name=ENDPOINT, model=model_id,
            instance_type="Standard_DS3_v2", instance_count=1)).result()
    if traffic:
        endpoint.traffic = traffic
        ml.online_endpoints.begin_create_or_update(endpoint).result()
    arm.clear_requests()


@pytest.mark.parametrize("reference", ["sk-env@latest", "azureml:sk-env@latest"])
def test_environment_at_latest_deploys_the_newest_version(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample, reference: str) -> None:
    # GIVEN a custom model whose tags ask for the latest version of environment sk-env
    arm.ml.add_model(MODEL, "20", mlflow=False)
    arm.ml.add_environment("sk-env", "3")
    newest = arm.ml.add_environment("sk-env", "4")
    arm.ml.add_code("score-code", "2")
    result = send(live(), event(sample, arm, deploy_environment=reference,
                                deploy_scoring_script="score-code:2/src/score.py"))
    # THEN the deployment runs sk-env:4, the newest, looked up as the SDK looks up "latest"
    assert result.outcome is Outcome.DONE, result.detail
    assert puts(arm, DEP_PATH)[0].body["properties"]["environmentId"].lower() == newest.lower()
    assert arm.requests_matching("GET", r"/environments/sk-env/versions$")


def test_endpoint_being_deleted_is_waited_for_then_recreated(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN the endpoint is being deleted (by someone else) when the event arrives
    seed_endpoint(arm)
    arm.ml.delete_in_background(ENDPOINT, seconds=0.5)
    result = send(live(), event(sample, arm))
    # THEN the adapter waits for the delete to finish, then creates the endpoint again
    assert result.outcome is Outcome.DONE, result.detail
    assert '"endpoint_created":true' in result.detail
    assert arm.ml.endpoint(ENDPOINT).provisioning_state == "Succeeded"
    assert arm.ml.endpoint(ENDPOINT).traffic == {"v20": 100}


def test_same_named_deployment_being_deleted_is_waited_for_then_recreated(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    seed_endpoint(arm, "v20")
    arm.ml.delete_in_background(ENDPOINT, "v20", seconds=0.5)
    result = send(live(), event(sample, arm))
    assert result.outcome is Outcome.DONE, result.detail
    assert '"deployment_state":"deployed"' in result.detail
    assert arm.ml.deployment(ENDPOINT, "v20").provisioning_state == "Succeeded"
    assert len(puts(arm, DEP_PATH)) == 1


@pytest.mark.parametrize("path", [DEP_PATH, EP_PATH], ids=["deployment PUT", "endpoint PUT"])
def test_409_conflict_is_retried_with_its_retry_after(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample, path: str) -> None:
    # GIVEN Azure ML answers 409 (another operation in progress) with Retry-After
    arm.ml.add_model(MODEL, "20")
    arm.fail_next("PUT", path, 409, headers={"Retry-After": "7"}, body={"error": {
        "code": "Conflict", "message": "Another operation is in progress on this endpoint."}})
    dispatcher, raw = live(), event(sample, arm)
    first = send(dispatcher, raw)
    # THEN it is retried (Event Grid redelivers), the hint kept, and the redelivery deploys once
    assert first.outcome is Outcome.RETRY and first.should_retry, first.detail
    assert "409" in first.detail and "Retry-After 7" in first.detail
    assert send(dispatcher, raw).outcome is Outcome.DONE
    assert len(arm.ml.deployments(ENDPOINT)) == 1


def test_409_carries_retry_after_seconds(arm: FakeArm, sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.fail_next("PUT", DEP_PATH, 409, headers={"Retry-After": "7"})
    env = {"AMLEVENTS_DEPLOY_SDK_RETRIES": "0"}
    deployer = build_deployer(AzureMlSettings.from_mapping(env), env, None)  # type: ignore[arg-type]
    event_ = parse_event(event(sample, arm))
    assert isinstance(event_, ModelRegistered)
    plan = decide(event_, DeployPolicy())
    assert isinstance(plan, DeploymentPlan)
    with pytest.raises(RetryableError) as caught:
        deployer.deploy(plan)
    assert caught.value.retry_after_s == 7.0


@pytest.mark.parametrize("state", ["Failed", "Canceled"])
def test_failed_or_canceled_endpoint_is_repaired_before_deploying(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample, state: str) -> None:
    # GIVEN the endpoint exists but its last operation ended Failed (or was Canceled)
    seed_endpoint(arm)
    arm.ml.set_provisioning_state(ENDPOINT, state)
    result = send(live(), event(sample, arm))
    # THEN it is PUT again as it is (the repair), and the deployment goes into a Succeeded endpoint
    assert result.outcome is Outcome.DONE, result.detail
    assert f'"endpoint_repaired":"{state}"' in result.detail
    first_put = puts(arm, EP_PATH)[0].body
    assert first_put["properties"]["authMode"].lower() == "key" and not first_put["properties"]["traffic"]
    assert arm.ml.endpoint(ENDPOINT).traffic == {"v20": 100}


# --- pure parts -------------------------------------------------------------------------------

@pytest.mark.parametrize(("current", "percent", "expected"), [
    ({}, 100, {"new": 100}),
    ({}, 10, {"new": 100}),
    ({"old": 100}, 100, {"old": 0, "new": 100}),
    ({"old": 100}, 10, {"old": 90, "new": 10}),
    ({"a": 50, "b": 50}, 25, {"a": 38, "b": 37, "new": 25}),
    ({"a": 70, "b": 30, "c": 0}, 0, {"a": 70, "b": 30, "c": 0, "new": 0}),
    ({"new": 100}, 20, {"new": 100}),
    ({"old": 90, "new": 10}, 50, {"old": 50, "new": 50}),
])
def test_split_traffic(current: dict[str, int], percent: int, expected: dict[str, int]) -> None:
    result = split_traffic(current, "new", percent)
    assert result == expected and sum(result.values()) == 100


def test_settings_defaults_and_errors() -> None:
    assert AzureMlSettings.from_mapping({}) == AzureMlSettings(240.0, 15.0, 3, 60.0)
    with pytest.raises(SettingError) as caught:
        AzureMlSettings.from_mapping({"AMLEVENTS_DEPLOY_WAIT_S": "forever"})
    assert caught.value.setting == "AMLEVENTS_DEPLOY_WAIT_S"


# Each setting's range, at its edges: the wait stays under an hour (a Functions host timeout).
@pytest.mark.parametrize(("name", "inside", "outside"), [
    ("AMLEVENTS_DEPLOY_WAIT_S", ["0.1", "3600"], ["0.09", "3600.5"]),
    ("AMLEVENTS_DEPLOY_POLL_S", ["0.01", "300"], ["0.009", "300.5"]),
    ("AMLEVENTS_DEPLOY_SDK_RETRIES", ["0", "10"], ["-1", "11"]),
    ("AMLEVENTS_DEPLOY_HTTP_TIMEOUT_S", ["1", "600"], ["0.9", "600.5"])])
def test_settings_ranges(name: str, inside: list[str], outside: list[str]) -> None:
    for value in inside:
        AzureMlSettings.from_mapping({name: value})
    for value in outside:
        with pytest.raises(SettingError) as caught:
            AzureMlSettings.from_mapping({name: value})
        assert caught.value.setting == name, value


def test_classify_transport_errors() -> None:
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    assert isinstance(classify(ServiceRequestError("refused")), RetryableError)
    assert isinstance(classify(ServiceResponseError("read timed out")), RetryableError)
    assert isinstance(classify(ValueError("bad")), PermanentError)


# --- whole messages and details -----------------------------------------------------------------

def model_id_of(arm: FakeArm, version: str = "20") -> str:
    return f"{workspace_id(arm)}/models/{MODEL}/versions/{version}"


def test_done_detail_is_the_plan_with_what_was_done(arm: FakeArm, live: Callable[..., Dispatcher],
                                                    sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    result = send(live(), event(sample, arm))
    assert result.action == (f"deploy {MODEL}:20 to managed endpoint {ENDPOINT} as v20 "
                             "(100% traffic)")
    assert json.loads(result.detail) == {
        "compute": "", "cpu_cores": 0.0, "deployment": "v20", "deployment_state": "deployed",
        "endpoint": ENDPOINT, "endpoint_created": True, "environment": "", "instance_count": 1,
        "instance_type": "Standard_DS3_v2", "memory_gb": 0.0, "model_id": model_id_of(arm),
        "model_name": MODEL, "model_version": "20", "scoring_script": "",
        "tags": {"deploy": "true"}, "target": "managed", "traffic": {"v20": 100},
        "workspace": workspace_id(arm)}


def test_repaired_endpoint_is_named_in_the_detail(arm: FakeArm, live: Callable[..., Dispatcher],
                                                  sample: Sample) -> None:
    seed_endpoint(arm)
    arm.ml.set_provisioning_state(ENDPOINT, "Canceled")
    detail = json.loads(send(live(), event(sample, arm)).detail)
    assert {k: detail[k] for k in ("endpoint_created", "endpoint_repaired", "deployment_state",
                                   "traffic")} == {
        "endpoint_created": False, "endpoint_repaired": "Canceled",
        "deployment_state": "deployed", "traffic": {"v20": 100}}


def test_busy_endpoint_longer_than_the_wait_is_retried_naming_its_state(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN an endpoint someone else is updating, beyond AMLEVENTS_DEPLOY_WAIT_S
    seed_endpoint(arm)
    arm.ml.set_provisioning_state(ENDPOINT, "Updating")
    result = send(live(AMLEVENTS_DEPLOY_WAIT_S="0.1"), event(sample, arm))
    # THEN the delivery is retried, the message naming the resource, its state and the setting
    assert result.outcome is Outcome.RETRY
    assert result.detail == (f"RetryableError: endpoint {ENDPOINT} still Updating after 0.1s "
                             "(AMLEVENTS_DEPLOY_WAIT_S); a redelivery will check again")
    assert not puts(arm, EP_PATH) and not puts(arm, DEP_PATH)


def test_busy_deployment_longer_than_the_wait_is_retried_naming_its_state(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    seed_endpoint(arm, "v20")
    arm.ml.set_provisioning_state(ENDPOINT, "Scaling", deployment="v20")
    result = send(live(AMLEVENTS_DEPLOY_WAIT_S="0.1"), event(sample, arm))
    assert result.detail == ("RetryableError: deployment v20 still Scaling after 0.1s "
                             "(AMLEVENTS_DEPLOY_WAIT_S); a redelivery will check again")
    assert not puts(arm, DEP_PATH)


def test_slow_operation_message_names_the_operation_and_the_setting(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    arm.lro_in_progress_polls, arm.lro_retry_after_ms = 30, 50
    result = send(live(AMLEVENTS_DEPLOY_WAIT_S="0.3"), event(sample, arm))
    assert result.detail == ("RetryableError: endpoint creation still running after 0.3s "
                             "(AMLEVENTS_DEPLOY_WAIT_S); a redelivery will resume it")


def test_arm_errors_are_reported_whole(arm: FakeArm, live: Callable[..., Dispatcher],
                                       sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    dispatcher = live()
    arm.fail_next("PUT", DEP_PATH, 400, body={"error": {"code": "BadArgument",
                                                        "message": "Not enough quota."}})
    bad = send(dispatcher, event(sample, arm, 20, attempt="1"))
    assert bad.detail == "PermanentError: ARM 400 BadArgument: Not enough quota."
    arm.fail_next("PUT", DEP_PATH, 429, headers={"Retry-After": "7"})
    throttled = send(dispatcher, event(sample, arm, 20, attempt="2", again="1"))
    assert throttled.detail == ("RetryableError: ARM 429 TooManyRequests: Injected 429 by the fake "
                                "ARM. (Retry-After 7 s)")
    arm.fail_next("PUT", DEP_PATH, 500)
    broken = send(dispatcher, event(sample, arm, 20, attempt="3", again="2", more="1"))
    assert broken.detail == ("RetryableError: ARM 500 InternalServerError: Injected 500 by the fake "
                             "ARM.")
    assert (bad.outcome, throttled.outcome, broken.outcome) == (
        Outcome.FAILED, Outcome.RETRY, Outcome.RETRY)


def test_failed_operation_and_failed_repair_are_reported_whole(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    seed_endpoint(arm)
    arm.ml.set_provisioning_state(ENDPOINT, "Failed")
    arm.fail_next_lro("PUT", EP_PATH, "QuotaExceeded", "Not enough quota in westeurope.")
    result = send(live(), event(sample, arm))
    # (the operation's own status is 200: the poll answered, the operation inside it failed)
    assert result.detail == (
        f"PermanentError: endpoint {ENDPOINT} is Failed (its last operation did not succeed) and "
        "repairing it, a PUT of its own definition, failed: ARM 200 QuotaExceeded: Not enough "
        "quota in westeurope.; fix or delete the endpoint")
    assert result.outcome is Outcome.FAILED and not result.should_retry
    assert not puts(arm, DEP_PATH)  # no deployment onto a broken endpoint


def test_a_repair_that_is_throttled_is_retried_not_failed(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    seed_endpoint(arm)
    arm.ml.set_provisioning_state(ENDPOINT, "Failed")
    arm.fail_next("PUT", EP_PATH, 503, headers={"Retry-After": "3"})
    result = send(live(), event(sample, arm))
    assert result.outcome is Outcome.RETRY and result.should_retry
    assert result.detail == ("RetryableError: ARM 503 ServiceUnavailable: Injected 503 by the fake "
                             "ARM. (Retry-After 3 s)")


def test_custom_model_and_missing_environment_messages(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20", mlflow=False)
    dispatcher = live()
    custom = send(dispatcher, event(sample, arm))
    assert custom.detail == (f"PermanentError: model {MODEL}:20 is a custom_model, not MLflow: set "
                             "tags deploy_environment and deploy_scoring_script")
    missing = send(dispatcher, event(sample, arm, deploy_environment="azureml:nope@latest",
                                     deploy_scoring_script="score-code:2/src/score.py"))
    assert missing.detail == ("PermanentError: environment nope@latest: Asset nope does not exist "
                              f"in workspace {arm.workspace_name}.")
    assert not puts(arm, EP_PATH)


def test_v1_target_without_a_v1_adapter_is_refused() -> None:
    plan = DeploymentPlan(WorkspaceRef("sub-1", "rg-1", "ws-1"), MODEL, "20", "aci", ENDPOINT,
                          "v20")

    def no_client(workspace: WorkspaceRef) -> Any:
        raise AssertionError("an aci plan must not build an MLClient")

    with pytest.raises(PermanentError) as caught:
        AzureMlDeployer(AzureMlSettings(), no_client).deploy(plan)
    assert str(caught.value) == "target aci needs the SDK v1 adapter"


def test_the_mlclient_is_built_quiet_with_our_retries_and_timeouts(arm: FakeArm) -> None:
    # The Functions host has no terminal: no progress bars, no telemetry; azure-core retries and
    # socket timeouts come from the settings.
    settings = AzureMlSettings(sdk_retries=4, http_timeout_s=9.0)
    deployer = build_deployer(settings, {}, None)  # type: ignore[arg-type]
    workspace = WorkspaceRef(arm.subscription_id, arm.resource_group, arm.workspace_name)
    ml = deployer.client(workspace)
    assert deployer.client(workspace) is ml  # one client per workspace, reused
    assert (ml.subscription_id, ml.resource_group_name, ml.workspace_name) == (
        arm.subscription_id, arm.resource_group, arm.workspace_name)
    operations = ml.online_endpoints
    assert (operations._show_progress, operations._operation_config.enable_telemetry) == (
        False, False)
    client = ml._service_client_10_2023
    retry = client._config.retry_policy
    assert (retry.total_retries, retry.backoff_factor) == (4, 0.5)
    assert client._client._pipeline._transport.connection_config.timeout == 9.0
    assert client._client._pipeline._transport.connection_config.read_timeout == 9.0


def test_classify_messages() -> None:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    cases: list[tuple[BaseException, type[Exception], str]] = [
        (ServiceRequestError("refused"), RetryableError,
         "Azure ML unreachable or timed out: refused"),
        (ServiceResponseError("read timed out"), RetryableError,
         "Azure ML unreachable or timed out: read timed out"),
        (TimeoutError("slow"), RetryableError, "Azure ML unreachable or timed out: slow"),
        (ClientAuthenticationError(message="no managed identity endpoint"), PermanentError,
         "no credential for Azure ML (managed identity?): no managed identity endpoint"),
        (HttpResponseError(message="odd"), PermanentError, "ARM error : odd"),
        (ValueError("bad"), PermanentError, "ValueError: bad"),
    ]
    for exc, kind, message in cases:
        error = classify(exc)
        assert (type(error), str(error)) == (kind, message), exc
    assert classify(ServiceRequestError("refused")).retry_after_s is None  # type: ignore[attr-defined]


def test_request_bodies_of_a_custom_model_rollout(arm: FakeArm, live: Callable[..., Dispatcher],
                                                  sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20", mlflow=False)
    env_id = arm.ml.add_environment("sk-env", "3")
    arm.ml.add_code("score-code", "2")
    result = send(live(), event(sample, arm, deploy_environment="sk-env:3",
                                deploy_scoring_script="score-code:2/src/score.py"))
    assert result.outcome is Outcome.DONE, result.detail
    creation, traffic = (r.body for r in puts(arm, EP_PATH))
    # the endpoint says who made it and for which model; key auth; no traffic until deployed
    assert creation == {"location": "westeurope", "identity": {"type": "SystemAssigned"},
                        "properties": {"authMode": "Key", "properties": {}, "traffic": {},
                                       "mirrorTraffic": {}},
                        "tags": {"createdBy": "amlevents", "model": MODEL}}
    assert traffic["properties"]["traffic"] == {"v20": 100} and traffic["tags"] == creation["tags"]
    [deployment] = (r.body for r in puts(arm, DEP_PATH))
    assert deployment == {
        "location": "westeurope", "sku": {"name": "Default", "capacity": 1},
        "tags": {"createdBy": "amlevents", "modelVersion": "20"},
        "properties": {
            "codeConfiguration": {"codeId": f"{workspace_id(arm)}/codes/score-code/versions/2",
                                  "scoringScript": "src/score.py"},
            "environmentId": env_id, "model": model_id_of(arm), "properties": {},
            "environmentVariables": {}, "appInsightsEnabled": False,
            "instanceType": "Standard_DS3_v2", "endpointComputeType": "Managed"}}
    detail = json.loads(result.detail)
    assert "environment_id" not in detail and detail["environment"] == "sk-env:3"


def test_request_bodies_of_a_kubernetes_rollout(arm: FakeArm, live: Callable[..., Dispatcher],
                                                sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20")
    dispatcher = live(AMLEVENTS_DEPLOY_ALLOWED_TARGETS="managed,kubernetes",
                      AMLEVENTS_DEPLOY_ALLOWED_COMPUTES="k8s-prod")
    result = send(dispatcher, event(sample, arm, deploy_target="kubernetes"))
    assert result.outcome is Outcome.DONE, result.detail
    creation = puts(arm, EP_PATH)[0].body
    assert creation == {"location": "westeurope", "identity": {"type": "SystemAssigned"},
                        "properties": {"authMode": "Key", "properties": {}, "traffic": {},
                                       "mirrorTraffic": {},
                                       "compute": f"{workspace_id(arm)}/computes/k8s-prod"},
                        "tags": {"createdBy": "amlevents", "model": MODEL}}
    [deployment] = (r.body for r in puts(arm, DEP_PATH))
    assert deployment == {
        "location": "westeurope", "sku": {"name": "Default", "capacity": 1},
        "tags": {"createdBy": "amlevents", "modelVersion": "20"},
        "properties": {"model": model_id_of(arm), "properties": {}, "environmentVariables": {},
                       "appInsightsEnabled": False, "instanceType": "defaultinstancetype",
                       "endpointComputeType": "Kubernetes"}}


def test_environment_at_latest_is_reported_by_its_id(arm: FakeArm, live: Callable[..., Dispatcher],
                                                     sample: Sample) -> None:
    arm.ml.add_model(MODEL, "20", mlflow=False)
    arm.ml.add_environment("sk-env", "3")
    newest = arm.ml.add_environment("sk-env", "4")
    arm.ml.add_code("score-code", "2")
    result = send(live(), event(sample, arm, deploy_environment="sk-env@latest",
                                deploy_scoring_script="score-code:2/src/score.py"))
    detail = json.loads(result.detail)
    assert (detail["environment"], detail["environment_id"]) == ("sk-env@latest", newest)


def test_a_deployment_of_this_model_still_creating_is_waited_for_not_put_again(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    import threading

    # GIVEN an earlier delivery's deployment v20 of this model, still Creating
    seed_endpoint(arm, "v20", traffic={"v20": 100})
    arm.ml.set_provisioning_state(ENDPOINT, "Creating", deployment="v20")

    def finish_once_seen() -> None:  # the creation ends after our first look at it
        deadline = time.monotonic() + 10
        while not arm.requests_matching("GET", DEP_PATH) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        arm.ml.set_provisioning_state(ENDPOINT, "Succeeded", "v20")

    done = threading.Thread(target=finish_once_seen)
    done.start()
    result = send(live(), event(sample, arm))
    done.join()
    # THEN it is waited for and counted as deployed now; nothing is PUT again
    detail = json.loads(result.detail)
    assert (detail["deployment_state"], detail["endpoint_created"]) == ("deployed", False)
    assert not puts(arm, DEP_PATH) and not puts(arm, EP_PATH)


def test_settings_are_read_each_from_its_own_name() -> None:
    env = {"AMLEVENTS_DEPLOY_WAIT_S": "5", "AMLEVENTS_DEPLOY_POLL_S": "0.5",
           "AMLEVENTS_DEPLOY_SDK_RETRIES": "2", "AMLEVENTS_DEPLOY_HTTP_TIMEOUT_S": "30"}
    assert AzureMlSettings.from_mapping(env) == AzureMlSettings(5.0, 0.5, 2, 30.0)
