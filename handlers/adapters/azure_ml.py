"""The deploy adapter: azure-ai-ml (SDK v2) managed and Kubernetes online endpoints.

One plan becomes: the model version looked up (is it MLflow?), the endpoint made ready, the
deployment created unless it already runs this model (a redelivery deploys once), then the traffic
set. azure.ai.ml is imported inside methods only (cold start).

The endpoint (and a same-named deployment) is first waited for while an operation runs on it
(Creating/Updating/Scaling/Deleting, up to AMLEVENTS_DEPLOY_WAIT_S; longer → retry). One that was
being deleted is created again once the delete completed. An endpoint whose last operation ended
Failed or Canceled is repaired before anything is deployed into it (Azure ML refuses a deployment
into such an endpoint): it is PUT again exactly as it is (same auth mode, compute, traffic), and if
that repair fails too the plan fails for good with a message naming the endpoint, its state and
Azure's error. A deployment of the same name that Failed is PUT again the same way.

``deploy_environment=NAME@latest`` (with or without ``azureml:``) is resolved with
``environments.get(NAME, label="latest")``, the newest version, whose ARM id is deployed.

SDK errors become ours here: 408/409/429/5xx/timeouts → RetryableError (409 Conflict: another
operation is in progress on the resource; Retry-After kept), other 4xx and failed operations →
PermanentError. Targets aci/aks go to the optional SDK v1 adapter (handlers.adapters.azureml_v1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from handlers.adapters.retry_after import retry_after_of
from handlers.deploy.plan import DeploymentPlan
from handlers.deploy.policy import V1_TARGETS
from handlers.errors import AmlEventsError, PermanentError, RetryableError
from handlers.events.workspace import WorkspaceRef
from handlers.ledger.ledger import Ledger
from handlers.outcome import ActionResult
from handlers.settings import SettingsReader

WAIT_S = "AMLEVENTS_DEPLOY_WAIT_S"
POLL_S = "AMLEVENTS_DEPLOY_POLL_S"
SDK_RETRIES = "AMLEVENTS_DEPLOY_SDK_RETRIES"
HTTP_TIMEOUT_S = "AMLEVENTS_DEPLOY_HTTP_TIMEOUT_S"

_BUSY = frozenset({"creating", "updating", "deleting", "scaling"})
_BROKEN = frozenset({"failed", "canceled"})
_RETRYABLE_STATUS = frozenset({408, 409, 429})  # 409: another operation runs on the resource
_LATEST = "@latest"


@dataclass(frozen=True)
class AzureMlSettings:
    """How long one delivery waits for Azure, and how hard the SDK retries by itself."""

    wait_s: float = 240.0
    poll_s: float = 15.0
    sdk_retries: int = 3
    http_timeout_s: float = 60.0

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> AzureMlSettings:
        """Build and validate from a mapping such as os.environ."""
        reader = SettingsReader(env)
        # Stay under the Functions host timeout; a redelivery resumes a slow deployment.
        settings = cls(
            wait_s=reader.number(WAIT_S, 240.0, minimum=0.1, maximum=3600.0),
            poll_s=reader.number(POLL_S, 15.0, minimum=0.01, maximum=300.0),
            sdk_retries=reader.integer(SDK_RETRIES, 3, minimum=0, maximum=10),
            http_timeout_s=reader.number(HTTP_TIMEOUT_S, 60.0, minimum=1.0, maximum=600.0))
        reader.raise_if_invalid()
        return settings


def split_traffic(current: Mapping[str, int], deployment: str, percent: int) -> dict[str, int]:
    """New traffic: `percent` to `deployment`, the rest shared by the others as they had it.

    With nobody else serving, the new deployment takes everything (a canary needs a baseline).
    """
    zeros = {name: 0 for name in current if name.lower() != deployment.lower()}
    others = {name: int(current[name]) for name in zeros if int(current[name]) > 0}
    total = sum(others.values())
    if percent >= 100 or total == 0:
        return {**zeros, deployment: 100}
    rest = 100 - percent
    shares = {name: rest * share // total for name, share in others.items()}
    # Largest remainders get the leftover points, so the sum is exactly 100.
    leftovers = sorted(others, key=lambda n: (-(rest * others[n] % total), n))
    for name in leftovers[: rest - sum(shares.values())]:
        shares[name] += 1
    return {**zeros, **shares, deployment: percent}


def classify(exc: BaseException) -> AmlEventsError:
    """Our error for an SDK exception: retryable (throttling, 5xx, timeouts) or permanent."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(exc, (ServiceRequestError, ServiceResponseError, TimeoutError)):
        return RetryableError(f"Azure ML unreachable or timed out: {exc}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        error = getattr(exc, "error", None)
        code = getattr(error, "code", None) or ""
        message = getattr(error, "message", None) or exc.message or str(exc)
        text = f"ARM {status or 'error'} {code}: {message}".replace("  ", " ")
        if status in _RETRYABLE_STATUS or status >= 500:
            retry_after = retry_after_of(exc)
            hint = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
            return RetryableError(text + hint, retry_after_s=retry_after)
        if isinstance(exc, ClientAuthenticationError) and not status:
            return PermanentError(f"no credential for Azure ML (managed identity?): {message}")
        return PermanentError(text)
    return PermanentError(f"{type(exc).__name__}: {exc}")


class AzureMlDeployer:
    """Deploys plans with one MLClient per workspace (built on first use, then reused)."""

    def __init__(self, settings: AzureMlSettings,
                 client_for: Callable[[WorkspaceRef], Any],
                 v1: Callable[[DeploymentPlan], ActionResult] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._client_for = client_for
        self._v1 = v1
        self._sleep = sleep
        self._clients: dict[WorkspaceRef, Any] = {}
        self._lock = threading.Lock()

    def client(self, workspace: WorkspaceRef) -> Any:
        """The MLClient of a workspace."""
        with self._lock:
            if workspace not in self._clients:
                self._clients[workspace] = self._client_for(workspace)
            return self._clients[workspace]

    def deploy(self, plan: DeploymentPlan) -> ActionResult:
        """Deploy the plan, or raise RetryableError / PermanentError."""
        if plan.target in V1_TARGETS:
            if self._v1 is None:
                raise PermanentError(f"target {plan.target} needs the SDK v1 adapter")
            return self._v1(plan)
        try:
            return self._deploy(self.client(plan.workspace), plan)
        except AmlEventsError:
            raise
        except Exception as exc:  # every SDK failure is classified here (re-raised)
            raise classify(exc) from exc

    def _deploy(self, ml: Any, plan: DeploymentPlan) -> ActionResult:
        model = ml.models.get(name=plan.model_name, version=plan.model_version)
        mlflow = str(getattr(model, "type", "")).lower() == "mlflow_model"
        if not mlflow and not plan.environment:
            raise PermanentError(
                f"model {plan.model_name}:{plan.model_version} is a {model.type}, not MLflow: set "
                "tags deploy_environment and deploy_scoring_script")
        environment = self._environment(ml, plan.environment) if plan.environment else ""
        endpoint, facts = self._endpoint(ml, plan)
        state = self._deployment(ml, plan, model.id, environment)
        traffic = split_traffic(dict(endpoint.traffic or {}), plan.deployment, plan.traffic)
        if {k: v for k, v in traffic.items() if v} != \
                {k: int(v) for k, v in (endpoint.traffic or {}).items() if int(v)}:
            endpoint.traffic = traffic
            self._wait(ml.online_endpoints.begin_create_or_update(endpoint), "traffic update")
        if environment.startswith("/"):
            facts["environment_id"] = environment
        return ActionResult.done(plan, **facts, deployment_state=state, traffic=traffic,
                                 model_id=model.id)

    @staticmethod
    def _environment(ml: Any, reference: str) -> str:
        """The environment as the SDK takes it: azureml:name:version, or for name@latest the ARM id
        of the newest version (the SDK would look up a container named "azureml:name")."""
        name = reference.removeprefix("azureml:")
        if not name.endswith(_LATEST):
            return f"azureml:{name}"
        from azure.ai.ml.exceptions import MlException

        name = name[: -len(_LATEST)]
        try:
            return str(ml.environments.get(name=name, label="latest").id)
        except MlException as exc:  # no version at all: the SDK's ValidationException
            text = " ".join(str(getattr(exc, "message", None) or exc).split())
            raise PermanentError(f"environment {name}{_LATEST}: {text}") from exc

    def _endpoint(self, ml: Any, plan: DeploymentPlan) -> tuple[Any, dict[str, Any]]:
        """The endpoint, ready for a deployment, and what was done to it (created, repaired)."""
        from azure.ai.ml.entities import KubernetesOnlineEndpoint, ManagedOnlineEndpoint

        def current() -> Any:
            return ml.online_endpoints.get(name=plan.endpoint)

        endpoint, _ = self._settled(current, f"endpoint {plan.endpoint}")
        if endpoint is None:  # missing, or a delete in progress has completed meanwhile
            tags = {"createdBy": "amlevents", "model": plan.model_name}
            new = (KubernetesOnlineEndpoint(name=plan.endpoint, compute=plan.compute, auth_mode="key",
                                            tags=tags) if plan.target == "kubernetes"
                   else ManagedOnlineEndpoint(name=plan.endpoint, auth_mode="key", tags=tags))
            self._wait(ml.online_endpoints.begin_create_or_update(new), "endpoint creation")
            return current(), {"endpoint_created": True}
        state = _state(endpoint)
        if state in _BROKEN:
            self._repair(ml, endpoint, plan.endpoint, _state_name(endpoint))
            return current(), {"endpoint_created": False, "endpoint_repaired": _state_name(endpoint)}
        return endpoint, {"endpoint_created": False}

    def _repair(self, ml: Any, endpoint: Any, name: str, state: str) -> None:
        """PUT a Failed/Canceled endpoint again as it is; a failed repair fails the plan for good."""
        try:
            self._wait(ml.online_endpoints.begin_create_or_update(endpoint), f"repair of endpoint {name}")
        except RetryableError:
            raise
        except Exception as exc:  # classified here: a repair that fails is permanent
            error = classify(exc)
            if isinstance(error, RetryableError):
                raise error from exc
            raise PermanentError(
                f"endpoint {name} is {state} (its last operation did not succeed) and repairing it, "
                f"a PUT of its own definition, failed: {error}; fix or delete the endpoint") from exc

    def _deployment(self, ml: Any, plan: DeploymentPlan, model_id: str, environment: str) -> str:
        def current() -> Any:
            return ml.online_deployments.get(name=plan.deployment, endpoint_name=plan.endpoint)

        existing, waited = self._settled(current, f"deployment {plan.deployment}")
        if existing is not None and _same_model(existing.model, model_id) and \
                _state(existing) == "succeeded":
            # an earlier delivery's deployment: done now (waited) or before (already deployed)
            return "deployed" if waited else "already deployed"
        self._wait(ml.online_deployments.begin_create_or_update(
            self._new_deployment(plan, model_id, environment)), "deployment")
        return "deployed"

    def _new_deployment(self, plan: DeploymentPlan, model_id: str, environment: str) -> Any:
        from azure.ai.ml.entities import (
            CodeConfiguration,
            KubernetesOnlineDeployment,
            ManagedOnlineDeployment,
        )

        extra: dict[str, Any] = {}
        if environment:
            extra["environment"] = environment
            extra["code_configuration"] = CodeConfiguration(code=_asset_ref(plan.code),
                                                            scoring_script=plan.script_path)
        kind = KubernetesOnlineDeployment if plan.target == "kubernetes" else ManagedOnlineDeployment
        return kind(name=plan.deployment, endpoint_name=plan.endpoint, model=model_id,
                    instance_type=plan.instance_type, instance_count=plan.instance_count,
                    tags={"createdBy": "amlevents", "modelVersion": plan.model_version}, **extra)

    def _wait(self, poller: Any, what: str) -> Any:
        """Wait for a long-running operation up to wait_s; longer → retry (redelivery resumes)."""
        poller.wait(timeout=self.settings.wait_s)
        if not poller.done():
            raise RetryableError(f"{what} still running after {self.settings.wait_s:g}s "
                                 f"({WAIT_S}); a redelivery will resume it")
        return poller.result()

    def _settled(self, get: Callable[[], Any], what: str) -> tuple[Any | None, bool]:
        """The resource once no operation runs on it (None if it does not exist, or no longer: a
        delete in progress ends in 404), and whether it had to be waited for; up to wait_s."""
        from azure.core.exceptions import ResourceNotFoundError

        deadline = time.monotonic() + self.settings.wait_s
        waited = False
        while True:
            try:
                resource = get()
            except ResourceNotFoundError:
                return None, waited
            state = _state(resource)
            if state not in _BUSY:
                return resource, waited
            if time.monotonic() >= deadline:
                raise RetryableError(f"{what} still {_state_name(resource)} after "
                                     f"{self.settings.wait_s:g}s ({WAIT_S}); a redelivery will check "
                                     "again")
            waited = True
            self._sleep(self.settings.poll_s)


def _state(resource: Any) -> str:
    """A provisioning state as lower-case text (the SDK gives str enums or plain strings)."""
    return _state_name(resource).lower()


def _state_name(resource: Any) -> str:
    """A provisioning state as Azure writes it (Failed, Canceled, ...)."""
    state = getattr(resource, "provisioning_state", None)
    return str(getattr(state, "value", state) or "")


def _same_model(current: Any, model_id: str) -> bool:
    return str(current or "").strip().lower() == model_id.strip().lower()


def _asset_ref(reference: str) -> str:
    """name:version as the SDK wants it: azureml:name:version."""
    return reference if reference.startswith("azureml:") else f"azureml:{reference}"


def build_deployer(settings: AzureMlSettings, env: Mapping[str, str],
                   ledger: Ledger) -> AzureMlDeployer:
    """The real deploy adapter: the process's credential (managed identity when deployed)."""
    from handlers.adapters import azureml_v1

    def client_for(workspace: WorkspaceRef) -> Any:
        from azure.ai.ml import MLClient

        from handlers.adapters.credential import shared_credential

        # Custom clouds (and the tests' fake ARM) come from ARM_CLOUD_METADATA_URL and
        # AZUREML_CURRENT_CLOUD, azure-ai-ml's supported way; MLClient ignores base_url.
        return MLClient(shared_credential(), workspace.subscription_id,
                        workspace.resource_group, workspace.workspace,
                        retry_total=settings.sdk_retries, retry_backoff_factor=0.5,
                        connection_timeout=settings.http_timeout_s,
                        read_timeout=settings.http_timeout_s, show_progress=False,
                        enable_telemetry=False)

    return AzureMlDeployer(settings, client_for, azureml_v1.build_v1(env))
