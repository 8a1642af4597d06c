"""The fake ARM answers the REAL azure-ai-ml and azure-mgmt-datafactory clients, over HTTPS,
authenticated by DefaultAzureCredential through the App Service managed-identity endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.ai.ml import MLClient
from azure.ai.ml.entities import (
    KubernetesOnlineDeployment,
    KubernetesOnlineEndpoint,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceResponseError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RequestIdPolicy
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.polling.arm_polling import ARMPolling
from azure.mgmt.datafactory import DataFactoryManagementClient

from tests.fakes.arm import FakeArm, NetworkGuard, fake_arm_fixture

FAST = {"retry_total": 2, "retry_backoff_factor": 0.01, "polling_interval": 0.01}
ENDPOINTS = r"/onlineEndpoints/(?P<ep>[^/]+)$"
FACTORY, PIPELINE = "adf-amlevents", "retrain"


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    """No test reaches beyond loopback; any attempt fails the test."""
    network = NetworkGuard().install(monkeypatch)
    yield network
    assert network.attempts == []


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch, guard: NetworkGuard) -> Iterator[FakeArm]:
    """A fake ARM with managed-identity, ML cloud and CA variables set."""
    yield from fake_arm_fixture(monkeypatch)


def ml_client(arm: FakeArm, **kwargs: Any) -> MLClient:
    """MLClient as production builds it (no test-only kwargs), made fast."""
    return MLClient(DefaultAzureCredential(), arm.subscription_id, arm.resource_group,
                    arm.workspace_name, **{**FAST, **kwargs})


def adf_client(arm: FakeArm, **kwargs: Any) -> DataFactoryManagementClient:
    """DataFactoryManagementClient pointed at the fake."""
    return DataFactoryManagementClient(DefaultAzureCredential(), arm.subscription_id,
                                       **{**arm.adf_client_kwargs(), **FAST, **kwargs})


def error_code(error: HttpResponseError) -> str | None:
    """The ARM error code an SDK exception carries."""
    return error.error.code if error.error else None


def assert_managed_identity_used(arm: FakeArm) -> None:
    """Every ARM call carried an issued bearer token, got from the App Service MI endpoint."""
    calls = [r for r in arm.requests if r.path != "/metadata/endpoints"]
    assert calls and all(r.bearer_token for r in calls)
    token = arm.token_requests[0]
    assert token.headers["x-identity-header"] == arm.identity_header
    assert token.query["api-version"] == "2019-08-01" and token.query["resource"]


def deploy_managed(arm: FakeArm, ml: MLClient) -> None:
    """Create endpoint ep1, deployment blue (2 x Standard_DS3_v2, iris:3), then 100% traffic."""
    arm.ml.add_model("iris", "3")
    endpoint = ManagedOnlineEndpoint(name="ep1", auth_mode="key", tags={"owner": "amlevents"})
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    deployment = ManagedOnlineDeployment(name="blue", endpoint_name="ep1", model="azureml:iris:3",
                                         instance_type="Standard_DS3_v2", instance_count=2)
    ml.online_deployments.begin_create_or_update(deployment).result()
    endpoint.traffic = {"blue": 100}
    ml.online_endpoints.begin_create_or_update(endpoint).result()


# -- Azure ML ------------------------------------------------------------------------------


def test_managed_endpoint_deployment_and_traffic(arm: FakeArm) -> None:
    # GIVEN a registered MLflow model WHEN the real MLClient deploys it and shifts traffic
    ml = ml_client(arm)
    deploy_managed(arm, ml)
    # THEN the fake got the documented PUTs with instance type, count, model id and traffic
    puts = arm.requests_matching("PUT", r"/onlineEndpoints/")
    assert [r.path.rsplit("/", 1)[-1] for r in puts] == ["ep1", "blue", "ep1"]
    dep = puts[1].body
    assert dep["properties"]["instanceType"] == "Standard_DS3_v2"
    assert dep["properties"]["endpointComputeType"] == "Managed"
    assert dep["sku"]["capacity"] == 2
    assert dep["properties"]["model"] == arm.ml.add_model("iris", "3")
    assert puts[0].body["properties"]["authMode"] == "Key"
    assert puts[2].body["properties"]["traffic"] == {"blue": 100}
    # AND the state and what the SDK reads back agree
    assert arm.ml.endpoint("ep1").traffic == {"blue": 100}
    view = arm.ml.deployment("ep1", "blue")
    assert (view.instance_type, view.instance_count, view.provisioning_state) == (
        "Standard_DS3_v2", 2, "Succeeded")
    assert ml.online_endpoints.get("ep1").traffic == {"blue": 100}
    assert [d.name for d in ml.online_deployments.list("ep1")] == ["blue"]
    assert_managed_identity_used(arm)


def test_kubernetes_endpoint_and_deployment(arm: FakeArm) -> None:
    arm.ml.add_model("iris", "1", mlflow=False)
    arm.ml.add_environment("sklearn-env", "2")
    ml = ml_client(arm)
    endpoint = KubernetesOnlineEndpoint(name="k8s-ep", compute="aks-attached", auth_mode="key")
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    deployment = KubernetesOnlineDeployment(
        name="green", endpoint_name="k8s-ep", model="azureml:iris:1", environment="azureml:sklearn-env:2",
        instance_type="defaultinstancetype", instance_count=1)
    result = ml.online_deployments.begin_create_or_update(deployment).result()
    assert isinstance(result, KubernetesOnlineDeployment)
    assert str(arm.ml.endpoint("k8s-ep").compute).endswith("/computes/aks-attached")
    view = arm.ml.deployment("k8s-ep", "green")
    assert (view.compute_type, view.instance_type, view.instance_count) == (
        "Kubernetes", "defaultinstancetype", 1)
    assert str(view.environment_id).endswith("/environments/sklearn-env/versions/2")
    assert isinstance(ml.online_endpoints.get("k8s-ep"), KubernetesOnlineEndpoint)


def test_model_versions_are_served_as_seeded(arm: FakeArm) -> None:
    arm.ml.add_model("churn", "1", tags={"deploy": "true"})
    arm.ml.add_model("churn", "2", mlflow=False)
    ml = ml_client(arm)
    v1 = ml.models.get("churn", version="1")
    assert (v1.type, v1.tags, "python_function" in v1.flavors) == ("mlflow_model", {"deploy": "true"}, True)
    assert ml.models.get("churn", version="2").type == "custom_model"
    assert ml.models.get("churn", label="latest").version == "2"
    with pytest.raises(ResourceNotFoundError):
        ml.models.get("churn", version="9")


def test_ml_client_kwargs_select_the_fake_cloud(arm: FakeArm, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no cloud variables nor CA bundle in the environment, only MLClient kwargs
    for name in ("ARM_CLOUD_METADATA_URL", "AZUREML_CURRENT_CLOUD", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name)
    ml = ml_client(arm, **arm.ml_client_kwargs())
    assert ml.workspaces.get(arm.workspace_name).location == arm.location
    assert not arm.requests_matching("GET", r"^/metadata/endpoints$")


def test_slow_lro_reports_in_progress_then_succeeded(arm: FakeArm) -> None:
    arm.lro_in_progress_polls = 3
    ml = ml_client(arm)
    ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="slow")).result()
    assert len(arm.requests_matching("GET", r"/mfeOperationsStatus/")) == 4
    assert arm.ml.endpoint("slow").provisioning_state == "Succeeded"


def test_failed_lro_surfaces_the_error(arm: FakeArm) -> None:
    ml = ml_client(arm)
    arm.ml.add_model("iris", "3")
    ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="ep1")).result()
    arm.fail_next_lro("PUT", r"/deployments/blue$", "ResourceNotReady", "Container crashed: exit code 1")
    deployment = ManagedOnlineDeployment(name="blue", endpoint_name="ep1", model="azureml:iris:3",
                                         instance_type="Standard_DS3_v2", instance_count=1)
    with pytest.raises(HttpResponseError, match="Container crashed"):
        ml.online_deployments.begin_create_or_update(deployment).result()
    assert arm.ml.deployment("ep1", "blue").provisioning_state == "Failed"


def test_traffic_to_unknown_deployment_is_refused(arm: FakeArm) -> None:
    ml = ml_client(arm)
    endpoint = ManagedOnlineEndpoint(name="ep1", traffic={"ghost": 100})
    with pytest.raises(HttpResponseError, match="ghost") as caught:
        ml.online_endpoints.begin_create_or_update(endpoint)
    assert caught.value.status_code == 400


def test_arm_400_message_surfaces(arm: FakeArm) -> None:
    arm.fail_next("PUT", ENDPOINTS, 400, body={"error": {
        "code": "BadArgument", "message": "Instance type Standard_XYZ is not supported."}})
    with pytest.raises(HttpResponseError, match="Standard_XYZ is not supported") as caught:
        ml_client(arm).online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="ep1"))
    assert (caught.value.status_code, error_code(caught.value)) == (400, "BadArgument")
    assert not arm.ml.has_endpoint("ep1")


def test_503_is_retried_then_succeeds(arm: FakeArm) -> None:
    arm.fail_next("GET", r"/workspaces/[^/]+$", 503)
    assert ml_client(arm).workspaces.get(arm.workspace_name).name == arm.workspace_name
    assert len(arm.requests_matching("GET", r"/workspaces/[^/]+$")) == 2


def test_delete_endpoint_is_a_long_running_operation(arm: FakeArm) -> None:
    ml = ml_client(arm)
    ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="gone")).result()
    ml.online_endpoints.begin_delete("gone").result()
    assert arm.requests_matching("DELETE", r"/onlineEndpoints/gone$")
    assert not arm.ml.has_endpoint("gone")


def test_patch_endpoint_is_a_long_running_operation(arm: FakeArm) -> None:
    deploy_managed(arm, ml_client(arm))
    auth = BearerTokenCredentialPolicy(DefaultAzureCredential(), f"{arm.url}/.default")
    client: ARMPipelineClient[HttpRequest, Any] = ARMPipelineClient(
        arm.url, policies=[RequestIdPolicy(), auth], connection_verify=arm.ca_path)
    path = f"{arm.url}{arm.ml.endpoint('ep1').raw['id']}?api-version=2023-04-01-preview"
    request = HttpRequest("PATCH", path, json={"tags": {"stage": "prod"}})
    response = client.send_request(request, _return_pipeline_response=True)
    assert response.http_response.status_code == 202
    poller = LROPoller(client, response, lambda r: r.http_response.json(), ARMPolling(0.01))
    assert poller.result()["tags"] == {"stage": "prod"}
    assert arm.ml.endpoint("ep1").traffic == {"blue": 100}


# -- Data Factory --------------------------------------------------------------------------


def test_create_run_and_follow_its_status(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    adf = adf_client(arm)
    run = adf.pipelines.create_run(arm.resource_group, FACTORY, PIPELINE,
                                   parameters={"modelName": "iris", "threshold": 0.3})
    sent = arm.requests_matching("POST", r"/createRun$")[0]
    assert sent.body == {"modelName": "iris", "threshold": 0.3}
    assert sent.api_version == "2018-06-01"
    got = adf.pipeline_runs.get(arm.resource_group, FACTORY, run.run_id)
    assert (got.status, got.pipeline_name, got.parameters) == (
        "Queued", PIPELINE, {"modelName": "iris", "threshold": "0.3"})
    arm.adf.set_run_status(run.run_id, "Succeeded")
    done = adf.pipeline_runs.get(arm.resource_group, FACTORY, run.run_id)
    assert done.status == "Succeeded" and done.run_end is not None
    assert_managed_identity_used(arm)


def test_unknown_pipeline_is_not_found(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    with pytest.raises(ResourceNotFoundError, match="Entity nope not found") as caught:
        adf_client(arm).pipelines.create_run(arm.resource_group, FACTORY, "nope")
    assert error_code(caught.value) == "EntityNotFound"
    assert arm.adf.runs() == []


def test_429_with_retry_after_then_success(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    arm.fail_next("POST", r"/createRun$", 429, headers={"Retry-After": "1"})
    started = time.monotonic()
    run = adf_client(arm).pipelines.create_run(arm.resource_group, FACTORY, PIPELINE)
    assert time.monotonic() - started >= 1.0
    assert len(arm.requests_matching("POST", r"/createRun$")) == 2
    assert [r.run_id for r in arm.adf.runs()] == [run.run_id]


def test_503_after_retries_surfaces(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    arm.fail_next("POST", r"/createRun$", 503, times=3)
    with pytest.raises(HttpResponseError) as caught:
        adf_client(arm).pipelines.create_run(arm.resource_group, FACTORY, PIPELINE)
    assert caught.value.status_code == 503
    assert len(arm.requests_matching("POST", r"/createRun$")) == 3
    assert arm.adf.runs() == []


def test_400_surfaces_the_arm_message(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    arm.fail_next("POST", r"/createRun$", 400, body={"error": {
        "code": "BadRequest", "message": "The parameter threshold is missing."}})
    with pytest.raises(HttpResponseError, match="threshold is missing") as caught:
        adf_client(arm).pipelines.create_run(arm.resource_group, FACTORY, PIPELINE)
    assert (caught.value.status_code, error_code(caught.value)) == (400, "BadRequest")


def test_accept_then_time_out_creates_the_run(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    arm.adf.accept_then_time_out(PIPELINE, seconds=2)
    with pytest.raises(ServiceResponseError):
        adf_client(arm, retry_total=0, read_timeout=0.3).pipelines.create_run(
            arm.resource_group, FACTORY, PIPELINE, parameters={"modelName": "iris"})
    assert [r.parameters for r in arm.adf.runs(PIPELINE)] == [{"modelName": "iris"}]


def test_hang_before_processing_times_the_client_out(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    arm.fail_next("POST", r"/createRun$", 504, delay_s=2)
    with pytest.raises(ServiceResponseError):
        adf_client(arm, retry_total=0, read_timeout=0.3).pipelines.create_run(
            arm.resource_group, FACTORY, PIPELINE)
    assert arm.adf.runs() == []


# -- the fake's own contract -----------------------------------------------------------------


def test_arm_refuses_requests_without_a_token_or_api_version(arm: FakeArm) -> None:
    url = f"{arm.url}/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}"
    anonymous = requests.get(url + "?api-version=2020-01-01", verify=arm.ca_path, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "AuthenticationFailed"
    forged = requests.get(url + "?api-version=2020-01-01", verify=arm.ca_path, timeout=5,
                          headers={"Authorization": "Bearer forged"})
    assert forged.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_token_endpoint_checks_the_identity_header(arm: FakeArm) -> None:
    query = {"api-version": "2019-08-01", "resource": arm.url}
    wrong = requests.get(arm.token_url, params=query, headers={"X-IDENTITY-HEADER": "x"}, timeout=5)
    assert wrong.status_code == 401
    right = requests.get(arm.token_url, params=query, timeout=5,
                         headers={"X-IDENTITY-HEADER": arm.identity_header})
    assert right.json()["token_type"] == "Bearer" and int(right.json()["expires_on"]) > time.time()
