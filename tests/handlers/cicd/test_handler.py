"""The cicd concern through the real Dispatcher: its own ledger row beside the home concern's,
exactly once whichever function the event arrives at, and the dry run's exact requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from handlers.ledger.ledger import event_key
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher, DispatchResult
from handlers.runtime.routing import (
    ON_ML_EVENT,
    ON_MODEL_REGISTERED,
    ON_RUN_STATUS,
    concern_key,
    concern_of,
)

Sample = Callable[[str], dict[str, Any]]
TOKEN = "github_pat_11ABCDEFG0123456789_secret"
RELEASE: dict[str, Any] = {"name": "release", "when": {"types": ["ModelRegistered"],
                                       "tags": {"stage": "production"}},
           "github": {"repository": "contoso/ml-release", "workflow": "release.yml",
                      "ref": "main", "inputs": {"model": "{data.ModelName}",
                                                "version": "{data.ModelVersion}"}}}
INVESTIGATE: dict[str, Any] = {"name": "investigate", "when": {"types": ["RunStatusChanged"],
                                               "runStatus": ["failed"]},
               "azurePipelines": {"organization": "contoso", "project": "ops", "pipelineId": 9}}


def rules(*items: dict[str, Any]) -> str:
    return json.dumps(list(items))


def registered(sample: Sample, **tags: str) -> dict[str, Any]:
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = tags
    return raw


def cicd(result: DispatchResult) -> DispatchResult:
    (found,) = [r for r in (result, *result.also) if r.key.endswith("-cicd")]
    return found


def test_a_matching_event_gets_a_planned_cicd_row_with_the_exact_request(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_CICD_RULES=rules(RELEASE), AMLEVENTS_GITHUB_TOKEN=TOKEN)
    raw = registered(sample, deploy="true", stage="production")
    result = dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)
    key = event_key(raw["topic"], raw["eventType"], raw["id"])
    assert result.key == key and result.outcome is Outcome.PLANNED  # deploy, the home concern
    row = cicd(result)
    assert row.key == f"{key}-cicd" and row.outcome is Outcome.PLANNED
    assert row.action == ("start GitHub workflow release.yml in contoso/ml-release on main "
                          "(rule 'release')")
    (planned,) = json.loads(row.detail)["dispatches"]
    assert planned["request"]["method"] == "POST"
    assert planned["request"]["url"] == ("https://api.github.com/repos/contoso/ml-release/"
                                         "actions/workflows/release.yml/dispatches")
    assert planned["request"]["body"]["inputs"] == {
        "model": "sklearn_regression_model", "version": "20",
        "amlevents_request_id": planned["requestId"]}
    assert TOKEN not in row.detail and "Authorization" not in row.detail
    assert [e.key for e in dispatcher.ledger.entries()] == [key, f"{key}-cicd"]


def test_a_redelivery_repeats_neither_concern(make_dispatcher: Callable[..., Dispatcher],
                                              sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_CICD_RULES=rules(RELEASE), AMLEVENTS_GITHUB_TOKEN=TOKEN)
    raw = registered(sample, deploy="true", stage="production")
    dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)
    again = dispatcher.dispatch(raw, function=ON_ML_EVENT)  # another subscription, same event
    assert again.duplicate and cicd(again).duplicate
    assert len(dispatcher.ledger.entries()) == 2


def test_a_type_no_rule_lists_gets_no_cicd_row(make_dispatcher: Callable[..., Dispatcher],
                                               sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_CICD_RULES=rules(RELEASE), AMLEVENTS_GITHUB_TOKEN=TOKEN)
    result = dispatcher.dispatch(sample("run_status_changed"), function=ON_RUN_STATUS)
    assert result.also == () and len(dispatcher.ledger.entries()) == 1


def test_a_listed_type_that_does_not_match_is_skipped_in_its_own_row(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_CICD_RULES=rules(RELEASE), AMLEVENTS_GITHUB_TOKEN=TOKEN)
    result = dispatcher.dispatch(registered(sample, stage="staging"), function=ON_MODEL_REGISTERED)
    row = cicd(result)
    assert row.outcome is Outcome.SKIPPED and "no rule in AMLEVENTS_CICD_RULES" in row.detail


def test_a_run_event_fires_a_pipeline_once_whichever_function_takes_it(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_CICD_RULES=rules(INVESTIGATE))
    raw = sample("run_status_changed")
    first = dispatcher.dispatch(raw, function=ON_ML_EVENT)
    assert cicd(first).outcome is Outcome.PLANNED
    (planned,) = json.loads(cicd(first).detail)["dispatches"]
    assert planned["request"]["url"] == ("https://dev.azure.com/contoso/ops/_apis/pipelines/9/"
                                         "runs?api-version=7.1")
    again = dispatcher.dispatch(raw, function=ON_RUN_STATUS)
    assert cicd(again).duplicate


def test_unreadable_rules_keep_the_event_and_the_home_concern_still_acts(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_CICD_RULES='[{"name": "x"}]')
    result = dispatcher.dispatch(registered(sample, deploy="true"), function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.PLANNED  # deploy acted
    row = cicd(result)
    assert row.outcome is Outcome.RETRY and "AMLEVENTS_CICD_RULES" in row.detail
    assert result.should_retry  # Event Grid keeps the event until the setting is fixed


@pytest.mark.parametrize("dry_run", ["true", "false"])
def test_a_github_rule_without_a_credential_is_reported_in_dry_run_as_live(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample, dry_run: str) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_CICD_RULES=rules(RELEASE),
                                 AMLEVENTS_DRY_RUN_CICD=dry_run)
    row = cicd(dispatcher.dispatch(registered(sample, stage="production"),
                                   function=ON_MODEL_REGISTERED))
    assert row.outcome is Outcome.RETRY and "AMLEVENTS_GITHUB_TOKEN" in row.detail


def test_a_bad_app_key_is_reported_in_dry_run_too(make_dispatcher: Callable[..., Dispatcher],
                                                  sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_CICD_RULES=rules(RELEASE),
                                 AMLEVENTS_GITHUB_APP_ID="123",
                                 AMLEVENTS_GITHUB_APP_PRIVATE_KEY="-----BEGIN x")
    row = cicd(dispatcher.dispatch(registered(sample, stage="production"),
                                   function=ON_MODEL_REGISTERED))
    assert row.outcome is Outcome.RETRY and "AMLEVENTS_GITHUB_APP_PRIVATE_KEY" in row.detail


def test_the_concern_has_its_own_dry_run_switch(make_dispatcher: Callable[..., Dispatcher],
                                                sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_CICD_RULES=rules(RELEASE), AMLEVENTS_GITHUB_TOKEN=TOKEN,
                                 AMLEVENTS_DRY_RUN="false", AMLEVENTS_DRY_RUN_CICD="true",
                                 AMLEVENTS_DRY_RUN_DEPLOY="true")
    row = cicd(dispatcher.dispatch(registered(sample, stage="production"),
                                   function=ON_MODEL_REGISTERED))
    assert row.outcome is Outcome.PLANNED


def test_cicd_rows_are_told_apart() -> None:
    kind = "Microsoft.MachineLearningServices.ModelRegistered"
    assert concern_key("k", "cicd", kind) == "k-cicd" and concern_of("k-cicd", kind) == "cicd"
