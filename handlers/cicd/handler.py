"""Any Azure ML event a CI/CD rule takes → decide (pure), then start the runs through the port."""

from __future__ import annotations

from handlers.cicd.decide import decide
from handlers.cicd.settings import CicdSettings
from handlers.errors import SettingError
from handlers.events.parse import MlEvent
from handlers.outcome import ActionResult
from handlers.runtime.context import HandlerContext


def wants(event: MlEvent, ctx: HandlerContext) -> bool:
    """True when a rule lists the event's type: the concern then gets a ledger row of its own."""
    try:
        settings = ctx.settings_of(CicdSettings.from_mapping)
    except SettingError:
        # Unreadable rules cannot say no: the handler records `retry` naming the setting, and
        # Event Grid keeps the event until the setting is fixed (then the rules decide).
        return True
    return settings.wants(event.envelope.event_type)


def handle(event: MlEvent, ctx: HandlerContext) -> ActionResult:
    """Decide, then dispatch through the port (or its dry-run twin)."""
    decision = decide(event, ctx.settings_of(CicdSettings.from_mapping))
    if isinstance(decision, ActionResult):
        return decision
    return ctx.adapters.cicd_dispatcher().dispatch(decision)
