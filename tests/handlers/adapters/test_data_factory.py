"""The Data Factory runner: the REAL DataFactoryManagementClient over HTTPS to the shared fake ARM,
through the real Dispatcher with AMLEVENTS_DRY_RUN_RETRAIN=false and managed identity."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from handlers.adapters.data_factory import build_runner, state_key
from handlers.adapters.retry_after import retry_after_s
from handlers.errors import PermanentError, RetryableError, SettingError
from handlers.events.parse import DatasetDriftDetected, parse_event
from handlers.outcome import Outcome
from handlers.retrain.decide import decide
from handlers.retrain.plan import RetrainPlan
from handlers.retrain.settings import (
    ARM_ENDPOINT,
    COOLDOWN_S,
    MONITOR_THRESHOLDS,
    PARAMETER_NAMES,
    READ_RETRIES,
    RECONCILE_GRACE_S,
    ROUTES,
    TIMEOUT_S,
    RetrainSettings,
)
from handlers.runtime.dispatch import Dispatcher, DispatchResult
from handlers.runtime.routing import ON_DRIFT_DETECTED
from tests.fakes.arm import FakeArm, fake_arm_fixture
from tests.fakes.arm_adf import AMLEVENTS_PARAMETERS

Sample = Callable[[str], dict[str, Any]]
FACTORY, PIPELINE, OTHER_PIPELINE = "adf-amlevents", "retrain-model", "retrain-other"
MONITOR_ID = "01d29aa4-e6a4-470a-9ef3-66660d21f8ef"
FACTORY_PATH = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                r"Microsoft\.DataFactory/factories/(?P<factory>[^/]+)")
CREATE = rf"/pipelines/{PIPELINE}/createRun$"
QUERY = r"/queryPipelineRuns$"


# -- fixtures and helpers ------------------------------------------------------------------

def _pipelines(fake: FakeArm) -> None:
    """The retraining pipelines, declaring the parameters amlevents passes (as the docs ask)."""
    fake.adf.add_pipeline(FACTORY, PIPELINE, parameters=AMLEVENTS_PARAMETERS)
    fake.adf.add_pipeline(FACTORY, OTHER_PIPELINE, parameters=AMLEVENTS_PARAMETERS)
    fake.adf.page_size = 1  # small pages: the runner must follow continuation tokens


arm = fake_arm_fixture(_pipelines)


def target(arm: FakeArm, pipeline: str = PIPELINE) -> dict[str, str]:
    return {"subscription": arm.subscription_id, "resourceGroup": arm.resource_group,
            "factory": FACTORY, "pipeline": pipeline}


@pytest.fixture
def live(arm: FakeArm, base_env: dict[str, str]) -> Callable[..., Dispatcher]:
    """A Dispatcher with real retraining against the fake: myDriftMonitor → PIPELINE."""
    def build(clock: Callable[[], float] = time.time, **overrides: str) -> Dispatcher:
        env = {**base_env, "AMLEVENTS_DRY_RUN_RETRAIN": "false", ARM_ENDPOINT: arm.url,
               ROUTES: json.dumps({"myDriftMonitor": target(arm)}), TIMEOUT_S: "1",
               READ_RETRIES: "0"}
        return Dispatcher({**env, **overrides}, clock=clock)
    return build


def drift(sample: Sample, event_id: str = "drift-1", **data: Any) -> dict[str, Any]:
    raw = sample("dataset_drift_detected")
    raw["id"] = event_id
    raw["data"].update(data)
    return raw


def deliver(dispatcher: Dispatcher, raw: dict[str, Any]) -> DispatchResult:
    return dispatcher.dispatch(raw, function=ON_DRIFT_DETECTED)


def run_id_of(result: DispatchResult) -> str:
    return str(json.loads(result.detail)["run_id"])


# -- tests ---------------------------------------------------------------------------------

def test_starts_the_run_with_event_parameters_and_a_managed_identity_token(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN a routed monitor WHEN the sample drift (0.835) arrives THEN one run is started
    result = deliver(live(), drift(sample))
    assert result.outcome is Outcome.DONE, result.detail
    [create] = arm.requests_matching("POST", CREATE)
    assert create.path == (f"/subscriptions/{arm.subscription_id}/resourceGroups/"
                           f"{arm.resource_group}/providers/Microsoft.DataFactory/factories/"
                           f"{FACTORY}/pipelines/{PIPELINE}/createRun")
    assert create.api_version == "2018-06-01"
    assert create.body == {
        "monitorName": "myDriftMonitor", "monitorId": MONITOR_ID,
        "driftRunId": f"{MONITOR_ID}_1571590300380",
        "baseDatasetId": "3c56d136-0f64-4657-a0e8-5162089a88a3",
        "targetDatasetId": "d7e74d2e-c972-4266-b5fb-6c9c182d2a74",
        "driftCoefficient": 0.8350349068479208, "windowStart": "2019-07-04T00:00:00+00:00",
        "windowEnd": "2019-07-05T00:00:00+00:00",
        "amleventsRequestId": json.loads(result.detail)["request_id"]}
    assert create.bearer_token and all(r.bearer_token for r in arm.requests)
    assert arm.token_requests[0].query["resource"].rstrip("/") == arm.url  # scope of our endpoint
    [run] = arm.adf.runs()
    assert run_id_of(result) == run.run_id and run.run_id in result.detail
    assert PIPELINE in result.action and "0.835" in result.action


def test_below_threshold_touches_nothing(arm: FakeArm, live: Callable[..., Dispatcher],
                                        sample: Sample) -> None:
    strict = live(**{MONITOR_THRESHOLDS: json.dumps({"myDriftMonitor": 0.9})})
    result = deliver(strict, drift(sample))
    assert result.outcome is Outcome.SKIPPED and "0.9000" in result.detail
    assert arm.requests == [] and arm.adf.runs() == []


def test_routing_sends_each_monitor_to_its_pipeline_and_skips_the_unrouted(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = live(**{ROUTES: json.dumps({"myDriftMonitor": target(arm),
                                             "otherMonitor": target(arm, OTHER_PIPELINE)})})
    first = deliver(dispatcher, drift(sample, "a"))
    other = deliver(dispatcher, drift(sample, "b", DataDriftName="otherMonitor",
                                      DataDriftId="22222222-0000-0000-0000-000000000000"))
    unrouted = deliver(dispatcher, drift(sample, "c", DataDriftName="lonelyMonitor",
                                         DataDriftId="33333333-0000-0000-0000-000000000000"))
    assert (first.outcome, other.outcome) == (Outcome.DONE, Outcome.DONE)
    assert [r.pipeline for r in arm.adf.runs()] == [PIPELINE, OTHER_PIPELINE]
    assert unrouted.outcome is Outcome.SKIPPED and "lonelyMonitor" in unrouted.detail
    assert len(arm.requests_matching("POST", "/createRun$")) == 2


def test_in_progress_run_refuses_a_second_one_until_it_ends(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = live()
    started = run_id_of(deliver(dispatcher, drift(sample, "first")))
    for status in ("Queued", "InProgress"):
        arm.adf.set_run_status(started, status)
        refused = deliver(dispatcher, drift(sample, f"while-{status}"))
        assert refused.outcome is Outcome.SKIPPED
        assert started in refused.detail and status in refused.detail
    assert arm.requests_matching("GET", rf"/pipelineruns/{started}$")
    arm.adf.set_run_status(started, "Succeeded")
    after = deliver(dispatcher, drift(sample, "after"))
    assert after.outcome is Outcome.DONE and run_id_of(after) != started
    assert len(arm.adf.runs()) == 2


def test_canceling_run_blocks_a_new_one(arm: FakeArm, live: Callable[..., Dispatcher],
                                        sample: Sample) -> None:
    # GIVEN the monitor's last run is being cancelled (Canceling is not final in ADF)
    dispatcher = live()
    started = run_id_of(deliver(dispatcher, drift(sample, "first")))
    arm.adf.set_run_status(started, "Canceling")
    # WHEN new drift arrives THEN no second run starts while it still cancels
    refused = deliver(dispatcher, drift(sample, "while-canceling"))
    assert refused.outcome is Outcome.SKIPPED, refused.detail
    assert started in refused.detail and "Canceling" in refused.detail
    arm.adf.set_run_status(started, "Cancelled")
    assert deliver(dispatcher, drift(sample, "after")).outcome is Outcome.DONE
    assert len(arm.adf.runs()) == 2


def test_cooldown_skips_until_it_has_passed(arm: FakeArm, live: Callable[..., Dispatcher],
                                           sample: Sample) -> None:
    now = [time.time()]
    dispatcher = live(clock=lambda: now[0], **{COOLDOWN_S: "3600"})
    started = run_id_of(deliver(dispatcher, drift(sample, "first")))
    arm.adf.set_run_status(started, "Succeeded")
    now[0] += 600
    cooling = deliver(dispatcher, drift(sample, "soon"))
    assert cooling.outcome is Outcome.SKIPPED
    assert "cooldown" in cooling.detail and started in cooling.detail
    assert COOLDOWN_S in cooling.detail
    now[0] += 3600
    assert deliver(dispatcher, drift(sample, "later")).outcome is Outcome.DONE
    assert len(arm.adf.runs()) == 2


def test_redelivery_of_a_done_event_starts_nothing(arm: FakeArm, live: Callable[..., Dispatcher],
                                                  sample: Sample) -> None:
    dispatcher = live()
    first = deliver(dispatcher, drift(sample))
    again = deliver(dispatcher, drift(sample))
    assert first.outcome is Outcome.DONE and again.duplicate and again.detail == first.detail
    assert len(arm.requests_matching("POST", CREATE)) == 1


def test_runner_answers_a_replayed_plan_from_ledger_state(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # A delivery whose outcome never reached the ledger (host died) reaches the runner again.
    dispatcher = live()
    event = parse_event(drift(sample))
    assert isinstance(event, DatasetDriftDetected)
    plan = decide(event, RetrainSettings.from_mapping(dispatcher.env))
    assert isinstance(plan, RetrainPlan)
    runner = build_runner(RetrainSettings.from_mapping(dispatcher.env), dispatcher.ledger)
    first, replay = runner.start(plan), runner.start(plan)
    assert replay.outcome is Outcome.DONE
    assert json.loads(replay.detail)["run_id"] == json.loads(first.detail)["run_id"]
    assert len(arm.requests_matching("POST", CREATE)) == 1


def test_accepted_but_timed_out_is_reconciled_without_a_second_run(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample,
        backend_env: dict[str, str]) -> None:
    # GIVEN ADF accepts createRun but answers after our 1 s timeout (each ledger store in turn)
    arm.adf.accept_then_time_out(PIPELINE, seconds=3)
    dispatcher = live(**backend_env)
    first = deliver(dispatcher, drift(sample))
    assert first.outcome is Outcome.RETRY and "no answer" in first.detail
    [created] = arm.adf.runs()
    # an unrelated run of the same pipeline, so the lookup must match on the request id
    deliver(live(**{ROUTES: json.dumps({"otherMonitor": target(arm)})}),
            drift(sample, "noise", DataDriftName="otherMonitor", DataDriftId="other-id"))
    # WHEN Event Grid redelivers THEN the runner finds the run by its request id: no second run
    again = deliver(dispatcher, drift(sample))
    assert again.outcome is Outcome.DONE, again.detail
    assert run_id_of(again) == created.run_id and json.loads(again.detail)["reconciled"]
    assert len(arm.adf.runs(PIPELINE)) == 2  # the lost-answer run and the unrelated one
    assert len(arm.requests_matching("POST", CREATE)) == 2  # first delivery + the unrelated one
    queries = arm.requests_matching("POST", QUERY)
    assert queries and queries[0].body["filters"] == [
        {"operand": "PipelineName", "operator": "Equals", "values": [PIPELINE]}]
    state = dispatcher.ledger.get_state(state_key(MONITOR_ID)) or {}
    assert "pending" not in state and state["last"]["run_id"] == created.run_id


def test_a_lost_answer_still_counts_as_the_running_run_for_other_events(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    arm.adf.accept_then_time_out(PIPELINE, seconds=3)
    dispatcher = live()
    assert deliver(dispatcher, drift(sample, "first")).outcome is Outcome.RETRY
    [created] = arm.adf.runs()
    later = deliver(dispatcher, drift(sample, "second"))
    assert later.outcome is Outcome.SKIPPED and created.run_id in later.detail
    assert len(arm.adf.runs()) == 1


def test_throttled_429_retries_with_retry_after_then_succeeds(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    arm.fail_next("POST", CREATE, 429, headers={"Retry-After": "7"})
    dispatcher = live()
    throttled = deliver(dispatcher, drift(sample))
    assert throttled.outcome is Outcome.RETRY and throttled.should_retry
    assert "429" in throttled.detail and "Retry-After 7" in throttled.detail
    assert arm.adf.runs() == []
    again = deliver(dispatcher, drift(sample))
    assert again.outcome is Outcome.DONE and len(arm.adf.runs()) == 1


def test_503_is_retried_and_the_redelivery_starts_exactly_one_run(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    arm.fail_next("POST", CREATE, 503)
    dispatcher = live(**{READ_RETRIES: "2"})  # reads may be retried by azure-core; createRun not
    unavailable = deliver(dispatcher, drift(sample))
    assert unavailable.outcome is Outcome.RETRY and "503" in unavailable.detail
    assert len(arm.requests_matching("POST", CREATE)) == 1  # azure-core did not re-POST
    assert deliver(dispatcher, drift(sample)).outcome is Outcome.DONE
    assert len(arm.adf.runs()) == 1


def test_409_conflict_is_retried_with_its_retry_after_and_starts_one_run(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    arm.fail_next("POST", CREATE, 409, headers={"Retry-After": "5"}, body={"error": {
        "code": "Conflict", "message": "Another operation is in progress on pipeline retrain-model."}})
    dispatcher = live()
    conflict = deliver(dispatcher, drift(sample))
    assert conflict.outcome is Outcome.RETRY and conflict.should_retry, conflict.detail
    assert "409" in conflict.detail and "Retry-After 5" in conflict.detail
    # a 409 started nothing: the intent is dropped, so the redelivery starts the run at once
    assert "pending" not in (dispatcher.ledger.get_state(state_key(MONITOR_ID)) or {})
    assert deliver(dispatcher, drift(sample)).outcome is Outcome.DONE
    assert len(arm.adf.runs()) == 1 and not arm.requests_matching("POST", QUERY)


def test_undeclared_pipeline_parameter_fails_with_adf_message(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN a pipeline that does not declare monitorId (README: declare what you keep, or drop it)
    arm.adf.add_pipeline(FACTORY, "narrow", parameters={"amleventsRequestId": {"type": "String"}})
    dispatcher = live(**{ROUTES: json.dumps({"myDriftMonitor": target(arm, "narrow")})})
    result = deliver(dispatcher, drift(sample))
    assert result.outcome is Outcome.FAILED and "monitorId" in result.detail
    # AND dropping the parameters it does not declare makes it work
    names = {name: None for name in ("monitorName", "monitorId", "driftRunId", "baseDatasetId",
                                     "targetDatasetId", "driftCoefficient", "windowStart", "windowEnd")}
    narrow = live(**{ROUTES: json.dumps({"myDriftMonitor": target(arm, "narrow")}),
                     PARAMETER_NAMES: json.dumps(names)})
    assert deliver(narrow, drift(sample, "again")).outcome is Outcome.DONE
    assert arm.adf.runs("narrow")[0].parameters.keys() == {"amleventsRequestId"}


def test_400_fails_with_adf_message_and_leaves_no_intent(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    message = "The parameters driftCoefficient are not valid for pipeline retrain-model."
    arm.fail_next("POST", CREATE, 400, body={"error": {"code": "BadRequest", "message": message}})
    dispatcher = live()
    failed = deliver(dispatcher, drift(sample))
    assert failed.outcome is Outcome.FAILED and message in failed.detail
    assert "BadRequest" in failed.detail and not failed.should_retry
    assert "pending" not in (dispatcher.ledger.get_state(state_key(MONITOR_ID)) or {})


def test_unknown_pipeline_fails_with_adf_message(arm: FakeArm, live: Callable[..., Dispatcher],
                                                sample: Sample) -> None:
    missing = live(**{ROUTES: json.dumps({"myDriftMonitor": target(arm, "no-such-pipeline")})})
    result = deliver(missing, drift(sample))
    assert result.outcome is Outcome.FAILED and "Entity no-such-pipeline not found" in result.detail


def test_unreachable_arm_is_retryable(arm: FakeArm, live: Callable[..., Dispatcher],
                                      sample: Sample) -> None:
    closed = live(**{ARM_ENDPOINT: "https://127.0.0.1:9"})
    result = deliver(closed, drift(sample))
    assert result.outcome is Outcome.RETRY and arm.adf.runs() == []


def test_placeholder_plan_is_never_sent(arm: FakeArm, base_env: dict[str, str],
                                        sample: Sample) -> None:
    event = parse_event(drift(sample))
    assert isinstance(event, DatasetDriftDetected)
    plan = decide(event, RetrainSettings.from_mapping({}), dry_run=True)
    assert isinstance(plan, RetrainPlan) and plan.placeholder
    runner = build_runner(RetrainSettings.from_mapping({**base_env, ARM_ENDPOINT: arm.url}),
                          Dispatcher(base_env).ledger)
    with pytest.raises(SettingError) as caught:
        runner.start(plan)
    assert caught.value.setting == ROUTES and arm.requests == []


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "12"}, 12.0), ({"retry-after-ms": "1500"}, 1.5),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({}, None),
])
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(headers) == expected


def test_the_cooldown_ends_exactly_when_it_has_lasted(arm: FakeArm, live: Callable[..., Dispatcher],
                                                      sample: Sample) -> None:
    # GIVEN a run started at t, that succeeded, and a cooldown of 3600 s
    now = [time.time()]
    dispatcher = live(clock=lambda: now[0], **{COOLDOWN_S: "3600"})
    started = run_id_of(deliver(dispatcher, drift(sample, "first")))
    arm.adf.set_run_status(started, "Succeeded")
    # THEN at t + 3599 s another drift is skipped, and at t + 3600 s it starts a run
    now[0] += 3599
    assert deliver(dispatcher, drift(sample, "just-before")).outcome is Outcome.SKIPPED
    now[0] += 1
    assert deliver(dispatcher, drift(sample, "exactly")).outcome is Outcome.DONE
    assert len(arm.adf.runs()) == 2


def test_retry_after_as_a_future_http_date_is_the_seconds_until_then() -> None:
    import email.utils

    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 115 <= (retry_after_s({"Retry-After": later}) or 0) <= 120
    assert retry_after_s({"Retry-After": "not a date"}) is None


def test_throttled_with_retry_after_as_an_http_date(arm: FakeArm, live: Callable[..., Dispatcher],
                                                    sample: Sample) -> None:
    import email.utils

    arm.fail_next("POST", CREATE, 429, headers={
        "Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)})
    throttled = deliver(live(), drift(sample))
    assert throttled.outcome is Outcome.RETRY and "429" in throttled.detail
    assert re.search(r"Retry-After (2[5-9]|30)\b", throttled.detail), throttled.detail
    assert arm.adf.runs() == []


# -- whole messages, ledger state and request bodies ---------------------------------------------

T0 = 1_700_000_000.0  # a fixed clock (2023-11-14T22:13:20Z) where the test needs exact times
WHAT = f"createRun of pipeline {PIPELINE} in factory {FACTORY}"


def plan_for(dispatcher: Dispatcher, raw: dict[str, Any]) -> RetrainPlan:
    """The plan the dispatcher would hand the runner for this event."""
    event = parse_event(raw)
    assert isinstance(event, DatasetDriftDetected)
    plan = decide(event, RetrainSettings.from_mapping(dispatcher.env))
    assert isinstance(plan, RetrainPlan)
    return plan


def test_state_key_is_pinned_and_ignores_case_and_surrounding_spaces() -> None:
    # Existing ledger state must stay reachable: the key is a fixed hash of the lower-cased id.
    assert state_key(MONITOR_ID) == "retrain-monitor-51b2788c3736eaa4f6879f55c2fa756a"
    assert state_key("myDriftMonitor") == "retrain-monitor-c66f3a7a23d9b6a5f2bc85c88062c8ca"
    assert state_key("  MYDRIFTMONITOR \n") == state_key("mydriftmonitor") == state_key(
        "myDriftMonitor")


def test_placeholder_plan_error_names_the_setting_and_why(arm: FakeArm, base_env: dict[str, str],
                                                          sample: Sample) -> None:
    event = parse_event(drift(sample))
    assert isinstance(event, DatasetDriftDetected)
    plan = decide(event, RetrainSettings.from_mapping({}), dry_run=True)
    assert isinstance(plan, RetrainPlan)
    runner = build_runner(RetrainSettings.from_mapping({**base_env, ARM_ENDPOINT: arm.url}),
                          Dispatcher(base_env).ledger)
    with pytest.raises(SettingError) as caught:
        runner.start(plan)
    assert caught.value.message == "no Data Factory target is configured (placeholder plan)"
    assert str(caught.value) == (f"setting {ROUTES}: no Data Factory target is configured "
                                 "(placeholder plan)")


def test_done_detail_is_the_plan_with_the_run_id(arm: FakeArm, live: Callable[..., Dispatcher],
                                                 sample: Sample) -> None:
    dispatcher = live()
    plan = plan_for(dispatcher, drift(sample))
    result = deliver(dispatcher, drift(sample))
    [run] = arm.adf.runs()
    assert json.loads(result.detail) == {**json.loads(json.dumps(plan.as_dict())),
                                         "run_id": run.run_id}
    assert result.action == plan.summary()
    # the ledger remembers the run as the monitor's last, with no request still pending
    state = dispatcher.ledger.get_state(state_key(MONITOR_ID))
    assert state is not None and set(state) == {"last"}
    assert state["last"] == {"run_id": run.run_id, "request_id": plan.request_id,
                             "started_at_s": state["last"]["started_at_s"],
                             "target": target(arm)}


def test_redelivery_after_a_lost_outcome_answers_from_the_last_run(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = live()
    plan = plan_for(dispatcher, drift(sample))
    runner = build_runner(RetrainSettings.from_mapping(dispatcher.env), dispatcher.ledger)
    first = runner.start(plan)
    replay = runner.start(plan)
    [run] = arm.adf.runs()
    assert json.loads(first.detail)["run_id"] == run.run_id
    assert json.loads(replay.detail) == {**json.loads(first.detail), "reconciled": True}
    # answered from the ledger: no status read, no query, no second createRun
    assert [r.method for r in arm.requests] == ["POST"]


def test_errors_of_createrun_are_reported_whole(arm: FakeArm, live: Callable[..., Dispatcher],
                                                sample: Sample) -> None:
    message = "The parameters driftCoefficient are not valid for pipeline retrain-model."
    arm.fail_next("POST", CREATE, 400, body={"error": {"code": "BadRequest", "message": message}})
    dispatcher = live()
    failed = deliver(dispatcher, drift(sample, "bad"))
    # ADF's own code and message, not the SDK's "(BadRequest) ... Code: ... Message: ..." text
    assert failed.detail == f"PermanentError: {WHAT}: Data Factory answered 400: BadRequest: {message}"
    arm.fail_next("POST", CREATE, 429, headers={"Retry-After": "7"})
    throttled = deliver(dispatcher, drift(sample, "throttled"))
    assert throttled.detail == (f"RetryableError: {WHAT}: Data Factory answered 429 (Retry-After 7 s): "
                                "TooManyRequests: Injected 429 by the fake ARM.")
    arm.fail_next("POST", CREATE, 503)
    unavailable = deliver(dispatcher, drift(sample, "unavailable"))
    assert unavailable.detail == (f"RetryableError: {WHAT}: Data Factory answered 503: "
                                  "ServiceUnavailable: Injected 503 by the fake ARM.")
    arm.fail_next("POST", CREATE, 403, body={"error": {"code": "AuthorizationFailed",
                                                       "message": "No access."}})
    forbidden = deliver(dispatcher, drift(sample, "forbidden"))
    assert forbidden.detail == (f"PermanentError: {WHAT}: Data Factory answered 403: "
                                "AuthorizationFailed: No access. (the identity needs Data Factory "
                                "Contributor on the factory)")
    assert (failed.outcome, throttled.outcome, unavailable.outcome, forbidden.outcome) == (
        Outcome.FAILED, Outcome.RETRY, Outcome.RETRY, Outcome.FAILED)
    assert arm.adf.runs() == []


def test_an_answer_without_run_id_is_retried(arm: FakeArm, live: Callable[..., Dispatcher],
                                             sample: Sample) -> None:
    arm.fail_next("POST", CREATE, 200, body={})
    result = deliver(live(), drift(sample))
    assert result.outcome is Outcome.RETRY
    assert result.detail == f"RetryableError: createRun of pipeline {PIPELINE} answered without runId"


def test_unreachable_arm_message(live: Callable[..., Dispatcher], sample: Sample) -> None:
    result = deliver(live(**{ARM_ENDPOINT: "https://127.0.0.1:9"}), drift(sample))
    assert re.fullmatch(rf"RetryableError: {WHAT}: Data Factory could not be reached: .+",
                        result.detail, re.DOTALL), result.detail


def test_lost_answer_message_says_a_redelivery_checks(arm: FakeArm, live: Callable[..., Dispatcher],
                                                      sample: Sample) -> None:
    arm.adf.accept_then_time_out(PIPELINE, seconds=3)
    result = deliver(live(), drift(sample))
    assert re.fullmatch(rf"RetryableError: {WHAT}: no answer from Data Factory \(.+\); a redelivery "
                        r"checks whether it took effect", result.detail, re.DOTALL), result.detail


def test_an_ambiguous_5xx_keeps_the_intent_until_the_grace_period_ends(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN createRun answered 500 (it may or may not have started a run) at T0
    now = [T0]
    dispatcher = live(clock=lambda: now[0])
    arm.fail_next("POST", CREATE, 500)
    assert deliver(dispatcher, drift(sample, "first")).outcome is Outcome.RETRY
    state = dispatcher.ledger.get_state(state_key(MONITOR_ID)) or {}
    plan = plan_for(dispatcher, drift(sample, "first"))
    assert state == {"pending": {"request_id": plan.request_id, "since_s": T0,
                                 "target": target(arm), "request_parameter": "amleventsRequestId",
                                 "drift_run_id": f"{MONITOR_ID}_1571590300380"}}
    # WHEN the same event and another one come back within the 120 s grace period
    now[0] += 119
    again, other = deliver(dispatcher, drift(sample, "first")), deliver(dispatcher,
                                                                       drift(sample, "other"))
    # THEN both wait, each told whose request it waits for
    recorded = "2023-11-14T22:13:20.000+00:00"
    assert again.detail == (f"RetryableError: this event's run request for monitor myDriftMonitor "
                            f"(intent recorded {recorded}) is not visible in Data Factory yet; "
                            "will retry")
    assert other.detail == (f"RetryableError: another delivery's run request for monitor "
                            f"myDriftMonitor (intent recorded {recorded}) is not visible in Data "
                            "Factory yet; will retry")
    assert arm.adf.runs() == []
    # AND once the grace period is over, the never-started request is replaced by a real run
    now[0] += 1
    assert deliver(dispatcher, drift(sample, "first")).outcome is Outcome.DONE
    assert len(arm.adf.runs()) == 1


def test_reconcile_query_body_and_paging(arm: FakeArm, live: Callable[..., Dispatcher],
                                         sample: Sample) -> None:
    # GIVEN two runs of the pipeline for another monitor, then a lost answer (one run a page)
    noise = live(**{ROUTES: json.dumps({"otherMonitor": target(arm)})})
    for name in ("noise-1", "noise-2"):
        deliver(noise, drift(sample, name, DataDriftName="otherMonitor", DataDriftId=name))
    now = [time.time()]
    arm.adf.accept_then_time_out(PIPELINE, seconds=3)
    dispatcher = live(clock=lambda: now[0])
    since = now[0]
    assert deliver(dispatcher, drift(sample)).outcome is Outcome.RETRY
    created = arm.adf.runs()[-1]
    arm.clear_requests()
    # WHEN the event comes back 10 s later
    now[0] += 10
    again = deliver(dispatcher, drift(sample))
    assert again.outcome is Outcome.DONE and run_id_of(again) == created.run_id
    # THEN the window is the intent's time to now, widened by 300 s each way, and pages follow
    queries = [r.body for r in arm.requests_matching("POST", QUERY)]
    window = {"lastUpdatedAfter": _iso_z(since - 300), "lastUpdatedBefore": _iso_z(now[0] + 300),
              "filters": [{"operand": "PipelineName", "operator": "Equals",
                           "values": [PIPELINE]}]}
    assert queries == [window, {**window, "continuationToken": "1"},
                       {**window, "continuationToken": "2"}]
    assert not arm.requests_matching("POST", CREATE)


def _iso_z(epoch_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat().replace("+00:00", "Z")


def test_pile_up_and_cooldown_messages(arm: FakeArm, live: Callable[..., Dispatcher],
                                       sample: Sample) -> None:
    now = [time.time()]
    dispatcher = live(clock=lambda: now[0], **{COOLDOWN_S: "3600"})
    started = run_id_of(deliver(dispatcher, drift(sample, "first")))
    busy = deliver(dispatcher, drift(sample, "busy"))
    assert (busy.outcome, busy.action, busy.detail) == (
        Outcome.SKIPPED, "retraining already running",
        f"the last retraining run {started} for monitor myDriftMonitor is Queued; "
        "not starting another")
    arm.adf.set_run_status(started, "Failed")
    now[0] += 600.4
    cooling = deliver(dispatcher, drift(sample, "cooling"))
    assert (cooling.outcome, cooling.action, cooling.detail) == (
        Outcome.SKIPPED, "retraining cooling down",
        f"cooldown: the last retraining run {started} for monitor myDriftMonitor started 600 s ago "
        f"({COOLDOWN_S}=3600)")


def test_a_last_run_that_is_gone_does_not_block(arm: FakeArm, live: Callable[..., Dispatcher],
                                                sample: Sample) -> None:
    # GIVEN the ledger's last run no longer exists in the factory (404 on its status)
    dispatcher = live()
    first = deliver(dispatcher, drift(sample, "first"))
    arm.fail_next("GET", r"/pipelineruns/[^/]+$", 404, body={"error": {
        "code": "PipelineRunNotFound", "message": "Pipeline run not found."}})
    # THEN it cannot be running: the next drift starts a run
    second = deliver(dispatcher, drift(sample, "second"))
    assert second.outcome is Outcome.DONE and run_id_of(second) != run_id_of(first)
    # AND any other refusal of that read is an error, not a free pass
    arm.fail_next("GET", r"/pipelineruns/[^/]+$", 403, body={"error": {
        "code": "AuthorizationFailed", "message": "No access."}})
    third = deliver(dispatcher, drift(sample, "third"))
    assert third.detail == (f"PermanentError: get pipeline run {run_id_of(second)}: Data Factory "
                            "answered 403: AuthorizationFailed: No access. (the identity needs "
                            "Data Factory Contributor on the factory)")
    assert len(arm.adf.runs()) == 2


def test_a_reconciled_older_run_does_not_replace_a_newer_last_run(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN run A (older) and run B (newer); the ledger, left by racing deliveries, still has
    # A's request pending while B is recorded as the monitor's last run
    now = [time.time()]
    dispatcher = live(clock=lambda: now[0])
    runner = build_runner(RetrainSettings.from_mapping(dispatcher.env), dispatcher.ledger)
    plan_a, plan_b, plan_c = (plan_for(dispatcher, drift(sample, name)) for name in "abc")
    run_a = json.loads(runner.start(plan_a).detail)["run_id"]
    arm.adf.set_run_status(run_a, "Succeeded")
    key = state_key(MONITOR_ID)
    intent_a = {"request_id": plan_a.request_id, "since_s": now[0], "target": target(arm),
                "request_parameter": "amleventsRequestId", "drift_run_id": plan_a.drift_run_id}
    now[0] += 60
    run_b = json.loads(runner.start(plan_b).detail)["run_id"]  # B is still Queued
    last_b = (dispatcher.ledger.get_state(key) or {})["last"]
    assert last_b["run_id"] == run_b
    dispatcher.ledger.update_state(key, lambda current: {**(current or {}), "pending": intent_a})
    # WHEN another event arrives THEN A's request is settled, B stays the last run, and B blocks it
    skipped = runner.start(plan_c)
    assert skipped.detail == (f"the last retraining run {run_b} for monitor myDriftMonitor is "
                              "Queued; not starting another")
    assert dispatcher.ledger.get_state(key) == {"last": last_b}
    assert len(arm.adf.runs()) == 2


def test_the_client_uses_our_endpoint_retries_and_timeouts(arm: FakeArm,
                                                           base_env: dict[str, str]) -> None:
    settings = RetrainSettings.from_mapping({**base_env, ARM_ENDPOINT: arm.url, TIMEOUT_S: "4",
                                             READ_RETRIES: "3"})
    runner = build_runner(settings, Dispatcher(base_env).ledger)
    client = runner._client(arm.subscription_id)
    assert runner._client(arm.subscription_id) is client  # one client per subscription
    config = client._config
    assert config.subscription_id == arm.subscription_id
    assert config.credential_scopes == [f"{arm.url}/.default"]
    assert (config.retry_policy.total_retries, config.retry_policy.backoff_factor) == (3, 0.5)
    connection = client._client._pipeline._transport.connection_config
    assert (connection.timeout, connection.read_timeout) == (4.0, 4.0)


@pytest.mark.parametrize(("grace", "timeout", "expected"), [
    ("0", "5", 5.0), ("120", "1", 120.0), (None, "1", 120.0)])
def test_grace_period_is_the_longer_of_the_grace_setting_and_the_timeout(
        base_env: dict[str, str], grace: str | None, timeout: str, expected: float) -> None:
    # a createRun that timed out on our side may land up to its own timeout later
    env = {**base_env, TIMEOUT_S: timeout}
    if grace is not None:
        env[RECONCILE_GRACE_S] = grace
    runner = build_runner(RetrainSettings.from_mapping(env), Dispatcher(base_env).ledger)
    assert runner.grace_s == expected


def test_an_unreachable_factory_leaves_no_intent(live: Callable[..., Dispatcher],
                                                 sample: Sample) -> None:
    # no request was sent, so nothing can have started: the redelivery need not reconcile
    dispatcher = live(**{ARM_ENDPOINT: "https://127.0.0.1:9"})
    assert deliver(dispatcher, drift(sample)).outcome is Outcome.RETRY
    assert dispatcher.ledger.get_state(state_key(MONITOR_ID)) == {}


def test_adf_message_prefers_adf_error_code_and_message() -> None:
    from types import SimpleNamespace

    from handlers.adapters.data_factory import adf_message

    def error(code: str | None, message: str | None) -> SimpleNamespace:
        return SimpleNamespace(error=SimpleNamespace(code=code, message=message), message="SDK text")

    assert adf_message(error("BadRequest", "Bad parameter.")) == "BadRequest: Bad parameter."
    assert adf_message(error(None, "Bad parameter.")) == "Bad parameter."
    assert adf_message(error("BadRequest", None)) == "SDK text"
    assert adf_message(SimpleNamespace(message="")) == "namespace(message='')"
    # an error object without one of the fields (older SDKs' models) is read leniently
    assert adf_message(SimpleNamespace(error=SimpleNamespace(message="Only a message."))) == \
        "Only a message."
    assert adf_message(SimpleNamespace(error=SimpleNamespace(code="Only a code"),
                                       message="SDK text")) == "SDK text"


def test_classify_a_token_failure_and_statuses() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from handlers.adapters.data_factory import classify

    no_token = classify("get pipeline run r1", ClientAuthenticationError(message="no identity"))
    assert (type(no_token), str(no_token)) == (
        RetryableError, "get pipeline run r1: no access token: no identity")
    for status, kind in ((408, RetryableError), (409, RetryableError), (429, RetryableError),
                         (499, PermanentError), (500, RetryableError), (401, PermanentError)):
        answered = classify("x", _answered(status))
        assert type(answered) is kind, status
    assert str(classify("x", _answered(408))) == "x: Data Factory answered 408: SDK text"
    assert str(classify("x", _answered(401))) == (
        "x: Data Factory answered 401: SDK text (the identity needs Data Factory Contributor on "
        "the factory)")
    assert str(classify("x", _answered(404))) == "x: Data Factory answered 404: SDK text"


def _answered(status: int) -> Any:
    """An SDK error with an HTTP status and no ARM error body (as azure-core raises it)."""
    from types import SimpleNamespace

    return SimpleNamespace(status_code=status, message="SDK text",
                           response=SimpleNamespace(status_code=status, headers={}))
