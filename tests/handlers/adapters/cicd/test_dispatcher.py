"""The CicdRunner itself: the ledger state it writes for each dispatch, the outcome it reports
and its messages, compared whole. Real services (the GitHub and Azure Pipelines adapters) over
HTTPS to the fakes; the ledger is SQLite with a clock the test moves."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from handlers.adapters.cicd.azure_pipelines import AzurePipelines
from handlers.adapters.cicd.dispatcher import CicdRunner, build_dispatcher, state_key
from handlers.adapters.cicd.github import GitHub
from handlers.cicd.decide import decide
from handlers.cicd.plan import CicdPlan, Dispatch
from handlers.cicd.settings import CicdSettings, GitHubAuth
from handlers.errors import SettingError
from handlers.events.parse import parse_event
from handlers.ledger.ledger import Ledger, utc_iso
from handlers.ledger.sqlite import SqliteLedgerStore
from handlers.outcome import ActionResult, Outcome
from tests.fakes.azure_devops import FakeAzureDevOps, fake_azure_devops_fixture
from tests.fakes.clock import Clock
from tests.fakes.github import FakeGitHub, fake_github_fixture

Sample = Callable[[str], dict[str, Any]]
TOKEN = "github_pat_11AAAA0000_fake_token_value"
REPO = "contoso/ml-release"
DISPATCHES = r"/actions/workflows/release\.yml/dispatches$"
RELEASE: dict[str, Any] = {"name": "release", "when": {"types": ["ModelRegistered"]},
           "github": {"repository": REPO, "workflow": "release.yml", "ref": "main",
                      "inputs": {"model": "{data.ModelName}"}}}
UNNAMED: dict[str, Any] = {**RELEASE, "github": {**RELEASE["github"], "workflow": "unnamed.yml"}}
NO_REQUEST_ID: dict[str, Any] = {**RELEASE, "github": {**RELEASE["github"],
                                                       "requestIdInput": None}}
NOTIFY_OPS: dict[str, Any] = {"name": "tell ops", "when": {"types": ["ModelRegistered"]},
              "github": {"repository": "contoso/ops", "eventType": "model-registered",
                         "clientPayload": {"model": "{data.ModelName}"}}}
PIPELINE: dict[str, Any] = {"name": "investigate", "when": {"types": ["ModelRegistered"]},
            "azurePipelines": {"organization": "contoso", "project": "ML Ops", "pipelineId": 42,
                               "branch": "main", "templateParameters": {"run": "x"}}}
RELEASE_TARGET = {"service": "github", "repository": REPO, "workflow": "release.yml",
                  "ref": "main"}
WHERE = "GitHub workflow release.yml in contoso/ml-release on main"
BY_HAND = ": not starting it again, check the runs by hand"


def _world(github: FakeGitHub) -> None:
    github.add_repository(REPO)
    github.add_workflow(REPO, "release.yml", name="Release",
                        run_name="Release (${{ inputs.amlevents_request_id }})",
                        inputs={"model": {}, "amlevents_request_id": {}})
    github.add_workflow(REPO, "unnamed.yml", name="Unnamed",
                        inputs={"model": {}, "amlevents_request_id": {}})
    github.add_repository("contoso/ops")
    github.add_workflow("contoso/ops", "on-model.yml", name="On model",
                        repository_dispatch=("model-registered",),
                        run_name="Model ${{ github.event.client_payload.amlevents_request_id }}")
    github.add_token(TOKEN)


def _devops_world(devops: FakeAzureDevOps) -> None:
    devops.add_pipeline("contoso", "ML Ops", 42, name="investigate", parameters={
        "run": {}, "amlevents_request_id": {"default": ""}},
        run_name="investigate-${{ parameters.amlevents_request_id }}-$(Rev:r)")


github = fake_github_fixture(_world)
devops = fake_azure_devops_fixture(_devops_world)


@pytest.fixture
def clock() -> Clock:
    # Whole seconds near now: the fakes stamp runs with real time.
    return Clock(float(int(time.time())))


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    found = Ledger(SqliteLedgerStore(str(tmp_path / "ledger.sqlite3")), clock=clock)
    yield found
    found.close()


def env_for(github: FakeGitHub, *rules: dict[str, Any], **overrides: str) -> dict[str, str]:
    return {"AMLEVENTS_CICD_RULES": json.dumps(list(rules or [RELEASE])),
            "AMLEVENTS_GITHUB_API_URL": github.url, "AMLEVENTS_CICD_CA_FILE": github.ca_path,
            "AMLEVENTS_GITHUB_TOKEN": TOKEN, "AMLEVENTS_GITHUB_RETURN_RUN_DETAILS": "true",
            "AMLEVENTS_CICD_TIMEOUT_S": "1", **overrides}


@pytest.fixture
def runner(github: FakeGitHub, ledger: Ledger) -> Callable[..., CicdRunner]:
    """The live runner build_dispatcher makes, over the fake GitHub and the test's ledger."""
    def build(*rules: dict[str, Any], **overrides: str) -> CicdRunner:
        env = env_for(github, *rules, **overrides)
        return build_dispatcher(CicdSettings.from_mapping(env), GitHubAuth.from_mapping(env),
                                ledger)
    return build


def plan_for(runner: CicdRunner, sample: Sample, event_id: str = "model-1") -> CicdPlan:
    raw = sample("model_registered")
    raw["id"] = event_id
    raw["data"].update(ModelName="fraud-detector", ModelVersion=7)
    plan = decide(parse_event(raw), runner.settings)
    assert isinstance(plan, CicdPlan), plan
    return plan


def compact(*dispatches: Mapping[str, Any]) -> str:
    """The detail as the runner writes it: compact, key-sorted JSON."""
    return json.dumps({"dispatches": list(dispatches)}, sort_keys=True, separators=(",", ":"))


def base(dispatch: Dispatch) -> dict[str, Any]:
    return {"rule": dispatch.rule, "target": dict(dispatch.target),
            "requestId": dispatch.request_id}


def state_of(ledger: Ledger, dispatch: Dispatch) -> Mapping[str, Any] | None:
    return ledger.get_state(state_key(dispatch.request_id))


def lose_the_answer(runner: CicdRunner, ledger: Ledger, dispatch: Dispatch,
                    since_s: float) -> None:
    """What an earlier delivery left behind: its intent recorded, its request taken by GitHub,
    the answer lost (the adapter sends it; its answer is dropped here)."""
    ledger.update_state(state_key(dispatch.request_id),
                        lambda _: {"status": "pending", "since_s": since_s})
    runner.services["github"].send(dispatch)


def pending_only(ledger: Ledger, dispatch: Dispatch, since_s: float) -> None:
    """An earlier delivery's intent whose request never reached GitHub."""
    ledger.update_state(state_key(dispatch.request_id),
                        lambda _: {"status": "pending", "since_s": since_s})


# -- building it ---------------------------------------------------------------------------------

def test_state_key_is_the_request_id_under_cicd() -> None:
    assert state_key("amlevents-0123456789abcdef01234567") == \
        "cicd-amlevents-0123456789abcdef01234567"


def test_build_dispatcher_makes_a_github_client_from_the_settings(
        github: FakeGitHub, ledger: Ledger, clock: Clock) -> None:
    env = env_for(github, AMLEVENTS_CICD_TIMEOUT_S="2.5")
    settings, auth = CicdSettings.from_mapping(env), GitHubAuth.from_mapping(env)
    built = build_dispatcher(settings, auth, ledger)
    assert built.settings is settings and built.ledger is ledger
    assert built.clock is clock  # the ledger's clock, when none is given
    assert list(built.services) == ["github"]
    service = built.services["github"]
    assert isinstance(service, GitHub)
    assert service.settings is settings and service.auth is auth and service.clock is clock
    assert (service.http.service, service.http.timeout_s, service.http.ca_setting) == (
        "GitHub", 2.5, "AMLEVENTS_CICD_CA_FILE")


def test_build_dispatcher_makes_an_azure_devops_client_only_when_a_rule_needs_it(
        github: FakeGitHub, devops: FakeAzureDevOps, ledger: Ledger, clock: Clock) -> None:
    env = env_for(github, PIPELINE, AMLEVENTS_AZURE_DEVOPS_URL=devops.url,
                  AMLEVENTS_CICD_CA_FILE=devops.ca_path)
    settings = CicdSettings.from_mapping(env)
    built = build_dispatcher(settings, GitHubAuth.from_mapping(env), ledger)
    assert list(built.services) == ["azurePipelines"]
    service = built.services["azurePipelines"]
    assert isinstance(service, AzurePipelines)
    assert service.settings is settings and service.clock is clock
    assert (service.http.service, service.http.timeout_s, service.http.ca_setting) == (
        "Azure DevOps", 1.0, "AMLEVENTS_CICD_CA_FILE")
    both = build_dispatcher(CicdSettings.from_mapping({**env, "AMLEVENTS_CICD_RULES": json.dumps(
        [RELEASE, PIPELINE])}), GitHubAuth.from_mapping(env), ledger)
    assert sorted(both.services) == ["azurePipelines", "github"]


def test_a_clock_given_to_the_runner_wins_over_the_ledgers(github: FakeGitHub, ledger: Ledger,
                                                           sample: Sample) -> None:
    env = env_for(github)
    built = build_dispatcher(CicdSettings.from_mapping(env), GitHubAuth.from_mapping(env), ledger)
    own = CicdRunner(built.settings, ledger, built.services, clock=lambda: 1234.5)
    assert own.clock() == 1234.5
    plan = plan_for(own, sample)
    github.fail_next("POST", DISPATCHES, 502)
    own.dispatch(plan)
    assert state_of(ledger, plan.dispatches[0]) == {"status": "pending", "since_s": 1234.5}


def test_a_pipeline_run_records_its_id_and_web_url(
        github: FakeGitHub, devops: FakeAzureDevOps, ledger: Ledger, clock: Clock,
        sample: Sample) -> None:
    env = env_for(github, PIPELINE, AMLEVENTS_AZURE_DEVOPS_URL=devops.url,
                  AMLEVENTS_CICD_CA_FILE=devops.ca_path)
    built = build_dispatcher(CicdSettings.from_mapping(env), GitHubAuth.from_mapping(env), ledger)
    plan = plan_for(built, sample)
    result = built.dispatch(plan)
    (run,) = devops.runs_of("contoso", "ML Ops", 42)
    (dispatch,) = plan.dispatches
    web = run["_links"]["web"]["href"]
    assert state_of(ledger, dispatch) == {"status": "done", "since_s": clock.now,
                                          "run_id": str(run["id"]), "run_url": web}
    assert result == ActionResult(Outcome.DONE, plan.summary(), compact(
        {**base(dispatch), "outcome": "done", "runId": str(run["id"]), "runUrl": web}))


# -- a first delivery ------------------------------------------------------------------------------

def test_a_started_run_is_done_with_its_id_and_url(github: FakeGitHub, ledger: Ledger,
                                                   clock: Clock, runner: Callable[..., CicdRunner],
                                                   sample: Sample) -> None:
    built = runner()
    plan = plan_for(built, sample)
    result = built.dispatch(plan)
    (run,) = github.runs_of(REPO)
    (dispatch,) = plan.dispatches
    url = f"https://github.com/{REPO}/actions/runs/{run.id}"
    assert result == ActionResult(
        Outcome.DONE, f"start {WHERE} (rule 'release')",
        compact({**base(dispatch), "outcome": "done", "runId": str(run.id), "runUrl": url}))
    assert state_of(ledger, dispatch) == {"status": "done", "since_s": clock.now,
                                          "run_id": str(run.id), "run_url": url}
    assert dispatch.target == RELEASE_TARGET


def test_a_204_is_done_without_run_id_or_url(github: FakeGitHub, ledger: Ledger, clock: Clock,
                                             runner: Callable[..., CicdRunner],
                                             sample: Sample) -> None:
    built = runner(AMLEVENTS_GITHUB_RETURN_RUN_DETAILS="false")
    plan = plan_for(built, sample)
    result = built.dispatch(plan)
    (dispatch,) = plan.dispatches
    assert result.detail == compact({**base(dispatch), "outcome": "done"})
    assert state_of(ledger, dispatch) == {"status": "done", "since_s": clock.now}
    assert len(github.runs_of(REPO)) == 1


def test_a_refusal_is_failed_and_its_intent_dropped(github: FakeGitHub, ledger: Ledger,
                                                    runner: Callable[..., CicdRunner],
                                                    sample: Sample) -> None:
    github.fail_next("POST", DISPATCHES, 422,
                     body={"message": "Required input 'approver' not provided"})
    built = runner()
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    error = ("GitHub answered 422 to workflow_dispatch to contoso/ml-release: Required input "
             "'approver' not provided")
    assert built.dispatch(plan) == ActionResult(
        Outcome.FAILED, f"CI/CD run not started (rule 'release'): {error}",
        compact({**base(dispatch), "outcome": "failed", "error": error}))
    assert state_of(ledger, dispatch) == {"status": "dropped"}
    # dropped, not failed: the next try (a replay once the cause is fixed) sends it again
    assert built.dispatch(plan).outcome is Outcome.DONE
    assert len(github.requests_matching("POST", DISPATCHES)) == 2


def test_a_long_refusal_is_cut_to_300_characters_in_the_action(
        github: FakeGitHub, runner: Callable[..., CicdRunner], sample: Sample) -> None:
    message = "x" * 400
    github.fail_next("POST", DISPATCHES, 422, body={"message": message})
    built = runner()
    plan = plan_for(built, sample)
    result = built.dispatch(plan)
    line = ("CI/CD run not started (rule 'release'): GitHub answered 422 to workflow_dispatch to "
            f"contoso/ml-release: {message}")
    assert result.action == line[:300] and len(result.action) == 300
    (failed,) = json.loads(result.detail)["dispatches"]
    assert failed["error"] == line.removeprefix("CI/CD run not started (rule 'release'): ")


def test_a_rate_limit_drops_the_intent_and_retries(github: FakeGitHub, ledger: Ledger,
                                                   runner: Callable[..., CicdRunner],
                                                   sample: Sample) -> None:
    github.rate_limit_next("POST", DISPATCHES, retry_after=7)
    built = runner()
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    error = ("GitHub rate limit on workflow_dispatch to contoso/ml-release (HTTP 403, retry after "
             "7 s): You have exceeded a secondary rate limit. Please wait a few minutes before "
             "you try again. If you reach out to GitHub Support for help, please include the "
             "request ID ABCD:1234.")
    assert built.dispatch(plan) == ActionResult(
        Outcome.RETRY, "will retry", compact({**base(dispatch), "outcome": "retry",
                                              "error": error}))
    assert state_of(ledger, dispatch) == {"status": "dropped"}
    # nothing started: the next try sends again, without looking anything up
    assert built.dispatch(plan).outcome is Outcome.DONE
    assert github.requests_matching("GET") == []


def test_a_5xx_keeps_the_intent_and_retries(github: FakeGitHub, ledger: Ledger, clock: Clock,
                                            runner: Callable[..., CicdRunner],
                                            sample: Sample) -> None:
    github.fail_next("POST", DISPATCHES, 502)
    built = runner()
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    error = ("GitHub answered 502 to workflow_dispatch to contoso/ml-release: Injected 502 by "
             "the fake.")
    assert built.dispatch(plan) == ActionResult(
        Outcome.RETRY, "will retry", compact({**base(dispatch), "outcome": "retry",
                                              "error": error}))
    assert state_of(ledger, dispatch) == {"status": "pending", "since_s": clock.now}


def test_a_rule_without_a_client_is_a_setting_error(github: FakeGitHub, ledger: Ledger,
                                                    runner: Callable[..., CicdRunner],
                                                    sample: Sample) -> None:
    built = runner()
    bare = CicdRunner(built.settings, ledger, {})
    plan = plan_for(built, sample)
    with pytest.raises(SettingError) as raised:
        bare.dispatch(plan)
    assert str(raised.value) == ("setting AMLEVENTS_CICD_RULES: no client for github; restart "
                                 "the app after changing rules")
    assert raised.value.setting == "AMLEVENTS_CICD_RULES"
    assert state_of(ledger, plan.dispatches[0]) is None and github.requests == []


def test_another_delivery_writing_first_wins_and_this_one_retries(
        github: FakeGitHub, ledger: Ledger, clock: Clock, runner: Callable[..., CicdRunner],
        sample: Sample) -> None:
    built = runner()
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    theirs = {"status": "pending", "since_s": 1.0}

    def racing_clock() -> float:  # read between this delivery's look and its write
        ledger.update_state(state_key(dispatch.request_id), lambda _: theirs)
        return clock()

    racing = CicdRunner(built.settings, ledger, built.services, clock=racing_clock)
    assert racing.dispatch(plan) == ActionResult(Outcome.RETRY, "will retry", compact(
        {**base(dispatch), "outcome": "retry",
         "error": "another delivery changed this run's state meanwhile; will retry"}))
    assert state_of(ledger, dispatch) == theirs and github.requests == []


# -- a redelivery ----------------------------------------------------------------------------------

def test_a_done_dispatch_is_reused_without_a_client(github: FakeGitHub, ledger: Ledger,
                                                    runner: Callable[..., CicdRunner],
                                                    sample: Sample) -> None:
    built = runner()
    plan = plan_for(built, sample)
    built.dispatch(plan)
    (run,) = github.runs_of(REPO)
    (dispatch,) = plan.dispatches
    sent = len(github.requests)
    # even with no client (the rules changed since): what was done is not sent again
    again = CicdRunner(built.settings, ledger, {}).dispatch(plan)
    assert again == ActionResult(Outcome.DONE, plan.summary(), compact(
        {**base(dispatch), "outcome": "done", "runId": str(run.id), "earlierDelivery": True,
         "runUrl": f"https://github.com/{REPO}/actions/runs/{run.id}"}))
    assert len(github.requests) == sent


def test_a_done_state_without_run_details_is_reused_as_it_is(
        ledger: Ledger, runner: Callable[..., CicdRunner], sample: Sample) -> None:
    built = runner()
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    ledger.update_state(state_key(dispatch.request_id),
                        lambda _: {"status": "done", "since_s": 5.0, "run_id": "",
                                   "run_url": ""})
    assert built.dispatch(plan).detail == compact(
        {**base(dispatch), "outcome": "done", "earlierDelivery": True})


def test_a_failed_state_is_reported_and_never_sent(github: FakeGitHub, ledger: Ledger,
                                                   runner: Callable[..., CicdRunner],
                                                   sample: Sample) -> None:
    built = runner()
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    ledger.update_state(state_key(dispatch.request_id),
                        lambda _: {"status": "failed", "error": "checked by hand",
                                   "unknown": True})
    result = CicdRunner(built.settings, ledger, {}).dispatch(plan)
    assert result == ActionResult(
        Outcome.FAILED, "CI/CD run not started (rule 'release'): checked by hand",
        compact({**base(dispatch), "outcome": "failed", "error": "checked by hand",
                 "unknown": True}))
    ledger.update_state(state_key(dispatch.request_id), lambda _: {"status": "failed"})
    (bare,) = json.loads(built.dispatch(plan).detail)["dispatches"]
    assert bare == {**base(dispatch), "outcome": "failed", "error": "", "unknown": True}
    assert github.requests == []


# -- an earlier request got no answer ------------------------------------------------------------

def test_a_lost_answer_is_reconciled_with_the_run_it_started(
        github: FakeGitHub, ledger: Ledger, clock: Clock, runner: Callable[..., CicdRunner],
        sample: Sample) -> None:
    built = runner()
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    since = clock.now - 30
    lose_the_answer(built, ledger, dispatch, since)
    (run,) = github.runs_of(REPO)
    url = f"https://github.com/{REPO}/actions/runs/{run.id}"
    assert built.dispatch(plan) == ActionResult(Outcome.DONE, plan.summary(), compact(
        {**base(dispatch), "outcome": "done", "runId": str(run.id), "runUrl": url,
         "reconciled": True}))
    # settled with the intent's time, not the lookup's
    assert state_of(ledger, dispatch) == {"status": "done", "since_s": since,
                                          "run_id": str(run.id), "run_url": url}
    assert len(github.requests_matching("POST", DISPATCHES)) == 1


@pytest.mark.parametrize(("grace", "shown"), [("120", "120"), ("90.5", "90.5")])
def test_within_the_grace_a_run_not_listed_yet_is_waited_for(
        github: FakeGitHub, ledger: Ledger, clock: Clock, runner: Callable[..., CicdRunner],
        sample: Sample, grace: str, shown: str) -> None:
    built = runner(AMLEVENTS_CICD_RECONCILE_GRACE_S=grace)
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    since = clock.now - float(grace) + 0.5  # half a second before the grace ends
    pending_only(ledger, dispatch, since)
    error = (f"the request to start {WHERE} at {utc_iso(since)} got no answer and its run is not "
             f"listed yet; looking again until AMLEVENTS_CICD_RECONCILE_GRACE_S={shown} s have "
             "passed")
    assert built.dispatch(plan) == ActionResult(Outcome.RETRY, "will retry", compact(
        {**base(dispatch), "outcome": "retry", "error": error}))
    assert state_of(ledger, dispatch) == {"status": "pending", "since_s": since}
    assert github.requests_matching("POST") == [] and len(github.requests_matching("GET")) == 1


def test_once_the_grace_is_over_a_request_that_never_started_is_sent(
        github: FakeGitHub, ledger: Ledger, clock: Clock, runner: Callable[..., CicdRunner],
        sample: Sample) -> None:
    built = runner()
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    since = clock.now - 120  # exactly the grace: over
    pending_only(ledger, dispatch, since)
    lose_the_answer(built, ledger, plan_for(built, sample, "another-event").dispatches[0], since)
    result = built.dispatch(plan)
    (_other, mine) = github.runs_of(REPO)
    assert dispatch.request_id in mine.display_title
    url = f"https://github.com/{REPO}/actions/runs/{mine.id}"
    assert result == ActionResult(Outcome.DONE, plan.summary(), compact(
        {**base(dispatch), "outcome": "done", "runId": str(mine.id), "runUrl": url}))
    # a new intent, from now
    assert state_of(ledger, dispatch) == {"status": "done", "since_s": clock.now,
                                          "run_id": str(mine.id), "run_url": url}


def test_unnamed_runs_since_then_mean_it_cannot_tell(
        github: FakeGitHub, ledger: Ledger, clock: Clock, runner: Callable[..., CicdRunner],
        sample: Sample) -> None:
    built = runner(UNNAMED)
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    since = clock.now - 200
    lose_the_answer(built, ledger, dispatch, since)
    lose_the_answer(built, ledger, dispatch, since)  # two runs titled "Unnamed"
    error = (f"the request to start GitHub workflow unnamed.yml in contoso/ml-release on main at "
             f"{utc_iso(since)} got no answer; no run names its request id "
             f"{dispatch.request_id}, but 2 run(s) since then name no request id at all, so one "
             "of them may be it (put the request id in the run name: docs/cicd.md)" + BY_HAND)
    assert built.dispatch(plan) == ActionResult(
        Outcome.FAILED, f"CI/CD run not started (rule 'release'): {error}"[:300],
        compact({**base(dispatch), "outcome": "failed", "error": error, "unknown": True}))
    # stored under this dispatch's key: a redelivery reads it back and sends nothing
    assert state_of(ledger, dispatch) == {"status": "failed", "error": error, "unknown": True}
    posts = len(github.requests_matching("POST"))
    (again,) = json.loads(built.dispatch(plan).detail)["dispatches"]
    assert again == {**base(dispatch), "outcome": "failed", "error": error, "unknown": True}
    assert len(github.requests_matching("POST")) == posts


def test_without_a_request_id_a_lost_answer_cannot_be_looked_up(
        github: FakeGitHub, ledger: Ledger, clock: Clock, runner: Callable[..., CicdRunner],
        sample: Sample) -> None:
    built = runner(NO_REQUEST_ID)
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    since = clock.now - 5
    pending_only(ledger, dispatch, since)
    error = (f"the request to start {WHERE} at {utc_iso(since)} got no answer, and the rule "
             "passes no request id, so its run cannot be looked up" + BY_HAND)
    assert built.dispatch(plan).detail == compact(
        {**base(dispatch), "outcome": "failed", "error": error, "unknown": True})
    assert state_of(ledger, dispatch) == {"status": "failed", "error": error, "unknown": True}
    assert github.requests == []


def test_a_lookup_github_refuses_fails_this_dispatch_and_keeps_the_intent(
        github: FakeGitHub, ledger: Ledger, clock: Clock, runner: Callable[..., CicdRunner],
        sample: Sample) -> None:
    built = runner()
    plan = plan_for(built, sample)
    (dispatch,) = plan.dispatches
    since = clock.now - 10
    pending_only(ledger, dispatch, since)
    github.fail_next("GET", r"/runs$", 404, body={"message": "Not Found"})
    error = ("GitHub answered 404 to listing the runs of contoso/ml-release: Not Found (check the "
             "repository and the workflow, and that the token can see them)")
    assert built.dispatch(plan) == ActionResult(
        Outcome.FAILED, f"CI/CD run not started (rule 'release'): {error}",
        compact({**base(dispatch), "outcome": "failed", "error": error}))
    assert state_of(ledger, dispatch) == {"status": "pending", "since_s": since}
    assert github.requests_matching("POST") == []


# -- several rules ---------------------------------------------------------------------------------

def test_two_rules_done_are_summed_up_in_one_line(github: FakeGitHub,
                                                  runner: Callable[..., CicdRunner],
                                                  sample: Sample) -> None:
    built = runner(RELEASE, NOTIFY_OPS)
    plan = plan_for(built, sample)
    result = built.dispatch(plan)
    assert (result.outcome, result.action) == (Outcome.DONE, (
        f"start 2 CI/CD runs: {WHERE}; GitHub repository_dispatch 'model-registered' to "
        "contoso/ops"))
    release, ops = plan.dispatches
    (run,) = github.runs_of(REPO)
    assert result.detail == compact(
        {**base(release), "outcome": "done", "runId": str(run.id),
         "runUrl": f"https://github.com/{REPO}/actions/runs/{run.id}"},
        {**base(ops), "outcome": "done"})


def test_one_failed_rule_fails_the_row_after_the_others_ran(
        github: FakeGitHub, runner: Callable[..., CicdRunner], sample: Sample) -> None:
    github.fail_next("POST", r"/repos/contoso/ops/dispatches$", 404, body={"message": "Not Found"})
    built = runner(RELEASE, NOTIFY_OPS)
    plan = plan_for(built, sample)
    result = built.dispatch(plan)
    error = ("GitHub answered 404 to repository_dispatch to contoso/ops: Not Found (check the "
             "repository and the workflow, and that the token can see them)")
    assert (result.outcome, result.action) == (
        Outcome.FAILED, f"CI/CD run not started (rule 'tell ops'): {error}")
    assert [d["outcome"] for d in json.loads(result.detail)["dispatches"]] == ["done", "failed"]
    assert len(github.runs_of(REPO)) == 1


def test_a_retry_wins_over_a_failure_and_the_first_failure_is_named(
        github: FakeGitHub, runner: Callable[..., CicdRunner], sample: Sample) -> None:
    github.fail_next("POST", DISPATCHES, 422, body={"message": "first"})
    github.fail_next("POST", r"/repos/contoso/ops/dispatches$", 422, body={"message": "second"})
    built = runner(RELEASE, NOTIFY_OPS)
    plan = plan_for(built, sample)
    both_failed = built.dispatch(plan)
    assert both_failed.action == ("CI/CD run not started (rule 'release'): GitHub answered 422 "
                                  "to workflow_dispatch to contoso/ml-release: first")
    github.fail_next("POST", DISPATCHES, 422, body={"message": "refused"})
    github.fail_next("POST", r"/repos/contoso/ops/dispatches$", 503)
    mixed = built.dispatch(plan)
    assert (mixed.outcome, mixed.action) == (Outcome.RETRY, "will retry")
    assert [d["outcome"] for d in json.loads(mixed.detail)["dispatches"]] == ["failed", "retry"]
