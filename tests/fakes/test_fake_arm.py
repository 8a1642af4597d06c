"""The fake ARM answers the REAL azure-ai-ml and azure-mgmt-datafactory clients, over HTTPS,
authenticated by DefaultAzureCredential through the App Service managed-identity endpoint, and it is
as strict as ARM: one test per leniency of issue 11 (item 4) shows ARM's status and error body."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from azure.ai.ml import Input, MLClient
from azure.ai.ml.entities import (
    KubernetesOnlineDeployment,
    KubernetesOnlineEndpoint,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    PipelineJob,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceResponseError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RequestIdPolicy
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.polling.arm_polling import ARMPolling
from azure.mgmt.datafactory import DataFactoryManagementClient
from azure.mgmt.datafactory.models import RunFilterParameters

from tests.fakes.arm import FakeArm, fake_arm_fixture
from tests.fakes.arm_ml import AML_AUDIENCE

FAST = {"retry_total": 2, "retry_backoff_factor": 0.01, "polling_interval": 0.01}
ENDPOINTS = r"/onlineEndpoints/(?P<ep>[^/]+)$"
FACTORY, PIPELINE = "adf-amlevents", "retrain"
DECLARED: dict[str, dict[str, Any]] = {
    "modelName": {"type": "String"}, "threshold": {"type": "Float", "defaultValue": 0.5}}
ML_API, ADF_API = "2023-04-01-preview", "2018-06-01"
JOB_API, BATCH_API = "2024-01-01-preview", "2023-10-01"  # what azure-ai-ml 1.35 sends


arm = fake_arm_fixture()


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
    arm.adf.add_pipeline(FACTORY, PIPELINE, parameters=DECLARED)
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
    arm.adf.add_pipeline(FACTORY, PIPELINE, parameters=DECLARED)
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


# -- as strict as ARM: each leniency of issue 11 item 4, with ARM's status and error body -------


def raw(arm: FakeArm, method: str, path: str, body: Any = None, *,
        api_version: str = ML_API) -> requests.Response:
    """One ARM call outside the SDKs (they refuse bad names and bodies before sending), with a
    token from the managed-identity endpoint, as any client would get it."""
    token = requests.get(arm.token_url, params={"api-version": "2019-08-01", "resource": arm.url},
                         headers={"X-IDENTITY-HEADER": arm.identity_header}, timeout=5)
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return requests.request(method, f"{arm.url}{path}", params={"api-version": api_version},
                            json=body, headers=headers, verify=arm.ca_path, timeout=10)


def ws_path(arm: FakeArm, rest: str = "") -> str:
    return (f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{arm.workspace_name}{rest}")


def factory_path(arm: FakeArm, rest: str = "") -> str:
    return (f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}/providers/"
            f"Microsoft.DataFactory/factories/{FACTORY}{rest}")


def arm_error_of(response: requests.Response, status: int) -> dict[str, Any]:
    """The ``error`` of an ARM error body, after checking the status and the body's shape."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert {"code", "message", "target", "details"} <= set(error)
    return error


def endpoint_body(arm: FakeArm, **properties: Any) -> dict[str, Any]:
    return {"location": arm.location, "properties": {"authMode": "Key", **properties}}


def deployment_body(arm: FakeArm, *, model: str = "", sku: Any = None, **properties: Any
                    ) -> dict[str, Any]:
    props = {"endpointComputeType": "Managed", "instanceType": "Standard_DS3_v2",
             "model": model or arm.ml.add_model("iris", "3"), **properties}
    body = {"location": arm.location, "properties": {k: v for k, v in props.items() if v is not None},
            "sku": {"name": "Default", "capacity": 1} if sku is None else sku}
    return {k: v for k, v in body.items() if v != {}}


def ready_endpoint(arm: FakeArm, name: str = "ep1") -> None:
    """An endpoint whose creation has completed."""
    assert raw(arm, "PUT", ws_path(arm, f"/onlineEndpoints/{name}"), endpoint_body(arm)).status_code == 201
    arm.ml.set_provisioning_state(name, "Succeeded")


def test_api_versions_are_those_the_specs_define_per_resource_type(arm: FakeArm) -> None:
    body = endpoint_body(arm)
    unknown = raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1"), body, api_version="1999-01-01")
    error = arm_error_of(unknown, 400)
    assert error["code"] == "NoRegisteredProviderFound"
    assert "API version '1999-01-01' for type 'workspaces/onlineEndpoints'" in error["message"]
    assert "2022-02-01-preview" in error["message"] and not arm.ml.has_endpoint("ep1")
    # 2022-01-01-preview exists for workspaces, not for online endpoints (no mfe.json in it)
    assert raw(arm, "GET", ws_path(arm), api_version="2022-01-01-preview").status_code == 200
    older = raw(arm, "GET", ws_path(arm, "/onlineEndpoints/ep1"), api_version="2022-01-01-preview")
    assert arm_error_of(older, 400)["code"] == "NoRegisteredProviderFound"
    malformed = raw(arm, "GET", ws_path(arm), api_version="latest")
    assert arm_error_of(malformed, 400)["code"] == "InvalidApiVersionParameter"
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    adf = raw(arm, "POST", factory_path(arm, "/queryPipelineRuns"), {}, api_version="2017-09-01-preview")
    assert "for type 'factories/queryPipelineRuns'" in arm_error_of(adf, 400)["message"]


def test_put_endpoint_body_is_checked_with_the_sdk_rest_model(arm: FakeArm) -> None:
    empty = arm_error_of(raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1"), {}), 400)
    assert {d["target"] for d in empty["details"]} == {"location", "properties"}
    no_auth = raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1"),
                  {"location": arm.location, "properties": {}})
    assert [d["target"] for d in arm_error_of(no_auth, 400)["details"]] == ["properties.authMode"]
    bad_enum = raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1"), endpoint_body(arm, authMode="Open"))
    assert "EndpointAuthMode" in arm_error_of(bad_enum, 400)["message"]
    assert not arm.ml.has_endpoint("ep1")


@pytest.mark.parametrize("name", ["bad_name!", "ab", "1st-endpoint", "ends-with-", "x" * 33])
def test_endpoint_and_deployment_names_follow_the_documented_rule(arm: FakeArm, name: str) -> None:
    put = raw(arm, "PUT", ws_path(arm, f"/onlineEndpoints/{name}"), endpoint_body(arm))
    assert arm_error_of(put, 400)["target"] == "name"
    ready_endpoint(arm)
    dep = raw(arm, "PUT", ws_path(arm, f"/onlineEndpoints/ep1/deployments/{name}"),
              deployment_body(arm))
    assert "3 to 32 characters" in arm_error_of(dep, 400)["message"]


@pytest.mark.parametrize(("change", "target"), [
    ({"endpointComputeType": None}, "properties.endpointComputeType"),
    ({"sku": {}}, "sku"),
    ({"sku": {"name": "Default", "capacity": 0}}, "sku.capacity"),
    ({"instanceType": "Standard_XYZ"}, "properties.instanceType"),
    ({"model": "/subscriptions/x/resourceGroups/y/providers/Microsoft.MachineLearningServices/"
               "workspaces/z/models/ghost/versions/1"}, "properties.model"),
], ids=["no endpointComputeType", "no sku", "capacity 0", "unknown instance type", "missing model"])
def test_deployment_put_is_refused(arm: FakeArm, change: dict[str, Any], target: str) -> None:
    ready_endpoint(arm)
    body = deployment_body(arm, **change)
    refused = arm_error_of(raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1/deployments/blue"), body), 400)
    assert refused["target"] == target, refused
    assert arm.ml.deployments("ep1") == []


def test_known_instance_types_are_accepted(arm: FakeArm) -> None:
    ready_endpoint(arm)
    for name, sku in (("blue", "Standard_E4s_v3"), ("green", "standard_f4s_v2")):
        put = raw(arm, "PUT", ws_path(arm, f"/onlineEndpoints/ep1/deployments/{name}"),
                  deployment_body(arm, instanceType=sku))
        assert put.status_code == 201, put.text


def test_traffic_naming_a_missing_deployment_is_refused(arm: FakeArm) -> None:
    ready_endpoint(arm)
    put = raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1"), endpoint_body(arm, traffic={"ghost": 100}))
    error = arm_error_of(put, 400)
    assert error["target"] == "properties.traffic" and "ghost" in error["message"]
    assert arm.ml.endpoint("ep1").traffic == {}


def test_patch_takes_only_what_the_partial_models_have(arm: FakeArm) -> None:
    ready_endpoint(arm)
    patch = raw(arm, "PATCH", ws_path(arm, "/onlineEndpoints/ep1"), {"properties": {"traffic": {}}})
    error = arm_error_of(patch, 400)
    assert error["code"] == "InvalidRequestContent" and error["target"] == "properties"
    assert "PartialMinimalTrackedResourceWithIdentity" in error["message"]
    assert raw(arm, "PATCH", ws_path(arm, "/onlineEndpoints/ep1"), {"tags": {"a": "b"}}).status_code == 202


def test_busy_resources_answer_409_conflict(arm: FakeArm) -> None:
    # GIVEN an endpoint whose creation nobody polls: it stays Creating
    assert raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1"), endpoint_body(arm)).status_code == 201
    assert arm.ml.endpoint("ep1").provisioning_state == "Creating"
    # THEN another PUT, a PATCH, a DELETE and a deployment PUT all answer 409
    again = arm_error_of(raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1"), endpoint_body(arm)), 409)
    assert again["code"] == "Conflict" and "Creating" in again["message"]
    assert raw(arm, "PATCH", ws_path(arm, "/onlineEndpoints/ep1"), {"tags": {}}).status_code == 409
    assert raw(arm, "DELETE", ws_path(arm, "/onlineEndpoints/ep1")).status_code == 409
    dep = raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1/deployments/blue"), deployment_body(arm))
    assert arm_error_of(dep, 409)["message"] == (
        "Cannot create a deployment in endpoint ep1 because it is in Creating provisioning state.")
    # AND a deployment that is itself being updated refuses another PUT
    arm.ml.set_provisioning_state("ep1", "Succeeded")
    assert raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1/deployments/blue"),
               deployment_body(arm)).status_code == 201
    busy = raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1/deployments/blue"), deployment_body(arm))
    assert arm_error_of(busy, 409)["code"] == "Conflict"


@pytest.mark.parametrize("state", ["Failed", "Canceled"])
def test_deployment_into_a_failed_or_canceled_endpoint_is_refused(arm: FakeArm, state: str) -> None:
    ready_endpoint(arm)
    arm.ml.set_provisioning_state("ep1", state)
    dep = raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1/deployments/blue"), deployment_body(arm))
    assert f"because it is in {state} provisioning state" in arm_error_of(dep, 400)["message"]
    # a PUT of the endpoint itself is allowed (it is how a failed endpoint is repaired)
    assert raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1"), endpoint_body(arm)).status_code == 200


def test_deleting_then_404_once_the_delete_completed(arm: FakeArm) -> None:
    ready_endpoint(arm)
    deleting = raw(arm, "DELETE", ws_path(arm, "/onlineEndpoints/ep1"))
    assert deleting.status_code == 202
    during = raw(arm, "GET", ws_path(arm, "/onlineEndpoints/ep1"))
    assert during.json()["properties"]["provisioningState"] == "Deleting"
    assert raw(arm, "PUT", ws_path(arm, "/onlineEndpoints/ep1"), endpoint_body(arm)).status_code == 409
    status, url = "InProgress", deleting.headers["Azure-AsyncOperation"]
    while status == "InProgress":  # the operation completes as its status is polled
        status = raw(arm, "GET", url.removeprefix(arm.url).split("?")[0]).json()["status"]
    assert status == "Succeeded"
    gone = arm_error_of(raw(arm, "GET", ws_path(arm, "/onlineEndpoints/ep1")), 404)
    assert "ep1" in gone["message"] and not arm.ml.has_endpoint("ep1")


def test_environment_latest_is_the_newest_version(arm: FakeArm) -> None:
    arm.ml.add_environment("sk-env", "1")
    arm.ml.add_environment("sk-env", "7")
    assert ml_client(arm).environments.get("sk-env", label="latest").version == "7"
    listing = arm.requests_matching("GET", r"/environments/sk-env/versions$")[0]
    assert listing.query["$orderBy"] == "createdtime desc" and listing.query["$top"] == "1"


# -- Data Factory: declared parameters, queryPipelineRuns as documented -------------------------


def test_create_run_checks_the_declared_parameters(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE, parameters=DECLARED)
    path = factory_path(arm, f"/pipelines/{PIPELINE}/createRun")
    undeclared = arm_error_of(raw(arm, "POST", path, {"modelName": "iris", "extra": 1},
                                  api_version=ADF_API), 400)
    assert undeclared["code"] == "BadRequest" and "extra" in undeclared["message"]
    missing = arm_error_of(raw(arm, "POST", path, {"threshold": 0.2}, api_version=ADF_API), 400)
    assert "required parameter(s) modelName" in missing["message"]
    wrong = arm_error_of(raw(arm, "POST", path, {"modelName": "iris", "threshold": "high"},
                             api_version=ADF_API), 400)
    assert "not a valid Float" in wrong["message"]
    assert arm.adf.runs() == []
    ok = raw(arm, "POST", path, {"modelName": "iris"}, api_version=ADF_API)
    run = arm.adf.run(ok.json()["runId"])
    assert run.raw["parameters"] == {"modelName": "iris", "threshold": "0.5"}  # the default included


@pytest.mark.parametrize(("rule", "fragment"), [
    ({"operand": "PipelineName", "operator": "Like", "values": [PIPELINE]}, "RunQueryFilterOperator"),
    ({"operand": "ActivityName", "operator": "Equals", "values": ["copy"]}, "cannot be used"),
    ({"operand": "PipelineName", "operator": "Equals"}, "values"),
], ids=["unknown operator", "activity operand", "no values"])
def test_query_pipeline_runs_refuses_what_adf_refuses(arm: FakeArm, rule: dict[str, Any],
                                                      fragment: str) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    body = {"lastUpdatedAfter": "2020-01-01T00:00:00Z", "lastUpdatedBefore": "2999-01-01T00:00:00Z",
            "filters": [rule]}
    error = arm_error_of(raw(arm, "POST", factory_path(arm, "/queryPipelineRuns"), body,
                             api_version=ADF_API), 400)
    assert fragment in error["message"]


def test_query_pipeline_runs_filters_orders_and_pages(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    arm.adf.add_pipeline(FACTORY, "other")
    arm.adf.page_size = 1
    adf = adf_client(arm)
    first = adf.pipelines.create_run(arm.resource_group, FACTORY, PIPELINE).run_id
    adf.pipelines.create_run(arm.resource_group, FACTORY, "other")
    second = adf.pipelines.create_run(arm.resource_group, FACTORY, PIPELINE).run_id
    arm.adf.set_run_status(first, "Succeeded")
    window: dict[str, Any] = {"lastUpdatedAfter": "2020-01-01T00:00:00Z",
                              "lastUpdatedBefore": "2999-01-01T00:00:00Z"}
    body: dict[str, Any] = {
        **window, "filters": [{"operand": "PipelineName", "operator": "Equals", "values": [PIPELINE]}],
        "orderBy": [{"orderBy": "RunStart", "order": "DESC"}]}
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        page = adf.pipeline_runs.query_by_factory(
            arm.resource_group, FACTORY, RunFilterParameters({**body, "continuationToken": token}))
        pages.append([str(r.run_id) for r in page.value])
        token = page.continuation_token
        if not token:
            break
    assert pages == [[second], [first]]
    not_running: dict[str, Any] = {**window, "filters": [
        {"operand": "Status", "operator": "NotIn", "values": ["Succeeded", "Failed", "Cancelled"]}]}
    not_done = adf.pipeline_runs.query_by_factory(arm.resource_group, FACTORY,
                                                  RunFilterParameters(not_running))
    assert len(not_done.value) == 1 and first not in {r.run_id for r in not_done.value}


def test_cancel_is_asynchronous(arm: FakeArm) -> None:
    arm.adf.add_pipeline(FACTORY, PIPELINE)
    adf = adf_client(arm)
    run_id = adf.pipelines.create_run(arm.resource_group, FACTORY, PIPELINE).run_id
    adf.pipeline_runs.cancel(arm.resource_group, FACTORY, run_id)
    assert adf.pipeline_runs.get(arm.resource_group, FACTORY, run_id).status == "Canceling"


# -- Azure ML jobs, components, batch endpoints (retraining) ---------------------------------------

COMPONENT_INPUTS: dict[str, dict[str, Any]] = {
    "monitorName": {"type": "string"}, "threshold": {"type": "number", "default": 0.5},
    "note": {"type": "string", "optional": True}}


def aml_token(arm: FakeArm, resource: str = AML_AUDIENCE) -> str:
    """A managed-identity token for Azure ML's own audience (what the SDK gets for jobs)."""
    reply = requests.get(arm.token_url, params={"api-version": "2019-08-01", "resource": resource},
                         headers={"X-IDENTITY-HEADER": arm.identity_header}, timeout=5)
    token: str = reply.json()["access_token"]
    return token


def pipeline_job(arm: FakeArm, component_id: str, **inputs: Any) -> dict[str, Any]:
    """A pipeline job body as azure-ai-ml writes it."""
    return {"properties": {
        "jobType": "Pipeline", "componentId": component_id, "experimentName": "retrain",
        "tags": {}, "properties": {}, "isArchived": False, "jobs": {}, "outputs": {},
        "settings": {"_source": "REMOTE.WORKSPACE.JOB"},
        "inputs": {k: {"jobInputType": "literal", "value": v} for k, v in inputs.items()}}}


def put_job(arm: FakeArm, name: str, body: Any, *, token: str | None = "aml",
            api_version: str = JOB_API) -> requests.Response:
    headers = {"Authorization": f"Bearer {aml_token(arm, arm.url)}"}
    if token == "aml":
        headers["x-azureml-token"] = aml_token(arm)
    elif token is not None:
        headers["x-azureml-token"] = token
    return requests.put(f"{arm.url}{ws_path(arm, f'/jobs/{name}')}",
                        params={"api-version": api_version}, json=body, headers=headers,
                        verify=arm.ca_path, timeout=10)


def test_pipeline_job_from_a_registered_component_through_the_sdk(arm: FakeArm) -> None:
    # GIVEN two versions of a pipeline component
    arm.ml.add_component("retrain", "1", inputs=COMPONENT_INPUTS)
    newest = arm.ml.add_component("retrain", "2", inputs=COMPONENT_INPUTS)
    ml = ml_client(arm)
    # WHEN azure-ai-ml resolves the latest and submits a pipeline job named by the caller
    component = ml.components.get("retrain", label="latest")
    assert (component.id, component.type) == (newest, "pipeline")
    assert set(component.inputs) == set(COMPONENT_INPUTS)
    job = ml.jobs.create_or_update(PipelineJob(component=component.id, inputs={"monitorName": "m"},
                                               experiment_name="retrain", name="job-1",
                                               tags={"from": "test"}))
    # THEN the fake stored it as Azure ML would: NotStarted, the inputs, the tags
    assert (job.name, job.status) == ("job-1", "NotStarted")
    [put] = arm.requests_matching("PUT", r"/jobs/job-1$")
    assert put.api_version == JOB_API and arm.issued(put.headers["x-azureml-token"])
    view = arm.ml.job("job-1")
    assert (view.component_id, view.inputs, view.tags) == (newest, {"monitorName": "m"},
                                                          {"from": "test"})
    arm.ml.set_job_status("job-1", "Running")
    assert ml.jobs.get("job-1").status == "Running"
    with pytest.raises(ResourceNotFoundError):
        ml.jobs.get("no-such-job")
    with pytest.raises(ResourceNotFoundError):
        ml.components.get("retrain", version="9")


def test_a_pipeline_step_run_is_read_from_run_history(arm: FakeArm) -> None:
    # GIVEN a failed pipeline step (MFE answers without properties for those)
    arm.ml.add_run("step-1", status="Failed", tags={"azureml_modelmonitor_threshold_breached": "x"})
    raw_get = raw(arm, "GET", ws_path(arm, "/jobs/step-1"), api_version=JOB_API)
    assert raw_get.status_code == 200 and raw_get.json()["properties"] is None
    # WHEN azure-ai-ml gets it THEN it follows the workspace's discovery URL to run history
    job = ml_client(arm).jobs.get("step-1")
    assert (job.status, job.tags) == ("Failed", {"azureml_modelmonitor_threshold_breached": "x"})
    paths = [r.path for r in arm.ml.dataplane_requests]
    assert paths[0] == "/discovery" and paths[-1].endswith("/runs/step-1")
    assert arm.ml.dataplane_requests[-1].bearer_token


def test_job_puts_are_refused_as_azure_ml_refuses_them(arm: FakeArm) -> None:
    pipeline = arm.ml.add_component("retrain", "1", inputs=COMPONENT_INPUTS)
    command = arm.ml.add_component("train", "1", inputs=COMPONENT_INPUTS, component_type="command")
    ok = pipeline_job(arm, pipeline, monitorName="m")
    assert arm_error_of(put_job(arm, "j1", ok, api_version="2019-01-01"), 400)["code"] == \
        "NoRegisteredProviderFound"
    unknown = {"properties": {**ok["properties"], "bogus": 1}}
    assert arm_error_of(put_job(arm, "j1", unknown), 400)["code"] == "InvalidRequestContent"
    assert arm_error_of(put_job(arm, "j1", ok, token=None), 401)["code"] == \
        "InvalidAuthenticationToken"
    wrong_audience = aml_token(arm, arm.url)
    assert "audience" in arm_error_of(put_job(arm, "j1", ok, token=wrong_audience), 401)["message"]
    assert "not declared" in arm_error_of(put_job(
        arm, "j1", pipeline_job(arm, pipeline, monitorName="m", extra="x")), 400)["message"]
    assert "Required input(s) monitorName" in arm_error_of(put_job(
        arm, "j1", pipeline_job(arm, pipeline)), 400)["message"]
    assert "must be a number" in arm_error_of(put_job(
        arm, "j1", pipeline_job(arm, pipeline, monitorName="m", threshold="high")), 400)["message"]
    assert "pipeline component" in arm_error_of(put_job(
        arm, "j1", pipeline_job(arm, command, monitorName="m")), 400)["message"]
    assert "not found" in arm_error_of(put_job(
        arm, "j1", pipeline_job(arm, pipeline.replace("/1", "/7"), monitorName="m")), 400)["message"]
    assert arm_error_of(put_job(arm, "-bad name", ok), 400)["target"] == "name"
    assert arm.ml.jobs() == []
    # the same submission again is answered with the job; another one under its name is refused
    assert put_job(arm, "j1", ok).status_code == 201
    assert put_job(arm, "j1", ok).status_code == 200
    other = pipeline_job(arm, pipeline, monitorName="other")
    assert "already exists" in arm_error_of(put_job(arm, "j1", other), 400)["message"]
    assert [j.name for j in arm.ml.jobs()] == ["j1"]


def test_batch_endpoint_invocation_through_the_sdk(arm: FakeArm) -> None:
    component = arm.ml.add_component("retrain", "1", inputs=COMPONENT_INPUTS)
    arm.ml.add_batch_endpoint("retrain-batch", component_id=component)
    ml = ml_client(arm)
    # WHEN azure-ai-ml invokes the endpoint with literal inputs and a job name
    job = ml.batch_endpoints.invoke("retrain-batch", job_name="batch-1", experiment_name="exp",
                                    inputs={"monitorName": Input(type="string", default="m")})
    # THEN the scoring URI got an Azure ML token, and the job is one of the workspace's
    assert (job.name, job.status) == ("batch-1", "NotStarted")
    [get] = arm.requests_matching("GET", r"/batchEndpoints/retrain-batch$")
    assert get.api_version == BATCH_API
    [post] = [r for r in arm.ml.dataplane_requests if r.method == "POST"]
    assert arm.issued(post.bearer_token or "") and "api-version" not in post.query
    view = arm.ml.job("batch-1")
    assert (view.batch_endpoint, view.inputs, view.experiment) == (
        "retrain-batch", {"monitorName": "m"}, "exp")
    assert ml.jobs.get("batch-1").status == "NotStarted"
    # the job name is now taken: a second invocation with it is refused
    with pytest.raises(HttpResponseError, match="already exists"):
        ml.batch_endpoints.invoke("retrain-batch", job_name="batch-1",
                                  inputs={"monitorName": Input(type="string", default="m")})
    with pytest.raises(HttpResponseError, match="not declared"):
        ml.batch_endpoints.invoke("retrain-batch", job_name="batch-2",
                                  inputs={"nope": Input(type="string", default="m")})
    with pytest.raises(ResourceNotFoundError):
        ml.batch_endpoints.invoke("no-such-endpoint")


def test_batch_scoring_is_as_strict_as_the_service(arm: FakeArm) -> None:
    arm.ml.add_batch_endpoint("retrain-batch")
    uri = ml_client(arm).batch_endpoints.get("retrain-batch").scoring_uri

    def post(body: Any, token: str) -> requests.Response:
        return requests.post(uri, json=body, headers={"Authorization": f"Bearer {token}"},
                             verify=arm.ca_path, timeout=10)

    good = {"properties": {"name": "b1", "inputData": {"x": {"jobInputType": "Literal",
                                                             "value": "1"}}}}
    assert arm_error_of(post(good, aml_token(arm, arm.url)), 401)["code"] == \
        "InvalidAuthenticationTokenAudience"
    assert arm_error_of(post(good, "not-issued"), 401)["code"] == "InvalidAuthenticationToken"
    assert arm_error_of(post({"properties": {"bogus": 1}}, aml_token(arm)), 400)["code"] == \
        "InvalidRequestContent"
    no_value = {"properties": {"inputData": {"x": {"jobInputType": "Literal"}}}}
    assert "needs a value" in arm_error_of(post(no_value, aml_token(arm)), 400)["message"]
    assert post(good, aml_token(arm)).status_code == 200


def test_a_dropped_invocation_took_effect(arm: FakeArm) -> None:
    # GIVEN the scoring host drops its answer once WHEN azure-ai-ml invokes THEN the SDK posts
    # again by itself, and the second POST finds the job name taken
    arm.ml.add_batch_endpoint("retrain-batch")
    arm.ml.drop_next_invoke()
    with pytest.raises(HttpResponseError, match="already exists"):
        ml_client(arm).batch_endpoints.invoke("retrain-batch", job_name="batch-1")
    assert [j.name for j in arm.ml.jobs()] == ["batch-1"]
    assert len([r for r in arm.ml.dataplane_requests if r.method == "POST"]) == 2
