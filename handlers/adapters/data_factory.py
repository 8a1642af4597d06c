"""The Data Factory pipeline runner: one retraining run per event, never on top of a running one.

ADF's createRun has no idempotency key, so "accepted but the answer was lost" is handled here:

1. Before createRun, the intent (request id, target, time) is written to the monitor's ledger
   state; the request id also goes to the pipeline as a parameter (default `amleventsRequestId`).
2. createRun is sent with `retry_total=0`: azure-core must never re-POST on its own, since a
   retried POST after an accepted-but-lost answer would start a second run.
3. On success the run id replaces the intent; on a 4xx the intent is dropped.
4. A redelivery that finds an intent still there queries the factory's runs (queryPipelineRuns,
   PipelineName filter, lastUpdated window) for the run whose parameters carry that request id:
   found → that run is the answer (no second createRun); not found → the call never took effect.

Pile-ups: the monitor's last run is looked up (pipeline_runs.get); Queued/InProgress/Canceling
(a cancel in progress is not final) → skipped, naming the run; an optional cooldown follows.
REST reference: https://learn.microsoft.com/rest/api/datafactory/
Errors: 408/409/429/5xx, timeouts, token failures → RetryableError (Retry-After kept; 409 Conflict:
another operation is in progress, nothing was started); other 4xx → PermanentError with ADF's code
and message (e.g. a parameter the pipeline does not declare).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from handlers.adapters.retry_after import retry_after_of
from handlers.adapters.run_intent import drop_intent, record_intent
from handlers.errors import PermanentError, RetryableError, SettingError
from handlers.ledger.ledger import Ledger, utc_iso
from handlers.outcome import ActionResult
from handlers.retrain.plan import RetrainPlan
from handlers.retrain.settings import COOLDOWN_S, ROUTES, DataFactoryTarget, RetrainSettings

ACTIVE_STATUSES = frozenset({"Queued", "InProgress", "Canceling"})  # not final: one run at a time
_RECONCILE_MARGIN_S = 300.0  # clock skew between us and ADF's lastUpdated, both ways
_MAX_QUERY_PAGES = 20
T = TypeVar("T")


def state_key(monitor_key: str) -> str:
    """The monitor's ledger state key (hashed: Table Storage keys forbid '/', '#', '?')."""
    digest = hashlib.sha256(monitor_key.strip().lower().encode("utf-8")).hexdigest()[:32]
    return f"retrain-monitor-{digest}"


def build_runner(settings: RetrainSettings, ledger: Ledger) -> DataFactoryRunner:
    """The real runner, with the process's credential (managed identity when deployed)."""
    from handlers.adapters.credential import shared_credential

    return DataFactoryRunner(settings, ledger, shared_credential(), clock=ledger.clock)


class DataFactoryRunner:
    """Starts Data Factory pipeline runs for RetrainPlans; state lives in the ledger."""

    def __init__(self, settings: RetrainSettings, ledger: Ledger, credential: Any, *,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.ledger = ledger
        self.credential = credential
        self.clock = clock
        # An unanswered createRun younger than this may still land: wait before starting again.
        self.grace_s = max(settings.reconcile_grace_s, settings.timeout_s)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, subscription: str) -> Any:
        from azure.mgmt.datafactory import DataFactoryManagementClient

        with self._lock:
            if subscription not in self._clients:
                endpoint = self.settings.arm_endpoint
                self._clients[subscription] = DataFactoryManagementClient(
                    self.credential, subscription, base_url=endpoint,
                    credential_scopes=[f"{endpoint}/.default"],
                    retry_total=self.settings.read_retries, retry_backoff_factor=0.5,
                    connection_timeout=self.settings.timeout_s,
                    read_timeout=self.settings.timeout_s)
            return self._clients[subscription]

    def start(self, plan: RetrainPlan) -> ActionResult:
        """Start the run unless this event already did, or the monitor's last run still runs."""
        if plan.placeholder:
            raise SettingError(ROUTES, "no Data Factory target is configured (placeholder plan)")
        key = state_key(plan.monitor_key)
        state = self.ledger.get_state(key) or {}
        last = state.get("last")
        if last and last.get("request_id") == plan.request_id:
            return ActionResult.done(plan, run_id=last["run_id"], reconciled=True)
        pending = state.get("pending")
        if pending:
            found = self._find_run(pending)
            if found is not None:
                last = self._settle(key, pending, found)
                if pending["request_id"] == plan.request_id:
                    return ActionResult.done(plan, run_id=found, reconciled=True)
            elif self.clock() - float(pending["since_s"]) < self.grace_s:
                # Not visible yet is not "never started": a createRun that timed out on our side
                # may still land (or be listed late). Wait out the grace period, then decide.
                whose = ("this event's" if pending["request_id"] == plan.request_id
                         else "another delivery's")
                raise RetryableError(
                    f"{whose} run request for monitor {plan.monitor} (intent recorded "
                    f"{utc_iso(float(pending['since_s']))}) is not visible in Data Factory yet; "
                    "will retry")
        if last:
            skip = self._pile_up(plan, last)
            if skip is not None:
                return skip
        intent = {"request_id": plan.request_id, "since_s": self.clock(),
                  "target": plan.target.as_dict(), "request_parameter": plan.request_parameter,
                  "drift_run_id": plan.drift_run_id}
        record_intent(self.ledger, key, intent, field="request_id", expected_last=last,
                      now=self.clock(), grace_s=self.grace_s, monitor=plan.monitor)
        run_id = self._create_run(plan, key, intent)
        self._settle(key, intent, run_id)
        return ActionResult.done(plan, run_id=run_id)

    def _create_run(self, plan: RetrainPlan, key: str, intent: Mapping[str, Any]) -> str:
        target = plan.target
        if not isinstance(target, DataFactoryTarget):  # the runner routes only these here
            raise SettingError(ROUTES, f"{target.describe()} is not a Data Factory pipeline")
        client = self._client(target.subscription)
        try:
            response = _call(
                f"createRun of pipeline {target.pipeline} in factory {target.factory}",
                lambda: client.pipelines.create_run(
                    target.resource_group, target.factory, target.pipeline,
                    parameters=dict(plan.parameters), retry_total=0))
        except PermanentError:
            # a 4xx: ADF did not start anything
            drop_intent(self.ledger, key, field="request_id", value=intent["request_id"])
            raise
        except RetryableError as exc:
            from azure.core.exceptions import ServiceRequestError

            # 409, 429, 503 and "no request was sent" mean nothing was started; a timeout or
            # another 5xx is ambiguous, so the intent stays and a redelivery reconciles it.
            cause = exc.__cause__
            if _status_code(cause) in (409, 429, 503) or isinstance(cause, ServiceRequestError):
                drop_intent(self.ledger, key, field="request_id", value=intent["request_id"])
            raise
        run_id = getattr(response, "run_id", None)
        if not run_id:
            raise RetryableError(f"createRun of pipeline {target.pipeline} answered without runId")
        return str(run_id)

    def _pile_up(self, plan: RetrainPlan, last: Mapping[str, Any]) -> ActionResult | None:
        run_id = str(last["run_id"])
        status = self._status(DataFactoryTarget.from_dict(last["target"]), run_id)
        if status in ACTIVE_STATUSES:
            return ActionResult.skipped(
                f"the last retraining run {run_id} for monitor {plan.monitor} is {status}; "
                f"not starting another", action="retraining already running")
        elapsed = self.clock() - float(last["started_at_s"])
        if elapsed < self.settings.cooldown_s:
            return ActionResult.skipped(
                f"cooldown: the last retraining run {run_id} for monitor {plan.monitor} started "
                f"{elapsed:.0f} s ago ({COOLDOWN_S}={self.settings.cooldown_s:g})",
                action="retraining cooling down")
        return None

    def _status(self, target: DataFactoryTarget, run_id: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        client = self._client(target.subscription)
        try:
            run = _call(f"get pipeline run {run_id}", lambda: client.pipeline_runs.get(
                target.resource_group, target.factory, run_id))
        except PermanentError as exc:
            if isinstance(exc.__cause__, ResourceNotFoundError):
                return None  # the run (or its factory) is gone: it cannot be running
            raise
        return getattr(run, "status", None)

    def _find_run(self, intent: Mapping[str, Any]) -> str | None:
        """The run started for this intent, found by its request-id parameter, or None."""
        target = DataFactoryTarget.from_dict(intent["target"])
        client = self._client(target.subscription)
        # A plain JSON body (REST names) works with azure-mgmt-datafactory 9 and 10 alike.
        query: dict[str, Any] = {
            "lastUpdatedAfter": _iso(float(intent["since_s"]) - _RECONCILE_MARGIN_S),
            "lastUpdatedBefore": _iso(self.clock() + _RECONCILE_MARGIN_S),
            "filters": [{"operand": "PipelineName", "operator": "Equals",
                         "values": [target.pipeline]}]}
        parameter, wanted = str(intent["request_parameter"]), str(intent["request_id"])
        for _ in range(_MAX_QUERY_PAGES):
            page = _call(f"query runs of pipeline {target.pipeline}",
                         lambda: client.pipeline_runs.query_by_factory(
                             target.resource_group, target.factory, query))
            for run in getattr(page, "value", None) or []:
                if str((run.parameters or {}).get(parameter, "")) == wanted and run.run_id:
                    return str(run.run_id)
            token = getattr(page, "continuation_token", None)
            if not token:
                return None
            query["continuationToken"] = token
        return None

    def _settle(self, key: str, intent: Mapping[str, Any], run_id: str) -> Mapping[str, Any]:
        record = {"run_id": run_id, "request_id": intent["request_id"],
                  "started_at_s": float(intent["since_s"]), "target": dict(intent["target"])}

        def change(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            state = dict(current or {})
            if (state.get("pending") or {}).get("request_id") == intent["request_id"]:
                state.pop("pending")
            last = state.get("last")
            if not last or float(last["started_at_s"]) <= record["started_at_s"]:
                state["last"] = record
            return state

        stored = self.ledger.update_state(key, change) or {}
        return stored.get("last") or record



def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat().replace("+00:00", "Z")


def _call(what: str, call: Callable[[], T]) -> T:
    """Run one SDK call, turning its exceptions into RetryableError or PermanentError."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    try:
        return call()
    except HttpResponseError as exc:
        raise classify(what, exc) from exc
    except ServiceRequestError as exc:
        raise RetryableError(f"{what}: Data Factory could not be reached: {exc}") from exc
    except ServiceResponseError as exc:
        raise RetryableError(f"{what}: no answer from Data Factory ({exc}); a redelivery "
                             "checks whether it took effect") from exc


def classify(what: str, exc: Any) -> RetryableError | PermanentError:
    """A Data Factory error answer as retryable (408/409/429/5xx, no token) or permanent."""
    status: int | None = exc.status_code
    message = adf_message(exc)
    if status is None:  # azure-identity could not get a token; often transient
        return RetryableError(f"{what}: no access token: {message}")
    if status in (408, 409, 429) or status >= 500:
        retry_after = retry_after_of(exc)
        hint = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
        return RetryableError(f"{what}: Data Factory answered {status}{hint}: {message}",
                              retry_after_s=retry_after)
    if status in (401, 403):
        message += " (the identity needs Data Factory Contributor on the factory)"
    return PermanentError(f"{what}: Data Factory answered {status}: {message}")


def adf_message(exc: Any) -> str:
    """ADF's own error code and message (ARM error format), else the SDK's text."""
    error = getattr(exc, "error", None)
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if message:
        return f"{code}: {message}" if code else str(message)
    return str(getattr(exc, "message", None) or exc)


def _status_code(error: BaseException | None) -> int | None:
    """The HTTP status of an azure-core error, if it carries a response."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None) or getattr(error, "status_code", None)
    return int(status) if isinstance(status, int) else None
