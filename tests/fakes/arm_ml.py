"""Azure ML (Microsoft.MachineLearningServices) routes of the fake ARM, as azure-ai-ml's MLClient uses them.

Served under ``/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/
workspaces/{ws}`` (any api-version): the workspace; model containers and versions (seeded with
``add_model``); environment versions (``add_environment``); online endpoints and deployments
(PUT/GET/PATCH/DELETE/list) as long-running operations with ``Azure-AsyncOperation`` polling at
``.../locations/{loc}/mfeOperationsStatus/{id}``; ``listKeys``.

What azure-ai-ml 1.35 sends (paths relative to the workspace):
``online_endpoints.begin_create_or_update``: GET workspace (2024-10-01-preview, for its location),
PUT onlineEndpoints/{e} (2022-02-01-preview; traffic updates are this same PUT with
``properties.traffic``), GET mfeOperationsStatus/{id} until terminal, GET onlineEndpoints/{e}.
``online_deployments.begin_create_or_update``: GET onlineEndpoints/{e} (2023-04-01-preview,
existence check), GET models/{m}/versions?$orderBy=createdtime desc&$top=1 only for ``m@latest``
(write ``"iris@latest"``: with ``"azureml:iris@latest"`` the SDK asks for a model named
``azureml:iris``), GET workspace, PUT .../deployments/{d} (model ARM id, instanceType,
endpointComputeType, ``sku.capacity`` = instance count), status polls, GET the deployment.
``azureml:name:version`` becomes an ARM id without any request.

Assert on state with ``endpoint(name)``, ``deployment(endpoint, name)`` (frozen views; KeyError if
absent; ``has_endpoint``) or the raw JSON they keep (``.raw``). The default workspace
(``arm.workspace_name``) exists from the start.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .arm import RecordedRequest, Reply, arm_error, utc_now

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .arm import FakeArm

NAMESPACE = "Microsoft.MachineLearningServices"
_WS = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
       r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)")
_EP = _WS + r"/onlineEndpoints/(?P<ep>[^/]+)"
_DEP = _EP + r"/deployments/(?P<dep>[^/]+)"
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


class MlService:
    """In-memory Azure ML workspace state behind the fake ARM routes."""

    def __init__(self, arm: FakeArm) -> None:
        self.arm = arm
        self._workspaces: dict[tuple[str, ...], dict[str, Any]] = {}
        self._models: dict[tuple[str, ...], dict[str, Any]] = {}
        self._environments: dict[tuple[str, ...], dict[str, Any]] = {}
        self._endpoints: dict[tuple[str, ...], dict[str, Any]] = {}
        self._deployments: dict[tuple[str, ...], dict[str, Any]] = {}
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
                 "discoveryUrl": f"https://{loc}.api.azureml.ms/discovery",
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
            self._models[_key(model_id)] = body
        return model_id

    def add_environment(self, name: str, version: str = "1", *,
                        image: str = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
                        workspace: str | None = None) -> str:
        """Register an environment version; returns its ARM id."""
        env_id = f"{self._ws_id(workspace)}/environments/{name}/versions/{version}"
        body = {"id": env_id, "name": str(version), "type": f"{NAMESPACE}/workspaces/environments/versions",
                "properties": {"image": image, "osType": "Linux", "isAnonymous": False, "isArchived": False,
                               "tags": {}, "properties": {}, "environmentType": "UserCreated",
                               "autoRebuild": "Disabled", "provisioningState": "Succeeded"},
                "systemData": _system_data()}
        with self.arm.lock:
            self._environments[_key(env_id)] = body
        return env_id

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

    # -- routes ----------------------------------------------------------------------------

    def _add_routes(self) -> None:
        add = self.arm.add_route
        add("GET", _WS, self._get_workspace)
        add("GET", _WS + r"/models/(?P<name>[^/]+)", self._get_model_container)
        add("GET", _WS + r"/models/(?P<name>[^/]+)/versions", self._list_model_versions)
        add("GET", _WS + r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_asset)
        add("GET", _WS + r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self._get_asset)
        add("GET", _WS + r"/onlineEndpoints", self._list_endpoints)
        add("GET", _EP, self._get_resource)
        add("PUT", _EP, self._put_endpoint)
        add("PATCH", _EP, self._patch_resource)
        add("DELETE", _EP, self._delete_resource)
        add("POST", _EP + r"/listKeys", self._list_keys)
        add("GET", _EP + r"/deployments", self._list_deployments)
        add("GET", _DEP, self._get_resource)
        add("PUT", _DEP, self._put_deployment)
        add("PATCH", _DEP, self._patch_resource)
        add("DELETE", _DEP, self._delete_resource)

    def _workspace(self, match: re.Match[str]) -> dict[str, Any] | None:
        return self._workspaces.get(_key(match["sub"], match["rg"], match["ws"]))

    def _no_workspace(self, match: re.Match[str]) -> Reply:
        return arm_error(404, "ResourceNotFound", f"The Resource '{NAMESPACE}/workspaces/{match['ws']}' "
                                                  f"under resource group '{match['rg']}' was not found.")

    def _store(self, path: str) -> dict[tuple[str, ...], dict[str, Any]]:
        if re.search(r"/deployments/[^/]+$", path, re.IGNORECASE):
            return self._deployments
        return self._endpoints if "/onlineendpoints/" in path.lower() else self._models

    def _get_workspace(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        return Reply(200, copy.deepcopy(ws)) if ws else self._no_workspace(match)

    def _get_asset(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        store = self._models if "/models/" in request.path.lower() else self._environments
        found = store.get(_key(request.path))
        if found is None:
            return arm_error(404, "UserError", f"{match['name']}:{match['version']} not found in "
                                               f"workspace {match['ws']}.")
        return Reply(200, copy.deepcopy(found))

    def _versions(self, container_path: str) -> list[dict[str, Any]]:
        prefix = container_path.lower().rstrip("/") + "/versions/"
        return [m for key, m in self._models.items() if key[0].startswith(prefix)]

    def _get_model_container(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        versions = self._versions(request.path)
        if not versions:
            return arm_error(404, "UserError", f"Model container {match['name']} not found.")
        latest = versions[-1]["name"]
        props = {"latestVersion": latest, "isArchived": False, "tags": {}, "properties": {},
                 "provisioningState": "Succeeded"}
        return Reply(200, {"id": request.path, "name": match["name"], "properties": props,
                           "type": f"{NAMESPACE}/workspaces/models", "systemData": _system_data()})

    def _list_model_versions(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
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

    # -- writes (long-running) ---------------------------------------------------------------

    def _put_endpoint(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        if ws is None:
            return self._no_workspace(match)
        body = request.body or {}
        props = dict(body.get("properties") or {})
        problem = self._traffic_problem(request.path, props.get("traffic") or {})
        if problem:
            return arm_error(400, "UserError", problem)
        name = match["ep"]
        location = body.get("location") or ws["location"]
        scoring = (f"https://{name}.{location}.inference.ml.azure.com" if not props.get("compute")
                   else f"http://fake-k8s.{location}.local/api/v1/endpoint/{name}")
        props.update({"traffic": dict(props.get("traffic") or {}),
                      "mirrorTraffic": dict(props.get("mirrorTraffic") or {}),
                      "scoringUri": f"{scoring}/score", "swaggerUri": f"{scoring}/swagger.json"})
        props.setdefault("publicNetworkAccess", "Enabled")
        return self._put(request, ws, {**body, "name": name, "properties": props,
                                       "type": f"{NAMESPACE}/workspaces/onlineEndpoints"})

    def _traffic_problem(self, endpoint_path: str, traffic: Mapping[str, Any]) -> str | None:
        missing = [d for d in traffic if _key(f"{endpoint_path}/deployments/{d}") not in self._deployments]
        if missing:
            return f"Traffic allocation refers to deployment(s) that do not exist: {', '.join(missing)}."
        total = sum(int(v) for v in traffic.values())
        if total not in (0, 100):
            return f"Traffic values must sum to 100 (or 0); got {total}."
        return None

    def _put_deployment(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        if ws is None:
            return self._no_workspace(match)
        endpoint_path = request.path.rsplit("/deployments/", 1)[0]
        if _key(endpoint_path) not in self._endpoints:
            return arm_error(404, "UserError", f"Endpoint {match['ep']} not found.")
        body = request.body or {}
        props = {**copy.deepcopy(DEPLOYMENT_DEFAULTS), **(body.get("properties") or {})}
        if props.get("endpointComputeType") == "Kubernetes":
            props = {**copy.deepcopy(KUBERNETES_DEFAULTS), **props}
        model = props.get("model")
        if model and model.startswith("/subscriptions/") and _key(model) not in self._models:
            return arm_error(400, "UserError", f"Model {model} was not found.")
        return self._put(request, ws, {**body, "name": match["dep"], "properties": props,
                                       "type": f"{NAMESPACE}/workspaces/onlineEndpoints/deployments"})

    def _put(self, request: RecordedRequest, ws: Mapping[str, Any], resource: dict[str, Any]) -> Reply:
        store, key = self._store(request.path), _key(request.path)
        existing = store.get(key)
        resource["id"] = request.path
        resource.setdefault("location", ws["location"])
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
        resource, patch = store[key], request.body or {}
        for name in ("tags", "sku", "identity", "kind"):
            if name in patch:
                resource[name] = patch[name]
        resource["properties"].update(patch.get("properties") or {})
        resource["properties"]["provisioningState"] = "Updating"
        return Reply(202, None, self._start(request, ws, key, store, delete=False))

    def _delete_resource(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        ws = self._workspace(match)
        store, key = self._store(request.path), _key(request.path)
        if ws is None or key not in store:
            return Reply(204)
        if store is self._deployments:
            endpoint = self._endpoints.get(_key(request.path.rsplit("/deployments/", 1)[0]), {})
            if int(endpoint.get("properties", {}).get("traffic", {}).get(match["dep"], 0)):
                return arm_error(400, "UserError", f"Deployment {match['dep']} still receives traffic.")
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
