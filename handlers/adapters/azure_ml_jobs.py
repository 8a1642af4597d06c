"""Retraining in Azure ML (azure-ai-ml, imported on first use), and the RetrainRunner port itself.

`RetrainRouter` is the port: a model-monitor breach is confirmed against its monitoring run first
(once per event), then the plan goes to the runner of its target's kind: Data Factory pipelines
(handlers/adapters/data_factory.py), Azure ML pipeline components and batch endpoints (here).

`AzureMlJobRunner`, one job per event, never on top of a running one:

1. **The job's name is the event's** (`amlevents-{request id}`, decide.py): Azure ML job names are
   the caller's to choose, so every delivery of one event names the same job. A delivery first
   looks that name up (`jobs.get`): found → that job is the answer (a redelivery, or a submission
   whose answer was lost), nothing is submitted again. A submission refused because the name is
   taken (a concurrent or repeated POST) looks the job up too.
2. **No pile-ups**: the last job for the target and monitor is looked up; while it is NotStarted,
   Starting, Provisioning, Queued, Preparing, Running, Finalizing or CancelRequested, or younger
   than AMLEVENTS_RETRAIN_COOLDOWN_S, the event is **folded** into it: `skipped` with action
   "folded into retraining job NAME", the job's name and why in the detail, and the event's id
   listed with the job in the ledger state. So several signals of one monitor breaching in one
   run, or breaches inside the cooldown, give one job.
3. Two events racing for one monitor: the intent (job name) is written to the ledger state with
   optimistic concurrency before submitting; the loser retries and then folds into the winner's
   job (or, when the winner's submission never took effect, starts its own after the grace).

Submitting: a pipeline component → `components.get` (version, or label "latest"), checked to be a
pipeline whose inputs include every parameter passed, then `jobs.create_or_update(PipelineJob(
component=<id>, inputs, experiment_name, tags, name))`; a batch endpoint →
`batch_endpoints.invoke(endpoint, inputs=Input literals, job_name, experiment_name)`.

Errors: 408/409/429/5xx, timeouts → RetryableError; other 4xx → PermanentError (401/403 name the
role the identity needs: AzureML Data Scientist on the workspace).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from handlers.adapters.azure_ml import classify
from handlers.adapters.run_intent import drop_intent, record_intent
from handlers.errors import AmlEventsError, InvalidEvent, PermanentError, RetryableError, SettingError
from handlers.events.monitor import breach_message
from handlers.events.workspace import WorkspaceRef
from handlers.ledger.ledger import Ledger, utc_iso
from handlers.outcome import ActionResult, Outcome, plan_detail
from handlers.ports import RetrainRunner
from handlers.retrain.plan import RetrainPlan
from handlers.retrain.settings import (
    COOLDOWN_S,
    PARAMETER_NAMES,
    ROUTES,
    BatchEndpointTarget,
    ComponentTarget,
    DataFactoryTarget,
    RetrainSettings,
)

# Not final (JobStatus in the REST specs): a new job would pile up on these.
ACTIVE_STATUSES = frozenset({"NotStarted", "Starting", "Provisioning", "Queued", "Preparing",
                             "Running", "Finalizing", "CancelRequested"})
ROLE_HINT = "the identity needs AzureML Data Scientist on workspace {workspace}"
_FOLDED_KEPT = 100  # event ids listed with a job in the ledger state
ClientFor = Callable[[WorkspaceRef], Any]


def state_key(target_id: str, monitor_key: str) -> str:
    """Ledger state of one target and monitor (hashed: Table keys forbid '/', '#', '?')."""
    material = f"{target_id.strip().lower()}|{monitor_key.strip().lower()}"
    return f"retrain-aml-{hashlib.sha256(material.encode('utf-8')).hexdigest()[:32]}"


def confirmation_key(request_id: str) -> str:
    """Ledger state holding an event's breach confirmation (asked once per event)."""
    return f"retrain-confirm-{request_id}"


def build_retrain_runner(settings: RetrainSettings, ledger: Ledger) -> RetrainRouter:
    """The live port: the process's credential (managed identity when deployed), clients on first
    use."""
    from handlers.adapters import data_factory

    client_for = ml_client_factory(settings)
    return RetrainRouter(
        ledger, data_factory=lambda: data_factory.build_runner(settings, ledger),
        azure_ml=lambda: AzureMlJobRunner(settings, ledger, client_for, clock=ledger.clock),
        confirmer=lambda: BreachConfirmer(client_for))


def ml_client_factory(settings: RetrainSettings) -> ClientFor:
    """An MLClient per workspace, with the process's credential; retries and timeouts from
    settings."""
    lock = threading.Lock()
    clients: dict[WorkspaceRef, Any] = {}

    def client_for(workspace: WorkspaceRef) -> Any:
        from azure.ai.ml import MLClient

        from handlers.adapters.credential import shared_credential

        with lock:
            if workspace not in clients:
                # Custom clouds (and the tests' fake ARM) come from ARM_CLOUD_METADATA_URL and
                # AZUREML_CURRENT_CLOUD, azure-ai-ml's supported way; MLClient ignores base_url.
                clients[workspace] = MLClient(
                    shared_credential(), workspace.subscription_id, workspace.resource_group,
                    workspace.workspace, retry_total=settings.read_retries,
                    retry_backoff_factor=0.5, connection_timeout=settings.timeout_s,
                    read_timeout=settings.timeout_s, show_progress=False,
                    enable_telemetry=False)
            return clients[workspace]

    return client_for


class RetrainRouter:
    """The RetrainRunner port: confirm a breach (once), then the runner of the target's kind."""

    def __init__(self, ledger: Ledger, *, data_factory: Callable[[], RetrainRunner],
                 azure_ml: Callable[[], RetrainRunner],
                 confirmer: Callable[[], BreachConfirmer]) -> None:
        self.ledger = ledger
        self._factories: dict[str, Callable[[], Any]] = {
            "data_factory": data_factory, "azure_ml": azure_ml, "confirmer": confirmer}
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _get(self, name: str) -> Any:
        with self._lock:  # each adapter (and its SDK) is built on first use only
            if name not in self._built:
                self._built[name] = self._factories[name]()
            return self._built[name]

    def start(self, plan: RetrainPlan) -> ActionResult:
        """Start the plan's run, or skip it (a breach no longer current), or fold it."""
        if plan.placeholder:
            raise SettingError(ROUTES, "no retraining target is configured (placeholder plan)")
        if plan.breach is not None:
            verdict = self._confirmation(plan)
            if isinstance(verdict, ActionResult):
                return verdict
            plan = replace(plan, confirmation=verdict)
        runner = self._get("data_factory" if isinstance(plan.target, DataFactoryTarget)
                           else "azure_ml")
        result: ActionResult = runner.start(plan)
        return result

    def _confirmation(self, plan: RetrainPlan) -> str | ActionResult:
        """The breach checked against its monitoring run, once per event: a redelivery reuses the
        first answer, so a run started for it is found even if the monitor recovered since."""
        key = confirmation_key(plan.request_id)
        stored = (self.ledger.get_state(key) or {}).get("confirmation")
        if stored:
            return str(stored)
        verdict = self._get("confirmer").check(plan)
        if isinstance(verdict, ActionResult):
            return verdict  # recorded as the event's outcome; a duplicate never comes back here
        stored_now = self.ledger.update_state(
            key, lambda current: None if current else {"confirmation": verdict}) or {}
        return str(stored_now.get("confirmation") or verdict)


class BreachConfirmer:
    """Is the monitoring run still Failed, and still tagged with the breach? (late, out of order)"""

    def __init__(self, client_for: ClientFor) -> None:
        self._client_for = client_for

    def check(self, plan: RetrainPlan) -> str | ActionResult:
        """'confirmed: …' or 'unconfirmed: …' (act on the event), or a skip (the breach is over)."""
        breach = plan.breach
        assert breach is not None
        run_id = breach.monitoring_run_id
        try:
            workspace = WorkspaceRef.from_topic(breach.topic)
        except InvalidEvent:
            return f"unconfirmed: topic {breach.topic} is not an Azure ML workspace"
        from azure.core.exceptions import ResourceNotFoundError

        try:
            job = self._client_for(workspace).jobs.get(run_id)
        except ResourceNotFoundError:
            return f"unconfirmed: monitoring run {run_id} not found in workspace {workspace.workspace}"
        except Exception as exc:  # classified: transient ones retry, the rest act on the event
            error = exc if isinstance(exc, AmlEventsError) else classify(exc)
            if isinstance(error, RetryableError):
                raise error from exc
            return (f"unconfirmed: monitoring run {run_id} could not be read ({error}; "
                    f"{ROLE_HINT.format(workspace=workspace.workspace)})")
        status = _status(job)
        if status.lower() != "failed":
            return ActionResult.skipped(
                f"monitoring run {run_id} of signal {breach.signal} is {status or 'unknown'} now, "
                "not Failed: the breach is no longer current (the event is late or out of "
                "order); not retraining", action="breach not confirmed")
        if breach_message(dict(getattr(job, "tags", None) or {})) is None:
            return ActionResult.skipped(
                f"monitoring run {run_id} failed, but no longer carries the threshold-breach tag; "
                "not retraining", action="breach not confirmed")
        return f"confirmed: monitoring run {run_id} is Failed and carries the breach"


class AzureMlJobRunner:
    """Submits Azure ML pipeline jobs and batch endpoint jobs for RetrainPlans; state in the ledger."""

    def __init__(self, settings: RetrainSettings, ledger: Ledger, client_for: ClientFor, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.ledger = ledger
        self._client_for = client_for
        self.clock = clock
        # An unanswered submission younger than this may still land: others wait, then retry.
        self.grace_s = max(settings.reconcile_grace_s, settings.timeout_s)

    def start(self, plan: RetrainPlan) -> ActionResult:
        """Submit this event's job once, unless it folds into the monitor's last job."""
        target = plan.target
        if not isinstance(target, (ComponentTarget, BatchEndpointTarget)):
            raise SettingError(ROUTES, f"{target.describe()} is not an Azure ML target")
        workspace = WorkspaceRef(target.subscription, target.resource_group, target.workspace)
        try:
            return self._start(self._client_for(workspace), plan, target)
        except AmlEventsError:
            raise
        except Exception as exc:  # every SDK failure is classified here (re-raised)
            raise _ours(exc, target.workspace) from exc

    def _start(self, ml: Any, plan: RetrainPlan,
               target: ComponentTarget | BatchEndpointTarget) -> ActionResult:
        key = state_key(target.resource_id, plan.monitor_key)
        state = self.ledger.get_state(key) or {}
        last = state.get("last")
        pending = state.get("pending")
        mine = _find(ml, plan.job_name)
        if mine is not None:  # a redelivery, or an answer that was lost: the job exists
            own = pending if pending and pending["job_name"] == plan.job_name else None
            self._settle(key, own or self._intent(plan), mine)
            return ActionResult.done(plan, job_name=plan.job_name, job_status=_status(mine),
                                     reconciled=True)
        if pending and pending["job_name"] != plan.job_name:
            found = _find(ml, str(pending["job_name"]))
            if found is not None:
                last = self._settle(key, pending, found)
            elif self.clock() - float(pending["since_s"]) < self.grace_s:
                raise RetryableError(
                    f"another event's retraining job {pending['job_name']} for monitor "
                    f"{plan.monitor} is being submitted (since {utc_iso(float(pending['since_s']))})"
                    "; will retry")
        if last:
            folded = self._fold(ml, key, plan, last)
            if folded is not None:
                return folded
        intent = self._intent(plan)
        record_intent(self.ledger, key, intent, field="job_name", expected_last=last,
                      now=self.clock(), grace_s=self.grace_s, monitor=plan.monitor)
        job = self._submit(ml, plan, target, key, intent)
        self._settle(key, intent, job)
        return ActionResult.done(plan, job_name=plan.job_name, job_status=_status(job))

    def _intent(self, plan: RetrainPlan) -> dict[str, Any]:
        return {"job_name": plan.job_name, "request_id": plan.request_id,
                "event_id": plan.event_id, "since_s": self.clock()}

    def _fold(self, ml: Any, key: str, plan: RetrainPlan,
              last: Mapping[str, Any]) -> ActionResult | None:
        """Fold the event into the monitor's last job while it runs or cools down."""
        name = str(last["job_name"])
        job = _find(ml, name)
        status = _status(job) if job is not None else "gone"
        if status in ACTIVE_STATUSES:
            why = f"the last retraining job {name} for monitor {plan.monitor} is {status}"
        else:
            elapsed = self.clock() - float(last["started_at_s"])
            if elapsed >= self.settings.cooldown_s:
                return None
            why = (f"cooldown: the last retraining job {name} for monitor {plan.monitor} "
                   f"started {elapsed:.0f} s ago ({COOLDOWN_S}={self.settings.cooldown_s:g})")

        def change(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            state = dict(current or {})
            record = dict(state.get("last") or {})
            if record.get("job_name") != name:
                return None  # a newer job took over meanwhile; this event is folded all the same
            folded = list(record.get("folded") or [])
            if plan.event_id in folded or len(folded) >= _FOLDED_KEPT:
                return None
            record["folded"] = [*folded, plan.event_id]
            return {**state, "last": record}

        self.ledger.update_state(key, change)
        detail = plan_detail(plan, folded_into=name, job_status=status, reason=why)
        return ActionResult(Outcome.SKIPPED, f"folded into retraining job {name}", detail)

    def _submit(self, ml: Any, plan: RetrainPlan, target: ComponentTarget | BatchEndpointTarget,
                key: str, intent: Mapping[str, Any]) -> Any:
        try:
            if isinstance(target, ComponentTarget):
                return self._submit_pipeline(ml, plan, target)
            return self._invoke_batch(ml, plan, target)
        except Exception as exc:  # classified: is the name taken by our own job?
            from azure.core.exceptions import HttpResponseError

            if isinstance(exc, HttpResponseError) and 400 <= (exc.status_code or 0) < 500:
                found = _find(ml, plan.job_name)
                if found is not None:
                    return found  # the name is taken by this event's job: that is the answer
            error = exc if isinstance(exc, AmlEventsError) else _ours(exc, target.workspace)
            if isinstance(error, PermanentError) or _nothing_started(exc):
                drop_intent(self.ledger, key, field="job_name", value=str(intent["job_name"]))
            if error is exc:
                raise
            raise error from exc

    def _submit_pipeline(self, ml: Any, plan: RetrainPlan, target: ComponentTarget) -> Any:
        from azure.ai.ml.entities import PipelineJob
        from azure.core.exceptions import ResourceNotFoundError

        shown = f"{target.component}:{target.version or 'latest'}"
        try:
            component = (ml.components.get(target.component, version=target.version)
                         if target.version else ml.components.get(target.component,
                                                                  label="latest"))
        except ResourceNotFoundError as exc:
            raise PermanentError(f"component {shown} not found in workspace "
                                 f"{target.workspace}") from exc
        kind = str(getattr(component, "type", "") or "")
        if kind.lower() != "pipeline":
            raise PermanentError(f"component {shown} is a {kind or 'non-pipeline'} component; "
                                 "retraining submits pipeline jobs: route to a pipeline component")
        _check_inputs(dict(getattr(component, "inputs", None) or {}), plan.parameters,
                      f"component {component.name}:{component.version}")
        job = PipelineJob(component=component.id, inputs=dict(plan.parameters),
                          experiment_name=plan.experiment, tags=dict(plan.tags),
                          name=plan.job_name, display_name=f"retrain {plan.monitor}"[:256],
                          description=plan.summary()[:1000])
        return ml.jobs.create_or_update(job)

    def _invoke_batch(self, ml: Any, plan: RetrainPlan, target: BatchEndpointTarget) -> Any:
        from azure.ai.ml import Input
        from azure.ai.ml.exceptions import MlException

        inputs = {name: Input(type=_input_type(value), default=value)
                  for name, value in plan.parameters.items()}
        try:
            return ml.batch_endpoints.invoke(target.endpoint, inputs=inputs,
                                             job_name=plan.job_name,
                                             experiment_name=plan.experiment)
        except MlException as exc:
            if "retry attempts" in str(exc).lower():  # the SDK's own 5 tries, none answered
                raise RetryableError(f"invoking batch endpoint {target.endpoint}: no answer "
                                     f"({exc}); a redelivery looks job {plan.job_name} up") from exc
            raise

    def _settle(self, key: str, intent: Mapping[str, Any], job: Any) -> Mapping[str, Any]:
        started_at_s = float(intent["since_s"])
        record: dict[str, Any] = {
            "job_name": str(intent["job_name"]), "request_id": intent.get("request_id"),
            "event_id": intent.get("event_id"), "started_at_s": started_at_s,
            "status_at_start": _status(job), "folded": []}

        def change(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            state = dict(current or {})
            changed = False
            if (state.get("pending") or {}).get("job_name") == record["job_name"]:
                state.pop("pending")
                changed = True
            last = state.get("last")
            if last and last.get("job_name") == record["job_name"]:
                pass  # settled before (a redelivery): keep it, with the events folded into it
            elif not last or float(last["started_at_s"]) <= started_at_s:
                state["last"] = record
                changed = True
            return state if changed else None

        stored = self.ledger.update_state(key, change) or {}
        return stored.get("last") or record



def _find(ml: Any, name: str) -> Any | None:
    """The job of that name, or None (jobs.get: 404 means there is none)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return ml.jobs.get(name)
    except ResourceNotFoundError:
        return None


def _status(job: Any) -> str:
    """A job's status as Azure ML writes it (NotStarted, Running, Failed, ...)."""
    status = getattr(job, "status", None)
    return str(getattr(status, "value", status) or "")


def _input_type(value: Any) -> str:
    """The literal input type of a parameter value (batch endpoint inputs are typed)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _check_inputs(declared: Mapping[str, Any], given: Mapping[str, Any], what: str) -> None:
    """Refuse before submitting: an input the component does not declare, or a required one
    missing (Azure ML would refuse the job; this says which setting fixes it)."""
    undeclared = sorted(name for name in given if name not in declared)
    if undeclared:
        raise PermanentError(
            f"{what} does not declare the input(s) {', '.join(undeclared)}: declare them in the "
            f"component, or rename or drop them with {PARAMETER_NAMES} (e.g. "
            f"{json.dumps({'features': None})})")
    missing = sorted(name for name, spec in declared.items()
                     if not getattr(spec, "optional", False)
                     and getattr(spec, "default", None) is None and name not in given)
    if missing:
        raise PermanentError(f"{what} requires the input(s) {', '.join(missing)}, which "
                             f"amlevents does not pass (it passes {', '.join(given) or 'none'})")


def _ours(exc: BaseException, workspace: str) -> AmlEventsError:
    """An SDK error as ours; a refused identity says which role it needs."""
    error = classify(exc)
    status = getattr(exc, "status_code", None)
    if isinstance(error, PermanentError) and status in (401, 403):
        return PermanentError(f"{error} ({ROLE_HINT.format(workspace=workspace)})")
    return error


def _nothing_started(exc: BaseException) -> bool:
    """409/429/503 and "no request was sent" mean the submission did not take effect."""
    from azure.core.exceptions import ServiceRequestError

    return isinstance(exc, ServiceRequestError) or getattr(exc, "status_code", None) in (
        409, 429, 503)
