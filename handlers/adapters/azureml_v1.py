"""The optional legacy deploy path: azureml-core (SDK v1) to ACI or AKS web services.

SDK v1 is out of support since 2026-06-30 and Microsoft advises against installing v1 and v2
in one environment, so azureml-core is not in requirements.txt: an app that still needs
`deploy_target=aci`/`aks` installs requirements-v1.txt (and drops azure-ai-ml). Without it,
such a plan fails permanently with a message naming that file. azureml.core is imported only
inside functions, and everything it offers is reached through `V1Sdk`, the seam tests use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from handlers.deploy.plan import DeploymentPlan
from handlers.errors import AmlEventsError, PermanentError, RetryableError
from handlers.outcome import ActionResult

REQUIREMENTS_FILE = "requirements-v1.txt"
MISSING = (f"deploy_target aci/aks needs the Azure ML SDK v1 (azureml-core), which is not "
           f"installed: install {REQUIREMENTS_FILE} in an environment without azure-ai-ml, or use "
           f"deploy_target=managed")
# Throttling, unavailable, timeouts, and 409 Conflict (azureml-core: "Conflict of operation,
# another operation on same entity is already running"): a redelivery may succeed.
_TRANSIENT = ("429", "too many requests", "503", "502", "504", "timed out", "timeout", "409",
              "conflict of operation")


@dataclass(frozen=True)
class V1Sdk:
    """The azureml-core classes this adapter uses (real ones from `load_sdk`)."""

    Workspace: Any
    Model: Any
    Webservice: Any
    AciWebservice: Any
    AksWebservice: Any
    AksCompute: Any
    TokenAuthentication: Any
    WebserviceException: type[BaseException]


def load_sdk() -> V1Sdk:
    """Import azureml-core, or raise PermanentError naming requirements-v1.txt."""
    try:
        core = importlib.import_module("azureml.core")
        webservice = importlib.import_module("azureml.core.webservice")
        compute = importlib.import_module("azureml.core.compute")
        auth = importlib.import_module("azureml.core.authentication")
        errors = importlib.import_module("azureml.exceptions")
    except ImportError as exc:
        raise PermanentError(MISSING) from exc
    return V1Sdk(core.Workspace, core.Model, webservice.Webservice, webservice.AciWebservice,
                 webservice.AksWebservice, compute.AksCompute, auth.TokenAuthentication,
                 errors.WebserviceException)


def service_name(plan: DeploymentPlan) -> str:
    """v1 web service names are lower-case."""
    return plan.endpoint.lower()


def deploy_configuration(plan: DeploymentPlan, sdk: V1Sdk) -> Any:
    """The real AciWebservice / AksWebservice deploy_configuration for a plan."""
    tags = {"createdBy": "amlevents", "model": plan.model_name, "modelVersion": plan.model_version}
    description = f"{plan.model_name}:{plan.model_version} deployed by amlevents"
    if plan.target == "aci":
        return sdk.AciWebservice.deploy_configuration(
            cpu_cores=plan.cpu_cores, memory_gb=plan.memory_gb, tags=tags,
            description=description, auth_enabled=True)
    if plan.target == "aks":
        # Fixed replicas: tags may not buy autoscaling beyond the operator's instance limit.
        return sdk.AksWebservice.deploy_configuration(
            cpu_cores=plan.cpu_cores, memory_gb=plan.memory_gb, num_replicas=plan.instance_count,
            autoscale_enabled=False, auth_enabled=True, tags=tags, description=description)
    raise PermanentError(f"target {plan.target} is not an SDK v1 target (aci, aks)")


class V1Deployer:
    """Deploys aci/aks plans with Model.deploy; a service that exists is updated in place."""

    def __init__(self, sdk_loader: Callable[[], V1Sdk] = load_sdk,
                 token: Callable[[str], Any] | None = None) -> None:
        self._load = sdk_loader
        self._token = token or _identity_token

    def __call__(self, plan: DeploymentPlan) -> ActionResult:
        """Deploy, or raise PermanentError / RetryableError."""
        sdk = self._load()
        try:
            return self._deploy(sdk, plan)
        except AmlEventsError:
            raise
        except Exception as exc:  # every SDK failure is classified here (re-raised)
            text = f"{type(exc).__name__}: {exc}"
            if any(marker in text.lower() for marker in _TRANSIENT):
                raise RetryableError(f"SDK v1: {text}") from exc
            raise PermanentError(f"SDK v1: {text}") from exc

    def _deploy(self, sdk: V1Sdk, plan: DeploymentPlan) -> ActionResult:
        ws_ref = plan.workspace
        workspace = sdk.Workspace(subscription_id=ws_ref.subscription_id,
                                  resource_group=ws_ref.resource_group,
                                  workspace_name=ws_ref.workspace,
                                  auth=sdk.TokenAuthentication(self._token))
        model = sdk.Model(workspace, name=plan.model_name, version=int(plan.model_version)
                          if plan.model_version.isdigit() else plan.model_version)
        name = service_name(plan)
        try:
            service = sdk.Webservice(workspace, name=name)
        except sdk.WebserviceException:
            service = None
        if service is not None:
            service.update(models=[model])
            created = False
        else:
            target = sdk.AksCompute(workspace, plan.compute) if plan.target == "aks" else None
            service = sdk.Model.deploy(workspace, name, [model],
                                       deployment_config=deploy_configuration(plan, sdk),
                                       deployment_target=target, overwrite=False)
            created = True
        service.wait_for_deployment(show_output=False)
        state = str(getattr(service, "state", ""))
        if state.lower() not in ("healthy", ""):
            raise PermanentError(f"SDK v1: service {name} is {state}")
        return ActionResult.done(plan, service=name, service_created=created, state=state)


def _identity_token(audience: str) -> Any:
    """A token for `audience` from the process's credential (cached there), for azureml-core's
    TokenAuthentication."""
    from handlers.adapters.credential import shared_credential

    scope = audience.rstrip("/") + "/.default"
    token = shared_credential().get_token(scope)
    return token.token, token.expires_on


def build_v1(env: Mapping[str, str]) -> V1Deployer:
    """The v1 deployer; azureml-core is imported on its first aci/aks plan, not here."""
    return V1Deployer()
