"""ModelRegistered → deploy the model when its tags ask for it ("no-code" deployment)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from handlers.actions import ActionResult
from handlers.context import HandlerContext
from handlers.events import ModelRegistered

DEPLOY_TAG = "deploy"
_OPT_IN = frozenset({"true", "yes", "1"})


@dataclass(frozen=True)
class DeploymentPlan:
    """Deploy one model version to one endpoint."""

    model_name: str
    model_version: str
    target: str
    endpoint: str
    deployment: str

    def summary(self) -> str:
        """One line for the ledger."""
        return (f"deploy {self.model_name}:{self.model_version} to {self.target} endpoint "
                f"{self.endpoint} as {self.deployment}")

    def as_dict(self) -> Mapping[str, Any]:
        """Details for the ledger."""
        return asdict(self)


def endpoint_name_for(model_name: str) -> str:
    """A valid endpoint name from a model name: 3–32 chars, letter first, letters/digits/hyphens."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"m-{name}"
    return name[:32].rstrip("-").ljust(3, "0")


def decide(event: ModelRegistered) -> DeploymentPlan | ActionResult:
    """A plan when the tags opt in, else a skip with the reason."""
    opt_in = event.model_tags.get(DEPLOY_TAG, "")
    if opt_in.strip().lower() not in _OPT_IN:
        shown = f"{opt_in!r}" if opt_in else "absent"
        return ActionResult.skipped(f"tag {DEPLOY_TAG} is {shown}; set {DEPLOY_TAG}=true to deploy")
    return DeploymentPlan(model_name=event.model_name, model_version=event.model_version,
                          target="managed", endpoint=endpoint_name_for(event.model_name),
                          deployment=f"v{event.model_version}".lower())


def handle(event: ModelRegistered, ctx: HandlerContext) -> ActionResult:
    """Decide, then deploy through the adapter (or its dry-run twin)."""
    decision = decide(event)
    if isinstance(decision, ActionResult):
        return decision
    return ctx.adapters.get("deploy").apply(decision)
