"""GitHub Actions for real: the adapter over HTTPS to the fake GitHub, through the real Dispatcher
with AMLEVENTS_DRY_RUN_CICD=false. Exactly once per rule: intent first, a lost answer looked up."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher, DispatchResult
from handlers.runtime.routing import ON_MODEL_REGISTERED
from tests.fakes.github import FakeGitHub, fake_github_fixture, start_fake_github

Sample = Callable[[str], dict[str, Any]]
TOKEN = "github_pat_11AAAA0000_fake_token_value"
REPO = "contoso/ml-release"
DISPATCHES = r"/actions/workflows/release\.yml/dispatches$"
RELEASE: dict[str, Any] = {"name": "release", "when": {"types": ["ModelRegistered"],
                                       "tags": {"stage": "production"}},
           "github": {"repository": REPO, "workflow": "release.yml", "ref": "main",
                      "inputs": {"model": "{data.ModelName}", "version": "{data.ModelVersion}"}}}
NOTIFY_OPS: dict[str, Any] = {"name": "tell ops", "when": {"types": ["ModelRegistered"]},
              "github": {"repository": "contoso/ops", "eventType": "model-registered",
                         "clientPayload": {"model": "{data.ModelName}"}}}


def _world(github: FakeGitHub) -> None:
    github.add_repository(REPO, refs=("main", "v1"))
    github.add_workflow(REPO, "release.yml", name="Release", run_name=(
        "Release ${{ inputs.model }} v${{ inputs.version }} "
        "(${{ inputs.amlevents_request_id }})"), inputs={
        "model": {"required": True}, "version": {"required": True},
        "amlevents_request_id": {"required": False, "default": ""}})
    github.add_workflow(REPO, "unnamed.yml", name="Unnamed", inputs={
        "model": {}, "version": {}, "amlevents_request_id": {}})
    github.add_workflow(REPO, "push-only.yml", workflow_dispatch=False)
    github.add_workflow(REPO, "disabled.yml", disabled=True)
    github.add_repository("contoso/ops")
    github.add_workflow("contoso/ops", "on-model.yml", name="On model",
                        repository_dispatch=("model-registered",),
                        run_name="Model ${{ github.event.client_payload.amlevents_request_id }}")
    github.add_token(TOKEN)


github = fake_github_fixture(_world)


@pytest.fixture
def live(github: FakeGitHub, base_env: dict[str, str]) -> Callable[..., Dispatcher]:
    """A Dispatcher with live CI/CD against the fake (the same ledger file every time)."""
    def build(*rules: dict[str, Any], **overrides: str) -> Dispatcher:
        env = {**base_env, "AMLEVENTS_DRY_RUN_CICD": "false",
               "AMLEVENTS_CICD_RULES": json.dumps(list(rules or [RELEASE])),
               "AMLEVENTS_GITHUB_API_URL": github.url, "AMLEVENTS_CICD_CA_FILE": github.ca_path,
               "AMLEVENTS_GITHUB_TOKEN": TOKEN, "AMLEVENTS_GITHUB_RETURN_RUN_DETAILS": "true",
               "AMLEVENTS_CICD_TIMEOUT_S": "1"}
        return Dispatcher({**env, **overrides})
    return build


def registered(sample: Sample, event_id: str = "model-1", **tags: str) -> dict[str, Any]:
    raw = sample("model_registered")
    raw["id"] = event_id
    raw["data"].update(ModelName="fraud-detector", ModelVersion=7,
                       ModelTags=tags or {"stage": "production"})
    return raw


def cicd(result: DispatchResult) -> DispatchResult:
    (found,) = [r for r in (result, *result.also) if r.key.endswith("-cicd")]
    return found


def dispatches(result: DispatchResult) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(cicd(result).detail)["dispatches"]
    return found


def errors(result: DispatchResult) -> str:
    """Every dispatch's error, as text (the detail is JSON)."""
    return " | ".join(str(d.get("error", "")) for d in dispatches(result))


def deliver(dispatcher: Dispatcher, raw: dict[str, Any]) -> DispatchResult:
    return dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)


# -- the happy path ----------------------------------------------------------------------------

def test_one_dispatch_with_the_templated_inputs(github: FakeGitHub, live: Callable[..., Dispatcher],
                                                sample: Sample) -> None:
    result = deliver(live(), registered(sample))
    row = cicd(result)
    assert row.outcome is Outcome.DONE, row.detail
    (request,) = github.requests_matching("POST", DISPATCHES)
    (done,) = dispatches(result)
    rid = done["requestId"]
    assert request.body == {"ref": "main", "return_run_details": True, "inputs": {
        "model": "fraud-detector", "version": "7", "amlevents_request_id": rid}}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["user-agent"] == "amlevents"
    (run,) = github.runs_of(REPO)
    assert rid in run.display_title
    assert done["runId"] == str(run.id)
    assert done["runUrl"] == f"https://github.com/{REPO}/actions/runs/{run.id}"
    assert done["target"] == {"service": "github", "repository": REPO, "workflow": "release.yml",
                              "ref": "main"}
    assert TOKEN not in row.detail and TOKEN not in row.action


def test_without_run_details_github_answers_204(github: FakeGitHub,
                                                live: Callable[..., Dispatcher],
                                                sample: Sample) -> None:
    result = deliver(live(AMLEVENTS_GITHUB_RETURN_RUN_DETAILS="false"), registered(sample))
    assert cicd(result).outcome is Outcome.DONE
    (request,) = github.requests_matching("POST", DISPATCHES)
    assert "return_run_details" not in request.body
    (done,) = dispatches(result)
    assert "runUrl" not in done and len(github.runs_of(REPO)) == 1


def test_a_redelivery_dispatches_nothing(github: FakeGitHub, live: Callable[..., Dispatcher],
                                         sample: Sample) -> None:
    dispatcher = live()
    deliver(dispatcher, registered(sample))
    again = deliver(dispatcher, registered(sample))
    assert cicd(again).duplicate and cicd(again).outcome is Outcome.DONE
    assert len(github.requests_matching("POST", DISPATCHES)) == 1 and len(github.runs_of(REPO)) == 1


def test_a_repository_dispatch(github: FakeGitHub, live: Callable[..., Dispatcher],
                               sample: Sample) -> None:
    result = deliver(live(NOTIFY_OPS), registered(sample))
    assert cicd(result).outcome is Outcome.DONE, cicd(result).detail
    (request,) = github.requests_matching("POST", r"/repos/contoso/ops/dispatches$")
    (done,) = dispatches(result)
    assert request.body == {"event_type": "model-registered", "client_payload": {
        "model": "fraud-detector", "amlevents_request_id": done["requestId"]}}
    (run,) = github.runs_of("contoso/ops")
    assert run.event == "repository_dispatch" and done["requestId"] in run.display_title


# -- GitHub refuses: failed, with its message, never retried -------------------------------------

@pytest.mark.parametrize(("github_rule", "overrides", "status", "message"), [
    ({"inputs": {"model": "{data.ModelName}", "version": "1", "colour": "red"}}, {}, 422,
     'Unexpected inputs provided: ["colour"]'),
    ({"inputs": {"model": "{data.ModelName}"}}, {}, 422, "Required input 'version' not provided"),
    ({"ref": "nope"}, {}, 422, "No ref found for: nope"),
    ({"workflow": "push-only.yml"}, {}, 422, "Workflow does not have 'workflow_dispatch' trigger"),
    ({"workflow": "disabled.yml", "inputs": {}}, {}, 422,
     "Cannot trigger a 'workflow_dispatch' on a disabled workflow"),
    ({"workflow": "missing.yml"}, {}, 404, "Not Found (check the repository and the workflow"),
    ({"repository": "contoso/elsewhere"}, {}, 404, "Not Found"),
    ({}, {"AMLEVENTS_GITHUB_TOKEN": "github_pat_wrong_but_long"}, 401, "Bad credentials"),
])
def test_github_refusals_are_failed_with_its_message(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample,
        github_rule: dict[str, Any], overrides: dict[str, str], status: int,
        message: str) -> None:
    rule = {**RELEASE, "github": {**RELEASE["github"], **github_rule}}
    dispatcher = live(rule, **overrides)
    result = deliver(dispatcher, registered(sample))
    row = cicd(result)
    assert row.outcome is Outcome.FAILED and not result.should_retry
    assert f"GitHub answered {status}" in errors(result) and message in errors(result)
    assert row.action.startswith("CI/CD run not started (rule 'release'): GitHub answered")
    assert github.runs_of(REPO) == []
    posts = len(github.requests)
    assert cicd(deliver(dispatcher, registered(sample))).duplicate
    assert len(github.requests) == posts


def reopen(dispatcher: Dispatcher, result: DispatchResult) -> None:
    """What `amlevents replay` does to the CI/CD row before delivering its event again."""
    row = dispatcher.ledger.get(cicd(result).key)
    assert row is not None and dispatcher.ledger.reopen(row, {"by": "test"}) is not None


def test_a_replay_after_the_cause_is_fixed_dispatches_once(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    github.fail_next("POST", DISPATCHES, 422, body={"message": "Required input 'approver' not "
                                                               "provided"})
    dispatcher = live()
    failed = deliver(dispatcher, registered(sample))
    assert cicd(failed).outcome is Outcome.FAILED
    reopen(dispatcher, failed)  # the workflow was fixed; the operator replays the row
    assert cicd(deliver(dispatcher, registered(sample))).outcome is Outcome.DONE
    assert len(github.runs_of(REPO)) == 1


def test_a_forced_replay_of_a_done_row_starts_nothing_again(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = live()
    done = deliver(dispatcher, registered(sample))
    reopen(dispatcher, done)
    again = deliver(dispatcher, registered(sample))
    assert cicd(again).outcome is Outcome.DONE and dispatches(again)[0]["earlierDelivery"]
    assert len(github.requests_matching("POST", DISPATCHES)) == 1


def test_a_token_without_the_permission_is_forbidden(github: FakeGitHub,
                                                     live: Callable[..., Dispatcher],
                                                     sample: Sample) -> None:
    github.add_token("github_pat_readonly_0123", permissions={"actions": "read"})
    row = cicd(deliver(live(AMLEVENTS_GITHUB_TOKEN="github_pat_readonly_0123"),
                       registered(sample)))
    assert row.outcome is Outcome.FAILED
    assert "GitHub answered 403" in row.detail
    assert "Resource not accessible by personal access token" in row.detail
    assert "Actions: write" in row.detail


def test_an_untrusted_certificate_is_failed_naming_the_setting(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    result = deliver(live(AMLEVENTS_CICD_CA_FILE=""), registered(sample))
    assert cicd(result).outcome is Outcome.FAILED
    host = github.url.removeprefix("https://")
    assert errors(result) == (f"GitHub: the certificate of {host} is not trusted "
                              "(see AMLEVENTS_CICD_CA_FILE)")


# -- rate limits and 5xx: retry, and still one run ----------------------------------------------

@pytest.mark.parametrize(("kind", "status", "wait"), [
    ("secondary", 403, "retry after 7 s"), ("secondary", 429, "retry after 7 s"),
    ("primary", 403, "retry after 3"), ("primary", 429, "retry after 3")])
def test_a_rate_limit_retries_then_dispatches_once(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample, kind: str,
        status: int, wait: str) -> None:
    github.rate_limit_next("POST", DISPATCHES, kind=kind, status=status, retry_after=7,
                           reset_in_s=35)
    dispatcher = live()
    first = deliver(dispatcher, registered(sample))
    row = cicd(first)
    assert row.outcome is Outcome.RETRY and first.should_retry
    assert "GitHub rate limit" in row.detail and wait in row.detail
    assert github.runs_of(REPO) == []
    again = deliver(dispatcher, registered(sample))
    assert cicd(again).outcome is Outcome.DONE
    assert len(github.requests_matching("POST", DISPATCHES)) == 2 and len(github.runs_of(REPO)) == 1
    assert github.requests_matching("GET") == []  # a rate limit is not ambiguous: no lookup


def test_a_403_that_is_not_a_rate_limit_is_not_retried(github: FakeGitHub,
                                                       live: Callable[..., Dispatcher],
                                                       sample: Sample) -> None:
    github.fail_next("POST", DISPATCHES, 403, body={"message": "Must have admin rights to "
                                                               "Repository."})
    row = cicd(deliver(live(), registered(sample)))
    assert row.outcome is Outcome.FAILED and "Must have admin rights" in row.detail


def test_a_5xx_retries_looks_the_run_up_then_dispatches_once(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    github.fail_next("POST", DISPATCHES, 502)
    first = deliver(live(), registered(sample))
    assert cicd(first).outcome is Outcome.RETRY and "GitHub answered 502" in cicd(first).detail
    # Within the grace period, a run not listed yet may still appear: wait.
    waiting = deliver(live(), registered(sample))
    assert cicd(waiting).outcome is Outcome.RETRY and "not listed yet" in cicd(waiting).detail
    lookup = github.requests_matching("GET", r"/actions/workflows/release\.yml/runs$")[0]
    assert lookup.query["event"] == "workflow_dispatch" and lookup.query["created"][:2] == ">="
    # After it, no run since names any other request: this one never started.
    done = deliver(live(AMLEVENTS_CICD_RECONCILE_GRACE_S="0"), registered(sample))
    assert cicd(done).outcome is Outcome.DONE
    assert len(github.requests_matching("POST", DISPATCHES)) == 2 and len(github.runs_of(REPO)) == 1


def test_a_lookup_github_refuses_is_failed_with_its_message(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    github.fail_next("POST", DISPATCHES, 504)
    assert cicd(deliver(live(), registered(sample))).outcome is Outcome.RETRY
    github.fail_next("GET", r"/runs$", 403, body={"message": "Resource not accessible by "
                                                             "personal access token"})
    result = deliver(live(), registered(sample))
    assert cicd(result).outcome is Outcome.FAILED
    assert "listing the runs of contoso/ml-release" in errors(result)
    assert len(github.requests_matching("POST", DISPATCHES)) == 1


def test_a_lost_answer_is_reconciled_not_dispatched_again(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    deliver(live(), registered(sample, "other-event"))  # another run, named by its request id
    github.delay_next("POST", DISPATCHES, 3.0)  # the run starts; the answer comes too late
    first = deliver(live(), registered(sample))
    assert cicd(first).outcome is Outcome.RETRY
    # sent, no answer within the timeout: it may have started (looked up on the redelivery)
    assert errors(first) == (f"GitHub: no answer from {github.url.removeprefix('https://')} "
                             "within 1 s (TimeoutError)")
    assert len(github.runs_of(REPO)) == 2
    again = deliver(live(), registered(sample))
    row = cicd(again)
    assert row.outcome is Outcome.DONE, row.detail
    (done,) = dispatches(again)
    run = github.runs_of(REPO)[-1]
    assert done["reconciled"] is True and done["runId"] == str(run.id)
    assert done["requestId"] in run.display_title
    # the row says which run it found, and where to see it (GitHub's html_url)
    assert done == {"outcome": "done", "reconciled": True, "requestId": done["requestId"],
                    "rule": "release", "runId": str(run.id),
                    "runUrl": f"https://github.com/{REPO}/actions/runs/{run.id}",
                    "target": {"ref": "main", "repository": REPO, "service": "github",
                               "workflow": "release.yml"}}
    # looked up among the workflow's dispatched runs since the request (5 minutes' margin)
    (lookup,) = github.requests_matching("GET")
    assert lookup.path == f"/repos/{REPO}/actions/workflows/release.yml/runs"
    assert lookup.query == {"created": lookup.query["created"], "per_page": "100",
                            "event": "workflow_dispatch", "page": "1"}
    created = datetime.strptime(lookup.query["created"], ">=%Y-%m-%dT%H:%M:%SZ")
    margin = time.time() - created.replace(tzinfo=UTC).timestamp()
    assert 300 <= margin < 330  # the request was sent seconds ago, minus 300 s of clock skew
    assert len(github.requests_matching("POST", DISPATCHES)) == 2 and len(github.runs_of(REPO)) == 2


def test_when_runs_are_not_named_it_says_it_cannot_tell(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    rule = {**RELEASE, "github": {**RELEASE["github"], "workflow": "unnamed.yml"}}
    github.delay_next("POST", r"/unnamed\.yml/dispatches$", 3.0)
    assert cicd(deliver(live(rule), registered(sample))).outcome is Outcome.RETRY
    dispatcher = live(rule, AMLEVENTS_CICD_RECONCILE_GRACE_S="0")
    row = cicd(deliver(dispatcher, registered(sample)))
    assert row.outcome is Outcome.FAILED
    (failed,) = json.loads(row.detail)["dispatches"]
    assert re.fullmatch(
        re.escape("the request to start GitHub workflow unnamed.yml in contoso/ml-release on "
                  "main at ") + r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"
        + re.escape(f" got no answer; no run names its request id {failed['requestId']}, but 1 "
                    "run(s) since then name no request id at all, so one of them may be it (put "
                    "the request id in the run name: docs/cicd.md): not starting it again, "
                    "check the runs by hand"), failed["error"]), failed["error"]
    assert len(github.requests_matching("POST", r"/dispatches$")) == 1
    assert cicd(deliver(dispatcher, registered(sample))).duplicate
    # Not even a replay sends it again: whether it started is for a person to check.
    reopen(dispatcher, deliver(dispatcher, registered(sample)))
    replayed = deliver(dispatcher, registered(sample))
    assert cicd(replayed).outcome is Outcome.FAILED and dispatches(replayed)[0]["unknown"]
    assert len(github.requests_matching("POST", r"/dispatches$")) == 1


def test_without_a_request_id_a_lost_answer_is_never_sent_twice(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    rule = {**RELEASE, "github": {**RELEASE["github"], "requestIdInput": None}}
    github.delay_next("POST", DISPATCHES, 3.0)
    assert cicd(deliver(live(rule), registered(sample))).outcome is Outcome.RETRY
    row = cicd(deliver(live(rule), registered(sample)))
    assert row.outcome is Outcome.FAILED and "passes no request id" in row.detail
    assert github.requests_matching("GET") == []
    assert len(github.requests_matching("POST", DISPATCHES)) == 1


def test_a_lost_repository_dispatch_is_found_among_the_repository_runs(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    github.delay_next("POST", r"/repos/contoso/ops/dispatches$", 3.0)
    assert cicd(deliver(live(NOTIFY_OPS), registered(sample))).outcome is Outcome.RETRY
    again = deliver(live(NOTIFY_OPS), registered(sample))
    assert cicd(again).outcome is Outcome.DONE and dispatches(again)[0]["reconciled"] is True
    (lookup,) = github.requests_matching("GET", r"/repos/contoso/ops/actions/runs$")
    assert lookup.query == {"created": lookup.query["created"], "per_page": "100",
                            "event": "repository_dispatch", "page": "1"}
    assert len(github.runs_of("contoso/ops")) == 1


# -- several rules: each once -------------------------------------------------------------------

def test_one_refused_rule_does_not_stop_the_others(github: FakeGitHub,
                                                   live: Callable[..., Dispatcher],
                                                   sample: Sample) -> None:
    bad = {**RELEASE, "name": "bad", "github": {**RELEASE["github"], "ref": "nope"}}
    dispatcher = live(bad, NOTIFY_OPS)
    result = deliver(dispatcher, registered(sample))
    row = cicd(result)
    assert row.outcome is Outcome.FAILED
    outcomes = {d["rule"]: d["outcome"] for d in dispatches(result)}
    assert outcomes == {"bad": "failed", "tell ops": "done"}
    assert len(github.runs_of("contoso/ops")) == 1


def test_a_redelivery_sends_only_what_must_be_retried(github: FakeGitHub,
                                                      live: Callable[..., Dispatcher],
                                                      sample: Sample) -> None:
    github.rate_limit_next("POST", r"/repos/contoso/ops/dispatches$")
    dispatcher = live(RELEASE, NOTIFY_OPS)
    first = deliver(dispatcher, registered(sample))
    assert cicd(first).outcome is Outcome.RETRY
    assert {d["rule"]: d["outcome"] for d in dispatches(first)} == {"release": "done",
                                                                    "tell ops": "retry"}
    second = deliver(dispatcher, registered(sample))
    assert cicd(second).outcome is Outcome.DONE
    assert {d["rule"]: d.get("earlierDelivery", False) for d in dispatches(second)} == {
        "release": True, "tell ops": False}
    assert len(github.requests_matching("POST", DISPATCHES)) == 1
    assert len(github.runs_of(REPO)) == 1 and len(github.runs_of("contoso/ops")) == 1


# -- a GitHub App --------------------------------------------------------------------------------

def app_env(github: FakeGitHub,
            installations: dict[int, tuple[str, ...]] | None = None) -> dict[str, str]:
    app = github.add_app("424242", installations or {77: (REPO, "contoso/ops")})
    return {"AMLEVENTS_GITHUB_TOKEN": "", "AMLEVENTS_GITHUB_APP_ID": "424242",
            "AMLEVENTS_GITHUB_APP_PRIVATE_KEY": app.private_pem}


def test_a_github_app_signs_a_jwt_and_uses_an_installation_token(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = live(**app_env(github))
    first = deliver(dispatcher, registered(sample))
    assert cicd(first).outcome is Outcome.DONE, cicd(first).detail
    (claims,) = github.verified_jwts[:1]
    assert claims["iss"] == "424242" and claims["exp"] - claims["iat"] == 600
    (installation,) = github.requests_matching("GET", rf"/repos/{REPO}/installation$")
    assert installation.bearer_token and installation.bearer_token.count(".") == 2  # the JWT
    (minted,) = github.requests_matching("POST", r"/app/installations/77/access_tokens$")
    assert minted.body == {"repositories": ["ml-release"]}  # narrowed to the repository
    (request,) = github.requests_matching("POST", DISPATCHES)
    assert request.bearer_token == github.issued_tokens[0]
    # The installation token is cached until shortly before it expires.
    deliver(dispatcher, registered(sample, "model-2"))
    assert len(github.requests_matching("POST", r"/access_tokens$")) == 1
    assert len(github.requests_matching("GET", r"/installation$")) == 1
    for secret in (github.issued_tokens[0], "PRIVATE KEY"):
        assert all(secret not in e.detail for e in dispatcher.ledger.entries())


def test_an_installation_token_near_its_expiry_is_renewed(base_env: dict[str, str],
                                                          sample: Sample) -> None:
    with start_fake_github(token_lifetime_s=200) as github:  # under the 5-minute margin
        _world(github)
        env = {**base_env, "AMLEVENTS_DRY_RUN_CICD": "false",
               "AMLEVENTS_CICD_RULES": json.dumps([RELEASE]),
               "AMLEVENTS_GITHUB_API_URL": github.url, "AMLEVENTS_CICD_CA_FILE": github.ca_path,
               **app_env(github)}
        dispatcher = Dispatcher(env)
        for event_id in ("model-1", "model-2"):
            assert cicd(deliver(dispatcher, registered(sample, event_id))).outcome is Outcome.DONE
        assert len(github.issued_tokens) == 2


def test_a_configured_installation_is_not_looked_up(github: FakeGitHub,
                                                    live: Callable[..., Dispatcher],
                                                    sample: Sample) -> None:
    env = {**app_env(github), "AMLEVENTS_GITHUB_APP_INSTALLATION_ID": "77"}
    assert cicd(deliver(live(**env), registered(sample))).outcome is Outcome.DONE
    assert github.requests_matching("GET", r"/installation$") == []


def test_a_revoked_installation_token_is_renewed_once(github: FakeGitHub,
                                                      live: Callable[..., Dispatcher],
                                                      sample: Sample) -> None:
    dispatcher = live(**app_env(github))
    deliver(dispatcher, registered(sample))
    github.credentials.pop(github.issued_tokens[0])  # revoked
    assert cicd(deliver(dispatcher, registered(sample, "model-2"))).outcome is Outcome.DONE
    assert len(github.issued_tokens) == 2


@pytest.mark.parametrize(("case", "message"), [
    ("not installed", "the App is not installed on this repository"),
    ("another key", "A JSON web token could not be decoded"),
])
def test_app_problems_are_failed_with_githubs_message(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample, case: str,
        message: str) -> None:
    env = app_env(github, {77: ("contoso/ops",)} if case == "not installed" else None)
    if case == "another key":
        env["AMLEVENTS_GITHUB_APP_PRIVATE_KEY"] = github.add_app("999", {}).private_pem
    row = cicd(deliver(live(**env), registered(sample)))
    assert row.outcome is Outcome.FAILED and message in row.detail
    assert github.requests_matching("POST", DISPATCHES) == []


@pytest.mark.parametrize(("others", "counted", "pages"), [
    (99, 100, 2),  # a full page: the next is asked for (empty: the listing ends there)
    (1049, 1000, 10),  # at most 10 pages of 100 are read
])
def test_a_lost_answer_counts_the_unnamed_runs_page_by_page(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample,
        others: int, counted: int, pages: int) -> None:
    rule = {**RELEASE, "github": {**RELEASE["github"], "workflow": "unnamed.yml"}}
    github.delay_next("POST", r"/unnamed\.yml/dispatches$", 3.0)
    assert cicd(deliver(live(rule), registered(sample))).outcome is Outcome.RETRY
    (lost,) = github.runs_of(REPO)
    # runs started by hand since then: none names a request id
    github.runs.extend(dataclasses.replace(lost, id=lost.id + n, display_title=f"Unnamed #{n}")
                       for n in range(1, others + 1))
    row = cicd(deliver(live(rule, AMLEVENTS_CICD_RECONCILE_GRACE_S="0"), registered(sample)))
    assert row.outcome is Outcome.FAILED
    assert f"but {counted} run(s) since then name no request id at all" in row.detail
    listings = github.requests_matching("GET", r"/unnamed\.yml/runs$")
    assert [r.query["page"] for r in listings] == [str(n) for n in range(1, pages + 1)]


# -- reading GitHub's answers (pure) ------------------------------------------------------------

def test_iso_writes_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers.adapters.cicd.github import iso

    # the lookup's `created` filter is compared with GitHub's UTC times: never local time
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert iso(0) == "1970-01-01T00:00:00Z"
        assert iso(1_700_000_000.9) == "2023-11-14T22:13:20Z"  # whole seconds, cut not rounded
    finally:
        monkeypatch.undo()
        time.tzset()


def test_githubs_message_with_its_errors_on_one_line() -> None:
    from handlers.adapters.cicd.github import github_message
    from handlers.adapters.cicd.http import Answer

    assert github_message(Answer(422, body={"message": "Validation\n  Failed", "errors": [
        {"message": "bad ref"}, {"code": "missing_field"}, {"field": "x"}, "plain", ""]})) == \
        "Validation Failed; bad ref; missing_field; {'field': 'x'}; plain"
    assert github_message(Answer(502, text="<html> Bad gateway </html>")) == \
        "<html> Bad gateway </html>"
    assert github_message(Answer(500, body=["not", "an", "object"])) == "HTTP 500"
    assert github_message(Answer(404, body={"message": "m" * 600})) == "m" * 500


NOW = 1_700_000_000.0
SECONDARY = {"message": "You have exceeded a secondary rate limit."}


@pytest.mark.parametrize(("status", "headers", "body", "wait"), [
    (403, {"retry-after": "7"}, None, 7.0),
    (429, {"retry-after": "7", "x-ratelimit-remaining": "0",
           "x-ratelimit-reset": str(int(NOW) + 35)}, None, 7.0),  # retry-after first
    (403, {"retry-after": "-3"}, None, 0.0),
    (403, {"retry-after": "soon"}, None, 60.0),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 35)}, None, 35.0),
    (429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)}, None, 0.0),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "later"}, None, 60.0),
    (403, {"x-ratelimit-remaining": "0"}, None, 60.0),  # no reset said: a minute
    (403, {}, SECONDARY, 60.0),
    (429, {}, None, 60.0),
    (403, {"x-ratelimit-remaining": "1"}, {"message": "Must have admin rights"}, None),
    (200, {"retry-after": "7"}, None, None),
    (500, {"retry-after": "7"}, None, None),
])
def test_the_rate_limit_wait_is_exact(status: int, headers: dict[str, str],
                                      body: dict[str, str] | None, wait: float | None) -> None:
    from handlers.adapters.cicd.github import rate_limit_wait
    from handlers.adapters.cicd.http import Answer

    assert rate_limit_wait(Answer(status, headers, body), NOW) == wait


def test_a_primary_rate_limit_says_the_exact_wait_until_the_reset(
        github: FakeGitHub, live: Callable[..., Dispatcher], sample: Sample) -> None:
    github.rate_limit_next("POST", DISPATCHES, kind="primary", reset_in_s=3000)
    result = deliver(live(), registered(sample))
    (retry,) = dispatches(result)
    # the reset is a whole second and we are some fraction into ours: 2999 or 3000 s
    assert re.fullmatch(
        re.escape("GitHub rate limit on workflow_dispatch to contoso/ml-release (HTTP 403, retry "
                  "after ") + "(2999|3000)" + re.escape(" s): API rate limit exceeded for user ID "
                                                     "1."), retry["error"]), retry["error"]
