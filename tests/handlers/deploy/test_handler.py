"""Deployment through the handler: versions in order per endpoint, holds, dry run, refusals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from handlers.deploy import order as deploy_order
from handlers.deploy.handler import handle
from handlers.deploy.plan import DeploymentPlan
from handlers.errors import PermanentError, RetryableError
from handlers.outcome import ActionResult, Outcome
from handlers.runtime.context import HandlerContext
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.routing import ON_MODEL_REGISTERED
from tests.handlers.deploy.builders import Sample, plan_of, registered

# --- handle(): ordering and redelivery through the dispatcher ---------------------------------

@dataclass
class RecordingDeployer:
    """A deploy port that records plans (the Azure ML adapter is tested over HTTP elsewhere)."""

    plans: list[DeploymentPlan] = field(default_factory=list)
    fail: Exception | None = None

    def deploy(self, plan: DeploymentPlan) -> ActionResult:
        if self.fail is not None:
            raise self.fail
        self.plans.append(plan)
        return ActionResult.done(plan)


def live_context(dispatcher: Dispatcher, deployer: RecordingDeployer) -> HandlerContext:
    """The dispatcher's context with the deploy port filled by `deployer` (dry run off)."""
    ctx = dispatcher.context()
    return replace(ctx, adapters=ctx.adapters.with_ports(deployer=deployer))


def test_out_of_order_v21_then_v20_deploys_only_v21(sample: Sample,
                                                    make_dispatcher: Callable[..., Dispatcher]
                                                    ) -> None:
    deployer = RecordingDeployer()
    ctx = live_context(make_dispatcher(), deployer)
    assert handle(registered(sample, 21, deploy="true"), ctx).outcome is Outcome.DONE
    skipped = handle(registered(sample, 20, deploy="true"), ctx)
    assert skipped.outcome is Outcome.SKIPPED
    assert "version 21 is deployed to endpoint sklearn-regression-model" in skipped.detail
    assert [p.model_version for p in deployer.plans] == ["21"]
    # The same version again (another event id) is already there: no second deployment.
    again = handle(registered(sample, 21, deploy="true"), ctx)
    assert again.outcome is Outcome.SKIPPED and "already deployed" in again.detail
    assert len(deployer.plans) == 1


def test_other_endpoints_and_models_are_independent(sample: Sample,
                                                    make_dispatcher: Callable[..., Dispatcher]
                                                    ) -> None:
    deployer = RecordingDeployer()
    ctx = live_context(make_dispatcher(), deployer)
    handle(registered(sample, 21, deploy="true"), ctx)
    handle(registered(sample, 20, deploy="true", deploy_endpoint="other-ep"), ctx)
    handle(registered(sample, 3, name="another", deploy="true"), ctx)
    assert [p.model_version for p in deployer.plans] == ["21", "20", "3"]


def test_retry_keeps_the_hold_and_failure_releases_it(sample: Sample,
                                                      make_dispatcher: Callable[..., Dispatcher]
                                                      ) -> None:
    deployer = RecordingDeployer(fail=RetryableError("429"))
    ctx = live_context(make_dispatcher(), deployer)
    with pytest.raises(RetryableError):
        handle(registered(sample, 21, deploy="true"), ctx)
    deployer.fail = None
    held = handle(registered(sample, 20, deploy="true"), ctx)
    assert held.outcome is Outcome.SKIPPED and "being deployed" in held.detail
    deployer.fail = PermanentError("400")
    with pytest.raises(PermanentError):
        handle(registered(sample, 21, deploy="true"), ctx)
    deployer.fail = None
    assert handle(registered(sample, 20, deploy="true"), ctx).outcome is Outcome.DONE


# Redelivery through the real dispatcher and SDK: tests/handlers/adapters/test_azure_ml.py.


def test_dry_run_plans_and_writes_no_live_state(sample: Sample,
                                          make_dispatcher: Callable[..., Dispatcher]) -> None:
    dispatcher = make_dispatcher()
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = {"deploy": "true", "deploy_traffic": "25"}
    result = dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.PLANNED
    assert '"traffic":25' in result.detail and '"deployment":"v20"' in result.detail
    plan = plan_of(registered(sample, deploy="true"))
    assert dispatcher.ledger.get_state(deploy_order.order_key(plan)) is None


def test_dry_run_still_reports_an_older_version(sample: Sample,
                                               make_dispatcher: Callable[..., Dispatcher]) -> None:
    dispatcher = make_dispatcher()
    plan = plan_of(registered(sample, 21, deploy="true"))
    dispatcher.ledger.update_state(deploy_order.order_key(plan), deploy_order.settle(plan, deployed=True))
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = {"deploy": "true"}
    result = dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.SKIPPED and "version 21 is deployed" in result.detail


def test_sample_without_tags_is_skipped_by_default(sample: Sample,
                                                   make_dispatcher: Callable[..., Dispatcher]
                                                   ) -> None:
    result = make_dispatcher().dispatch(sample("model_registered"), function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.SKIPPED


def test_refusal_is_recorded_not_retried(sample: Sample,
                                         make_dispatcher: Callable[..., Dispatcher]) -> None:
    dispatcher = make_dispatcher()
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = {"deploy": "true", "deploy_target": "aks"}
    result = dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.REFUSED and not result.should_retry
    assert "tag deploy_target" in result.detail


def test_bad_policy_setting_is_retried_naming_it(sample: Sample,
                                                 make_dispatcher: Callable[..., Dispatcher]) -> None:
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = {"deploy": "true"}
    result = make_dispatcher(AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT="lots").dispatch(
        raw, function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.RETRY
    assert "AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT" in result.detail


def test_dry_run_rehearses_ordering_like_the_live_run(sample: Sample,
                                                      make_dispatcher: Callable[..., Dispatcher]
                                                      ) -> None:
    # Reported: v31 planned, then v30 planned again (v30 over v31), where live skips v30.
    ctx = make_dispatcher().context()
    assert handle(registered(sample, 31, deploy="true"), ctx).outcome is Outcome.PLANNED
    older = handle(registered(sample, 30, deploy="true"), ctx)
    assert older.outcome is Outcome.SKIPPED and "version 31 is deployed" in older.detail
    again = handle(registered(sample, 31, deploy="true"), ctx)
    assert again.outcome is Outcome.SKIPPED and "already deployed" in again.detail


def test_rehearsal_state_never_reaches_the_live_run(sample: Sample,
                                                    make_dispatcher: Callable[..., Dispatcher]
                                                    ) -> None:
    dispatcher = make_dispatcher()
    rehearsal = dispatcher.context()
    assert handle(registered(sample, 31, deploy="true"), rehearsal).outcome is Outcome.PLANNED
    deployer = RecordingDeployer()
    live = live_context(dispatcher, deployer)  # same ledger, deploy now live
    assert handle(registered(sample, 31, deploy="true"), live).outcome is Outcome.DONE
    assert [p.model_version for p in deployer.plans] == ["31"]
