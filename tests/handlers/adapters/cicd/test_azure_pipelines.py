"""Azure Pipelines for real: the adapter over HTTPS to the fake Azure DevOps, signed in with the
app's managed identity through DefaultAzureCredential, via the real Dispatcher (live CI/CD)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher, DispatchResult
from handlers.runtime.routing import ON_RUN_STATUS
from tests.fakes.azure_devops import (
    AZURE_DEVOPS_RESOURCE,
    FakeAzureDevOps,
    fake_azure_devops_fixture,
)

Sample = Callable[[str], dict[str, Any]]
ORG, PROJECT, PIPELINE_ID = "contoso", "ML Ops", 42
RUNS = r"/contoso/ML Ops/_apis/pipelines/42/runs$"
INVESTIGATE: dict[str, Any] = {"name": "investigate", "when": {"types": ["RunStatusChanged"],
                                               "runStatus": ["failed"]},
               "azurePipelines": {"organization": ORG, "project": PROJECT,
                                  "pipelineId": PIPELINE_ID, "branch": "main",
                                  "templateParameters": {"run": "{data.runId}"},
                                  "variables": {"experiment": "{data.experimentName}"}}}


def _world(devops: FakeAzureDevOps) -> None:
    devops.add_pipeline(ORG, PROJECT, PIPELINE_ID, name="investigate", parameters={
        "run": {}, "amlevents_request_id": {"default": ""}},
        settable_variables=("experiment",), branches=("main", "release"),
        run_name="investigate-${{ parameters.amlevents_request_id }}-$(Rev:r)")
    devops.add_pipeline(ORG, PROJECT, 7, name="unnamed", parameters={
        "run": {}, "amlevents_request_id": {"default": ""}}, settable_variables=("experiment",))


devops = fake_azure_devops_fixture(_world)


@pytest.fixture
def live(devops: FakeAzureDevOps, base_env: dict[str, str]) -> Callable[..., Dispatcher]:
    """A Dispatcher with live CI/CD against the fake Azure DevOps (one ledger file)."""
    def build(*rules: dict[str, Any], **overrides: str) -> Dispatcher:
        env = {**base_env, "AMLEVENTS_DRY_RUN_CICD": "false",
               "AMLEVENTS_CICD_RULES": json.dumps(list(rules or [INVESTIGATE])),
               "AMLEVENTS_AZURE_DEVOPS_URL": devops.url,
               "AMLEVENTS_CICD_CA_FILE": devops.ca_path, "AMLEVENTS_CICD_TIMEOUT_S": "1"}
        return Dispatcher({**env, **overrides})
    return build


def failed_run(sample: Sample, event_id: str = "run-1") -> dict[str, Any]:
    raw = sample("run_status_changed")
    raw["id"] = event_id
    return raw


def cicd(result: DispatchResult) -> DispatchResult:
    (found,) = [r for r in (result, *result.also) if r.key.endswith("-cicd")]
    return found


def dispatches(result: DispatchResult) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(cicd(result).detail)["dispatches"]
    return found


def errors(result: DispatchResult) -> str:
    return " | ".join(str(d.get("error", "")) for d in dispatches(result))


def deliver(dispatcher: Dispatcher, raw: dict[str, Any]) -> DispatchResult:
    return dispatcher.dispatch(raw, function=ON_RUN_STATUS)


def with_pipeline(**changes: Any) -> dict[str, Any]:
    return {**INVESTIGATE, "azurePipelines": {**INVESTIGATE["azurePipelines"], **changes}}


def test_a_run_with_the_managed_identity(devops: FakeAzureDevOps,
                                         live: Callable[..., Dispatcher],
                                         sample: Sample) -> None:
    raw = failed_run(sample)
    result = deliver(live(), raw)
    row = cicd(result)
    assert row.outcome is Outcome.DONE, row.detail
    (request,) = devops.requests_matching("POST", RUNS)
    (done,) = dispatches(result)
    assert request.query == {"api-version": "7.1"}
    assert request.body == {
        "resources": {"repositories": {"self": {"refName": "refs/heads/main"}}},
        "templateParameters": {"run": raw["data"]["runId"],
                               "amlevents_request_id": done["requestId"]},
        "variables": {"experiment": {"value": "automl-local-regression"}}}
    (token_request,) = devops.token_requests  # DefaultAzureCredential -> managed identity
    assert token_request.query["resource"] == AZURE_DEVOPS_RESOURCE
    (run,) = devops.runs_of(ORG, PROJECT, PIPELINE_ID)
    assert done["requestId"] in run["name"]
    web = run["_links"]["web"]["href"]
    assert done["runId"] == str(run["id"]) and web.startswith(devops.url)
    # (A set AMLEVENTS_AZURE_DEVOPS_URL is masked in ledger rows: names ending _URL are secret.)
    assert done["runUrl"].endswith(web.removeprefix(devops.url))
    assert done["target"] == {"service": "azurePipelines", "organization": ORG,
                              "project": PROJECT, "pipelineId": PIPELINE_ID,
                              "branch": "refs/heads/main"}


def test_a_redelivery_runs_nothing(devops: FakeAzureDevOps, live: Callable[..., Dispatcher],
                                   sample: Sample) -> None:
    dispatcher = live()
    deliver(dispatcher, failed_run(sample))
    assert cicd(deliver(dispatcher, failed_run(sample))).duplicate
    assert len(devops.runs_of(ORG, PROJECT, PIPELINE_ID)) == 1


# Each message is preceded by Azure DevOps' typeKey, which says what kind of refusal it is.
@pytest.mark.parametrize(("changes", "status", "message"), [
    ({"templateParameters": {"run": "x", "colour": "red"}}, 400,
     "PipelineValidationException: /azure-pipelines.yml (Line: 1, Col: 1): Unexpected "
     "parameter 'colour'"),
    ({"templateParameters": {}}, 400,
     "PipelineValidationException: A value for the 'run' parameter must be provided"),
    ({"variables": {"other": "x"}}, 400,
     "PipelineValidationException: You can't set the following variables (other)"),
    ({"branch": "nope"}, 400,
     "PipelineValidationException: Unable to resolve the reference 'refs/heads/nope'"),
    ({"pipelineId": 999}, 404, "PipelineNotFoundException: Pipeline with id 999 not found"),
    ({"project": "Elsewhere"}, 404, "ProjectDoesNotExistWithNameException: TF200016: The "
     "following project does not exist"),
])
def test_azure_devops_refusals_are_failed_with_its_message(
        devops: FakeAzureDevOps, live: Callable[..., Dispatcher], sample: Sample,
        changes: dict[str, Any], status: int, message: str) -> None:
    dispatcher = live(with_pipeline(**changes))
    result = deliver(dispatcher, failed_run(sample))
    assert cicd(result).outcome is Outcome.FAILED and not result.should_retry
    assert f"Azure DevOps answered {status}" in errors(result) and message in errors(result)
    assert devops.runs_of(ORG, PROJECT, PIPELINE_ID) == []
    # the row's detail is compact, key-sorted JSON, as every plan's detail
    detail = cicd(result).detail
    assert detail == json.dumps(json.loads(detail), sort_keys=True, separators=(",", ":"))
    assert cicd(deliver(dispatcher, failed_run(sample))).duplicate


def test_an_identity_not_in_the_organization(devops: FakeAzureDevOps,
                                             live: Callable[..., Dispatcher],
                                             sample: Sample) -> None:
    devops.remove_identity()
    result = deliver(live(), failed_run(sample))
    assert cicd(result).outcome is Outcome.FAILED
    assert "Azure DevOps answered 401" in errors(result) and "TF400813" in errors(result)
    assert "add the app's managed identity to the organization" in errors(result)


def test_a_sign_in_page_instead_of_an_answer_is_failed(devops: FakeAzureDevOps,
                                                       live: Callable[..., Dispatcher],
                                                       sample: Sample) -> None:
    devops.fail_next("POST", RUNS, 203, body={})  # what Azure DevOps does for an unknown login
    result = deliver(live(), failed_run(sample))
    assert cicd(result).outcome is Outcome.FAILED and "sign-in page" in errors(result)


def test_throttling_retries_then_runs_once(devops: FakeAzureDevOps,
                                           live: Callable[..., Dispatcher],
                                           sample: Sample) -> None:
    devops.throttle_next("POST", RUNS, retry_after=9)
    dispatcher = live()
    first = deliver(dispatcher, failed_run(sample))
    assert cicd(first).outcome is Outcome.RETRY and first.should_retry
    assert "Azure DevOps rate limit" in errors(first) and "retry after 9 s" in errors(first)
    assert "TF400733" in errors(first)
    assert cicd(deliver(dispatcher, failed_run(sample))).outcome is Outcome.DONE
    assert len(devops.runs_of(ORG, PROJECT, PIPELINE_ID)) == 1
    assert devops.requests_matching("GET") == []  # throttling is not ambiguous: no lookup


def test_a_5xx_looks_the_run_up_then_runs_once(devops: FakeAzureDevOps,
                                               live: Callable[..., Dispatcher],
                                               sample: Sample) -> None:
    devops.fail_next("POST", RUNS, 503)
    assert cicd(deliver(live(), failed_run(sample))).outcome is Outcome.RETRY
    waiting = deliver(live(), failed_run(sample))
    assert cicd(waiting).outcome is Outcome.RETRY and "not listed yet" in errors(waiting)
    (listing,) = devops.requests_matching("GET", RUNS)
    assert listing.query == {"api-version": "7.1"}
    done = deliver(live(AMLEVENTS_CICD_RECONCILE_GRACE_S="0"), failed_run(sample))
    assert cicd(done).outcome is Outcome.DONE
    assert len(devops.runs_of(ORG, PROJECT, PIPELINE_ID)) == 1


def test_a_lost_answer_is_found_by_the_run_name(devops: FakeAzureDevOps,
                                                live: Callable[..., Dispatcher],
                                                sample: Sample) -> None:
    devops.delay_next("POST", RUNS, 3.0)  # the run starts, the answer comes too late
    assert cicd(deliver(live(), failed_run(sample))).outcome is Outcome.RETRY
    again = deliver(live(), failed_run(sample))
    assert cicd(again).outcome is Outcome.DONE, cicd(again).detail
    (done,) = dispatches(again)
    (run,) = devops.runs_of(ORG, PROJECT, PIPELINE_ID)
    assert done["reconciled"] is True and done["runId"] == str(run["id"])
    assert len(devops.requests_matching("POST", RUNS)) == 1


def test_when_run_names_carry_no_request_id_it_does_not_run_twice(
        devops: FakeAzureDevOps, live: Callable[..., Dispatcher], sample: Sample) -> None:
    rule = with_pipeline(pipelineId=7, branch=None)
    devops.delay_next("POST", r"/pipelines/7/runs$", 3.0)
    assert cicd(deliver(live(rule), failed_run(sample))).outcome is Outcome.RETRY
    result = deliver(live(rule, AMLEVENTS_CICD_RECONCILE_GRACE_S="0"), failed_run(sample))
    assert cicd(result).outcome is Outcome.FAILED
    assert "name no request id" in errors(result) and "not starting it again" in errors(result)
    assert len(devops.runs_of(ORG, PROJECT, 7)) == 1


def test_an_unreachable_service_starts_nothing(live: Callable[..., Dispatcher],
                                               sample: Sample) -> None:
    result = deliver(live(AMLEVENTS_AZURE_DEVOPS_URL="https://127.0.0.1:9"), failed_run(sample))
    assert cicd(result).outcome is Outcome.RETRY and "cannot reach" in errors(result)
