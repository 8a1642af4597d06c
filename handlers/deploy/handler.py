"""ModelRegistered → decide (pure), keep versions in order per endpoint, deploy through the port."""

from __future__ import annotations

from handlers.deploy.decide import decide
from handlers.deploy.order import order_key, reserve, settle, why_not_newer
from handlers.deploy.policy import DeployPolicy
from handlers.errors import PermanentError, PolicyRefused, RetryableError, SettingError
from handlers.events.parse import ModelRegistered
from handlers.outcome import ActionResult, Outcome
from handlers.runtime.context import HandlerContext


def handle(event: ModelRegistered, ctx: HandlerContext) -> ActionResult:
    """Decide, keep versions in order per endpoint, then deploy through the adapter."""
    policy = ctx.settings_of(DeployPolicy.from_mapping)
    decision = decide(event, policy)
    if isinstance(decision, ActionResult):
        return decision
    plan, key, now = decision, order_key(decision), ctx.clock()
    if ctx.adapters.is_dry_run("deploy"):
        # A dry run touches nothing, ledger state included; it still reports what would skip.
        reason = why_not_newer(ctx.ledger.get_state(key), plan, now)
        return ActionResult.skipped(reason) if reason else ctx.adapters.deployer().deploy(plan)
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
    ctx.ledger.update_state(key, settle(plan, deployed=result.outcome is Outcome.DONE))
    return result
