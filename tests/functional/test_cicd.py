"""CI/CD through the local Functions host: Event Grid deliveries to function_app's triggers, the
release workflow dispatched on the fake GitHub (HTTPS), the ledger per concern.

The same request as against `func start`: `POST /runtime/webhooks/EventGrid?functionName=...`
with `aeg-event-type: Notification`; 202 when every event was handled, 500 when Event Grid must
redeliver.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from amlevents.cli import RunningHost, build_host
from handlers.ledger.ledger import LedgerEntry
from handlers.outcome import Outcome
from handlers.runtime.dispatch import default_dispatcher
from tests.fakes.github import FakeGitHub, fake_github_fixture

Sample = Callable[[str], dict[str, Any]]
TOKEN = "github_pat_11FUNCTIONAL_0123456789"
REPO = "contoso/ml-release"
DISPATCHES = r"/actions/workflows/release\.yml/dispatches$"
RELEASE: dict[str, Any] = {"name": "release fraud models",
           "when": {"types": ["ModelRegistered"], "model": "fraud-*",
                    "tags": {"stage": "production"}},
           "github": {"repository": REPO, "workflow": "release.yml", "ref": "main",
                      "inputs": {"model": "{data.ModelName}", "version": "{data.ModelVersion}",
                                 "event": "{id}"}}}


def _world(github: FakeGitHub) -> None:
    github.add_repository(REPO)
    github.add_workflow(REPO, "release.yml", name="Release", inputs={
        "model": {"required": True}, "version": {"required": True}, "event": {},
        "amlevents_request_id": {}},
        run_name="Release ${{ inputs.model }} (${{ inputs.amlevents_request_id }})")
    github.add_token(TOKEN)


github = fake_github_fixture(_world)


@pytest.fixture
def host(github: FakeGitHub, base_env: dict[str, str]) -> Iterator[RunningHost]:
    """The local host with live CI/CD (deployment rehearses: dry run)."""
    env = {**base_env, "AMLEVENTS_DRY_RUN_CICD": "false",
           "AMLEVENTS_CICD_RULES": json.dumps([RELEASE]),
           "AMLEVENTS_GITHUB_API_URL": github.url, "AMLEVENTS_CICD_CA_FILE": github.ca_path,
           "AMLEVENTS_GITHUB_TOKEN": TOKEN, "AMLEVENTS_GITHUB_RETURN_RUN_DETAILS": "true",
           "AMLEVENTS_CICD_TIMEOUT_S": "2"}
    running = build_host(env, bind="127.0.0.1", port=0)
    running.server.start()
    try:
        yield running
    finally:
        running.stop()


def deliver(host: RunningHost, event: dict[str, Any],
            function: str = "on_model_registered") -> int:
    """One Event Grid delivery; the host's status code."""
    request = urllib.request.Request(
        f"{host.url}/runtime/webhooks/EventGrid?functionName={function}",
        data=json.dumps([event]).encode(), method="POST",
        headers={"aeg-event-type": "Notification", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def rows() -> dict[str, LedgerEntry]:
    """The ledger rows by concern (`deploy`, `cicd`)."""
    return {("cicd" if e.key.endswith("-cicd") else "deploy"): e
            for e in default_dispatcher().ledger.entries()}


def fraud_model(sample: Sample) -> dict[str, Any]:
    event = sample("model_registered")
    event["data"].update(ModelName="fraud-detector", ModelVersion=3,
                         ModelTags={"deploy": "true", "Stage": "Production"})
    return event


def test_a_registered_model_with_matching_tags_dispatches_once_and_deploy_still_acts(
        host: RunningHost, github: FakeGitHub, sample: Sample) -> None:
    event = fraud_model(sample)
    assert deliver(host, event) == 202
    (request,) = github.requests_matching("POST", DISPATCHES)
    inputs = request.body["inputs"]
    assert {k: v for k, v in inputs.items() if k != "amlevents_request_id"} == {
        "model": "fraud-detector", "version": "3", "event": event["id"]}
    (run,) = github.runs_of(REPO)
    assert inputs["amlevents_request_id"] in run.display_title
    found = rows()
    assert found["cicd"].outcome is Outcome.DONE
    assert f"actions/runs/{run.id}" in found["cicd"].detail  # the run's URL, in the ledger
    assert found["deploy"].outcome is Outcome.PLANNED  # the other concern on the same event
    assert TOKEN not in found["cicd"].detail

    # Redelivered (Event Grid's at-least-once, or a second subscription): nothing again.
    assert deliver(host, event) == 202
    assert deliver(host, event, function="on_ml_event") == 202
    assert len(github.requests_matching("POST", DISPATCHES)) == 1
    assert rows()["cicd"].attempts == 3 and rows()["deploy"].attempts == 3


def test_a_422_is_failed_with_githubs_message(host: RunningHost, github: FakeGitHub,
                                              sample: Sample) -> None:
    github.fail_next("POST", DISPATCHES, 422, body={
        "message": "Required input 'approver' not provided",
        "documentation_url": "https://docs.github.com/rest/actions/workflows", "status": "422"})
    assert deliver(host, fraud_model(sample)) == 202  # failed is final: not redelivered
    cicd = rows()["cicd"]
    assert cicd.outcome is Outcome.FAILED
    assert "GitHub answered 422" in cicd.detail and "Required input 'approver'" in cicd.detail
    assert rows()["deploy"].outcome is Outcome.PLANNED
    assert deliver(host, fraud_model(sample)) == 202
    assert len(github.requests_matching("POST", DISPATCHES)) == 1 and github.runs_of(REPO) == []


def test_a_429_makes_event_grid_retry_then_dispatches_once(host: RunningHost,
                                                          github: FakeGitHub,
                                                          sample: Sample) -> None:
    github.rate_limit_next("POST", DISPATCHES, status=429, retry_after=5)
    assert deliver(host, fraud_model(sample)) == 500  # the trigger fails: Event Grid redelivers
    assert rows()["cicd"].outcome is Outcome.RETRY and rows()["deploy"].outcome is Outcome.PLANNED
    assert deliver(host, fraud_model(sample)) == 202
    assert rows()["cicd"].outcome is Outcome.DONE
    assert len(github.requests_matching("POST", DISPATCHES)) == 2 and len(github.runs_of(REPO)) == 1


def test_a_model_no_rule_matches_is_only_deployed(host: RunningHost, github: FakeGitHub,
                                                  sample: Sample) -> None:
    event = fraud_model(sample)
    event["data"]["ModelTags"] = {"deploy": "true", "stage": "staging"}
    assert deliver(host, event) == 202
    assert rows()["cicd"].outcome is Outcome.SKIPPED and github.requests == []
