"""Run and deployment events → decide (pure), then notify through the Notifier port."""

from __future__ import annotations

from handlers.events.parse import MlEvent
from handlers.notify.decide import decide
from handlers.notify.settings import NotifySettings
from handlers.outcome import ActionResult
from handlers.runtime.context import HandlerContext


def handle(event: MlEvent, ctx: HandlerContext) -> ActionResult:
    """Decide, then notify through the port (or its dry-run twin)."""
    decision = decide(event, ctx.settings_of(NotifySettings.from_mapping))
    if isinstance(decision, ActionResult):
        return decision
    return ctx.adapters.notifier().notify(decision)


def flush_digests(ctx: HandlerContext) -> list[str]:
    """Send the digests of storm windows that have closed (for a timer trigger); what was sent."""
    if ctx.adapters.is_dry_run("notify"):
        return []  # a rehearsal holds nothing back, so it has nothing to flush
    return ctx.adapters.notifier().flush()
