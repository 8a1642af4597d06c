"""The dry-run twins of the ports: they record the plan and touch nothing.

They are built only after the live adapter's settings validated (handlers/adapters/__init__.py),
so a dry run reports a misconfigured adapter exactly as the live run would.
"""

from __future__ import annotations

import hashlib

from handlers.deploy.plan import DeploymentPlan
from handlers.ledger.ledger import Ledger
from handlers.notify.plan import NotificationPlan
from handlers.outcome import ActionResult
from handlers.retrain.plan import RetrainPlan
from handlers.retrain.settings import COOLDOWN_S, RetrainSettings


class DryRunDeployer:
    """A Deployer that answers `planned`."""

    def deploy(self, plan: DeploymentPlan) -> ActionResult:
        """Record the plan as planned."""
        return ActionResult.planned(plan)


class DryRunRetrainRunner:
    """A RetrainRunner that answers `planned`, and keeps the cooldown as the live runner does.

    A planned run starts the monitor's cooldown in the rehearsal's own ledger state (never the
    live runner's). Whether a real run is still active cannot be rehearsed: none was started.
    """

    def __init__(self, ledger: Ledger, settings: RetrainSettings) -> None:
        self.ledger = ledger
        self.settings = settings

    def start(self, plan: RetrainPlan) -> ActionResult:
        """Plan the run, or skip it while the monitor's last planned run is cooling down."""
        if plan.placeholder:
            return ActionResult.planned(plan)  # no target yet: nothing to cool down
        key = rehearsal_state_key(plan.monitor_key)
        now = self.ledger.clock()
        last = (self.ledger.get_state(key) or {}).get("last") or {}
        if last and last.get("request_id") != plan.request_id:
            elapsed = now - float(last["started_at_s"])
            if elapsed < self.settings.cooldown_s:
                return ActionResult.skipped(
                    f"cooldown: the last retraining run (planned) for monitor {plan.monitor} "
                    f"started {elapsed:.0f} s ago ({COOLDOWN_S}={self.settings.cooldown_s:g})",
                    action="retraining cooling down")
        if last.get("request_id") != plan.request_id:
            started = {"last": {"request_id": plan.request_id, "started_at_s": now}}
            self.ledger.update_state(key, lambda _state: started)
        return ActionResult.planned(plan)


def rehearsal_state_key(monitor_key: str) -> str:
    """The rehearsal's state key for a monitor (hashed: Table keys forbid '/', '#', '?')."""
    digest = hashlib.sha256(monitor_key.strip().lower().encode("utf-8")).hexdigest()[:32]
    return f"retrain-rehearsal-{digest}"


class DryRunNotifier:
    """A Notifier that answers `planned` and has no digests to send."""

    def notify(self, plan: NotificationPlan) -> ActionResult:
        """Record the plan as planned."""
        return ActionResult.planned(plan)

    def flush(self) -> list[str]:
        """Nothing is held in a dry run."""
        return []
