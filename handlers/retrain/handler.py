"""DatasetDriftDetected → decide (pure), then start the run through the RetrainRunner port."""

from __future__ import annotations

from handlers.events.parse import DatasetDriftDetected
from handlers.outcome import ActionResult
from handlers.retrain.decide import decide
from handlers.retrain.settings import RetrainSettings
from handlers.runtime.context import HandlerContext


def handle(event: DatasetDriftDetected, ctx: HandlerContext) -> ActionResult:
    """Decide, then start the run through the port (or its dry-run twin)."""
    settings = ctx.settings_of(RetrainSettings.from_mapping)
    decision = decide(event, settings, dry_run=ctx.adapters.is_dry_run("retrain"))
    if isinstance(decision, ActionResult):
        return decision
    return ctx.adapters.retrain_runner().start(decision)
