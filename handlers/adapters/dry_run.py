"""The dry-run twins of the ports: they record the plan and touch nothing.

They are built only after the live adapter's settings validated (handlers/adapters/__init__.py),
so a dry run reports a misconfigured adapter exactly as the live run would.
"""

from __future__ import annotations

from handlers.deploy.plan import DeploymentPlan
from handlers.notify.plan import NotificationPlan
from handlers.outcome import ActionResult
from handlers.retrain.plan import RetrainPlan


class DryRunDeployer:
    """A Deployer that answers `planned`."""

    def deploy(self, plan: DeploymentPlan) -> ActionResult:
        """Record the plan as planned."""
        return ActionResult.planned(plan)


class DryRunRetrainRunner:
    """A RetrainRunner that answers `planned`."""

    def start(self, plan: RetrainPlan) -> ActionResult:
        """Record the plan as planned."""
        return ActionResult.planned(plan)


class DryRunNotifier:
    """A Notifier that answers `planned` and has no digests to send."""

    def notify(self, plan: NotificationPlan) -> ActionResult:
        """Record the plan as planned."""
        return ActionResult.planned(plan)

    def flush(self) -> list[str]:
        """Nothing is held in a dry run."""
        return []
