"""Retraining in Azure ML: the REAL azure-ai-ml MLClient over HTTPS to the shared fake ARM (and its
data plane), through the real Dispatcher with AMLEVENTS_DRY_RUN_RETRAIN=false and managed identity.

Model-monitor breaches (RunStatusChanged carrying the breach tag) submit one pipeline job from a
registered pipeline component, or invoke a batch endpoint once; v1 drift still starts its Data
Factory run; the recovery is recorded and nothing is done.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from handlers.adapters.azure_ml_jobs import (
    ACTIVE_STATUSES,
    AzureMlJobRunner,
    confirmation_key,
    ml_client_factory,
    state_key,
)
from handlers.events.parse import RunStatusChanged, parse_event
from handlers.outcome import Outcome
from handlers.retrain.decide import decide
from handlers.retrain.plan import RetrainPlan
from handlers.retrain.settings import (
    ARM_ENDPOINT,
    COOLDOWN_S,
    PARAMETER_NAMES,
    READ_RETRIES,
    ROUTES,
    TIMEOUT_S,
    RetrainSettings,
)
from handlers.runtime.dispatch import Dispatcher, DispatchResult
from handlers.runtime.routing import ON_DRIFT_DETECTED, ON_RUN_STATUS
from tests.fakes.arm import FakeArm, fake_arm_fixture
from tests.fakes.arm_adf import AMLEVENTS_PARAMETERS

Sample = Callable[[str], dict[str, Any]]
COMPONENT, ENDPOINT, FACTORY, PIPELINE = "retrain_fraud_model", "retrain-fraud", "adf-amlevents", "retrain"
SIGNAL = "credit_card_fraud_monitor_data_drift"
MONITOR = "credit_card_fraud_monitor"
RUN = "credit_card_fraud_monitor_data_drift_evaluate_5e8a0c"
BREACH_INPUTS = ("monitorName", "signalName", "driftRunId", "features", "violations", "windowEnd",
                 "amleventsRequestId")
INPUTS: dict[str, dict[str, Any]] = {name: {"type": "string"} for name in BREACH_INPUTS}
JOBS = r"/workspaces/[^/]+/jobs/(?P<job>[^/]+)$"
ML_API = "2024-01-01-preview"
BREACH_TAG = "azureml_modelmonitor_threshold_breached"


def _seed(fake: FakeArm) -> None:
    """Two versions of the retraining pipeline component (2 is the latest), a batch endpoint
    deploying it, and the Data Factory pipeline (breach parameters declared)."""
    for version in ("1", "2"):
        fake.ml.add_component(COMPONENT, version, inputs=INPUTS)
    fake.ml.add_batch_endpoint(ENDPOINT, component_id=f"{workspace_id(fake)}/components/{COMPONENT}"
                                                      "/versions/2")
    fake.adf.add_pipeline(FACTORY, PIPELINE, parameters={
        **AMLEVENTS_PARAMETERS, **{n: {"type": "String", "defaultValue": ""} for n in (
            "signalName", "features", "violations")}})


arm = fake_arm_fixture(_seed)


def workspace_id(fake: FakeArm) -> str:
    return (f"/subscriptions/{fake.subscription_id}/resourceGroups/{fake.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{fake.workspace_name}")


def component_target(fake: FakeArm, version: str | None = "2") -> str:
    base = f"{workspace_id(fake)}/components/{COMPONENT}"
    return f"{base}/versions/{version}" if version else base


def batch_target(fake: FakeArm) -> str:
    return f"{workspace_id(fake)}/batchEndpoints/{ENDPOINT}"


def adf_target(fake: FakeArm) -> dict[str, str]:
    return {"subscription": fake.subscription_id, "resourceGroup": fake.resource_group,
            "factory": FACTORY, "pipeline": PIPELINE}


@pytest.fixture
def live(arm: FakeArm, base_env: dict[str, str]) -> Callable[..., Dispatcher]:
    """A Dispatcher retraining for real against the fake (notifications stay a dry run): the
    monitor routed to the pipeline component, events from the fake's workspace allowed."""
    def build(clock: Callable[[], float] = time.time, **overrides: str) -> Dispatcher:
        env = {**base_env, "AMLEVENTS_ALLOWED_TOPICS": workspace_id(arm),
               "AMLEVENTS_DRY_RUN_RETRAIN": "false", ROUTES: json.dumps({MONITOR:
                                                                         component_target(arm)}),
               ARM_ENDPOINT: arm.url, TIMEOUT_S: "1", READ_RETRIES: "0"}
        return Dispatcher({**env, **overrides}, clock=clock)
    return build


def breach(sample: Sample, arm: FakeArm, event_id: str = "breach-1", *, signal: str = SIGNAL,
           run: str = RUN, status: str = "Failed", tagged: bool = True) -> dict[str, Any]:
    """The breach sample from the fake's workspace, as another event, signal or run."""
    raw = sample("model_monitor_breach")
    raw["id"], raw["topic"] = event_id, workspace_id(arm)
    data = raw["data"]
    data["runId"], data["runStatus"] = run, status
    message = data["runTags"][BREACH_TAG].replace(SIGNAL, signal)
    data["runTags"] = {BREACH_TAG: message} if tagged else {}
    return raw


def monitoring_run(arm: FakeArm, sample: Sample, run: str = RUN, status: str = "Failed") -> None:
    """The monitoring step run as Azure ML keeps it (failed, tagged with the breach)."""
    tags = sample("model_monitor_breach")["data"]["runTags"]
    arm.ml.add_run(run, status=status, tags=tags, experiment=MONITOR)


def deliver(dispatcher: Dispatcher, raw: dict[str, Any]) -> DispatchResult:
    return dispatcher.dispatch(raw, function=ON_RUN_STATUS)


def retrain_of(result: DispatchResult) -> DispatchResult:
    """The retraining concern's result (the home concern of RunStatusChanged is notify)."""
    [retrain] = [r for r in result.also if r.key.endswith("-retrain")]
    return retrain


def detail(result: DispatchResult) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(result.detail)
    return parsed


def puts(arm: FakeArm) -> list[Any]:
    return arm.requests_matching("PUT", JOBS)


def invokes(arm: FakeArm) -> list[Any]:
    return [r for r in arm.ml.dataplane_requests if r.method == "POST"]


# -- a breach submits exactly one pipeline job ----------------------------------------------------

def test_breach_submits_one_pipeline_job_named_after_the_event(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN the monitoring run failed on its threshold and the monitor routes to the component
    monitoring_run(arm, sample)
    # WHEN the breach arrives
    result = deliver(live(), breach(sample, arm))
    # THEN notify and retrain each acted once, and exactly one pipeline job was submitted
    assert result.outcome is Outcome.PLANNED  # notifications: dry run
    retrain = retrain_of(result)
    assert retrain.outcome is Outcome.DONE, retrain.detail
    facts = detail(retrain)
    [put] = puts(arm)
    name = facts["job_name"]
    assert name == f"amlevents-{facts['request_id']}" and put.path.endswith(f"/jobs/{name}")
    assert put.api_version == ML_API and put.bearer_token
    assert arm.issued(put.headers["x-azureml-token"])  # pipeline jobs carry the Azure ML token
    props = put.body["properties"]
    assert props["componentId"] == component_target(arm)
    assert props["experimentName"] == f"amlevents-retrain-{MONITOR}"
    inputs = {key: value["value"] for key, value in props["inputs"].items()}
    assert inputs["monitorName"] == MONITOR and inputs["signalName"] == SIGNAL
    assert inputs["driftRunId"] == RUN and inputs["features"] == "TransactionAmount,MerchantCategory"
    assert json.loads(inputs["violations"])[0] == {
        "feature": "TransactionAmount", "metric": "jensen_shannon_distance", "value": 0.41,
        "threshold": 0.1}
    assert inputs["windowEnd"] == "2024-06-03T00:12:47.3124512Z"
    assert inputs["amleventsRequestId"] == facts["request_id"]
    assert props["tags"]["amlevents.eventId"] == "breach-1"
    assert props["tags"]["amlevents.signal"] == SIGNAL
    assert props["tags"]["amlevents.monitoringRunId"] == RUN
    # the breach was confirmed against the monitoring run (a pipeline step: run history)
    assert facts["breach_confirmation"].startswith("confirmed")
    assert any(r.path.endswith(f"/runs/{RUN}") for r in arm.ml.dataplane_requests)
    [job] = arm.ml.jobs()
    assert job.name == name and job.status == "NotStarted" and job.inputs == inputs
    assert facts["breach"]["signal"] == SIGNAL and facts["job_status"] == "NotStarted"
    assert "TransactionAmount" in retrain.action and SIGNAL in retrain.action


def test_redelivery_submits_nothing_again(arm: FakeArm, live: Callable[..., Dispatcher],
                                          sample: Sample) -> None:
    monitoring_run(arm, sample)
    dispatcher = live()
    first = retrain_of(deliver(dispatcher, breach(sample, arm)))
    again = retrain_of(deliver(dispatcher, breach(sample, arm)))
    assert first.outcome is Outcome.DONE and again.duplicate and again.detail == first.detail
    assert len(puts(arm)) == 1 and len(arm.ml.jobs()) == 1


def test_a_replayed_plan_finds_its_job_by_name(arm: FakeArm, live: Callable[..., Dispatcher],
                                              sample: Sample) -> None:
    # A delivery whose outcome never reached the ledger (host died) reaches the runner again.
    monitoring_run(arm, sample)
    dispatcher = live()
    plan = decide(_typed(breach(sample, arm)), RetrainSettings.from_mapping(dispatcher.env))
    assert isinstance(plan, RetrainPlan)
    settings = RetrainSettings.from_mapping(dispatcher.env)
    runner = AzureMlJobRunner(settings, dispatcher.ledger, ml_client_factory(settings))
    first, replay = runner.start(plan), runner.start(plan)
    assert first.outcome is replay.outcome is Outcome.DONE
    assert json.loads(replay.detail)["reconciled"] is True
    assert len(puts(arm)) == 1 and len(arm.ml.jobs()) == 1


def test_a_lost_answer_gives_one_job(arm: FakeArm, live: Callable[..., Dispatcher],
                                     sample: Sample) -> None:
    # GIVEN the job PUT takes effect but its answer comes after the client gave up (1 s)
    monitoring_run(arm, sample)
    dispatcher = live()
    arm.delay_next("PUT", JOBS, seconds=3, process_first=True)
    lost = retrain_of(deliver(dispatcher, breach(sample, arm)))
    assert lost.outcome is Outcome.RETRY, lost.detail
    # WHEN Event Grid redelivers THEN the job is found by its name, not submitted again
    again = retrain_of(deliver(dispatcher, breach(sample, arm)))
    assert again.outcome is Outcome.DONE, again.detail
    assert detail(again)["reconciled"] is True
    assert len(arm.ml.jobs()) == 1


def test_concurrent_deliveries_give_one_job(arm: FakeArm, live: Callable[..., Dispatcher],
                                            sample: Sample) -> None:
    # GIVEN the same breach delivered twice at once, and a second signal of the same monitor
    monitoring_run(arm, sample)
    dispatcher = live()
    events = [breach(sample, arm), breach(sample, arm),
              breach(sample, arm, "breach-2", signal=f"{MONITOR}_prediction_drift")]
    results: list[DispatchResult] = []
    barrier = threading.Barrier(len(events))

    def send(raw: dict[str, Any]) -> None:
        barrier.wait()
        results.append(deliver(dispatcher, raw))

    threads = [threading.Thread(target=send, args=(raw,)) for raw in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # WHEN whatever had to be retried is redelivered (Event Grid does)
    for raw in events:
        deliver(dispatcher, raw)
    # THEN one job: the monitor's other event was folded into it
    [job] = arm.ml.jobs()
    assert len(puts(arm)) == 1
    outcomes = sorted(retrain_of(deliver(dispatcher, raw)).action for raw in events[1:])
    assert any(a.startswith("folded into retraining job " + job.name) for a in outcomes), outcomes


def test_latest_component_version_is_resolved(arm: FakeArm, live: Callable[..., Dispatcher],
                                              sample: Sample) -> None:
    # GIVEN a route to the component without a version (…/components/NAME: the latest)
    monitoring_run(arm, sample)
    arm.ml.add_component(COMPONENT, "3", inputs=INPUTS)
    dispatcher = live(**{ROUTES: json.dumps({MONITOR: component_target(arm, None)})})
    retrain = retrain_of(deliver(dispatcher, breach(sample, arm)))
    assert retrain.outcome is Outcome.DONE, retrain.detail
    [listing] = arm.requests_matching("GET", rf"/components/{COMPONENT}/versions$")
    assert listing.query["$orderBy"] == "createdtime desc" and listing.query["$top"] == "1"
    assert arm.ml.jobs()[0].component_id == component_target(arm, "3")
    assert f"{COMPONENT}:latest" in retrain.action


# -- a batch endpoint target invokes once -------------------------------------------------------

def test_batch_endpoint_is_invoked_once_with_an_azure_ml_token(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    monitoring_run(arm, sample)
    dispatcher = live(**{ROUTES: json.dumps({SIGNAL: batch_target(arm)})})
    retrain = retrain_of(deliver(dispatcher, breach(sample, arm)))
    assert retrain.outcome is Outcome.DONE, retrain.detail
    name = detail(retrain)["job_name"]
    [invoke] = invokes(arm)
    assert invoke.path.endswith(f"/{ENDPOINT}/jobs") and "api-version" not in invoke.query
    assert arm.issued(invoke.bearer_token or "")
    job = invoke.body["properties"]
    assert job["name"] == name
    assert job["properties"] == {"experimentName": f"amlevents-retrain-{MONITOR}"}
    assert job["inputData"]["signalName"] == {"jobInputType": "Literal", "value": SIGNAL}
    [created] = arm.ml.jobs()
    assert created.name == name and created.batch_endpoint == ENDPOINT
    # a redelivery is a duplicate: no second invocation
    assert retrain_of(deliver(dispatcher, breach(sample, arm))).duplicate
    assert len(invokes(arm)) == 1


def test_batch_invocation_whose_answer_is_lost_gives_one_job(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN the scoring host starts the job, then drops the connection unanswered: azure-ai-ml
    # POSTs again by itself, and the job name is taken by then
    monitoring_run(arm, sample)
    arm.ml.drop_next_invoke()
    dispatcher = live(**{ROUTES: json.dumps({MONITOR: batch_target(arm)})})
    retrain = retrain_of(deliver(dispatcher, breach(sample, arm)))
    # THEN the taken name is looked up: that job is the answer, and it is the only one
    assert retrain.outcome is Outcome.DONE, retrain.detail
    assert len(invokes(arm)) == 2 and len(arm.ml.jobs()) == 1
    assert arm.ml.jobs()[0].name == detail(retrain)["job_name"]


# -- no pile-ups, cooldown, coalescing ----------------------------------------------------------

@pytest.mark.parametrize("status", sorted(ACTIVE_STATUSES))
def test_a_job_not_final_folds_the_next_breach_into_it(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample, status: str) -> None:
    monitoring_run(arm, sample)
    dispatcher = live()
    first = detail(retrain_of(deliver(dispatcher, breach(sample, arm))))["job_name"]
    arm.ml.set_job_status(first, status)
    folded = retrain_of(deliver(dispatcher, breach(sample, arm, "breach-2")))
    assert folded.outcome is Outcome.SKIPPED and folded.action == f"folded into retraining job {first}"
    assert detail(folded)["folded_into"] == first and status in detail(folded)["reason"]
    arm.ml.set_job_status(first, "Completed")
    after = retrain_of(deliver(dispatcher, breach(sample, arm, "breach-3")))
    assert after.outcome is Outcome.DONE and detail(after)["job_name"] != first
    assert len(arm.ml.jobs()) == 2


def test_cooldown_folds_breaches_until_it_has_passed(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    monitoring_run(arm, sample)
    now = [time.time()]
    dispatcher = live(clock=lambda: now[0], **{COOLDOWN_S: "3600"})
    first = detail(retrain_of(deliver(dispatcher, breach(sample, arm))))["job_name"]
    arm.ml.set_job_status(first, "Completed")
    now[0] += 600
    cooling = retrain_of(deliver(dispatcher, breach(sample, arm, "breach-2")))
    assert cooling.outcome is Outcome.SKIPPED and cooling.action.endswith(first)
    assert "cooldown" in detail(cooling)["reason"] and COOLDOWN_S in detail(cooling)["reason"]
    now[0] += 3600
    assert retrain_of(deliver(dispatcher, breach(sample, arm, "breach-3"))).outcome is Outcome.DONE
    assert len(arm.ml.jobs()) == 2


def test_the_cooldown_ends_exactly_when_it_has_lasted(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN a job started at t that completed, and a cooldown of 3600 s
    monitoring_run(arm, sample)
    start = time.time()
    now = [start]
    dispatcher = live(clock=lambda: now[0], **{COOLDOWN_S: "3600"})
    first = detail(retrain_of(deliver(dispatcher, breach(sample, arm))))["job_name"]
    arm.ml.set_job_status(first, "Completed")
    # THEN a breach just before t + 3600 is folded into it, and one at t + 3600 starts a job
    now[0] = start + 3599.5
    assert retrain_of(deliver(dispatcher, breach(sample, arm, "breach-2"))).outcome is \
        Outcome.SKIPPED
    now[0] = start + 3600
    assert retrain_of(deliver(dispatcher, breach(sample, arm, "breach-3"))).outcome is Outcome.DONE
    assert len(arm.ml.jobs()) == 2


def test_signals_of_one_monitor_coalesce_and_the_ledger_says_which(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN two signals of one monitor breaching in the same monitoring run (two step runs)
    monitoring_run(arm, sample)
    monitoring_run(arm, sample, run="quality-step")
    dispatcher = live()
    drift = retrain_of(deliver(dispatcher, breach(sample, arm)))
    quality = retrain_of(deliver(dispatcher, breach(sample, arm, "breach-q", run="quality-step",
                                                    signal=f"{MONITOR}_data_quality")))
    # THEN one job; the second event is folded into it, and the job's state lists it
    job = detail(drift)["job_name"]
    assert quality.action == f"folded into retraining job {job}"
    assert len(arm.ml.jobs()) == 1
    state = dispatcher.ledger.get_state(state_key(component_target(arm), _monitor_key(arm)))
    assert state is not None and state["last"]["job_name"] == job
    assert state["last"]["folded"] == ["breach-q"]
    # AND a third event while the job runs joins the list, in order
    third = retrain_of(deliver(dispatcher, breach(sample, arm, "breach-3")))
    assert third.action == f"folded into retraining job {job}"
    assert detail(third)["reason"] == (f"the last retraining job {job} for monitor {MONITOR} is "
                                       "NotStarted")
    state = dispatcher.ledger.get_state(state_key(component_target(arm), _monitor_key(arm)))
    assert state is not None and state["last"]["folded"] == ["breach-q", "breach-3"]


def _monitor_key(arm: FakeArm) -> str:
    return f"breach:{workspace_id(arm).lower()}/{MONITOR}"


# -- confirming the breach ----------------------------------------------------------------------

def test_a_breach_whose_run_is_no_longer_failed_is_not_acted_on(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN the monitoring run is Completed by the time the (late) breach event arrives
    monitoring_run(arm, sample, status="Completed")
    retrain = retrain_of(deliver(live(), breach(sample, arm)))
    assert retrain.outcome is Outcome.SKIPPED and retrain.action == "breach not confirmed"
    assert retrain.detail == (
        f"monitoring run {RUN} of signal {SIGNAL} is Completed now, not Failed: the breach is no "
        "longer current (the event is late or out of order); not retraining")
    assert puts(arm) == [] and arm.ml.jobs() == []


def test_a_breach_that_cannot_be_confirmed_is_acted_on_as_the_event_says(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN no such monitoring run in the workspace (deleted, say)
    retrain = retrain_of(deliver(live(), breach(sample, arm)))
    assert retrain.outcome is Outcome.DONE, retrain.detail
    assert detail(retrain)["breach_confirmation"] == (
        f"unconfirmed: monitoring run {RUN} not found in workspace ws-amlevents")
    assert len(arm.ml.jobs()) == 1


# -- the recovery, v1 drift, Data Factory for breaches ----------------------------------------------

def test_the_recovery_is_recorded_and_nothing_is_done(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = live()
    # the transition back as the sample has it: Completed, the tag gone → notify records it
    raw = sample("model_monitor_recovered")
    raw["topic"] = workspace_id(arm)
    recovered = deliver(dispatcher, raw)
    assert recovered.outcome is Outcome.SKIPPED and recovered.also == ()
    assert "Completed" in recovered.detail
    # with the tag still there: retraining records it as a recovery, and does nothing
    tagged = deliver(dispatcher, breach(sample, arm, "recovered-2", status="Completed"))
    retrain = retrain_of(tagged)
    assert retrain.outcome is Outcome.SKIPPED and retrain.action == "monitor recovered"
    assert dispatcher.ledger.get(recovered.key) is not None
    assert arm.requests == [] and arm.ml.dataplane_requests == []


def test_v1_drift_still_starts_its_data_factory_run(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = live(**{ROUTES: json.dumps({"myDriftMonitor": adf_target(arm),
                                             MONITOR: component_target(arm)})})
    raw = sample("dataset_drift_detected")
    raw["topic"] = workspace_id(arm)
    result = dispatcher.dispatch(raw, function=ON_DRIFT_DETECTED)
    assert result.outcome is Outcome.DONE, result.detail
    [run] = arm.adf.runs()
    assert run.pipeline == PIPELINE and json.loads(result.detail)["run_id"] == run.run_id
    assert puts(arm) == [] and arm.ml.dataplane_requests == []


def test_a_breach_routed_to_data_factory_starts_a_pipeline_run(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    monitoring_run(arm, sample)
    dispatcher = live(**{ROUTES: json.dumps({MONITOR: adf_target(arm)})})
    retrain = retrain_of(deliver(dispatcher, breach(sample, arm)))
    assert retrain.outcome is Outcome.DONE, retrain.detail
    [create] = arm.requests_matching("POST", rf"/pipelines/{PIPELINE}/createRun$")
    assert create.body["signalName"] == SIGNAL and create.body["driftRunId"] == RUN
    assert create.body["features"] == "TransactionAmount,MerchantCategory"
    assert len(arm.adf.runs()) == 1 and puts(arm) == []


# -- refusals -----------------------------------------------------------------------------------

def test_an_input_the_component_does_not_declare_fails_naming_the_setting(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    monitoring_run(arm, sample)
    arm.ml.add_component("narrow", "1", inputs={"monitorName": {"type": "string"},
                                                "amleventsRequestId": {"type": "string"}})
    narrow = f"{workspace_id(arm)}/components/narrow/versions/1"
    failed = retrain_of(deliver(live(**{ROUTES: json.dumps({MONITOR: narrow})}),
                                breach(sample, arm)))
    assert failed.outcome is Outcome.FAILED and PARAMETER_NAMES in failed.detail
    assert "signalName" in failed.detail and puts(arm) == []
    # dropping what the component does not declare makes it work
    drop = {name: None for name in ("signalName", "driftRunId", "features", "violations",
                                    "windowEnd")}
    works = retrain_of(deliver(live(**{ROUTES: json.dumps({MONITOR: narrow}),
                                       PARAMETER_NAMES: json.dumps(drop)}),
                               breach(sample, arm, "breach-2")))
    assert works.outcome is Outcome.DONE, works.detail
    assert set(arm.ml.jobs()[0].inputs) == {"monitorName", "amleventsRequestId"}


def test_a_command_component_is_refused(arm: FakeArm, live: Callable[..., Dispatcher],
                                        sample: Sample) -> None:
    monitoring_run(arm, sample)
    arm.ml.add_component("train_step", "1", inputs=INPUTS, component_type="command")
    target = f"{workspace_id(arm)}/components/train_step/versions/1"
    failed = retrain_of(deliver(live(**{ROUTES: json.dumps({MONITOR: target})}),
                                breach(sample, arm)))
    assert failed.outcome is Outcome.FAILED and "pipeline component" in failed.detail
    assert puts(arm) == []


def test_a_refused_identity_names_the_role_it_needs(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    monitoring_run(arm, sample)
    arm.fail_next("PUT", JOBS, 403)
    failed = retrain_of(deliver(live(), breach(sample, arm)))
    assert failed.outcome is Outcome.FAILED
    assert "AzureML Data Scientist" in failed.detail and arm.ml.jobs() == []


def test_throttling_retries_and_the_redelivery_submits(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    monitoring_run(arm, sample)
    dispatcher = live()
    arm.fail_next("PUT", JOBS, 429, headers={"Retry-After": "7"})
    throttled = retrain_of(deliver(dispatcher, breach(sample, arm)))
    assert throttled.outcome is Outcome.RETRY and "Retry-After 7" in throttled.detail
    assert retrain_of(deliver(dispatcher, breach(sample, arm))).outcome is Outcome.DONE
    assert len(arm.ml.jobs()) == 1


def _typed(raw: dict[str, Any]) -> RunStatusChanged:
    event = parse_event(raw)
    assert isinstance(event, RunStatusChanged)
    return event


def test_the_first_confirmation_is_kept_for_the_redeliveries(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN a confirmed breach whose submission was throttled (the event comes back)
    monitoring_run(arm, sample)
    dispatcher = live()
    plan = decide(_typed(breach(sample, arm)), RetrainSettings.from_mapping(dispatcher.env))
    assert isinstance(plan, RetrainPlan)
    arm.fail_next("PUT", JOBS, 429)
    assert retrain_of(deliver(dispatcher, breach(sample, arm))).outcome is Outcome.RETRY
    confirmed = f"confirmed: monitoring run {RUN} is Failed and carries the breach"
    assert dispatcher.ledger.get_state(confirmation_key(plan.request_id)) == {
        "confirmation": confirmed}
    # WHEN the monitor recovers before the redelivery
    monitoring_run(arm, sample, status="Completed")
    retrain = retrain_of(deliver(dispatcher, breach(sample, arm)))
    # THEN the redelivery acts on the first answer: the job the event called for is submitted
    assert retrain.outcome is Outcome.DONE, retrain.detail
    assert detail(retrain)["breach_confirmation"] == confirmed
    assert len(arm.ml.jobs()) == 1


def test_the_client_factory_builds_one_quiet_client_per_workspace() -> None:
    from handlers.adapters.azure_ml_jobs import WorkspaceRef
    from handlers.adapters.credential import shared_credential

    client_for = ml_client_factory(RetrainSettings.from_mapping({TIMEOUT_S: "7", READ_RETRIES: "3"}))
    sub = "11111111-2222-3333-4444-555555555555"
    client = client_for(WorkspaceRef(sub, "rg-ml", "ws-ml"))
    # one client per workspace, reused: the SDK's pipeline and token cache are built once
    assert client_for(WorkspaceRef(sub, "rg-ml", "ws-ml")) is client
    other = client_for(WorkspaceRef(sub, "rg-ml", "ws-other"))
    assert other is not client and other.workspace_name == "ws-other"
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == (
        sub, "rg-ml", "ws-ml")
    assert client._credential is shared_credential()
    # no progress bars or telemetry from a Functions host; retries and timeouts from settings
    # (MLClient keeps them only on these private attributes)
    assert client._operation_config.show_progress is False
    assert client._operation_config.enable_telemetry is False
    assert {key: client._kwargs[key] for key in (
        "retry_total", "retry_backoff_factor", "connection_timeout", "read_timeout")} == {
        "retry_total": 3, "retry_backoff_factor": 0.5, "connection_timeout": 7.0,
        "read_timeout": 7.0}


def test_a_failed_run_no_longer_tagged_is_not_acted_on(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN the monitoring run is still Failed but its breach tag was taken off
    arm.ml.add_run(RUN, status="Failed", tags={}, experiment=MONITOR)
    retrain = retrain_of(deliver(live(), breach(sample, arm)))
    assert (retrain.outcome, retrain.action) == (Outcome.SKIPPED, "breach not confirmed")
    assert retrain.detail == (f"monitoring run {RUN} failed, but no longer carries the "
                              "threshold-breach tag; not retraining")
    assert arm.ml.jobs() == []


def test_a_placeholder_plan_is_refused_naming_the_routes_setting(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    from handlers.adapters.azure_ml_jobs import build_retrain_runner
    from handlers.errors import SettingError

    dispatcher = live()
    # the dry-run plan for an unrouted breach: a placeholder component
    plan = decide(_typed(breach(sample, arm)), RetrainSettings.from_mapping({}),
                  dry_run=True)
    assert isinstance(plan, RetrainPlan) and plan.placeholder
    router = build_retrain_runner(RetrainSettings.from_mapping({}), dispatcher.ledger)
    with pytest.raises(SettingError) as caught:
        router.start(plan)
    assert caught.value.problems == ((ROUTES, "no retraining target is configured "
                                              "(placeholder plan)"),)


def test_state_keys_are_hashed_any_case_and_confirmations_keyed_by_request() -> None:
    import hashlib

    digest = hashlib.sha256(b"/subscriptions/s/x|breach:ws/m").hexdigest()[:32]
    assert state_key(" /Subscriptions/S/X ", "Breach:WS/M ") == f"retrain-aml-{digest}"
    assert confirmation_key("abc") == "retrain-confirm-abc"


# -- the ledger state, whole ----------------------------------------------------------------------

def _state(dispatcher: Dispatcher, arm: FakeArm) -> Any:
    return dispatcher.ledger.get_state(state_key(component_target(arm), _monitor_key(arm)))


def test_a_submitted_job_is_recorded_as_the_monitors_last(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    monitoring_run(arm, sample)
    dispatcher = live(clock=lambda: 1_700_000_000.0)
    done = detail(retrain_of(deliver(dispatcher, breach(sample, arm))))
    assert _state(dispatcher, arm) == {"last": {
        "job_name": done["job_name"], "request_id": done["request_id"], "event_id": "breach-1",
        "started_at_s": 1_700_000_000.0, "status_at_start": "NotStarted", "folded": []}}


def test_a_fold_says_into_which_job_its_status_and_why(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    monitoring_run(arm, sample)
    now = [1_700_000_000.0]
    dispatcher = live(clock=lambda: now[0], **{COOLDOWN_S: "3600"})
    first = detail(retrain_of(deliver(dispatcher, breach(sample, arm))))
    name = first["job_name"]
    arm.ml.set_job_status(name, "Running")
    running = detail(retrain_of(deliver(dispatcher, breach(sample, arm, "breach-2"))))
    # the second event's own plan, plus where it went: the detail compared whole
    own = {k: v for k, v in running.items() if k not in ("folded_into", "job_status", "reason")}
    assert own["request_id"] != first["request_id"]
    assert running == {**own, "folded_into": name, "job_status": "Running",
                       "reason": f"the last retraining job {name} for monitor {MONITOR} is "
                                 "Running"}
    assert set(own) == set(first) - {"job_status"}  # the plan's facts, as for a started job
    assert own["job_name"] == f"amlevents-{own['request_id']}" != name
    arm.ml.set_job_status(name, "Completed")
    now[0] += 600.4
    cooling = detail(retrain_of(deliver(dispatcher, breach(sample, arm, "breach-3"))))
    assert {k: cooling[k] for k in ("folded_into", "job_status", "reason")} == {
        "folded_into": name, "job_status": "Completed",
        "reason": f"cooldown: the last retraining job {name} for monitor {MONITOR} started 600 s "
                  "ago (AMLEVENTS_RETRAIN_COOLDOWN_S=3600)"}
    assert _state(dispatcher, arm)["last"]["folded"] == ["breach-2", "breach-3"]


def test_a_replay_of_the_submitted_event_keeps_what_was_folded_into_its_job(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    monitoring_run(arm, sample)
    now = [1_700_000_000.0]
    dispatcher = live(clock=lambda: now[0])
    deliver(dispatcher, breach(sample, arm))
    deliver(dispatcher, breach(sample, arm, "breach-2"))  # folded: the job is NotStarted
    before = _state(dispatcher, arm)
    assert before["last"]["folded"] == ["breach-2"]
    # the first event reaches the runner again (its outcome never reached the ledger)
    now[0] += 60
    settings = RetrainSettings.from_mapping(dispatcher.env)
    plan = decide(_typed(breach(sample, arm)), settings)
    assert isinstance(plan, RetrainPlan)
    runner = AzureMlJobRunner(settings, dispatcher.ledger, ml_client_factory(settings),
                              clock=lambda: now[0])
    assert json.loads(runner.start(plan).detail)["reconciled"] is True
    assert _state(dispatcher, arm) == before  # the job's record and its folded events kept
    assert len(puts(arm)) == 1


def test_a_stale_intent_settles_without_hiding_the_newer_job(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN job A, then a newer job B, and A's intent still pending in the state (stale)
    monitoring_run(arm, sample)
    now = [1_700_000_000.0]
    dispatcher = live(clock=lambda: now[0])
    a = detail(retrain_of(deliver(dispatcher, breach(sample, arm, "breach-a"))))
    arm.ml.set_job_status(a["job_name"], "Completed")
    now[0] += 100
    b = detail(retrain_of(deliver(dispatcher, breach(sample, arm, "breach-b"))))
    assert b["job_name"] != a["job_name"]
    arm.ml.set_job_status(b["job_name"], "Running")
    stale = {"job_name": a["job_name"], "request_id": a["request_id"], "event_id": "breach-a",
             "since_s": 1_700_000_000.0}
    key = state_key(component_target(arm), _monitor_key(arm))
    dispatcher.ledger.update_state(key, lambda current: {**(current or {}), "pending": stale})
    # WHEN another breach arrives
    now[0] += 100
    c = retrain_of(deliver(dispatcher, breach(sample, arm, "breach-c")))
    # THEN A is settled (the intent dropped) but B stays the last job, and C folds into it
    assert c.action == f"folded into retraining job {b['job_name']}"
    state = _state(dispatcher, arm)
    assert "pending" not in state and state["last"]["job_name"] == b["job_name"]
    assert state["last"]["folded"] == ["breach-c"] and len(arm.ml.jobs()) == 2


@pytest.mark.parametrize(("status", "kept"), [
    (409, False), (429, False), (503, False),  # nothing started: the intent is dropped
    (500, True),  # it may have started: the intent stays for the redelivery to look up
])
def test_an_answer_that_started_nothing_drops_the_intent(
        arm: FakeArm, live: Callable[..., Dispatcher], sample: Sample, status: int,
        kept: bool) -> None:
    monitoring_run(arm, sample)
    dispatcher = live(clock=lambda: 1_700_000_000.0)
    plan = decide(_typed(breach(sample, arm)), RetrainSettings.from_mapping(dispatcher.env))
    assert isinstance(plan, RetrainPlan)
    arm.fail_next("PUT", JOBS, status)
    assert retrain_of(deliver(dispatcher, breach(sample, arm))).outcome is Outcome.RETRY
    intent = {"job_name": plan.job_name, "request_id": plan.request_id,
              "event_id": "breach-1", "since_s": 1_700_000_000.0}
    assert _state(dispatcher, arm) == ({"pending": intent} if kept else {})
