"""Warm path: token requests and ARM requests per live event, against the fake ARM over HTTPS.

Live events (no dry run) through one Dispatcher, as a deployed instance handles them: ten model
registrations deployed with azure-ai-ml (versions 1..10 to one endpoint), then ten drift events
started as Data Factory runs (ten monitors). The first event of the process pays for the token
(managed identity, the fake's App Service endpoint); every later one should ask for none, whatever
adapter it goes through (one credential per process: handlers/adapters/credential.py). Prints,
per adapter, the first event's requests and the next nine's per event (goal: 0 token requests
after the first per process). Needs the dev requirements (tests/fakes: trustme).
Run: .venv/bin/python benchmarks/warm_path.py
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EVENTS = 10
MODEL, FACTORY, PIPELINE = "sklearn_regression_model", "adf-bench", "retrain-model"
MONITORS = [f"monitor-{i}" for i in range(EVENTS)]


def sample(name: str) -> dict[str, Any]:
    """A documented sample event."""
    return dict(json.loads((ROOT / "samples" / "events" / f"{name}.json").read_text())[0])


def seed(arm: Any) -> None:
    """What the live events need in the fake: model versions 1..EVENTS, the retraining pipeline."""
    from tests.fakes.arm_adf import AMLEVENTS_PARAMETERS

    for version in range(1, EVENTS + 1):
        arm.ml.add_model(MODEL, str(version))
    arm.adf.add_pipeline(FACTORY, PIPELINE, parameters=AMLEVENTS_PARAMETERS)


def live_settings(arm: Any, workdir: str) -> tuple[str, dict[str, str]]:
    """(the fake workspace's topic, app settings with deploy and retrain live against it)."""
    from handlers.retrain.settings import ARM_ENDPOINT, READ_RETRIES, ROUTES, TIMEOUT_S

    topic = (f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}"
             f"/providers/Microsoft.MachineLearningServices/workspaces/{arm.workspace_name}")
    target = {"subscription": arm.subscription_id, "resourceGroup": arm.resource_group,
              "factory": FACTORY, "pipeline": PIPELINE}
    return topic, {
        "AMLEVENTS_ALLOWED_TOPICS": topic, "AMLEVENTS_DRY_RUN": "false",
        "AMLEVENTS_LEDGER_PATH": f"{workdir}/ledger.sqlite3",
        "AMLEVENTS_NOTIFY_OUTBOX_DIR": f"{workdir}/outbox", "AMLEVENTS_DEPLOY_SDK_RETRIES": "0",
        "AMLEVENTS_DEPLOY_WAIT_S": "20", "AMLEVENTS_DEPLOY_POLL_S": "0.01",
        ARM_ENDPOINT: arm.url, TIMEOUT_S: "5", READ_RETRIES: "0",
        ROUTES: json.dumps(dict.fromkeys(MONITORS, target))}


def apply_environment(variables: Mapping[str, str | None]) -> None:
    """Set (str) or clear (None) process environment variables (the fake's identity endpoint)."""
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def registered(topic: str, i: int) -> dict[str, Any]:
    """Model version i + 1 registered, tagged for deployment."""
    raw = sample("model_registered")
    raw.update(topic=topic, id=f"registered-{i + 1}")
    raw["data"].update(ModelName=MODEL, ModelVersion=i + 1, ModelTags={"deploy": "true"})
    return raw


def drifted(topic: str, i: int) -> dict[str, Any]:
    """Drift over the threshold on monitor i."""
    raw = sample("dataset_drift_detected")
    raw.update(topic=topic, id=f"drift-{i + 1}")
    raw["data"].update(DataDriftName=MONITORS[i], DataDriftId=f"id-{MONITORS[i]}")
    return raw


def send_quietly(label: str, send: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Dispatch one event, `send(*args, **kwargs)` (azure-ai-ml prints progress); stop unless it
    was done."""
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        result = send(*args, **kwargs)
    if result.outcome.value != "done":
        raise SystemExit(f"{label}: {result.outcome.value}: {result.detail}")
    return result


def count(arm: Any, send: Callable[[int], Any], label: str) -> list[tuple[int, int]]:
    """(token requests, ARM requests) of each of EVENTS events sent with `send(i)`."""
    counts = []
    for i in range(EVENTS):
        tokens, calls = len(arm.token_requests), len(arm.requests)
        send_quietly(f"{label} event {i + 1}", send, i)
        counts.append((len(arm.token_requests) - tokens, len(arm.requests) - calls))
    return counts


def report(label: str, counts: list[tuple[int, int]]) -> None:
    """The first event, then the next ones per event."""
    (tokens, calls), rest = counts[0], counts[1:]
    print(f"{label:<22}: first event {tokens} token request(s), {calls} ARM requests; "
          f"next {len(rest)}: {sum(t for t, _ in rest) / len(rest):.1f} token, "
          f"{sum(c for _, c in rest) / len(rest):.1f} ARM requests per event")


def main() -> None:
    """Deploy, then retrain, live against one fake ARM; print the requests per event."""
    from handlers.runtime.dispatch import Dispatcher
    from handlers.runtime.routing import ON_DRIFT_DETECTED, ON_MODEL_REGISTERED
    from tests.fakes.arm import start_fake_arm

    logging.disable(logging.INFO)  # azure-ai-ml logs "Check: endpoint ..." at INFO to stderr
    with start_fake_arm(lro_retry_after_ms=1) as arm, \
            tempfile.TemporaryDirectory(prefix="amlevents-warm-") as tmp:
        apply_environment(arm.environ())
        seed(arm)
        topic, settings = live_settings(arm, tmp)
        dispatcher = Dispatcher(settings)
        deploy = count(arm, lambda i: dispatcher.dispatch(
            registered(topic, i), function=ON_MODEL_REGISTERED), "deploy")
        retrain = count(arm, lambda i: dispatcher.dispatch(
            drifted(topic, i), function=ON_DRIFT_DETECTED), "retrain")
    report("deploy (azure-ai-ml)", deploy)
    report("retrain (Data Factory)", retrain)
    later = sum(t for t, _ in deploy[1:]) + sum(t for t, _ in retrain)
    print(f"token requests after the first event of the process: {later} (goal 0)")


if __name__ == "__main__":
    main()
