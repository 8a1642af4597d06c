"""DatasetDriftDetected → start a retraining pipeline when drift is over the threshold.

Deciding is pure: threshold (per monitor, else AMLEVENTS_DRIFT_THRESHOLD), route (monitor →
Data Factory target, else the default target), pipeline parameters built from the event.
Starting the run, without pile-ups and once per event, is the adapter's work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.events.parse import DatasetDriftDetected
from handlers.ledger.ledger import event_key
from handlers.outcome import ActionResult
from handlers.retrain.plan import RetrainPlan
from handlers.retrain.settings import (
    DEFAULT_TARGET,
    PLACEHOLDER_TARGET,
    REQUEST_ID,
    ROUTES,
    RetrainSettings,
)


def request_id_for(event: DatasetDriftDetected) -> str:
    """The same for every delivery of one event, so a redelivery finds the run it started."""
    envelope = event.envelope
    return event_key(envelope.topic, envelope.event_type, envelope.id)


def pipeline_parameters(event: DatasetDriftDetected, names: Mapping[str, str],
                        request_id: str) -> dict[str, Any]:
    """The ADF pipeline parameters: event fields under their configured names."""
    values: dict[str, Any] = {
        "monitorName": event.data_drift_name, "monitorId": event.data_drift_id,
        "driftRunId": event.run_id, "baseDatasetId": event.base_dataset_id,
        "targetDatasetId": event.target_dataset_id, "driftCoefficient": event.drift_coefficient,
        "windowStart": event.start_time, "windowEnd": event.end_time, REQUEST_ID: request_id}
    return {name: values[field] for field, name in names.items()}


def decide(event: DatasetDriftDetected, settings: RetrainSettings, *,
           dry_run: bool = False) -> RetrainPlan | ActionResult:
    """A plan when drift reaches the monitor's threshold and the monitor has a target."""
    name, monitor_id = event.data_drift_name, event.data_drift_id
    threshold = settings.threshold_for(name, monitor_id, settings.drift_threshold)
    coefficient = event.drift_coefficient
    if coefficient < threshold:
        return ActionResult.skipped(
            f"drift coefficient {coefficient:.4f} of monitor {name} is below threshold "
            f"{threshold:.4f}", action="no retraining")
    target = settings.target_for(name, monitor_id)
    placeholder = False
    if target is None:
        if not (dry_run and not settings.has_targets):
            return ActionResult.skipped(
                f"no Data Factory target for drift monitor {name} ({monitor_id}): add it to "
                f"{ROUTES} or set {DEFAULT_TARGET}", action="no retraining")
        target, placeholder = PLACEHOLDER_TARGET, True
    request_id = request_id_for(event)
    return RetrainPlan(
        monitor=name, monitor_id=monitor_id, drift_run_id=event.run_id,
        coefficient=coefficient, threshold=threshold, target=target,
        parameters=pipeline_parameters(event, settings.parameter_names, request_id),
        request_id=request_id, request_parameter=settings.parameter_names[REQUEST_ID],
        placeholder=placeholder)
