"""What handlers need done, as typed Protocols. Adapters (and their dry-run twins) implement them.

Handlers depend on these ports, never on an adapter module: the Azure SDKs stay behind
handlers/adapters/, imported lazily on first use, and mypy checks each side of the contract.
"""

from __future__ import annotations

from typing import Protocol

from handlers.cicd.plan import CicdPlan
from handlers.deploy.plan import DeploymentPlan
from handlers.ledger.ledger import LedgerStore
from handlers.notify.plan import NotificationPlan
from handlers.outcome import ActionResult
from handlers.retrain.plan import RetrainPlan

__all__ = ["CicdDispatcher", "Deployer", "LedgerStore", "Notifier", "RetrainRunner"]


class Deployer(Protocol):
    """Deploys a model version to an online endpoint."""

    def deploy(self, plan: DeploymentPlan) -> ActionResult:
        """Deploy, or raise RetryableError / PermanentError / PolicyRefused."""
        ...


class RetrainRunner(Protocol):
    """Starts a retraining run, once per event and without pile-ups."""

    def start(self, plan: RetrainPlan) -> ActionResult:
        """Start the run, or raise RetryableError / PermanentError / SettingError."""
        ...


class Notifier(Protocol):
    """Tells people, on the configured channels, within the storm-control limits."""

    def notify(self, plan: NotificationPlan) -> ActionResult:
        """Send, or raise RetryableError naming each channel that must be retried."""
        ...

    def flush(self) -> list[str]:
        """Send the digests of storm windows that have closed; one line per digest sent."""
        ...


class CicdDispatcher(Protocol):
    """Starts CI/CD runs (GitHub Actions, Azure Pipelines): once per event and rule."""

    def dispatch(self, plan: CicdPlan) -> ActionResult:
        """Start every run of the plan not started yet; `done`, `failed` or `retry` (with each
        run's outcome in the detail), or raise SettingError."""
        ...
