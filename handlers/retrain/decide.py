"""Drift → a retraining run, from either of Azure ML's two event sources of drift (pure).

* v1 data drift monitors emit `DatasetDriftDetected`: retrain when `DriftCoefficient` reaches the
  monitor's threshold (per monitor, else AMLEVENTS_DRIFT_THRESHOLD).
* v2 model monitors fail their monitoring run and tag it: a `RunStatusChanged` (Failed) carrying
  `RunTags.azureml_modelmonitor_threshold_breached`. The monitor has applied its own thresholds, so
  AMLEVENTS_DRIFT_THRESHOLD does not apply; a threshold set for the signal or monitor in
  AMLEVENTS_DRIFT_MONITOR_THRESHOLDS raises the bar (a breached metric must go beyond it). The tag
  on a run that is not Failed is the transition back (or a late event): recorded, not acted on.

Both route to a target (Data Factory pipeline, Azure ML pipeline component, batch endpoint) and
carry parameters built from the event under the configured names. Starting the run, once per
event and without pile-ups, is the adapter's work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from handlers.events.parse import DatasetDriftDetected, RunStatusChanged
from handlers.events.types import MonitorBreach, Violation
from handlers.ledger.ledger import event_key
from handlers.outcome import ActionResult
from handlers.retrain.plan import BREACH_SOURCE, DRIFT_SOURCE, BreachFacts, RetrainPlan
from handlers.retrain.settings import (
    DEFAULT_TARGET,
    MONITOR_THRESHOLDS,
    PLACEHOLDER_COMPONENT,
    PLACEHOLDER_TARGET,
    REQUEST_ID,
    ROUTES,
    RetrainSettings,
)

DriftEvent = DatasetDriftDetected | RunStatusChanged
_EXPERIMENT_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_VIOLATIONS_PASSED = 50  # parameters and job inputs are bounded; the ledger keeps them all
_TAG_CHARS = 256


def request_id_for(event: DriftEvent) -> str:
    """The same for every delivery of one event, so a redelivery finds the run it started."""
    envelope = event.envelope
    return event_key(envelope.topic, envelope.event_type, envelope.id)


def job_name_for(request_id: str) -> str:
    """The Azure ML job's name: chosen by the caller, derived from the event (exactly one job)."""
    return f"amlevents-{request_id}"


def experiment_for(monitor: str) -> str:
    """The experiment the job goes to: one per monitor (letters, digits, `_` and `-`)."""
    cleaned = _EXPERIMENT_UNSAFE.sub("-", monitor).strip("-") or "monitor"
    return f"amlevents-retrain-{cleaned}"[:255]


def pipeline_parameters(event: DatasetDriftDetected, names: Mapping[str, str],
                        request_id: str) -> dict[str, Any]:
    """The v1 drift parameters: event fields under their configured names."""
    values: dict[str, Any] = {
        "monitorName": event.data_drift_name, "monitorId": event.data_drift_id,
        "driftRunId": event.run_id, "baseDatasetId": event.base_dataset_id,
        "targetDatasetId": event.target_dataset_id, "driftCoefficient": event.drift_coefficient,
        "windowStart": event.start_time, "windowEnd": event.end_time, REQUEST_ID: request_id}
    return _named(values, names)


def breach_parameters(event: RunStatusChanged, breach: MonitorBreach, names: Mapping[str, str],
                      request_id: str) -> dict[str, Any]:
    """The v2 breach parameters: monitor, signal, the monitoring run, features, violations."""
    violations = [v.as_dict() for v in breach.violations[:_VIOLATIONS_PASSED]]
    values: dict[str, Any] = {
        "monitorName": breach.monitor_key, "signalName": breach.signal,
        "driftRunId": event.run_id, "features": ",".join(breach.features),
        "violations": json.dumps(violations, separators=(",", ":")),
        # The monitoring run's status changed when its window closed: the end of the window.
        "windowEnd": event.envelope.event_time, REQUEST_ID: request_id}
    return _named(values, names)


def _named(values: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    # Fields the event source does not have are left out; dropped fields are not in `names`.
    return {name: values[field] for field, name in names.items() if field in values}


def _tags(event: DriftEvent, request_id: str, monitor: str,
          breach: MonitorBreach | None) -> dict[str, str]:
    """Azure ML job tags pointing back to the event that started the job."""
    envelope = event.envelope
    tags = {"amlevents.eventId": envelope.id, "amlevents.eventType": envelope.event_type,
            "amlevents.requestId": request_id, "amlevents.monitor": monitor,
            "amlevents.source": BREACH_SOURCE if breach is not None else DRIFT_SOURCE,
            "amlevents.monitoringRunId": event.run_id}
    if breach is not None:
        tags["amlevents.signal"] = breach.signal
    return {key: value[:_TAG_CHARS] for key, value in tags.items()}


def decide(event: DriftEvent, settings: RetrainSettings, *,
           dry_run: bool = False) -> RetrainPlan | ActionResult:
    """A plan when the drift or breach calls for retraining and has a target, else a skip."""
    if isinstance(event, RunStatusChanged):
        return decide_breach(event, settings, dry_run=dry_run)
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
                f"no retraining target for drift monitor {name} ({monitor_id}): add it to "
                f"{ROUTES} or set {DEFAULT_TARGET}", action="no retraining")
        target, placeholder = PLACEHOLDER_TARGET, True
    request_id = request_id_for(event)
    return RetrainPlan(
        monitor=name, monitor_id=monitor_id, drift_run_id=event.run_id,
        coefficient=coefficient, threshold=threshold, target=target,
        parameters=pipeline_parameters(event, settings.parameter_names, request_id),
        request_id=request_id, request_parameter=settings.parameter_names[REQUEST_ID],
        placeholder=placeholder, event_id=event.envelope.id,
        job_name=job_name_for(request_id), experiment=experiment_for(name),
        tags=_tags(event, request_id, name, None))


def decide_breach(event: RunStatusChanged, settings: RetrainSettings, *,
                  dry_run: bool = False) -> RetrainPlan | ActionResult:
    """A plan for a v2 model-monitor breach (a failed monitoring run carrying the tag)."""
    breach = event.monitor_breach
    if breach is None:
        return ActionResult.skipped(f"run {event.run_id} carries no model-monitor breach",
                                    action="no retraining")
    if not event.is_monitor_breach:
        return ActionResult.skipped(
            f"monitoring run {event.run_id} of signal {breach.signal or '?'} is "
            f"{event.run_status}, not Failed: the monitor recovered (or this event is late); "
            "nothing to retrain", action="monitor recovered")
    if not breach.signal:
        return ActionResult.skipped(
            f"monitoring run {event.run_id} failed on a threshold, but its breach message names "
            "no signal amlevents can read; nothing is routed", action="no retraining")
    signal, monitor = breach.signal, breach.monitor
    threshold: float | None = None
    own = settings.breach_threshold(signal, monitor)
    if own is not None:
        key, threshold = own
        beyond = [v for v in breach.violations if _beyond(v, threshold)]
        if not beyond:
            worst = "; ".join(v.describe() for v in breach.violations[:3]) or "none readable"
            return ActionResult.skipped(
                f"no breached metric of signal {signal} goes beyond {threshold:.4f}, its "
                f"threshold in {MONITOR_THRESHOLDS} ({key!r}): {worst}", action="no retraining")
    route, target = settings.breach_target(signal, monitor)
    placeholder = False
    if target is None:
        if route is not None or not (dry_run and not settings.has_targets):
            why = f"route {route!r} is null" if route is not None else "no route"
            return ActionResult.skipped(
                f"no retraining target for signal {signal} of monitor {monitor or '?'} ({why}): "
                f"add the signal or the monitor to {ROUTES} or set {DEFAULT_TARGET}",
                action="no retraining")
        target, placeholder = PLACEHOLDER_COMPONENT, True
    request_id = request_id_for(event)
    facts = BreachFacts(signal=signal, monitor=monitor, monitoring_run_id=event.run_id,
                        topic=event.envelope.topic, violations=breach.violations)
    return RetrainPlan(
        monitor=breach.monitor_key, monitor_id="", drift_run_id=event.run_id, coefficient=None,
        threshold=threshold, target=target,
        parameters=breach_parameters(event, breach, settings.parameter_names, request_id),
        request_id=request_id, request_parameter=settings.parameter_names[REQUEST_ID],
        placeholder=placeholder, breach=facts, event_id=event.envelope.id,
        job_name=job_name_for(request_id), experiment=experiment_for(breach.monitor_key),
        tags=_tags(event, request_id, breach.monitor_key, breach))


def _beyond(violation: Violation, threshold: float) -> bool:
    """A breached metric past the operator's own threshold, in the direction it breached."""
    if violation.higher_is_worse:
        return violation.value >= threshold
    return violation.value <= threshold
