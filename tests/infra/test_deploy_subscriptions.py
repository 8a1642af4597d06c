"""infra/deploy_subscriptions.py, the CI/CD step, against a stand-in `az` on PATH.

The stand-in answers as the Azure CLI does (JSON on stdout, an error on stderr with exit 1) from
a scripted state, and records every call: the step must wait until the functions are listed,
retry a failed deployment, and delete only the amlevents-labelled subscriptions it did not create.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("deploy_subscriptions",
                                               ROOT / "infra" / "deploy_subscriptions.py")
assert _SPEC is not None and _SPEC.loader is not None
step = importlib.util.module_from_spec(_SPEC)  # infra/ is not a package
_SPEC.loader.exec_module(step)

FAKE_AZ = '''#!{python}
import json, sys
path = {state!r}
state = json.load(open(path))
args = sys.argv[1:]
state["calls"].append(args)
def done(value=None, error=None):
    json.dump(state, open(path, "w"))
    if error:
        sys.stderr.write(error)
        sys.exit(1)
    if value is not None:
        print(json.dumps(value))
    sys.exit(0)
if args[:3] == ["functionapp", "function", "list"]:
    lists = state["function_lists"]
    names = lists.pop(0) if len(lists) > 1 else lists[0]
    done(["{{}}/{{}}".format(state["app"], n) for n in names])
if args[:3] == ["deployment", "group", "create"]:
    if state["deploy_failures"] > 0:
        state["deploy_failures"] -= 1
        done(error="ERROR: Destination endpoint not found. Resource should pre-exist.")
    done({{"properties": {{"outputs": {{k: {{"value": v}} for k, v in state["outputs"].items()}}}}}})
if args[:4] == ["eventgrid", "system-topic", "event-subscription", "list"]:
    done(state["system_subs"])
if args[:4] == ["eventgrid", "topic", "event-subscription", "list"]:
    done(state["outcome_subs"])
if args[:2] == ["resource", "delete"]:
    done()
done(error="az: unexpected command " + " ".join(args))
'''

TOPIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/systemTopics/ws-events"
OUTCOMES = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.EventGrid/topics/outcomes"


def subscription(topic: str, name: str, labels: list[str] | None = None) -> dict[str, Any]:
    """One item of `az eventgrid ... event-subscription list`."""
    return {"id": f"{topic}/eventSubscriptions/{name}", "name": name,
            "labels": ["amlevents"] if labels is None else labels}


@pytest.fixture
def az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install the stand-in `az`; returns (write state, read state)."""
    state_path = tmp_path / "az-state.json"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "az"
    script.write_text(FAKE_AZ.format(python=sys.executable, state=str(state_path)), "utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")  # this `az`, never a real one

    class Az:
        def set(self, **state: Any) -> None:
            base = {"calls": [], "app": "func-app", "function_lists": [[]],
                    "deploy_failures": 0, "outputs": {}, "system_subs": [], "outcome_subs": []}
            state_path.write_text(json.dumps({**base, **state}), "utf-8")

        def calls(self) -> list[list[str]]:
            return list(json.loads(state_path.read_text("utf-8"))["calls"])

    return Az()


OUTPUTS = {"systemTopicName": "ws-events", "outcomeTopicName": "outcomes",
           "eventSubscriptionNames": ["model-registered-deploy", "run-failed-alert"],
           "outcomeSubscriptionNames": ["deployment-failed-webhook"],
           "skippedSubscriptionNames": ["ml-events-to-event-hub"]}
ARGS = ["-g", "rg", "--app-name", "func-app", "--parameters", "infra/main.parameters.json",
        "--interval-s", "0", "--wait-s", "60"]


def test_the_target_functions_are_the_files() -> None:
    assert step.target_functions(ROOT / "infra" / "subscriptions.json") == {
        "on_model_registered", "on_drift_detected", "on_run_status", "on_ml_event"}


def test_waits_for_the_functions_retries_then_prunes(az: Any, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    wanted = sorted(step.target_functions(ROOT / "infra" / "subscriptions.json"))
    az.set(function_lists=[[], wanted[:2], wanted], deploy_failures=2, outputs=OUTPUTS,
           system_subs=[subscription(TOPIC, "model-registered-deploy"),
                        subscription(TOPIC, "RUN-FAILED-ALERT"),  # names compare without case
                        subscription(TOPIC, "old-name-of-a-renamed-one"),
                        subscription(TOPIC, "ml-events-to-event-hub"),  # no value any more
                        subscription(TOPIC, "someone-elses", labels=[])],
           outcome_subs=[subscription(OUTCOMES, "deployment-failed-webhook"),
                         subscription(OUTCOMES, "removed-from-the-file")])
    slept: list[float] = []
    assert step.main(ARGS, sleep=slept.append) == 0
    calls = az.calls()
    kinds = [" ".join(c[:3]) for c in calls]
    assert kinds[:3] == ["functionapp function list"] * 3  # until every function is listed
    deployments = [c for c in calls if c[:3] == ["deployment", "group", "create"]]
    assert len(deployments) == 3  # two failures ("Destination endpoint not found"), retried
    assert all("deployEventSubscriptions=true" in c for c in deployments)
    assert kinds.index("deployment group create") > kinds.index("functionapp function list")
    deleted = [c[c.index("--ids") + 1] for c in calls if c[:2] == ["resource", "delete"]]
    assert deleted == [f"{TOPIC}/eventSubscriptions/ml-events-to-event-hub",
                       f"{TOPIC}/eventSubscriptions/old-name-of-a-renamed-one",
                       f"{OUTCOMES}/eventSubscriptions/removed-from-the-file"]
    out = capsys.readouterr().out
    assert "not deployed (a placeholder has no value in subscriptionValues): " \
           "ml-events-to-event-hub" in out
    assert len(slept) == 4  # two waits for functions, two between deployment attempts


def test_gives_up_when_the_functions_never_appear(az: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    az.set(function_lists=[["on_ml_event"]])
    assert step.main([*ARGS[:-2], "--wait-s", "0"], sleep=lambda _: None) == 1
    assert "does not list on_drift_detected, on_model_registered, on_run_status" \
        in capsys.readouterr().err
    assert not [c for c in az.calls() if c[:2] == ["deployment", "group"]]


def test_gives_up_after_the_last_attempt(az: Any, capsys: pytest.CaptureFixture[str]) -> None:
    wanted = sorted(step.target_functions(ROOT / "infra" / "subscriptions.json"))
    az.set(function_lists=[wanted], deploy_failures=10, outputs=OUTPUTS)
    assert step.main([*ARGS, "--attempts", "3"], sleep=lambda _: None) == 1
    assert "Destination endpoint not found" in capsys.readouterr().err
    assert not [c for c in az.calls() if c[:2] == ["resource", "delete"]]  # nothing pruned


def test_no_outcome_topic_prunes_the_system_topic_only(az: Any) -> None:
    wanted = sorted(step.target_functions(ROOT / "infra" / "subscriptions.json"))
    az.set(function_lists=[wanted], outputs={**OUTPUTS, "outcomeTopicName": ""},
           system_subs=[subscription(TOPIC, "model-registered-deploy")])
    assert step.main(ARGS, sleep=lambda _: None) == 0
    assert not [c for c in az.calls() if c[:2] == ["eventgrid", "topic"]]
