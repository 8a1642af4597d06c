"""The dry-run twin of every adapter: records the plan, touches nothing."""

from __future__ import annotations

from handlers.outcome import ActionResult, Plan


class DryRunAdapter:
    """Answers every plan with `planned`; stands in for the deployer, pipeline runner, notifier."""

    def apply(self, plan: Plan) -> ActionResult:
        """Record the plan as planned."""
        return ActionResult.planned(plan)
