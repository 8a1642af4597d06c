"""The CI/CD dispatcher: each run of a plan started once, whatever the deliveries.

Neither dispatch API takes an idempotency key, so "sent, but the answer was lost" is handled here,
per dispatch (one rule of one event), with ledger state `cicd-{requestId}`:

1. `done`, or `failed` because whether it started cannot be told: an earlier delivery settled
   it; its outcome is reused and nothing is sent, by redeliveries and replays alike.
2. No state: the intent (`pending`, with the time) is recorded first, then the request is sent
   (the request id inside it, so the run can name itself after it).
   - a 2xx: `done`, with the run's id and URL when the service says them;
   - a 4xx: the row is `failed` with the service's message; nothing started, so the intent is
     dropped (a replay of the row, once the cause is fixed, sends it again);
   - nothing started for sure (no connection, a rate limit, no token): the intent is dropped, `retry`;
   - no answer, a dropped connection or a 5xx (it may have started): the intent stays, `retry`.
3. `pending` (an earlier request got no answer): the run is looked up by its request id among the
   runs created since the intent:
   - found: `done` (reconciled), nothing sent;
   - not found within AMLEVENTS_CICD_RECONCILE_GRACE_S: `retry` (a new run is listed a little
     later);
   - not found after it, and every run since names a request id: it never started, so it is sent;
   - not found, but a run since names no request id (or the rule passes none): whether it started
     cannot be told, so it is `failed`, saying so, rather than started twice.

The event's ledger row is `done` when every dispatch is, `retry` while any must be retried (a
redelivery sends only those), else `failed`; its detail lists each dispatch's outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from handlers.adapters.cicd import Service, Started
from handlers.adapters.cicd.http import NotStarted
from handlers.cicd.plan import CicdPlan, Dispatch
from handlers.cicd.settings import CA_FILE, RECONCILE_GRACE_S, CicdSettings, GitHubAuth
from handlers.errors import PermanentError, RetryableError, SettingError
from handlers.ledger.ledger import Ledger, utc_iso
from handlers.outcome import ActionResult, Outcome

_ACTION_MAX = 300


def state_key(request_id: str) -> str:
    """The ledger state of one dispatch (request ids are hex: Table keys take them as they are)."""
    return f"cicd-{request_id}"


def build_dispatcher(settings: CicdSettings, auth: GitHubAuth, ledger: Ledger) -> CicdRunner:
    """The live dispatcher, with a client for each service the rules target."""
    from handlers.adapters.cicd.http import JsonClient

    services: dict[str, Service] = {}
    if "github" in settings.services:
        from handlers.adapters.cicd.github import GitHub

        services["github"] = GitHub(settings, auth, JsonClient(
            "GitHub", timeout_s=settings.timeout_s, ca_file=settings.ca_file, ca_setting=CA_FILE),
            clock=ledger.clock)
    if "azurePipelines" in settings.services:
        from handlers.adapters.cicd.azure_pipelines import AzurePipelines
        from handlers.adapters.credential import shared_credential

        services["azurePipelines"] = AzurePipelines(settings, shared_credential(), JsonClient(
            "Azure DevOps", timeout_s=settings.timeout_s, ca_file=settings.ca_file,
            ca_setting=CA_FILE), clock=ledger.clock)
    return CicdRunner(settings, ledger, services)


class CicdRunner:
    """Starts the runs of CicdPlans through the services; state lives in the ledger."""

    def __init__(self, settings: CicdSettings, ledger: Ledger, services: Mapping[str, Service],
                 *, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.ledger = ledger
        self.services = services
        self.clock = clock or ledger.clock

    def dispatch(self, plan: CicdPlan) -> ActionResult:
        """Start every run of the plan that no delivery has settled yet."""
        results = []
        for dispatch in plan.dispatches:
            base = {"rule": dispatch.rule, "target": dict(dispatch.target),
                    "requestId": dispatch.request_id}
            try:
                results.append({**base, **self._one(dispatch)})
            except RetryableError as exc:
                results.append({**base, "outcome": "retry", "error": str(exc)})
            except PermanentError as exc:  # e.g. the lookup refused: the others still count
                results.append({**base, "outcome": "failed", "error": str(exc)})
        detail = json.dumps({"dispatches": results}, sort_keys=True, separators=(",", ":"))
        outcomes = [r["outcome"] for r in results]
        if "retry" in outcomes:
            return ActionResult(Outcome.RETRY, "will retry", detail)
        failed = next((r for r in results if r["outcome"] == "failed"), None)
        if failed is not None:
            line = f"CI/CD run not started (rule {failed['rule']!r}): {failed['error']}"
            return ActionResult(Outcome.FAILED, line[:_ACTION_MAX], detail)
        return ActionResult(Outcome.DONE, plan.summary(), detail)

    def _service(self, dispatch: Dispatch) -> Service:
        service = self.services.get(dispatch.service)
        if service is None:  # the rules changed since this dispatcher was built
            raise SettingError("AMLEVENTS_CICD_RULES", f"no client for {dispatch.service}; "
                                                       "restart the app after changing rules")
        return service

    def _one(self, dispatch: Dispatch) -> dict[str, Any]:
        """One dispatch's outcome: {"outcome": "done" | "failed", ...}, or raise RetryableError."""
        key = state_key(dispatch.request_id)
        state = dict(self.ledger.get_state(key) or {})
        status = state.get("status")
        if status == "done":
            return {**_done(state), "earlierDelivery": True}
        if status == "failed":  # could not tell whether it started: never sent again
            return {"outcome": "failed", "error": str(state.get("error", "")), "unknown": True}
        service = self._service(dispatch)
        if status == "pending":
            settled = self._reconcile(dispatch, service, key, state)
            if settled is not None:
                return settled
        intent = {"status": "pending", "since_s": self.clock()}
        self._record_intent(key, state or None, intent)
        try:
            started = service.send(dispatch)
        except PermanentError as exc:
            # Refused: nothing started. Not kept, so a replay (amlevents replay) of the failed
            # row sends it again once its cause is fixed.
            self._settle(key, {"status": "dropped"})
            return {"outcome": "failed", "error": str(exc)}
        except NotStarted:
            self._settle(key, {"status": "dropped"})  # nothing started: the next try sends again
            raise
        # Any other RetryableError (no answer, a 5xx): the intent stays for the lookup.
        return _done(self._settle(key, _record(started, intent)))

    def _reconcile(self, dispatch: Dispatch, service: Service, key: str,
                   state: Mapping[str, Any]) -> dict[str, Any] | None:
        """An earlier request got no answer: its outcome, or None when it never started."""
        since = float(state["since_s"])
        where = dispatch.describe()
        if not dispatch.carries_request_id:
            return self._cannot_tell(key, f"the request to start {where} at {utc_iso(since)} got "
                                          "no answer, and the rule passes no request id, so its "
                                          "run cannot be looked up")
        found = service.find(dispatch, since)
        if found.run_id:
            record = _record(Started(found.run_id, found.run_url), state)
            return _done(self._settle(key, record), reconciled=True)
        age = self.clock() - since
        if age < self.settings.reconcile_grace_s:
            raise RetryableError(
                f"the request to start {where} at {utc_iso(since)} got no answer and its run is "
                f"not listed yet; looking again until {RECONCILE_GRACE_S}="
                f"{self.settings.reconcile_grace_s:g} s have passed")
        if found.unnamed:
            return self._cannot_tell(
                key, f"the request to start {where} at {utc_iso(since)} got no answer; no run "
                     f"names its request id {dispatch.request_id}, but {found.unnamed} run(s) "
                     "since then name no request id at all, so one of them may be it (put the "
                     "request id in the run name: docs/cicd.md)")
        return None  # every run since is another request's: this one never started

    def _cannot_tell(self, key: str, why: str) -> dict[str, Any]:
        error = f"{why}: not starting it again, check the runs by hand"
        self._settle(key, {"status": "failed", "error": error, "unknown": True})
        return {"outcome": "failed", "error": error, "unknown": True}

    def _record_intent(self, key: str, expected: Mapping[str, Any] | None,
                       intent: Mapping[str, Any]) -> None:
        def change(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            return dict(intent) if (current or None) == (expected or None) else None

        if self.ledger.update_state(key, change) != dict(intent):
            raise RetryableError("another delivery changed this run's state meanwhile; "
                                 "will retry")

    def _settle(self, key: str, record: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.ledger.update_state(key, lambda _current: dict(record)) or record


def _record(started: Started, intent: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"status": "done", "since_s": float(intent["since_s"])}
    if started.run_id:
        record["run_id"] = started.run_id
    if started.run_url:
        record["run_url"] = started.run_url
    return record


def _done(state: Mapping[str, Any], *, reconciled: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {"outcome": "done"}
    if state.get("run_id"):
        found["runId"] = state["run_id"]
    if state.get("run_url"):
        found["runUrl"] = state["run_url"]
    if reconciled:
        found["reconciled"] = True
    return found
