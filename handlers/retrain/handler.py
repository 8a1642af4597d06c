"""Drift (DatasetDriftDetected, or a model-monitor breach on RunStatusChanged) → decide (pure),
then start the run through the RetrainRunner port."""

from __future__ import annotations

from handlers.events.parse import RunStatusChanged
from handlers.outcome import ActionResult
from handlers.retrain.decide import DriftEvent, decide
from handlers.retrain.settings import RetrainSettings
from handlers.runtime.context import HandlerContext


def handle(event: DriftEvent, ctx: HandlerContext) -> ActionResult:
    """Decide, then start the run through the port (or its dry-run twin)."""
    settings = ctx.settings_of(RetrainSettings.from_mapping)
    decision = decide(event, settings, dry_run=ctx.adapters.is_dry_run("retrain"))
    if isinstance(decision, ActionResult):
        return decision
    return ctx.adapters.retrain_runner().start(decision)


def wants(event: object, ctx: HandlerContext) -> bool:
    """Retraining also takes a RunStatusChanged that carries a model monitor's breach tag.

    Any status: a Failed one is the breach; the transition back (Failed → Completed) is recorded
    by retraining too, and not acted on (decide says so).
    """
    return isinstance(event, RunStatusChanged) and event.monitor_breach is not None
