"""Model versions in order per endpoint (handlers/deploy/order.py): keys, refusals, state changes."""

from __future__ import annotations

import dataclasses
import hashlib

from handlers.deploy import order
from handlers.deploy.plan import DeploymentPlan
from handlers.events.workspace import WorkspaceRef
from tests.handlers.deploy.builders import Sample, plan_of, registered


def _plan(sample: Sample, version: int = 21, **changes: object) -> DeploymentPlan:
    return dataclasses.replace(plan_of(registered(sample, version, deploy="true")), **changes)


def test_the_key_is_the_endpoint_and_a_hash_of_workspace_endpoint_and_model(
        sample: Sample) -> None:
    plan = _plan(sample)
    material = f"{plan.workspace.resource_id.lower()}|sklearn-regression-model|" \
               "sklearn_regression_model"
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]
    assert order.order_key(plan) == f"deploy-order:sklearn-regression-model:{digest}"
    assert order.order_key(plan, rehearsal=True) == \
        f"deploy-order-rehearsal:sklearn-regression-model:{digest}"


def test_each_model_endpoint_and_workspace_keeps_its_own_order(sample: Sample) -> None:
    plan = _plan(sample)
    others = [_plan(sample, model_name="churn"), _plan(sample, endpoint="fraud-ep"),
              _plan(sample, workspace=WorkspaceRef("s2", "rg", "ws"))]
    keys = {order.order_key(p) for p in [plan, *others]}
    assert len(keys) == 4
    # The endpoint's case does not matter (Azure ML names ignore it); versions share one key.
    assert order.order_key(_plan(sample, endpoint="SKLEARN-Regression-Model")) == \
        order.order_key(plan) == order.order_key(_plan(sample, 20))


def test_why_not_newer_says_which_version_stands_in_the_way(sample: Sample) -> None:
    v21 = _plan(sample, 21)
    assert order.why_not_newer(None, v21, 0.0) == ""
    assert order.why_not_newer({"deployed_version": "21"}, v21, 0.0) == (
        "already deployed to endpoint sklearn-regression-model; "
        "sklearn_regression_model:21 is not newer")
    assert order.why_not_newer({"deployed_version": "30"}, v21, 0.0) == (
        "version 30 is deployed to endpoint sklearn-regression-model; "
        "sklearn_regression_model:21 is not newer")
    assert order.why_not_newer({"deployed_version": "9"}, v21, 0.0) == ""
    held = {"pending_version": "22", "pending_until_s": 100.0}
    assert order.why_not_newer(held, v21, 99.0) == (
        "version 22 of sklearn_regression_model is being deployed to endpoint "
        "sklearn-regression-model; 21 is older")
    assert order.why_not_newer(held, v21, 100.0) == ""  # the hold ends at its time
    assert order.why_not_newer({"pending_version": "21", "pending_until_s": 100.0}, v21, 0.0) == ""
    assert order.why_not_newer({"pending_version": "22"}, v21, 0.0) == ""  # no time: no hold


def test_reserve_keeps_what_else_the_state_holds(sample: Sample) -> None:
    v21 = _plan(sample, 21)
    assert order.reserve(v21, 10.0, 5.0)({"deployed_version": "20", "note": "x"}) == {
        "deployed_version": "20", "note": "x", "model": "sklearn_regression_model",
        "pending_version": "21", "pending_until_s": 15.0}


def test_settle_from_nothing_and_a_hold_for_another_version(sample: Sample) -> None:
    v21 = _plan(sample, 21)
    assert order.settle(v21, deployed=True)(None) == {
        "model": "sklearn_regression_model", "deployed_version": "21"}
    assert order.settle(v21, deployed=False)(None) == {"model": "sklearn_regression_model"}
    other = {"model": "sklearn_regression_model", "pending_version": "22",
             "pending_until_s": 9.0}
    assert order.settle(v21, deployed=False)(other) is None  # another version's hold stays
    assert order.settle(v21, deployed=True)(other) == {**other, "deployed_version": "21"}


def test_version_keys() -> None:
    assert order.version_key(" V1.10b ") == ((1, "v"), (0, 1), (1, "."), (0, 10), (1, "b"))
    assert order.version_key("10") > order.version_key("9")
