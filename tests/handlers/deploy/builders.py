"""Model registrations and plans for the deployment tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handlers.deploy import decide as dbt
from handlers.deploy import policy as dp
from handlers.deploy.plan import DeploymentPlan
from handlers.events.parse import ModelRegistered, parse_event

Sample = Callable[[str], dict[str, Any]]
OPEN = dp.DeployPolicy(allowed_targets=dp.TARGETS, allowed_computes=("aks-1", "k8s-1"),
                       max_instance_count=3)


def registered(sample: Sample, version: str | int = 20, name: str = "sklearn_regression_model",
               **tags: str) -> ModelRegistered:
    """The documented ModelRegistered sample with these tags and version."""
    raw = sample("model_registered")
    raw["data"].update(ModelName=name, ModelVersion=version, ModelTags=tags)
    raw["id"] = f"{name}-{version}"
    event = parse_event(raw)
    assert isinstance(event, ModelRegistered)
    return event


def plan_of(event: ModelRegistered, policy: dp.DeployPolicy = OPEN) -> DeploymentPlan:
    decision = dbt.decide(event, policy)
    assert isinstance(decision, DeploymentPlan), decision
    return decision
