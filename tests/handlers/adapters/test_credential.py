"""One credential per process: every adapter asks for a token once per scope, not once each."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from handlers.adapters.credential import shared_credential
from handlers.outcome import Outcome
from handlers.retrain.settings import ARM_ENDPOINT, READ_RETRIES, ROUTES, TIMEOUT_S
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.routing import ON_DRIFT_DETECTED, ON_MODEL_REGISTERED
from tests.fakes.arm import FakeArm, fake_arm_fixture
from tests.fakes.arm_adf import AMLEVENTS_PARAMETERS

Sample = Callable[[str], dict[str, Any]]
MODEL, FACTORY, PIPELINE = "sklearn_regression_model", "adf-shared", "retrain-model"


def _pipeline(fake: FakeArm) -> None:
    fake.adf.add_pipeline(FACTORY, PIPELINE, parameters=AMLEVENTS_PARAMETERS)


arm = fake_arm_fixture(_pipeline)


def test_every_caller_gets_the_same_credential_for_the_same_identity(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    default = shared_credential()
    assert shared_credential() is default
    # A user-assigned identity named by a setting (AzureWebJobsStorage__clientId) has its own.
    storage = shared_credential("00000000-0000-0000-0000-00000000cafe")
    assert storage is not default
    assert shared_credential("00000000-0000-0000-0000-00000000cafe") is storage
    # The identity AZURE_CLIENT_ID names is the one DefaultAzureCredential picks: the same object.
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-00000000cafe")
    assert shared_credential("00000000-0000-0000-0000-00000000cafe") is shared_credential()


def test_a_changed_identity_environment_gets_a_new_credential(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token")
    first = shared_credential()
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:2/msi/token")
    assert shared_credential() is not first


def test_deploy_and_retrain_adapters_share_one_token(arm: FakeArm, sample: Sample,
                                                     tmp_path: Any) -> None:
    # GIVEN one process with live deployment (azure-ai-ml) and live retraining (Data Factory)
    topic = (f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}/"
             f"providers/Microsoft.MachineLearningServices/workspaces/{arm.workspace_name}")
    target = {"subscription": arm.subscription_id, "resourceGroup": arm.resource_group,
              "factory": FACTORY, "pipeline": PIPELINE}
    dispatcher = Dispatcher({
        "AMLEVENTS_ALLOWED_TOPICS": topic, "AMLEVENTS_DRY_RUN": "false",
        "AMLEVENTS_LEDGER_PATH": str(tmp_path / "ledger.sqlite3"),
        "AMLEVENTS_NOTIFY_OUTBOX_DIR": str(tmp_path / "outbox"),
        "AMLEVENTS_DEPLOY_SDK_RETRIES": "0", "AMLEVENTS_DEPLOY_WAIT_S": "20",
        "AMLEVENTS_DEPLOY_POLL_S": "0.05", ARM_ENDPOINT: arm.url, TIMEOUT_S: "5",
        READ_RETRIES: "0", ROUTES: json.dumps({"myDriftMonitor": target})})
    outcomes = []
    for version in ("20", "21"):
        arm.ml.add_model(MODEL, version)
        raw = sample("model_registered")
        raw.update(topic=topic, id=f"registered-{version}")
        raw["data"].update(ModelName=MODEL, ModelVersion=version, ModelTags={"deploy": "true"})
        outcomes.append(dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED).outcome)
    drift = sample("dataset_drift_detected")
    drift.update(topic=topic, id="drift-1")
    outcomes.append(dispatcher.dispatch(drift, function=ON_DRIFT_DETECTED).outcome)
    # WHEN both adapters called ARM THEN the identity endpoint was asked once, for ARM's scope
    assert outcomes == [Outcome.DONE] * 3
    assert arm.adf.runs(PIPELINE) and arm.ml.deployment("sklearn-regression-model", "v21")
    (token_request,) = arm.token_requests
    assert token_request.query["resource"].rstrip("/") == arm.url
    assert all(arm.issued(r.bearer_token or "") for r in arm.requests
               if r.path != "/metadata/endpoints")
