"""DatasetDriftDetected → start a retraining pipeline when drift is over the threshold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from handlers.actions import ActionResult
from handlers.context import HandlerContext
from handlers.events import DatasetDriftDetected


@dataclass(frozen=True)
class RetrainPlan:
    """Start one retraining pipeline run for a drift monitor."""

    monitor: str
    drift_run_id: str
    coefficient: float
    threshold: float
    parameters: Mapping[str, Any]

    def summary(self) -> str:
        """One line for the ledger."""
        return (f"start retraining for monitor {self.monitor} "
                f"(drift {self.coefficient:.3f} >= {self.threshold:.3f})")

    def as_dict(self) -> Mapping[str, Any]:
        """Details for the ledger."""
        return asdict(self)


def decide(event: DatasetDriftDetected, threshold: float) -> RetrainPlan | ActionResult:
    """A plan when the coefficient reaches the threshold, else a skip naming both."""
    if event.drift_coefficient < threshold:
        return ActionResult.skipped(
            f"drift coefficient {event.drift_coefficient:.4f} is below threshold {threshold:.4f}")
    return RetrainPlan(
        monitor=event.data_drift_name, drift_run_id=event.run_id,
        coefficient=event.drift_coefficient, threshold=threshold,
        parameters={"monitorName": event.data_drift_name, "monitorId": event.data_drift_id,
                    "driftRunId": event.run_id, "baseDatasetId": event.base_dataset_id,
                    "targetDatasetId": event.target_dataset_id,
                    "driftCoefficient": event.drift_coefficient,
                    "windowStart": event.start_time, "windowEnd": event.end_time})


def handle(event: DatasetDriftDetected, ctx: HandlerContext) -> ActionResult:
    """Decide, then start the run through the adapter (or its dry-run twin)."""
    decision = decide(event, ctx.settings.drift_threshold)
    if isinstance(decision, ActionResult):
        return decision
    return ctx.adapters.get("retrain").apply(decision)
