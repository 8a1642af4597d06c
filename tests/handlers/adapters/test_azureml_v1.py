"""The optional SDK v1 path: the missing-package error, real deploy configurations, the flow.

azureml-core cannot share an environment with azure-ai-ml, so the shared venv does not have it.
The real-object test runs in a separate interpreter named by AZUREML_V1_PYTHON (a venv with
`pip install -r requirements-v1.txt`) and is skipped without one; the deploy flow is tested
with stand-ins at the SDK boundary (the network call), as the issue allows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from handlers.adapters import azureml_v1
from handlers.adapters.azureml_v1 import REQUIREMENTS_FILE, V1Deployer, V1Sdk
from handlers.deploy.decide import DeploymentPlan
from handlers.errors import PermanentError, RetryableError
from handlers.events.workspace import WorkspaceRef
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.routing import ON_MODEL_REGISTERED
from tests.fakes.arm import FakeArm, fake_arm_fixture

ROOT = Path(__file__).resolve().parents[3]
WS = WorkspaceRef("sub-1", "rg-1", "ws-1")
ACI = DeploymentPlan(WS, "fraud", "7", "aci", "Fraud-Scorer", "v-7", cpu_cores=0.5, memory_gb=1.5)
AKS = DeploymentPlan(WS, "fraud", "7", "aks", "fraud-scorer", "v-7", instance_count=2,
                     compute="aks-prod", cpu_cores=1.0, memory_gb=2.0)
# Read at import: the autouse fixture resets AMLEVENTS_* variables, not this one.
V1_PYTHON = os.environ.get("AZUREML_V1_PYTHON", "")
V1_INSTALLED = importlib.util.find_spec("azureml") is not None and \
    importlib.util.find_spec("azureml.core") is not None

arm = fake_arm_fixture()


def test_requirements_keep_v1_apart() -> None:
    v1 = (ROOT / REQUIREMENTS_FILE).read_text(encoding="utf-8")
    assert any(line.startswith("azureml-core") for line in v1.splitlines())
    assert "azureml-core" not in (ROOT / "requirements.txt").read_text(encoding="utf-8")


@pytest.mark.skipif(V1_INSTALLED, reason="azureml-core is installed here")
def test_missing_sdk_names_the_requirements_file() -> None:
    with pytest.raises(PermanentError) as caught:
        V1Deployer()(ACI)
    assert REQUIREMENTS_FILE in str(caught.value) and "azureml-core" in str(caught.value)


@pytest.mark.skipif(V1_INSTALLED, reason="azureml-core is installed here")
def test_aci_tag_without_sdk_fails_through_the_dispatcher(sample: Any, base_env: dict[str, str]
                                                          ) -> None:
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = {"deploy": "true", "deploy_target": "aci"}
    dispatcher = Dispatcher({**base_env, "AMLEVENTS_DRY_RUN_DEPLOY": "false",
                             "AMLEVENTS_DEPLOY_ALLOWED_TARGETS": "managed,aci"})
    result = dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.FAILED and not result.should_retry
    assert REQUIREMENTS_FILE in result.detail


_REAL_CONFIG = """
import json, sys
sys.path.insert(0, sys.argv[1])
from handlers.adapters.azureml_v1 import deploy_configuration, load_sdk
from handlers.deploy.decide import DeploymentPlan
from handlers.events.workspace import WorkspaceRef
ws = WorkspaceRef("s", "rg", "w")
sdk = load_sdk()
out = {}
for target, extra in (("aci", {}), ("aks", {"instance_count": 2, "compute": "aks-prod"})):
    plan = DeploymentPlan(ws, "fraud", "7", target, "fraud", "v-7", cpu_cores=0.5,
                          memory_gb=1.5, **extra)
    config = deploy_configuration(plan, sdk)
    config.validate_configuration()
    out[target] = {"type": type(config).__name__, "cpu_cores": config.cpu_cores,
                   "memory_gb": config.memory_gb, "auth_enabled": config.auth_enabled,
                   "tags": config.tags, "num_replicas": getattr(config, "num_replicas", None),
                   "autoscale_enabled": getattr(config, "autoscale_enabled", None)}
print(json.dumps(out))
"""


@pytest.mark.skipif(not V1_PYTHON,
                    reason="set AZUREML_V1_PYTHON to a python with requirements-v1.txt installed")
def test_real_deploy_configurations_in_a_v1_environment() -> None:
    python = V1_PYTHON
    done = subprocess.run([python, "-c", _REAL_CONFIG, str(ROOT)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["aci"]["type"] == "AciServiceDeploymentConfiguration"
    assert (out["aci"]["cpu_cores"], out["aci"]["memory_gb"], out["aci"]["auth_enabled"]) == (
        0.5, 1.5, True)
    assert out["aks"]["type"] == "AksServiceDeploymentConfiguration"
    assert (out["aks"]["num_replicas"], out["aks"]["autoscale_enabled"]) == (2, False)
    assert out["aci"]["tags"]["modelVersion"] == "7"


# --- the flow, with stand-ins at the SDK boundary ---------------------------------------------

class WebserviceException(Exception):
    """Stands in for azureml.exceptions.WebserviceException (service not found)."""


@dataclass
class Calls:
    log: list[tuple[str, Any]] = field(default_factory=list)
    existing: set[str] = field(default_factory=set)
    state: str = "Healthy"
    fail: Exception | None = None


def stand_in_sdk(calls: Calls) -> V1Sdk:
    """azureml-core's surface as the adapter uses it, recording calls and answering as v1 does."""

    class Service:
        def __init__(self, name: str) -> None:
            self.name, self.state = name, calls.state

        def update(self, models: list[Any]) -> None:
            calls.log.append(("update", (self.name, models)))

        def wait_for_deployment(self, show_output: bool) -> None:
            calls.log.append(("wait", self.name))

    def webservice(workspace: Any, name: str) -> Service:
        if name not in calls.existing:
            raise WebserviceException(f"WebserviceNotFound: {name}")
        return Service(name)

    class Model:
        def __init__(self, workspace: Any, name: str, version: Any) -> None:
            self.name, self.version = name, version

        @staticmethod
        def deploy(workspace: Any, name: str, models: list[Any], **kwargs: Any) -> Service:
            if calls.fail is not None:
                raise calls.fail
            calls.log.append(("deploy", (name, models, kwargs)))
            return Service(name)

    def configuration(kind: str) -> Any:
        return type(kind, (), {"deploy_configuration": staticmethod(
            lambda **kwargs: (kind, kwargs))})

    return V1Sdk(Workspace=lambda **kwargs: ("workspace", kwargs), Model=Model,
                 Webservice=webservice, AciWebservice=configuration("aci"),
                 AksWebservice=configuration("aks"),
                 AksCompute=lambda ws, name: ("compute", name),
                 TokenAuthentication=lambda get_token: ("auth", get_token),
                 WebserviceException=WebserviceException)


def test_new_aci_service() -> None:
    calls = Calls()
    result = V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(ACI)
    assert result.outcome is Outcome.DONE and '"service_created":true' in result.detail
    (kind, (name, models, kwargs)), wait = calls.log
    assert (kind, name, wait) == ("deploy", "fraud-scorer", ("wait", "fraud-scorer"))
    assert (models[0].name, models[0].version) == ("fraud", 7)
    config_kind, config = kwargs["deployment_config"]
    assert config_kind == "aci" and (config["cpu_cores"], config["memory_gb"]) == (0.5, 1.5)
    assert config["auth_enabled"] is True and kwargs["deployment_target"] is None
    # the service says who made it and from which model version (shown in the studio)
    assert config["tags"] == {"createdBy": "amlevents", "model": "fraud", "modelVersion": "7"}
    assert config["description"] == "fraud:7 deployed by amlevents"


def test_new_aks_service_on_the_compute() -> None:
    calls = Calls()
    V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(AKS)
    _, (_, _, kwargs) = calls.log[0]
    config_kind, config = kwargs["deployment_config"]
    assert config_kind == "aks" and config["num_replicas"] == 2
    assert config["autoscale_enabled"] is False
    assert kwargs["deployment_target"] == ("compute", "aks-prod")


def test_existing_service_is_updated() -> None:
    calls = Calls(existing={"fraud-scorer"})
    result = V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(ACI)
    assert [kind for kind, _ in calls.log] == ["update", "wait"]
    assert '"service_created":false' in result.detail


@pytest.mark.parametrize(("failure", "error"), [
    (RuntimeError("Received bad response from service: 429 Too Many Requests"), RetryableError),
    (RuntimeError("503 Service Unavailable"), RetryableError),
    (RuntimeError("Received bad response from service: 409 Conflict"), RetryableError),
    (RuntimeError("Conflict of operation, another operation on same entity is already running in "
                  "workspace ws-1."), RetryableError),
    (RuntimeError("Service deployment polling reached non-successful terminal state"),
     PermanentError),
])
def test_sdk_errors_are_classified(failure: Exception, error: type[Exception]) -> None:
    calls = Calls(fail=failure)
    with pytest.raises(error):
        V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(ACI)


def test_unhealthy_service_fails() -> None:
    calls = Calls(state="Unhealthy")
    with pytest.raises(PermanentError, match="Unhealthy"):
        V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(ACI)


def test_only_v1_targets_have_a_configuration() -> None:
    managed = DeploymentPlan(WS, "fraud", "7", "managed", "fraud", "v-7")
    with pytest.raises(PermanentError):
        azureml_v1.deploy_configuration(managed, stand_in_sdk(Calls()))
    assert azureml_v1.service_name(ACI) == "fraud-scorer"


# --- whole configurations, calls, details and messages ------------------------------------------

TAGS = {"createdBy": "amlevents", "model": "fraud", "modelVersion": "7"}
DESCRIPTION = "fraud:7 deployed by amlevents"


def test_deploy_configurations_whole() -> None:
    sdk = stand_in_sdk(Calls())
    assert azureml_v1.deploy_configuration(ACI, sdk) == ("aci", {
        "cpu_cores": 0.5, "memory_gb": 1.5, "tags": TAGS, "description": DESCRIPTION,
        "auth_enabled": True})
    # AKS: fixed replicas, so tags cannot buy autoscaling beyond the operator's instance limit
    assert azureml_v1.deploy_configuration(AKS, sdk) == ("aks", {
        "cpu_cores": 1.0, "memory_gb": 2.0, "num_replicas": 2, "autoscale_enabled": False,
        "auth_enabled": True, "tags": TAGS, "description": DESCRIPTION})


def test_a_managed_plan_has_no_v1_configuration() -> None:
    managed = DeploymentPlan(WS, "fraud", "7", "managed", "fraud", "v-7")
    with pytest.raises(PermanentError) as caught:
        azureml_v1.deploy_configuration(managed, stand_in_sdk(Calls()))
    assert str(caught.value) == "target managed is not an SDK v1 target (aci, aks)"


def test_new_aks_service_calls_whole() -> None:
    calls = Calls()
    result = V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(AKS)
    [(kind, (name, [model], kwargs)), wait] = calls.log
    assert (kind, name, wait) == ("deploy", "fraud-scorer", ("wait", "fraud-scorer"))
    assert (model.name, model.version) == ("fraud", 7)
    assert kwargs == {"deployment_config": azureml_v1.deploy_configuration(AKS, stand_in_sdk(calls)),
                      "deployment_target": ("compute", "aks-prod"), "overwrite": False}
    assert json.loads(result.detail) == {**json.loads(json.dumps(AKS.as_dict())),
                                         "service": "fraud-scorer", "service_created": True,
                                         "state": "Healthy"}


def test_the_workspace_is_opened_with_the_plan_and_a_token_callback() -> None:
    seen: list[dict[str, Any]] = []
    calls = Calls(existing={"fraud-scorer"})
    sdk = stand_in_sdk(calls)

    def token(audience: str) -> str:
        return "t"

    def workspace(**kwargs: Any) -> Any:
        seen.append(kwargs)
        return ("workspace", kwargs)

    V1Deployer(lambda: V1Sdk(**{**sdk.__dict__, "Workspace": workspace}), token=token)(ACI)
    assert seen == [{"subscription_id": "sub-1", "resource_group": "rg-1",
                     "workspace_name": "ws-1", "auth": ("auth", token)}]


def test_existing_service_is_updated_with_the_model_and_reported() -> None:
    calls = Calls(existing={"fraud-scorer"})
    plan = DeploymentPlan(WS, "fraud", "v7-rc", "aci", "Fraud-Scorer", "v-7")
    result = V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(plan)
    [(kind, (name, [model])), wait] = calls.log
    # a version that is not a number is passed as it is (v1 then looks it up by that text)
    assert (kind, name, model.name, model.version) == ("update", "fraud-scorer", "fraud", "v7-rc")
    assert wait == ("wait", "fraud-scorer")
    detail = json.loads(result.detail)
    assert {k: detail[k] for k in ("service", "service_created", "state")} == {
        "service": "fraud-scorer", "service_created": False, "state": "Healthy"}


def test_a_service_without_a_state_counts_as_healthy() -> None:
    calls = Calls(state="")
    result = V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(ACI)
    assert result.outcome is Outcome.DONE and json.loads(result.detail)["state"] == ""


def test_unhealthy_service_message() -> None:
    calls = Calls(state="Unhealthy")
    with pytest.raises(PermanentError) as caught:
        V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(ACI)
    assert str(caught.value) == "SDK v1: service fraud-scorer is Unhealthy"


@pytest.mark.parametrize(("failure", "error", "message"), [
    (RuntimeError("Received bad response from service: 429 Too Many Requests"), RetryableError,
     "SDK v1: RuntimeError: Received bad response from service: 429 Too Many Requests"),
    (TimeoutError("Operation timed out"), RetryableError,
     "SDK v1: TimeoutError: Operation timed out"),
    (RuntimeError("502 Bad Gateway"), RetryableError, "SDK v1: RuntimeError: 502 Bad Gateway"),
    (RuntimeError("504"), RetryableError, "SDK v1: RuntimeError: 504"),
    (RuntimeError("request timeout"), RetryableError, "SDK v1: RuntimeError: request timeout"),
    (RuntimeError("Too Many Requests"), RetryableError, "SDK v1: RuntimeError: Too Many Requests"),
    (ValueError("Model fraud:7 not found"), PermanentError,
     "SDK v1: ValueError: Model fraud:7 not found"),
])
def test_sdk_error_messages(failure: Exception, error: type[Exception], message: str) -> None:
    calls = Calls(fail=failure)
    with pytest.raises(error) as caught:
        V1Deployer(lambda: stand_in_sdk(calls), token=lambda audience: "t")(ACI)
    assert type(caught.value) is error and str(caught.value) == message
    assert caught.value.__cause__ is failure


@pytest.mark.skipif(V1_INSTALLED, reason="azureml-core is installed here")
def test_missing_sdk_message_whole() -> None:
    with pytest.raises(PermanentError) as caught:
        azureml_v1.load_sdk()
    assert str(caught.value) == (
        "deploy_target aci/aks needs the Azure ML SDK v1 (azureml-core), which is not installed: "
        "install requirements-v1.txt in an environment without azure-ai-ml, or use "
        "deploy_target=managed")
    assert isinstance(caught.value.__cause__, ImportError)


def test_default_token_comes_from_the_managed_identity(arm: FakeArm) -> None:
    # azureml-core asks TokenAuthentication for a token per audience; ours asks the identity
    deployer = V1Deployer(lambda: stand_in_sdk(Calls()))
    token, expires_on = deployer._token("https://management.azure.com/")
    assert arm.issued(token) and expires_on > time.time()
    assert arm.token_requests[-1].query["resource"] == "https://management.azure.com"
