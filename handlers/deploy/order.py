"""Model versions in order per endpoint: never replace a newer version with an older one.

Events arrive out of order (v21 may be delivered before v20), so the ledger keeps, per model and
endpoint, the highest deployed version and a time-bounded hold on a version being deployed.
These are pure state changes for `Ledger.update_state`, safe when writers race.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from handlers.deploy.plan import DeploymentPlan
from handlers.events.workspace import WorkspaceRef

StateChange = Callable[[Mapping[str, Any] | None], Mapping[str, Any] | None]


@functools.lru_cache(maxsize=1024)  # pure; asked several times per event (deployed, pending, mine)
def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key for model versions: numeric parts compare as numbers (v9 < v10)."""
    parts = re.findall(r"\d+|[^\d]+", version.strip().lower())
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def order_key(plan: DeploymentPlan, *, rehearsal: bool = False) -> str:
    """The ledger state key for one model on one endpoint (table-key safe: no '/').

    A dry run (rehearsal) keeps its own state, so its planned versions never block the live run.
    """
    prefix = "deploy-order-rehearsal" if rehearsal else "deploy-order"
    return f"{prefix}:{_endpoint_part(plan.workspace, plan.endpoint, plan.model_name)}"


@functools.lru_cache(maxsize=1024)  # a rehearsal asks for both keys: one hash, not two
def _endpoint_part(workspace: WorkspaceRef, endpoint: str, model_name: str) -> str:
    material = f"{workspace.resource_id.lower()}|{endpoint.lower()}|{model_name}"
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]
    return f"{endpoint.lower()}:{digest}"


def why_not_newer(state: Mapping[str, Any] | None, plan: DeploymentPlan, now: float) -> str:
    """Why `plan` must not deploy given the ordering state, or '' when it may."""
    state = state or {}
    mine = version_key(plan.model_version)
    deployed = str(state.get("deployed_version") or "")
    if deployed and version_key(deployed) >= mine:
        word = "already" if version_key(deployed) == mine else f"version {deployed} is"
        return (f"{word} deployed to endpoint {plan.endpoint}; "
                f"{plan.model_name}:{plan.model_version} is not newer")
    pending = str(state.get("pending_version") or "")
    if pending and float(state.get("pending_until_s", 0)) > now and version_key(pending) > mine:
        return (f"version {pending} of {plan.model_name} is being deployed to endpoint "
                f"{plan.endpoint}; {plan.model_version} is older")
    return ""


def reserve(plan: DeploymentPlan, now: float, hold_s: float) -> StateChange:
    """A pure state change: hold the endpoint for this version unless a newer one holds it."""
    def change(state: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        if why_not_newer(state, plan, now):
            return None
        return {**(state or {}), "model": plan.model_name, "pending_version": plan.model_version,
                "pending_until_s": now + hold_s}
    return change


def settle(plan: DeploymentPlan, *, deployed: bool) -> StateChange:
    """A pure state change after the adapter: record the deployed version, release the hold."""
    def change(state: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        new = dict(state or {"model": plan.model_name})
        if deployed:
            current = str(new.get("deployed_version") or "")
            if not current or version_key(plan.model_version) > version_key(current):
                new["deployed_version"] = plan.model_version
        if new.get("pending_version") == plan.model_version:
            new.pop("pending_version", None)
            new.pop("pending_until_s", None)
        return new if new != state else None
    return change
