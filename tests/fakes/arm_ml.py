"""Azure ML (Microsoft.MachineLearningServices) routes of the fake ARM, as azure-ai-ml's MLClient uses them.

Served under ``/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/
workspaces/{ws}``, each resource type at the api-versions the REST specs define for it
(``API_VERSIONS``; anything else → 400 ``NoRegisteredProviderFound``): the workspace; model
containers and versions (seeded with ``add_model``); environment versions, listed newest first for
``name@latest`` (``add_environment``); code versions (``add_code``); online endpoints and
deployments (PUT/GET/PATCH/DELETE/list) as long-running operations with ``Azure-AsyncOperation``
polling at ``.../locations/{loc}/mfeOperationsStatus/{id}``; ``listKeys``.

What azure-ai-ml 1.35 sends (paths relative to the workspace):
``online_endpoints.begin_create_or_update``: GET workspace (2024-10-01-preview, for its location),
PUT onlineEndpoints/{e} (2022-02-01-preview; traffic updates are this same PUT with
``properties.traffic``), GET mfeOperationsStatus/{id} until terminal, GET onlineEndpoints/{e}.
``online_deployments.begin_create_or_update``: GET onlineEndpoints/{e} (2023-04-01-preview,
existence check), GET models/{m}/versions?$orderBy=createdtime desc&$top=1 only for ``m@latest``
(2023-08-01-preview; write ``"iris@latest"``: with ``"azureml:iris@latest"`` the SDK asks for a
model named ``azureml:iris``), GET workspace, PUT .../deployments/{d} (model ARM id, instanceType,
endpointComputeType, ``sku.capacity`` = instance count), status polls, GET the deployment.
``environments.get(name, label="latest")``: GET environments/{n}/versions?$orderBy=createdtime desc
&$top=1 (2023-04-01-preview). ``azureml:name:version`` becomes an ARM id without any request.

As strict as Azure ML (each refusal is ARM's error body):

* bodies are checked with azure-ai-ml's own REST models (``arm_ml_service.models``, see
  arm_models.py): PUT endpoint = ``OnlineEndpoint`` (location, properties.authMode required), PUT
  deployment = ``OnlineDeployment`` (endpointComputeType selects Managed/Kubernetes), PATCH endpoint =
  ``PartialMinimalTrackedResourceWithIdentity`` (tags, identity only), PATCH deployment =
  ``PartialMinimalTrackedResourceWithSku`` (tags, sku only);
* documented rules: endpoint and deployment names have 3-32 characters, a letter first, letters,
  digits and hyphens, and end with a letter or digit; a deployment needs ``sku`` (ARM's autoscale
  contract) with ``capacity`` >= 1, a managed deployment an instance type from the managed SKU list
  (``MANAGED_INSTANCE_TYPES``); the model, environment and code it names must exist; traffic may
  only name deployments of the endpoint, each 0-100, summing to 100 (or 0); mirror traffic at most 50;
* 409 ``Conflict`` for a PUT/PATCH/DELETE on a resource that is Creating/Updating/Scaling/Deleting,
  and for a deployment PUT while its endpoint is; a deployment PUT into a Failed or Canceled
  endpoint is refused with 400 (Azure ML: "Cannot create a deployment in endpoint {e} because it is
  in {state} provisioning state."); after a delete completes GET answers 404.

Retraining (see the section "Azure ML jobs, components, batch endpoints and the data plane"):
component versions (``add_component``: pipeline or command, declared inputs), jobs (PUT/GET; seeded
runs with ``add_run``, moved on with ``set_job_status``, read with ``job``/``jobs``), batch
endpoints (``add_batch_endpoint``) and, on a second HTTPS host (``dataplane_url``, same
certificate), what is not ARM: the workspace's discovery document and run history (pipeline step
runs), and the batch scoring URI (``drop_next_invoke``: the job starts, the answer is lost;
``dataplane_requests`` records it all). As strict as Azure ML: job bodies checked with
``JobBase``; pipeline jobs only, from an existing pipeline component, with the caller's Azure ML
token in ``x-azureml-token`` (audience ``AML_AUDIENCE``); inputs declared by the component, the
required ones given, numbers as numbers; a job name taken by another submission → 400 (the same
submission again → 200); batch scoring needs an Azure ML token, ``{"properties": BatchJob}``
with known members and Literal values, and a free job name.

An operation progresses only as its status is polled (``lro_in_progress_polls``), so a resource a
client stopped polling stays busy: ``set_provisioning_state`` moves it on, and
``delete_in_background`` plays someone else's delete (Deleting now, gone a moment later). Assert on state with
``endpoint(name)``, ``deployment(endpoint, name)`` (frozen views; KeyError if absent;
``has_endpoint``) or the raw JSON they keep (``.raw``). The default workspace
(``arm.workspace_name``) exists from the start.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.ai.ml._restclient.arm_ml_service import models as rest

from .arm import (
    RecordedRequest,
    Reply,
    _Handler,
    _parse,
    _Server,
    arm_error,
    invalid_body,
    utc_now,
)
from .arm_models import check
from .server import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .arm import FakeArm

NAMESPACE = "Microsoft.MachineLearningServices"
_WS = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
       r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)")
_EP = _WS + r"/onlineEndpoints/(?P<ep>[^/]+)"
_DEP = _EP + r"/deployments/(?P<dep>[^/]+)"
_JOB = _WS + r"/jobs/(?P<job>[^/]+)"
_BATCH = _WS + r"/batchEndpoints/(?P<be>[^/]+)"
_WS_PLANE = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
             r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)")

# The api-versions of Microsoft.MachineLearningServices in azure-rest-api-specs
# (specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/
# MachineLearningServices/readme.md: one input-file tag per version). Online endpoints and
# deployments, models, environments and codes (the "MFE" resources: mfe.json, then openapi.json)
# exist from 2021-03-01-preview on; workspaces since 2018-03-01-preview.
MFE_API_VERSIONS = frozenset({
    "2021-03-01-preview", "2022-02-01-preview", "2022-05-01", "2022-06-01-preview", "2022-10-01",
    "2022-10-01-preview", "2022-12-01-preview", "2023-02-01-preview", "2023-04-01",
    "2023-04-01-preview", "2023-06-01-preview", "2023-08-01-preview", "2023-10-01",
    "2024-01-01-preview", "2024-04-01", "2024-04-01-preview", "2024-07-01-preview", "2024-10-01",
    "2024-10-01-preview", "2025-01-01-preview", "2025-04-01", "2025-04-01-preview", "2025-06-01",
    "2025-07-01-preview", "2025-09-01", "2025-10-01-preview", "2025-12-01", "2026-01-15-preview",
    "2026-03-01", "2026-03-15-preview", "2026-05-01", "2026-05-15-preview", "2026-07-01",
    "2026-07-15-preview"})
WORKSPACE_API_VERSIONS = MFE_API_VERSIONS | {
    "2018-03-01-preview", "2018-11-19", "2019-05-01", "2019-06-01", "2019-11-01", "2020-01-01",
    "2020-02-18-preview", "2020-03-01", "2020-04-01", "2020-04-01-preview", "2020-05-01-preview",
    "2020-05-15-preview", "2020-06-01", "2020-08-01", "2020-09-01-preview", "2021-01-01",
    "2021-04-01", "2021-07-01", "2022-01-01-preview"}
API_VERSIONS: Mapping[str, frozenset[str]] = {
    "workspaces": WORKSPACE_API_VERSIONS,
    **dict.fromkeys((
        "workspaces/models", "workspaces/models/versions", "workspaces/environments/versions",
        "workspaces/codes/versions", "workspaces/onlineEndpoints",
        "workspaces/onlineEndpoints/deployments", "locations/mfeOperationsStatus",
        "locations/mfeOperationResults", "workspaces/components/versions", "workspaces/jobs",
        "workspaces/batchEndpoints"), MFE_API_VERSIONS)}

# The audience of Azure ML's own data-plane tokens (pipeline jobs' x-azureml-token, batch
# invocation): azure-ai-ml derives it from a custom cloud's portal URL (_azure_environments.
# _convert_arm_to_cli: "https://ml.azure." + the portal's suffix); the fake cloud's portal is
# https://portal.fake.local/.
AML_AUDIENCE = "https://ml.azure.local"
# Job names (run ids): letters, digits, `_` and `-`, a letter or digit first, at most 255.
JOB_NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}")
# Job statuses (JobStatus in the REST specs); the first eight are not final.
JOB_STATUSES = ("NotStarted", "Starting", "Provisioning", "Queued", "Preparing", "Running",
                "Finalizing", "CancelRequested", "Completed", "Failed", "Canceled",
                "NotResponding", "Paused", "Unknown")
# The batch scoring job a batch endpoint's scoring URI accepts (BatchJob of the 2020-09-01
# data-plane preview azure-ai-ml still writes; read-only members left out).
BATCH_JOB_MEMBERS = frozenset({
    "compute", "dataset", "description", "errorThreshold", "inputData", "loggingLevel",
    "maxConcurrencyPerInstance", "miniBatchSize", "name", "outputData", "outputDataset",
    "outputFileName", "partitionKeys", "properties", "retrySettings", "tags", "timeout"})
BATCH_INPUT_TYPES = frozenset({"Literal", "UriFile", "UriFolder", "MLTable", "CustomModel",
                               "MLFlowModel", "TritonModel"})

# Managed online endpoints SKU list (learn.microsoft.com/azure/machine-learning/reference-managed-
# online-endpoints-vm-sku-list). Kubernetes deployments name the cluster's own instance types.
MANAGED_INSTANCE_TYPES = frozenset(name.lower() for name in (
    "Standard_DS1_v2", "Standard_DS2_v2", "Standard_DS3_v2", "Standard_DS4_v2", "Standard_DS5_v2",
    "Standard_F2s_v2", "Standard_F4s_v2", "Standard_F8s_v2", "Standard_F16s_v2", "Standard_F32s_v2",
    "Standard_F48s_v2", "Standard_F64s_v2", "Standard_F72s_v2", "Standard_FX24mds",
    "Standard_FX36mds", "Standard_FX48mds", "Standard_E2s_v3", "Standard_E4s_v3", "Standard_E8s_v3",
    "Standard_E16s_v3", "Standard_E32s_v3", "Standard_E48s_v3", "Standard_E64s_v3",
    "Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3", "Standard_NC16as_T4_v3", "Standard_NC64as_T4_v3",
    "Standard_NC6s_v3", "Standard_NC12s_v3", "Standard_NC24s_v3", "Standard_NC24ads_A100_v4",
    "Standard_NC48ads_A100_v4", "Standard_NC96ads_A100_v4", "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4", "Standard_ND40rs_v2", "Standard_NC40ads_H100_v5",
    "Standard_NC80adis_H100_v5", "Standard_ND96isr_H100_v5"))
DEFAULT_INSTANCE_TYPE = "Standard_F4s_v2"  # what the REST model documents when instanceType is left out
# 3-32 characters, a letter first, letters/digits/hyphens, a letter or digit last.
NAME_RULE = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]")
BUSY = frozenset({"creating", "updating", "scaling", "deleting"})

# What Azure ML fills in when a deployment PUT leaves them out (the SDK expects them back).
DEPLOYMENT_DEFAULTS: dict[str, Any] = {
    "scaleSettings": {"scaleType": "Default"}, "appInsightsEnabled": False,
    "egressPublicNetworkAccess": "Enabled",
    "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1,
                        "maxQueueWait": "PT0.5S"},
    "livenessProbe": {"initialDelay": "PT10M", "period": "PT10S", "timeout": "PT2S",
                      "successThreshold": 1, "failureThreshold": 30},
    "readinessProbe": {"initialDelay": "PT10S", "period": "PT10S", "timeout": "PT2S",
                       "successThreshold": 1, "failureThreshold": 30}}
KUBERNETES_DEFAULTS: dict[str, Any] = {"containerResourceRequirements": {
    "containerResourceRequests": {"cpu": "100m", "memory": "0.5Gi"},
    "containerResourceLimits": {"cpu": "2", "memory": "2Gi"}}}
MLFLOW_FLAVORS = {
    "python_function": {"data": {"loader_module": "mlflow.sklearn", "python_version": "3.11.9"}},
    "sklearn": {"data": {"pickled_model": "model.pkl", "sklearn_version": "1.5.1"}}}


@dataclass(frozen=True)
class EndpointView:
    """What an online endpoint looks like in the fake's state."""

    name: str
    kind: str | None
    compute: str | None
    auth_mode: str | None
    traffic: Mapping[str, int]
    provisioning_state: str
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class JobView:
    """What an Azure ML job looks like in the fake's state (pipeline jobs, batch jobs, runs)."""

    name: str
    status: str
    component_id: str | None
    inputs: Mapping[str, Any]  # literal inputs: name -> value
    experiment: str | None
    tags: Mapping[str, str]
    batch_endpoint: str | None  # the endpoint whose invocation created it
    child: bool  # a pipeline step run (MFE answers without properties; run history has it)
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class DeploymentView:
    """What an online deployment looks like in the fake's state."""

    name: str
    endpoint: str
    compute_type: str | None
    instance_type: str | None
    instance_count: int | None
    model_id: str | None
    environment_id: str | None
    provisioning_state: str
    raw: Mapping[str, Any] = field(repr=False)


def _key(*parts: str) -> tuple[str, ...]:
    return tuple(p.lower() for p in parts)


def _system_data() -> dict[str, str]:
    now = utc_now()
    return {"createdAt": now, "createdBy": "fake-arm", "createdByType": "Application",
            "lastModifiedAt": now, "lastModifiedBy": "fake-arm", "lastModifiedByType": "Application"}


def _listing(items: list[dict[str, Any]]) -> Reply:
    return Reply(200, {"value": copy.deepcopy(items)})


def _state(resource: Mapping[str, Any]) -> str:
    return str((resource.get("properties") or {}).get("provisioningState") or "")


def _user_error(message: str, target: str | None = None, status: int = 400) -> Reply:
    return arm_error(status, "UserError", message, target)


def _conflict(message: str) -> Reply:
    return arm_error(409, "Conflict", message)


class MlService:
    """In-memory Azure ML workspace state behind the fake ARM routes."""

    def __init__(self, arm: FakeArm) -> None:
        self.arm = arm
        self._workspaces: dict[tuple[str, ...], dict[str, Any]] = {}
        self._models: dict[tuple[str, ...], dict[str, Any]] = {}
        self._environments: dict[tuple[str, ...], dict[str, Any]] = {}
        self._codes: dict[tuple[str, ...], dict[str, Any]] = {}
        self._endpoints: dict[tuple[str, ...], dict[str, Any]] = {}
        self._deployments: dict[tuple[str, ...], dict[str, Any]] = {}
        self._components: dict[tuple[str, ...], dict[str, Any]] = {}
        self._jobs: dict[tuple[str, ...], dict[str, Any]] = {}
        self._runs: dict[tuple[str, ...], dict[str, Any]] = {}  # run history, by workspace + run
        self._batch_endpoints: dict[tuple[str, ...], dict[str, Any]] = {}
        self._dataplane_requests: list[RecordedRequest] = []
        self._drop_invokes = 0
        self._start_dataplane()
        self.add_workspace(arm.workspace_name)
        self._add_routes()

    # -- seeding ---------------------------------------------------------------------------

    def _ws_id(self, workspace: str | None = None, resource_group: str | None = None) -> str:
        return (f"/subscriptions/{self.arm.subscription_id}/resourceGroups/"
                f"{resource_group or self.arm.resource_group}/providers/{NAMESPACE}/workspaces/"
                f"{workspace or self.arm.workspace_name}")

    def add_workspace(self, name: str, *, resource_group: str | None = None,
                      location: str | None = None) -> None:
        """Declare a workspace (the default one exists already)."""
        rg, loc = resource_group or self.arm.resource_group, location or self.arm.location
        ws_id = self._ws_id(name, rg)
        props = {"friendlyName": name, "workspaceId": str(uuid.uuid4()), "provisioningState": "Succeeded",
                 "discoveryUrl": f"{self.dataplane_url}/discovery",
                 "mlFlowTrackingUri": f"azureml://{loc}.api.azureml.ms/mlflow/v1.0{ws_id}",
                 "storageAccount": f"/subscriptions/{self.arm.subscription_id}/resourceGroups/{rg}/"
                                   "providers/Microsoft.Storage/storageAccounts/fakestorage",
                 "publicNetworkAccess": "Enabled", "hbiWorkspace": False, "v1LegacyMode": False}
        with self.arm.lock:
            self._workspaces[_key(self.arm.subscription_id, rg, name)] = {
                "id": ws_id, "name": name, "type": f"{NAMESPACE}/workspaces", "location": loc,
                "kind": "Default", "tags": {}, "sku": {"name": "Basic", "tier": "Basic"},
                "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid4()),
                             "tenantId": self.arm.tenant_id},
                "properties": props, "systemData": _system_data()}

    def add_model(self, name: str, version: str = "1", *, mlflow: bool = True, model_type: str | None = None,
                  tags: Mapping[str, str] | None = None, properties: Mapping[str, str] | None = None,
                  description: str = "", workspace: str | None = None) -> str:
        """Register a model version (MLflow flavors unless ``mlflow=False``); returns its ARM id."""
        ws_id = self._ws_id(workspace)
        model_id = f"{ws_id}/models/{name}/versions/{version}"
        kind = model_type or ("mlflow_model" if mlflow else "custom_model")
        path = f"LocalUpload/{uuid.uuid4().hex}/{name}"
        body = {"id": model_id, "name": str(version), "type": f"{NAMESPACE}/workspaces/models/versions",
                "properties": {"description": description, "tags": dict(tags or {}),
                               "properties": dict(properties or {}), "isArchived": False,
                               "isAnonymous": False, "modelType": kind, "stage": "Development",
                               "flavors": copy.deepcopy(MLFLOW_FLAVORS) if kind == "mlflow_model" else {},
                               "modelUri": f"azureml://{ws_id.lstrip('/')}/datastores/workspaceblobstore"
                                           f"/paths/{path}", "provisioningState": "Succeeded"},
                "systemData": _system_data()}
        with self.arm.lock:
            self._models.setdefault(_key(model_id), body)
        return model_id

    def add_environment(self, name: str, version: str = "1", *,
                        image: str = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
                        workspace: str | None = None) -> str:
        """Register an environment version (later ones are newer for ``@latest``); returns its ARM id."""
        env_id = f"{self._ws_id(workspace)}/environments/{name}/versions/{version}"
        body = {"id": env_id, "name": str(version), "type": f"{NAMESPACE}/workspaces/environments/versions",
                "properties": {"image": image, "osType": "Linux", "isAnonymous": False, "isArchived": False,
                               "tags": {}, "properties": {}, "environmentType": "UserCreated",
                               "autoRebuild": "Disabled", "provisioningState": "Succeeded"},
                "systemData": _system_data()}
        with self.arm.lock:
            self._environments.setdefault(_key(env_id), body)
        return env_id

    def add_code(self, name: str, version: str = "1", *, workspace: str | None = None) -> str:
        """Register a code asset version (a scoring script's home); returns its ARM id."""
        code_id = f"{self._ws_id(workspace)}/codes/{name}/versions/{version}"
        body = {"id": code_id, "name": str(version), "type": f"{NAMESPACE}/workspaces/codes/versions",
                "properties": {"codeUri": f"https://fakestorage.blob.core.fake.local/code/{name}/{version}",
                               "isAnonymous": False, "isArchived": False, "tags": {}, "properties": {},
                               "provisioningState": "Succeeded"},
                "systemData": _system_data()}
        with self.arm.lock:
            self._codes.setdefault(_key(code_id), body)
        return code_id

    # -- Azure ML jobs, components, batch endpoints and the data plane ---------------------------
    #
    # What azure-ai-ml 1.35 sends (paths relative to the workspace):
    # ``components.get(n, version=v)``: GET components/{n}/versions/{v} (2024-01-01-preview);
    # ``components.get(n, label="latest")``: GET components/{n}/versions?$orderBy=createdtime desc
    # &$top=1. ``jobs.create_or_update(PipelineJob(component=<ARM id>, ...))``: PUT jobs/{name}
    # (2024-01-01-preview) with the caller's Azure ML token in ``x-azureml-token`` (pipeline jobs);
    # ``jobs.get(name)``: GET jobs/{name} (2024-01-01-preview); a pipeline step (child) run answers
    # without ``properties``, and the SDK then reads it from run history on the workspace's
    # data plane: GET workspace, GET its discoveryUrl, GET {api}/history/v1.0/.../runs/{name}.
    # ``batch_endpoints.invoke(e, inputs=..., job_name=...)``: GET batchEndpoints/{e}
    # (2023-10-01), then POST {scoringUri} (the endpoint's own host, no api-version) with an Azure
    # ML token and ``{"properties": BatchJob}``; the job it creates is a pipeline job of the
    # workspace (jobs.get finds it).

    def _start_dataplane(self) -> None:
        """The workspace's data plane (discovery, run history) and the batch scoring host, on a
        second HTTPS server presenting the ARM server's certificate (REQUESTS_CA_BUNDLE trusts it)."""
        server = _Server(self._handle_dataplane, self.arm._arm.tls)
        server.RequestHandlerClass = _DroppingHandler
        self.arm._serving.enter_context(serve_in_thread(server, poll_interval=0.05))
        self.dataplane_url = f"https://127.0.0.1:{server.server_address[1]}"

    def add_component(self, name: str, version: str = "1", *,
                      inputs: Mapping[str, Mapping[str, Any]] | None = None,
                      component_type: str = "pipeline", workspace: str | None = None) -> str:
        """Register a component version (later ones are newer for ``label="latest"``).

        ``inputs``: name -> spec (``{"type": "string", "optional": True, "default": ...}``).
        Returns the version's ARM id.
        """
        component_id = f"{self._ws_id(workspace)}/components/{name}/versions/{version}"
        spec: dict[str, Any] = {
            "$schema": f"https://azuremlschemas.azureedge.net/latest/{component_type}Component"
                       ".schema.json",
            "name": name, "version": str(version), "type": component_type, "display_name": name,
            "is_deterministic": True, "inputs": copy.deepcopy(dict(inputs or {})), "outputs": {}}
        if component_type == "pipeline":
            spec["jobs"] = {}
        else:  # a command component needs its command and environment to be read back
            spec.update(command="python train.py", environment="azureml:sklearn-env:1")
        body = {"id": component_id, "name": str(version),
                "type": f"{NAMESPACE}/workspaces/components/versions",
                "properties": {"componentSpec": spec, "description": "", "tags": {},
                               "properties": {}, "isAnonymous": False, "isArchived": False,
                               "provisioningState": "Succeeded"},
                "systemData": _system_data()}
        with self.arm.lock:
            self._components.setdefault(_key(component_id), body)
        return component_id

    def add_batch_endpoint(self, name: str, *, component_id: str | None = None,
                           deployment: str = "default", workspace: str | None = None) -> str:
        """A batch endpoint whose default deployment runs ``component_id`` (a pipeline component
        deployment; inputs it does not declare are refused). Returns the endpoint's ARM id."""
        ws_key = _key(self.arm.subscription_id, self.arm.resource_group,
                      workspace or self.arm.workspace_name)
        endpoint_id = f"{self._ws_id(workspace)}/batchEndpoints/{name}"
        ws_name = workspace or self.arm.workspace_name
        body = {"id": endpoint_id, "name": name, "type": f"{NAMESPACE}/workspaces/batchEndpoints",
                "location": self._workspaces[ws_key]["location"], "kind": "", "tags": {},
                "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid4()),
                             "tenantId": self.arm.tenant_id},
                "properties": {"authMode": "AADToken", "defaults": {"deploymentName": deployment},
                               "scoringUri": f"{self.dataplane_url}/inference/{ws_name}/{name}/jobs",
                               "swaggerUri": None, "provisioningState": "Succeeded"},
                "systemData": _system_data(), "_componentId": component_id}
        with self.arm.lock:
            self._batch_endpoints[_key(endpoint_id)] = body
        return endpoint_id

    def add_run(self, name: str, *, status: str = "Failed", tags: Mapping[str, str] | None = None,
                experiment: str = "model-monitoring", child: bool = True,
                workspace: str | None = None) -> None:
        """A run (e.g. a model monitor's failed step): a pipeline step by default, which ``GET
        jobs/{name}`` answers without properties and run history describes."""
        ws_id = self._ws_id(workspace)
        self._check_status(status)
        run = {"runId": name, "runUuid": str(uuid.uuid4()), "parentRunId": f"{name}-parent",
               "rootRunId": f"{name}-parent", "experimentId": str(uuid.uuid4()),
               "status": status, "tags": dict(tags or {}), "properties": {},
               "runType": "azureml.StepRun" if child else "azureml.PipelineRun",
               "displayName": name, "name": name, "createdUtc": utc_now(), "hidden": False}
        with self.arm.lock:
            self._runs[_key(ws_id, name)] = run
            job_path = f"{ws_id}/jobs/{name}"
            if child:
                self._jobs[_key(job_path)] = {"id": job_path, "name": name,
                                              "type": f"{NAMESPACE}/workspaces/jobs",
                                              "properties": None, "systemData": _system_data(),
                                              "_seeded": True}
            else:
                self._jobs[_key(job_path)] = {**self._job_resource(job_path, name, {
                    "jobType": "Pipeline", "experimentName": experiment, "tags": dict(tags or {}),
                    "inputs": {}, "outputs": {}, "jobs": {}, "properties": {}}, status=status),
                    "_seeded": True}

    def set_job_status(self, name: str, status: str, *, workspace: str | None = None) -> None:
        """Move a job (or run) on: e.g. Running, Completed, Failed, CancelRequested."""
        self._check_status(status)
        ws_id = self._ws_id(workspace)
        with self.arm.lock:
            job = self._jobs[_key(f"{ws_id}/jobs/{name}")]
            if job.get("properties") is not None:
                job["properties"]["status"] = status
            if _key(ws_id, name) in self._runs:
                self._runs[_key(ws_id, name)]["status"] = status

    def job(self, name: str, *, workspace: str | None = None) -> JobView:
        """A job as stored (KeyError if there is none)."""
        with self.arm.lock:
            raw = self._jobs[_key(f"{self._ws_id(workspace)}/jobs/{name}")]
            run = self._runs.get(_key(self._ws_id(workspace), name))
            return _job_view(copy.deepcopy(raw), run)

    def jobs(self, *, include_runs: bool = False) -> list[JobView]:
        """Every job submitted (pipeline and batch jobs), in creation order; seeded runs too if
        ``include_runs``."""
        with self.arm.lock:
            views = [_job_view(copy.deepcopy(raw), self._runs.get(_key(raw["id"].rsplit(
                "/jobs/", 1)[0], raw["name"]))) for raw in self._jobs.values()]
        return [v for v in views if include_runs or not v.raw.get("_seeded")]

    @property
    def dataplane_requests(self) -> list[RecordedRequest]:
        """Every request the data plane (discovery, run history, batch scoring) received."""
        with self.arm.lock:
            return list(self._dataplane_requests)

    def drop_next_invoke(self, times: int = 1) -> None:
        """The next batch invocations take effect, then the connection closes unanswered."""
        with self.arm.lock:
            self._drop_invokes += times

    @staticmethod
    def _check_status(status: str) -> None:
        if status not in JOB_STATUSES:
            raise ValueError(f"{status!r} is not a job status ({', '.join(JOB_STATUSES)})")

    def _job_resource(self, path: str, name: str, props: Mapping[str, Any], *,
                      status: str = "NotStarted") -> dict[str, Any]:
        properties = {"description": None, "displayName": name, "isArchived": False,
                      "services": {}, "settings": {}, **copy.deepcopy(dict(props)),
                      "status": status}
        return {"id": path, "name": name, "type": f"{NAMESPACE}/workspaces/jobs",
                "properties": properties, "systemData": _system_data(), "_seeded": False}

    def _token_problem(self, token: str | None, what: str) -> Reply | None:
        """401 unless ``token`` was issued by the fake's identity endpoint for Azure ML's audience."""
        if not token or not self.arm.issued(token):
            return arm_error(401, "InvalidAuthenticationToken", f"{what}: the access token is "
                                                                "missing or invalid.")
        audience = _claims(token).get("aud", "")
        if str(audience).rstrip("/") != AML_AUDIENCE:
            return arm_error(401, "InvalidAuthenticationTokenAudience",
                             f"{what}: the access token has audience {audience!r}; Azure ML "
                             f"needs {AML_AUDIENCE}.")
        return None

    # ARM routes ---------------------------------------------------------------------------

    def _get_component(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        found = self._components.get(_key(request.path))
        if found is None:
            return arm_error(404, "UserError", f"Component {match['name']}:{match['version']} "
                                               f"not found in workspace {match['ws']}.")
        return Reply(200, copy.deepcopy(found))

    def _put_job(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        if ws is None:
            return self._no_workspace(match)
        name = match["job"]
        if not JOB_NAME_RULE.fullmatch(name):
            return _user_error(f"The job name {name!r} is invalid: letters, digits, '_' and '-', a "
                               "letter or digit first, at most 255 characters.", "name")
        problems = check(rest.JobBase, request.body, operation="create")
        if problems:
            return invalid_body(problems, "UserError")
        props: dict[str, Any] = dict(request.body["properties"])
        if str(props.get("jobType")).lower() != "pipeline":
            return _user_error(f"The fake ARM serves pipeline jobs only, got jobType "
                               f"{props.get('jobType')!r}.", "properties.jobType")
        refused = self._token_problem(request.headers.get("x-azureml-token"),
                                      "A pipeline job needs the caller's Azure ML token "
                                      "(x-azureml-token)")
        if refused:
            return refused
        existing = self._jobs.get(_key(request.path))
        if existing is not None:
            if existing.get("properties") is not None and \
                    _submission(existing["properties"]) == _submission(props):
                return Reply(200, _public(existing))  # the same submission again: nothing new
            return _user_error(f"Job {name} already exists in workspace {match['ws']}; only its "
                               "tags, description and display name can be changed.", "name")
        problem = self._pipeline_problem(props)
        if problem:
            return problem
        job = self._job_resource(request.path, name, props)
        self._jobs[_key(request.path)] = job
        return Reply(201, _public(job))

    def _pipeline_problem(self, props: Mapping[str, Any]) -> Reply | None:
        """A pipeline job from a registered pipeline component: the component exists, is a
        pipeline, declares every input given, and gets every input it requires."""
        component_id = props.get("componentId")
        if not component_id:
            return _user_error("The fake ARM serves pipeline jobs from a registered pipeline "
                               "component (properties.componentId) only.", "properties.componentId")
        component = self._components.get(_key(str(component_id)))
        if component is None:
            return _user_error(f"{component_id} was not found.", "properties.componentId")
        spec = component["properties"]["componentSpec"]
        if spec.get("type") != "pipeline":
            return _user_error(f"Component {spec['name']}:{spec['version']} is a {spec.get('type')} "
                               "component; a pipeline job needs a pipeline component.",
                               "properties.componentId")
        return _inputs_problem(spec, {name: (value or {}).get("value")
                                      for name, value in (props.get("inputs") or {}).items()},
                               "properties.inputs")

    def _get_job(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        found = self._jobs.get(_key(request.path))
        if found is None or self._workspace(match) is None:
            return arm_error(404, "UserError", f"Job {match['job']} not found in workspace "
                                               f"{match['ws']}.")
        return Reply(200, _public(found))

    def _get_batch_endpoint(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        found = self._batch_endpoints.get(_key(request.path))
        if found is None:
            return arm_error(404, "UserError", f"Batch endpoint {match['be']} not found.")
        return Reply(200, _public(found))

    # data plane ---------------------------------------------------------------------------

    def _handle_dataplane(self, method: str, target: str, headers: dict[str, str],
                          raw: bytes) -> Reply:
        request = _parse(target, headers, raw, method)
        with self.arm.lock:
            self._dataplane_requests.append(request)
            if method == "GET" and request.path == "/discovery":  # public, as the service's is
                return Reply(200, dict.fromkeys(
                    ("api", "catalog", "experimentation", "history", "modelmanagement",
                     "pipelines", "studiometadata"), self.dataplane_url))
            history = re.fullmatch(r"/history/v1\.0" + _WS_PLANE + r"/runs/(?P<run>[^/]+)",
                                   request.path, re.IGNORECASE)
            if history and method == "GET":
                return self._get_run(request, history)
            invoke = re.fullmatch(r"/inference/(?P<ws>[^/]+)/(?P<be>[^/]+)/jobs", request.path,
                                  re.IGNORECASE)
            if invoke and method == "POST":
                reply = self._invoke(request, invoke)
                if reply.status in (200, 201) and self._drop_invokes > 0:
                    self._drop_invokes -= 1
                    return Reply(0)  # took effect; the answer is lost
                return reply
        return arm_error(404, "NotFound", f"No data-plane route for {method} {request.path}.")

    def _get_run(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        if not request.bearer_token or not self.arm.issued(request.bearer_token):
            return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        ws_id = self._ws_id(match["ws"], match["rg"])
        run = self._runs.get(_key(ws_id, match["run"]))
        if run is None:
            return arm_error(404, "UserError", f"Run {match['run']} not found.")
        return Reply(200, copy.deepcopy(run))

    def _invoke(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        refused = self._token_problem(request.bearer_token, "Batch endpoint invocation")
        if refused:
            return refused
        endpoint = next((e for e in self._batch_endpoints.values()
                         if e["id"].lower().endswith(f"/workspaces/{match['ws']}/batchendpoints/"
                                                     f"{match['be']}".lower())), None)
        if endpoint is None:
            return arm_error(404, "UserError", f"Batch endpoint {match['be']} not found.")
        body = request.body
        if not isinstance(body, dict) or set(body) != {"properties"} or \
                not isinstance(body["properties"], dict):
            return _user_error("The request body must be {\"properties\": BatchJob}.")
        job: dict[str, Any] = body["properties"]
        unknown = sorted(set(job) - BATCH_JOB_MEMBERS)
        if unknown:
            return arm_error(400, "InvalidRequestContent",
                             f"Could not find member '{unknown[0]}' on object of type 'BatchJob'.",
                             f"properties.{unknown[0]}")
        inputs: dict[str, Any] = {}
        for name, item in (job.get("inputData") or {}).items():
            kind = (item or {}).get("jobInputType")
            if kind not in BATCH_INPUT_TYPES:
                return _user_error(f"inputData.{name}.jobInputType {kind!r} is not one of "
                                   f"{sorted(BATCH_INPUT_TYPES)}.", f"properties.inputData.{name}")
            if kind == "Literal" and "value" not in item:
                return _user_error(f"inputData.{name}: a Literal input needs a value.",
                                   f"properties.inputData.{name}")
            inputs[name] = item.get("value", item.get("uri"))
        component_id = endpoint.get("_componentId")
        if component_id:
            component = self._components[_key(component_id)]
            problem = _inputs_problem(component["properties"]["componentSpec"], inputs,
                                      "properties.inputData")
            if problem:
                return problem
        ws_id = endpoint["id"].split("/batchEndpoints/")[0]
        name = str(job.get("name") or uuid.uuid4())
        if not JOB_NAME_RULE.fullmatch(name):
            return _user_error(f"The job name {name!r} is invalid.", "properties.name")
        path = f"{ws_id}/jobs/{name}"
        if _key(path) in self._jobs:
            return _user_error(f"Job name {name} already exists in the workspace.",
                               "properties.name")
        experiment = (job.get("properties") or {}).get("experimentName") or endpoint["name"]
        created = self._job_resource(path, name, {
            "jobType": "Pipeline", "componentId": component_id, "experimentName": experiment,
            "inputs": {k: {"jobInputType": "literal", "value": v} for k, v in inputs.items()},
            "outputs": {}, "jobs": {}, "tags": {},
            "properties": {"azureml.batchrun": "true",
                           "azureml.batchEndpointName": endpoint["name"]}})
        self._jobs[_key(path)] = created
        return Reply(200, {"id": path, "name": name,
                           "type": f"{NAMESPACE}/workspaces/batchEndpoints/jobs",
                           "properties": {**copy.deepcopy(job), "status": "NotStarted",
                                          "provisioningState": "Succeeded"},
                           "systemData": _system_data()})

    # -- state for assertions ------------------------------------------------------------------

    def endpoint(self, name: str, *, workspace: str | None = None) -> EndpointView:
        """The endpoint as stored (KeyError if there is none)."""
        with self.arm.lock:
            raw = self._endpoints[_key(f"{self._ws_id(workspace)}/onlineEndpoints/{name}")]
            return _endpoint_view(copy.deepcopy(raw))

    def has_endpoint(self, name: str, *, workspace: str | None = None) -> bool:
        """Whether the endpoint exists."""
        with self.arm.lock:
            return _key(f"{self._ws_id(workspace)}/onlineEndpoints/{name}") in self._endpoints

    def endpoints(self) -> list[EndpointView]:
        """Every endpoint, in creation order."""
        with self.arm.lock:
            return [_endpoint_view(copy.deepcopy(raw)) for raw in self._endpoints.values()]

    def deployment(self, endpoint: str, name: str, *, workspace: str | None = None) -> DeploymentView:
        """The deployment as stored (KeyError if there is none)."""
        key = _key(f"{self._ws_id(workspace)}/onlineEndpoints/{endpoint}/deployments/{name}")
        with self.arm.lock:
            return _deployment_view(copy.deepcopy(self._deployments[key]))

    def deployments(self, endpoint: str | None = None) -> list[DeploymentView]:
        """Every deployment (of one endpoint if named), in creation order."""
        with self.arm.lock:
            views = [_deployment_view(copy.deepcopy(raw)) for raw in self._deployments.values()]
        return [v for v in views if endpoint is None or v.endpoint.lower() == endpoint.lower()]

    def set_provisioning_state(self, endpoint: str, state: str, deployment: str | None = None) -> None:
        """Force a provisioning state (e.g. Failed) on an endpoint or deployment."""
        path = f"{self._ws_id()}/onlineEndpoints/{endpoint}"
        with self.arm.lock:
            store = self._deployments if deployment else self._endpoints
            store[_key(f"{path}/deployments/{deployment}" if deployment else path)][
                "properties"]["provisioningState"] = state

    def delete_in_background(self, endpoint: str, deployment: str | None = None, *,
                             seconds: float = 0.5) -> threading.Timer:
        """Someone else deletes an endpoint (or deployment): Deleting now, gone after ``seconds``."""
        path = f"{self._ws_id()}/onlineEndpoints/{endpoint}"
        key = _key(f"{path}/deployments/{deployment}" if deployment else path)
        store = self._deployments if deployment else self._endpoints
        with self.arm.lock:
            store[key]["properties"]["provisioningState"] = "Deleting"

        def finish() -> None:
            with self.arm.lock:
                if key in store:
                    self._forget(key, store)

        timer = threading.Timer(seconds, finish)
        timer.daemon = True
        timer.start()
        return timer

    # -- routes ----------------------------------------------------------------------------

    def _add_routes(self) -> None:
        def add(method: str, path: str, handler: Any, kind: str) -> None:
            self.arm.add_route(method, path, handler, resource_type=f"{NAMESPACE}/{kind}",
                               api_versions=API_VERSIONS[kind])

        add("GET", _WS, self._get_workspace, "workspaces")
        add("GET", _WS + r"/models/(?P<name>[^/]+)", self._get_model_container, "workspaces/models")
        add("GET", _WS + r"/models/(?P<name>[^/]+)/versions", self._list_versions,
            "workspaces/models/versions")
        add("GET", _WS + r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_asset,
            "workspaces/models/versions")
        add("GET", _WS + r"/environments/(?P<name>[^/]+)/versions", self._list_versions,
            "workspaces/environments/versions")
        add("GET", _WS + r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_asset,
            "workspaces/environments/versions")
        add("GET", _WS + r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_asset,
            "workspaces/codes/versions")
        add("GET", _WS + r"/onlineEndpoints", self._list_endpoints, "workspaces/onlineEndpoints")
        add("GET", _EP, self._get_resource, "workspaces/onlineEndpoints")
        add("PUT", _EP, self._put_endpoint, "workspaces/onlineEndpoints")
        add("PATCH", _EP, self._patch_resource, "workspaces/onlineEndpoints")
        add("DELETE", _EP, self._delete_resource, "workspaces/onlineEndpoints")
        add("POST", _EP + r"/listKeys", self._list_keys, "workspaces/onlineEndpoints")
        add("GET", _EP + r"/deployments", self._list_deployments, "workspaces/onlineEndpoints/deployments")
        add("GET", _DEP, self._get_resource, "workspaces/onlineEndpoints/deployments")
        add("PUT", _DEP, self._put_deployment, "workspaces/onlineEndpoints/deployments")
        add("PATCH", _DEP, self._patch_resource, "workspaces/onlineEndpoints/deployments")
        add("DELETE", _DEP, self._delete_resource, "workspaces/onlineEndpoints/deployments")
        add("GET", _WS + r"/components/(?P<name>[^/]+)/versions", self._list_versions,
            "workspaces/components/versions")
        add("GET", _WS + r"/components/(?P<name>[^/]+)/versions/(?P<version>[^/]+)",
            self._get_component, "workspaces/components/versions")
        add("GET", _JOB, self._get_job, "workspaces/jobs")
        add("PUT", _JOB, self._put_job, "workspaces/jobs")
        add("GET", _BATCH, self._get_batch_endpoint, "workspaces/batchEndpoints")
        self.arm.add_operation_routes(NAMESPACE, MFE_API_VERSIONS, status_segment="mfeOperationsStatus",
                                      results_segment="mfeOperationResults")

    def _workspace(self, match: re.Match[str]) -> dict[str, Any] | None:
        return self._workspaces.get(_key(match["sub"], match["rg"], match["ws"]))

    def _no_workspace(self, match: re.Match[str]) -> Reply:
        return arm_error(404, "ResourceNotFound", f"The Resource '{NAMESPACE}/workspaces/{match['ws']}' "
                                                  f"under resource group '{match['rg']}' was not found.")

    def _store(self, path: str) -> dict[tuple[str, ...], dict[str, Any]]:
        if re.search(r"/deployments/[^/]+$", path, re.IGNORECASE):
            return self._deployments
        return self._endpoints if "/onlineendpoints/" in path.lower() else self._models

    def _asset_store(self, path: str) -> dict[tuple[str, ...], dict[str, Any]]:
        lowered = path.lower()
        return (self._models if "/models/" in lowered else
                self._environments if "/environments/" in lowered else
                self._components if "/components/" in lowered else self._codes)

    def _get_workspace(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        return Reply(200, copy.deepcopy(ws)) if ws else self._no_workspace(match)

    def _get_asset(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        found = self._asset_store(request.path).get(_key(request.path))
        if found is None:
            return arm_error(404, "UserError", f"{match['name']}:{match['version']} not found in "
                                               f"workspace {match['ws']}.")
        return Reply(200, copy.deepcopy(found))

    def _versions(self, container_path: str) -> list[dict[str, Any]]:
        prefix = container_path.lower().rstrip("/") + "/versions/"
        store = self._asset_store(container_path + "/")
        return [m for key, m in store.items() if key[0].startswith(prefix)]

    def _get_model_container(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        versions = self._versions(request.path)
        if not versions:
            return arm_error(404, "UserError", f"Model container {match['name']} not found.")
        latest = versions[-1]["name"]
        props = {"latestVersion": latest, "isArchived": False, "tags": {}, "properties": {},
                 "provisioningState": "Succeeded"}
        return Reply(200, {"id": request.path, "name": match["name"], "properties": props,
                           "type": f"{NAMESPACE}/workspaces/models", "systemData": _system_data()})

    def _list_versions(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        """Versions oldest first, or newest first for ``$orderBy=createdtime desc``; ``$top``."""
        versions = self._versions(request.path.rsplit("/", 1)[0])
        if "desc" in request.query.get("$orderBy", "").lower():
            versions.reverse()
        top = request.query.get("$top")
        return _listing(versions[: int(top)] if top else versions)

    def _list_endpoints(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        prefix = request.path.lower() + "/"
        return _listing([e for key, e in self._endpoints.items() if key[0].startswith(prefix)])

    def _list_deployments(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        prefix = request.path.lower() + "/"
        return _listing([d for key, d in self._deployments.items() if key[0].startswith(prefix)])

    def _get_resource(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        found = self._store(request.path).get(_key(request.path))
        if found is None:
            kind = "Deployment" if "dep" in match.groupdict() else "Endpoint"
            return arm_error(404, "UserError", f"{kind} {request.path.rsplit('/', 1)[-1]} not found.")
        return Reply(200, copy.deepcopy(found))

    def _list_keys(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        if _key(request.path[: -len("/listKeys")]) not in self._endpoints:
            return arm_error(404, "UserError", f"Endpoint {match['ep']} not found.")
        return Reply(200, {"primaryKey": "fake-primary-key", "secondaryKey": "fake-secondary-key"})

    # -- checks shared by the writes -----------------------------------------------------------

    @staticmethod
    def _name_problem(name: str, kind: str) -> Reply | None:
        if NAME_RULE.fullmatch(name):
            return None
        return _user_error(f"The name {name!r} of {kind} is invalid: it must have 3 to 32 characters, "
                           "begin with a letter, contain only letters, digits and hyphens, and end "
                           "with a letter or digit.", target="name")

    def _busy(self, resource: Mapping[str, Any] | None, kind: str, name: str) -> Reply | None:
        state = _state(resource or {})
        if state.lower() in BUSY:
            return _conflict(f"{kind} {name} is in {state} provisioning state: another operation is "
                             "in progress on it; retry when it has finished.")
        return None

    def _traffic_problem(self, endpoint_path: str, props: Mapping[str, Any]) -> str | None:
        for name, limit, what in (("traffic", 100, "Traffic values need to sum to 100"),
                                  ("mirrorTraffic", 50, "Mirror traffic values need to sum to at most 50")):
            allocation: Mapping[str, int] = props.get(name) or {}
            missing = [d for d in allocation
                       if _key(f"{endpoint_path}/deployments/{d}") not in self._deployments]
            if missing:
                return (f"{name} refers to deployment(s) that do not exist in this endpoint: "
                        f"{', '.join(missing)}.")
            if any(not 0 <= int(v) <= 100 for v in allocation.values()):
                return f"{name} values must be between 0 and 100."
            total = sum(int(v) for v in allocation.values())
            if (name == "traffic" and total not in (0, 100)) or total > limit:
                return f"{what}; got {total}."
        return None

    # -- writes (long-running) ---------------------------------------------------------------

    def _put_endpoint(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        if ws is None:
            return self._no_workspace(match)
        refused = self._name_problem(match["ep"], "an endpoint")
        if refused:
            return refused
        problems = check(rest.OnlineEndpoint, request.body, operation="create")
        if problems:
            return invalid_body(problems, "UserError")
        body: dict[str, Any] = request.body
        busy = self._busy(self._endpoints.get(_key(request.path)), "Endpoint", match["ep"])
        if busy:
            return busy
        props = dict(body["properties"])
        problem = self._traffic_problem(request.path, props)
        if problem:
            return _user_error(problem, target="properties.traffic")
        name = match["ep"]
        scoring = (f"https://{name}.{ws['location']}.inference.ml.azure.com" if not props.get("compute")
                   else f"http://fake-k8s.{ws['location']}.local/api/v1/endpoint/{name}")
        props.update({"traffic": dict(props.get("traffic") or {}),
                      "mirrorTraffic": dict(props.get("mirrorTraffic") or {}),
                      "scoringUri": f"{scoring}/score", "swaggerUri": f"{scoring}/swagger.json"})
        props.setdefault("publicNetworkAccess", "Enabled")
        return self._put(request, ws, {**body, "name": name, "properties": props,
                                       "type": f"{NAMESPACE}/workspaces/onlineEndpoints"})

    def _put_deployment(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        if ws is None:
            return self._no_workspace(match)
        refused = self._name_problem(match["dep"], "a deployment")
        if refused:
            return refused
        problems = check(rest.OnlineDeployment, request.body, operation="create")
        if problems:
            return invalid_body(problems, "UserError")
        body: dict[str, Any] = request.body
        endpoint_path = request.path.rsplit("/deployments/", 1)[0]
        endpoint = self._endpoints.get(_key(endpoint_path))
        if endpoint is None:
            return arm_error(404, "UserError", f"Endpoint {match['ep']} not found.")
        state = _state(endpoint)
        if state.lower() != "succeeded":
            message = (f"Cannot create a deployment in endpoint {match['ep']} because it is in {state} "
                       "provisioning state.")
            return _conflict(message) if state.lower() in BUSY else _user_error(message)
        busy = self._busy(self._deployments.get(_key(request.path)), "Deployment", match["dep"])
        if busy:
            return busy
        props = {**copy.deepcopy(DEPLOYMENT_DEFAULTS), **body["properties"]}
        problem = self._deployment_problem(body, props, endpoint)
        if problem:
            return problem
        if props["endpointComputeType"].lower() == "kubernetes":
            props = {**copy.deepcopy(KUBERNETES_DEFAULTS), **props}
        return self._put(request, ws, {**body, "name": match["dep"], "properties": props,
                                       "type": f"{NAMESPACE}/workspaces/onlineEndpoints/deployments"})

    def _deployment_problem(self, body: Mapping[str, Any], props: dict[str, Any],
                            endpoint: Mapping[str, Any]) -> Reply | None:
        sku = body.get("sku")
        if not sku:
            return _user_error("A deployment needs sku (its capacity is the instance count).", "sku")
        if int(sku.get("capacity") or 0) < 1:
            return _user_error(f"sku.capacity (the instance count) must be at least 1, got "
                               f"{sku.get('capacity')}.", "sku.capacity")
        compute_type = str(props["endpointComputeType"])
        on_kubernetes = bool((endpoint.get("properties") or {}).get("compute"))
        if (compute_type.lower() == "kubernetes") != on_kubernetes:
            return _user_error(f"A {compute_type} deployment cannot be created in a "
                               f"{'Kubernetes' if on_kubernetes else 'managed'} endpoint.",
                               "properties.endpointComputeType")
        if compute_type.lower() == "managed":
            props.setdefault("instanceType", DEFAULT_INSTANCE_TYPE)
            if str(props["instanceType"]).lower() not in MANAGED_INSTANCE_TYPES:
                return _user_error(f"Instance type {props['instanceType']} is not supported for managed "
                                   "online endpoints.", "properties.instanceType")
        for name, store in (("model", self._models), ("environmentId", self._environments)):
            reference = props.get(name)
            if reference and str(reference).startswith("/subscriptions/") and \
                    _key(reference) not in store:
                return _user_error(f"{reference} was not found.", f"properties.{name}")
        code = (props.get("codeConfiguration") or {}).get("codeId")
        if code and str(code).startswith("/subscriptions/") and _key(code) not in self._codes:
            return _user_error(f"{code} was not found.", "properties.codeConfiguration.codeId")
        return None

    def _put(self, request: RecordedRequest, ws: Mapping[str, Any], resource: dict[str, Any]) -> Reply:
        store, key = self._store(request.path), _key(request.path)
        existing = store.get(key)
        resource["id"] = request.path
        resource.setdefault("tags", {})
        resource["systemData"] = existing["systemData"] if existing else _system_data()
        resource["properties"]["provisioningState"] = "Updating" if existing else "Creating"
        resource["identity"] = self._identity(resource.get("identity"))
        store[key] = resource
        headers = self._start(request, ws, key, store, delete=False)
        return Reply(200 if existing else 201, copy.deepcopy(resource), headers)

    def _identity(self, identity: Mapping[str, Any] | None) -> dict[str, Any]:
        result = dict(identity or {"type": "SystemAssigned"})
        if "systemassigned" in str(result.get("type", "")).lower().replace("_", ""):
            result.setdefault("principalId", str(uuid.uuid4()))
            result.setdefault("tenantId", self.arm.tenant_id)
        return result

    def _patch_resource(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        store, key = self._store(request.path), _key(request.path)
        if ws is None or key not in store:
            return arm_error(404, "UserError", f"{request.path.rsplit('/', 1)[-1]} not found.")
        deployment = store is self._deployments
        model = (rest.PartialMinimalTrackedResourceWithSku if deployment
                 else rest.PartialMinimalTrackedResourceWithIdentity)
        problems = check(model, request.body, operation="update")
        if problems:
            return invalid_body(problems, "UserError")
        resource, patch = store[key], dict(request.body)
        busy = self._busy(resource, "Deployment" if deployment else "Endpoint",
                          request.path.rsplit("/", 1)[-1])
        if busy:
            return busy
        if deployment and "sku" in patch:
            capacity = (patch["sku"] or {}).get("capacity")
            if capacity is not None and int(capacity) < 1:
                return _user_error(f"sku.capacity must be at least 1, got {capacity}.", "sku.capacity")
            patch["sku"] = {**(resource.get("sku") or {}), **(patch["sku"] or {})}
        for name in ("tags", "sku", "identity"):
            if name in patch:
                resource[name] = patch[name]
        resource["properties"]["provisioningState"] = "Updating"
        return Reply(202, None, self._start(request, ws, key, store, delete=False))

    def _delete_resource(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        store, key = self._store(request.path), _key(request.path)
        if ws is None or key not in store:
            return Reply(204)
        kind = "Deployment" if store is self._deployments else "Endpoint"
        busy = self._busy(store[key], kind, request.path.rsplit("/", 1)[-1])
        if busy:
            return busy
        if store is self._deployments:
            endpoint = self._endpoints.get(_key(request.path.rsplit("/deployments/", 1)[0]), {})
            if int(endpoint.get("properties", {}).get("traffic", {}).get(match["dep"], 0)):
                return _user_error(f"Deployment {match['dep']} still receives traffic.")
        store[key]["properties"]["provisioningState"] = "Deleting"
        return Reply(202, None, self._start(request, ws, key, store, delete=True))

    def _start(self, request: RecordedRequest, ws: Mapping[str, Any], key: tuple[str, ...],
               store: dict[tuple[str, ...], dict[str, Any]], *, delete: bool) -> dict[str, str]:
        def finish(ok: bool) -> None:
            if key not in store:
                return
            if delete and ok:
                self._forget(key, store)
            else:
                store[key]["properties"]["provisioningState"] = "Succeeded" if ok else "Failed"

        def result() -> Reply:
            return Reply(200, copy.deepcopy(store[key])) if key in store else Reply(204)

        return self.arm.start_operation(request, namespace=NAMESPACE, location=ws["location"],
                                        finish=finish, result=result,
                                        status_segment="mfeOperationsStatus",
                                        results_segment="mfeOperationResults")

    def _forget(self, key: tuple[str, ...], store: dict[tuple[str, ...], dict[str, Any]]) -> None:
        del store[key]
        if store is self._endpoints:
            for dep in [k for k in self._deployments if k[0].startswith(key[0] + "/")]:
                del self._deployments[dep]


def _endpoint_view(raw: dict[str, Any]) -> EndpointView:
    props = raw.get("properties") or {}
    traffic = {name: int(value) for name, value in (props.get("traffic") or {}).items()}
    return EndpointView(raw["name"], raw.get("kind"), props.get("compute"), props.get("authMode"),
                        traffic, props.get("provisioningState", ""), raw)


def _deployment_view(raw: dict[str, Any]) -> DeploymentView:
    props = raw.get("properties") or {}
    capacity = (raw.get("sku") or {}).get("capacity")
    endpoint = raw["id"].split("/onlineEndpoints/", 1)[1].split("/", 1)[0]
    return DeploymentView(raw["name"], endpoint, props.get("endpointComputeType"), props.get("instanceType"),
                          int(capacity) if capacity is not None else None, props.get("model"),
                          props.get("environmentId"), props.get("provisioningState", ""), raw)


def _job_view(raw: dict[str, Any], run: Mapping[str, Any] | None) -> JobView:
    props = raw.get("properties")
    if props is None:  # a pipeline step: what run history says
        run = run or {}
        return JobView(raw["name"], str(run.get("status", "")), None, {}, None,
                       dict(run.get("tags") or {}), None, True, raw)
    inputs = {name: (item or {}).get("value") for name, item in (props.get("inputs") or {}).items()}
    batch = (props.get("properties") or {}).get("azureml.batchEndpointName")
    return JobView(raw["name"], props.get("status", ""), props.get("componentId"), inputs,
                   props.get("experimentName"), dict(props.get("tags") or {}), batch, False, raw)


def _public(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A stored resource as the service answers it (the fake's own bookkeeping left out)."""
    return {k: copy.deepcopy(v) for k, v in resource.items() if not k.startswith("_")}


def _submission(props: Mapping[str, Any]) -> dict[str, Any]:
    """What a job PUT may not change once the job exists (tags, description, name shown may)."""
    mutable = {"status", "tags", "description", "displayName", "services", "isArchived"}
    return {k: v for k, v in props.items() if k not in mutable and v not in (None, {}, [])}


def _inputs_problem(spec: Mapping[str, Any], given: Mapping[str, Any], target: str) -> Reply | None:
    """Azure ML refuses an input the component does not declare, and a required one left out."""
    declared: Mapping[str, Any] = spec.get("inputs") or {}
    lowered = {name.lower() for name in declared}
    unknown = sorted(name for name in given if name.lower() not in lowered)
    if unknown:
        return _user_error(f"Input(s) {', '.join(unknown)} are not declared by component "
                           f"{spec.get('name')}:{spec.get('version')} (it declares "
                           f"{', '.join(declared) or 'none'}).", target)
    missing = sorted(name for name, item in declared.items()
                     if not item.get("optional") and item.get("default") is None
                     and name not in given)
    if missing:
        return _user_error(f"Required input(s) {', '.join(missing)} of component "
                           f"{spec.get('name')}:{spec.get('version')} are not given.", target)
    for name, value in given.items():
        kind = str((declared.get(name) or {}).get("type", "string")).lower()
        if kind in ("number", "integer") and (isinstance(value, bool) or
                                              not isinstance(value, (int, float))):
            try:
                float(str(value))
            except ValueError:
                return _user_error(f"Input {name} must be a {kind}, got {value!r}.", target)
    return None


def _claims(token: str) -> dict[str, Any]:
    """The payload of a JWT the fake issued."""
    try:
        payload = token.split(".")[1]
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims
    except (IndexError, ValueError):
        return {}


class _DroppingHandler(_Handler):
    """The data plane's handler: a Reply with status 0 closes the connection unanswered."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.app(self.command, self.path, headers, raw)  # type: ignore[attr-defined]
        if reply.status == 0:
            self.close_connection = True
            return
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            if reply.body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve
