"""Run and deployment events → notifications (failed runs by default)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from handlers.actions import ActionResult
from handlers.context import HandlerContext
from handlers.events import MlEvent, ModelDeployed, RunCompleted, RunStatusChanged
from handlers.settings import NOTIFY_MODEL_DEPLOYED, NOTIFY_RUN_COMPLETED, NOTIFY_RUN_STATUSES


@dataclass(frozen=True)
class NotificationPlan:
    """Tell people about one event."""

    event_type: str
    title: str
    fields: Mapping[str, str]

    def summary(self) -> str:
        """One line for the ledger."""
        return f"notify: {self.title}"

    def as_dict(self) -> Mapping[str, Any]:
        """Details for the ledger."""
        return asdict(self)


def decide(event: MlEvent, ctx: HandlerContext) -> NotificationPlan | ActionResult:
    """A plan for the events the settings ask to notify about, else a skip with the reason."""
    settings = ctx.settings
    if isinstance(event, RunStatusChanged):
        if event.run_status.strip().lower() not in settings.notify_run_statuses:
            return ActionResult.skipped(
                f"run status {event.run_status!r} is not in {NOTIFY_RUN_STATUSES} "
                f"({', '.join(sorted(settings.notify_run_statuses))})")
        return _run_plan(event, event.run_status)
    if isinstance(event, RunCompleted):
        if not settings.notify_run_completed:
            return ActionResult.skipped(f"RunCompleted notifications are off ({NOTIFY_RUN_COMPLETED})")
        return _run_plan(event, "completed")
    if isinstance(event, ModelDeployed):
        if not settings.notify_model_deployed:
            return ActionResult.skipped(f"ModelDeployed notifications are off ({NOTIFY_MODEL_DEPLOYED})")
        return NotificationPlan(event.envelope.event_type, f"deployed to {event.service_name}",
                                {"service": event.service_name,
                                 "models": ", ".join(event.model_ids)})
    return ActionResult.skipped(f"{event.envelope.event_type} does not notify")


def _run_plan(event: RunStatusChanged | RunCompleted, status: str) -> NotificationPlan:
    return NotificationPlan(
        event.envelope.event_type,
        f"run {event.run_id} in experiment {event.experiment_name} is {status.lower()}",
        {"experiment": event.experiment_name, "run_id": event.run_id, "status": status,
         "run_type": event.run_type})


def handle(event: MlEvent, ctx: HandlerContext) -> ActionResult:
    """Decide, then notify through the adapter (or its dry-run twin)."""
    decision = decide(event, ctx)
    if isinstance(decision, ActionResult):
        return decision
    return ctx.adapters.get("notify").apply(decision)
