"""ModelRegistered → decide (pure), keep versions in order per endpoint, deploy through the port."""

from __future__ import annotations

from handlers.deploy.decide import decide
from handlers.deploy.order import order_key, reserve, settle, why_not_newer
from handlers.deploy.policy import DeployPolicy
from handlers.errors import PermanentError, PolicyRefused, RetryableError, SettingError
from handlers.events.parse import ModelRegistered
from handlers.outcome import ActionResult, Outcome
from handlers.runtime.context import HandlerContext

_HOLDING = frozenset({Outcome.DONE, Outcome.PLANNED})


def handle(event: ModelRegistered, ctx: HandlerContext) -> ActionResult:
    """Decide, keep versions in order per endpoint, then deploy through the port.

    A dry run follows the same path with its own ordering state (a rehearsal), so it skips
    exactly what the live run would skip, and going live later starts from the live state.
    """
    policy = ctx.settings_of(DeployPolicy.from_mapping)
    decision = decide(event, policy)
    if isinstance(decision, ActionResult):
        return decision
    plan, now = decision, ctx.clock()
    rehearsal = ctx.adapters.is_dry_run("deploy")
    key = order_key(plan, rehearsal=rehearsal)
    if rehearsal:
        # What is really deployed counts in a rehearsal too; it never writes the live state.
        reason = why_not_newer(ctx.ledger.get_state(order_key(plan)), plan, now)
        if reason:
            return ActionResult.skipped(reason)
    # Whether or not the hold was written, the stored state now says why we may not deploy.
    reason = why_not_newer(ctx.ledger.update_state(key, reserve(plan, now, policy.order_hold_s)),
                           plan, now)
    if reason:
        return ActionResult.skipped(reason)
    try:
        result = ctx.adapters.deployer().deploy(plan)
    except RetryableError:
        raise  # keep the hold: Event Grid redelivers this version
    except (PermanentError, PolicyRefused, SettingError):
        ctx.ledger.update_state(key, settle(plan, deployed=False))
        raise
    # A planned version holds its endpoint in the rehearsal exactly as a deployed one does live.
    ctx.ledger.update_state(key, settle(plan, deployed=result.outcome in _HOLDING))
    return result
