"""The CicdDispatcher's dry-run twin: the exact requests are recorded (`planned`), none is sent.

Built only after the live settings validated (handlers/adapters/__init__.py), so a rehearsal meets
a missing GitHub credential or an unreadable App key as the live run would.
"""

from __future__ import annotations

from handlers.cicd.plan import CicdPlan
from handlers.outcome import ActionResult


class DryRunCicdDispatcher:
    """A CicdDispatcher that answers `planned`, each request (method, URL, body) in the detail."""

    def dispatch(self, plan: CicdPlan) -> ActionResult:
        """Record the plan as planned; no credential is read or shown."""
        return ActionResult.planned(plan)
