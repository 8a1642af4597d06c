"""Which rules fire and the exact request each becomes: pure decisions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from handlers.cicd.decide import decide
from handlers.cicd.plan import REQUEST_ID, CicdPlan, request_id
from handlers.cicd.settings import CicdSettings
from handlers.events.parse import parse_event
from handlers.ledger.ledger import event_key
from handlers.outcome import ActionResult, Outcome

Sample = Callable[[str], dict[str, Any]]
RELEASE: dict[str, Any] = {"name": "release fraud models",
           "when": {"types": ["ModelRegistered"], "model": "fraud-*",
                    "tags": {"stage": "production"}},
           "github": {"repository": "contoso/ml-release", "workflow": "release.yml",
                      "ref": "main", "inputs": {"model": "{data.ModelName}",
                                                "version": "{data.ModelVersion}",
                                                "event": "{id}"}}}


def settings(*rules: dict[str, Any], **env: str) -> CicdSettings:
    return CicdSettings.from_mapping({"AMLEVENTS_CICD_RULES": json.dumps(list(rules)), **env})


def model(sample: Sample, name: str = "fraud-detector", **tags: str) -> Any:
    raw = sample("model_registered")
    raw["data"].update(ModelName=name, ModelVersion=7, ModelTags=tags)
    return parse_event(raw)


def plan_of(decision: CicdPlan | ActionResult) -> CicdPlan:
    assert isinstance(decision, CicdPlan), decision
    return decision


def test_the_issue_example_becomes_one_workflow_dispatch(sample: Sample) -> None:
    event = model(sample, stage="Production")
    plan = plan_of(decide(event, settings(RELEASE)))
    (dispatch,) = plan.dispatches
    envelope = event.envelope
    key = event_key(envelope.topic, envelope.event_type, envelope.id)
    assert plan.event_key == key
    assert dispatch.request_id == request_id(key, "release fraud models")
    assert REQUEST_ID.fullmatch(dispatch.request_id) and dispatch.carries_request_id
    assert dispatch.request.as_dict() == {
        "method": "POST",
        "url": "https://api.github.com/repos/contoso/ml-release/actions/workflows/release.yml/"
               "dispatches",
        "body": {"ref": "main", "return_run_details": True,
                 "inputs": {"model": "fraud-detector", "version": "7", "event": envelope.id,
                            "amlevents_request_id": dispatch.request_id}}}
    assert dispatch.target == {"service": "github", "repository": "contoso/ml-release",
                               "workflow": "release.yml", "ref": "main"}
    assert plan.summary() == ("start GitHub workflow release.yml in contoso/ml-release on main "
                              "(rule 'release fraud models')")


@pytest.mark.parametrize(("name", "tags", "why"), [
    ("churn", {"stage": "production"}, "model"),
    ("fraud-detector", {"stage": "staging"}, "tag value"),
    ("fraud-detector", {}, "no tag"),
])
def test_no_matching_rule_skips(sample: Sample, name: str, tags: dict[str, str],
                                why: str) -> None:
    decision = decide(model(sample, name, **tags), settings(RELEASE))
    assert isinstance(decision, ActionResult) and decision.outcome is Outcome.SKIPPED
    assert "no rule in AMLEVENTS_CICD_RULES matches" in decision.detail


def test_every_matching_rule_fires_in_order_until_stop(sample: Sample) -> None:
    second = {**RELEASE, "name": "second", "stop": True}
    third = {**RELEASE, "name": "third"}
    other = {**RELEASE, "name": "other", "when": {"types": ["RunStatusChanged"]}}
    plan = plan_of(decide(model(sample, stage="production"),
                          settings(other, RELEASE, second, third)))
    assert [d.rule for d in plan.dispatches] == ["release fraud models", "second"]
    assert len({d.request_id for d in plan.dispatches}) == 2  # one request id per rule
    assert plan.summary().startswith("start 2 CI/CD runs: GitHub workflow release.yml")


def test_the_request_id_is_the_same_on_every_delivery(sample: Sample) -> None:
    first = plan_of(decide(model(sample, stage="production"), settings(RELEASE)))
    again = plan_of(decide(model(sample, stage="production"), settings(RELEASE)))
    assert first.dispatches[0].request_id == again.dispatches[0].request_id
    raw = sample("model_registered")
    raw.update(id="another-event")
    raw["data"].update(ModelName="fraud-x", ModelTags={"stage": "production"})
    other = plan_of(decide(parse_event(raw), settings(RELEASE)))
    assert other.dispatches[0].request_id != first.dispatches[0].request_id


def test_a_ghes_url_and_no_run_details(sample: Sample) -> None:
    plan = plan_of(decide(model(sample, stage="production"), settings(
        RELEASE, AMLEVENTS_GITHUB_API_URL="https://ghe.contoso.com/api/v3")))
    request = plan.dispatches[0].request
    assert request.url.startswith("https://ghe.contoso.com/api/v3/repos/contoso/ml-release/")
    assert "return_run_details" not in request.body


def test_repository_dispatch_payload(sample: Sample) -> None:
    rule = {"name": "deployed", "when": {"types": ["ModelDeployed"], "tags": {"area": None}},
            "github": {"repository": "contoso/ops", "eventType": "deployed-{data.ServiceName}",
                       "clientPayload": {"service": "{data.ServiceName}", "count": 2,
                                         "where": {"topic": "{topic}", "ids": ["{subject}"]}}}}
    event = parse_event(sample("model_deployed"))
    (dispatch,) = plan_of(decide(event, settings(rule))).dispatches
    envelope = event.envelope
    service = envelope.data["ServiceName"]
    assert dispatch.request.as_dict() == {
        "method": "POST", "url": "https://api.github.com/repos/contoso/ops/dispatches",
        "body": {"event_type": f"deployed-{service}",
                 "client_payload": {"service": service, "count": 2,
                                    "where": {"topic": envelope.topic,
                                              "ids": [envelope.subject]},
                                    "amlevents_request_id": dispatch.request_id}}}
    assert dispatch.action == "repository_dispatch"
    assert dispatch.target == {"service": "github", "repository": "contoso/ops",
                               "eventType": f"deployed-{service}"}


def test_azure_pipelines_request(sample: Sample) -> None:
    rule = {"name": "investigate", "when": {"types": ["RunStatusChanged"],
                                            "runStatus": ["failed"]},
            "azurePipelines": {"organization": "contoso", "project": "ML Ops", "pipelineId": 42,
                               "branch": "release/{data.experimentName}",
                               "templateParameters": {"run": "{data.runId}"},
                               "variables": {"experiment": "{data.experimentName}"}}}
    event = parse_event(sample("run_status_changed"))
    (dispatch,) = plan_of(decide(event, settings(rule))).dispatches
    data = event.envelope.data
    assert dispatch.request.as_dict() == {
        "method": "POST",
        "url": "https://dev.azure.com/contoso/ML%20Ops/_apis/pipelines/42/runs?api-version=7.1",
        "body": {"resources": {"repositories": {"self": {
                     "refName": "refs/heads/release/automl-local-regression"}}},
                 "templateParameters": {"run": data["runId"],
                                        "amlevents_request_id": dispatch.request_id},
                 "variables": {"experiment": {"value": "automl-local-regression"}}}}
    assert dispatch.describe() == ("Azure Pipelines pipeline 42 in contoso/ML Ops on "
                                   "refs/heads/release/automl-local-regression")


def test_a_full_ref_is_kept_and_no_branch_means_the_default(sample: Sample) -> None:
    base: dict[str, Any] = {"name": "p", "when": {"types": ["RunStatusChanged"]},
            "azurePipelines": {"organization": "contoso", "project": "ops", "pipelineId": 1}}
    event = parse_event(sample("run_status_changed"))
    (default,) = plan_of(decide(event, settings(base))).dispatches
    assert "resources" not in default.request.body and "branch" not in default.target
    tagged = {**base, "azurePipelines": {**base["azurePipelines"], "branch": "refs/tags/v1"}}
    (tag,) = plan_of(decide(event, settings(tagged))).dispatches
    assert tag.request.body["resources"]["repositories"]["self"]["refName"] == "refs/tags/v1"


def test_without_a_request_id_the_plan_says_so(sample: Sample) -> None:
    rule = {**RELEASE, "github": {**RELEASE["github"], "requestIdInput": None}}
    (dispatch,) = plan_of(decide(model(sample, stage="production"), settings(rule))).dispatches
    assert not dispatch.carries_request_id and dispatch.as_dict()["requestIdPassed"] is False
    # ... unless a template puts it somewhere.
    placed = {**rule, "github": {**rule["github"], "inputs": {"id": "run {requestId}"}}}
    (dispatch,) = plan_of(decide(model(sample, stage="production"), settings(placed))).dispatches
    assert dispatch.carries_request_id
    assert dispatch.request.body["inputs"] == {"id": f"run {dispatch.request_id}"}


def test_empty_placeholders_are_named(sample: Sample) -> None:
    rule = {**RELEASE, "github": {**RELEASE["github"], "inputs": {"owner": "{tags.owner}"}}}
    (dispatch,) = plan_of(decide(model(sample, stage="production"), settings(rule))).dispatches
    assert dispatch.request.body["inputs"]["owner"] == ""
    assert dispatch.as_dict()["emptyPlaceholders"] == ["tags.owner"]


@pytest.mark.parametrize(("github", "message"), [
    ({"ref": "{tags.branch}"}, "ref '{tags.branch}' came out empty"),
    ({"inputs": {"big": "{data.Big}"}}, "GitHub takes at most 65535"),
])
def test_a_request_over_a_limit_is_refused(sample: Sample, github: dict[str, Any],
                                           message: str) -> None:
    raw = sample("model_registered")
    raw["data"].update(ModelName="fraud-x", ModelTags={"stage": "production"},
                       Big="x" * 70_000)
    rule = {**RELEASE, "github": {**RELEASE["github"], **github}}
    decision = decide(parse_event(raw), settings(rule))
    assert isinstance(decision, ActionResult) and decision.outcome is Outcome.REFUSED
    assert decision.detail.startswith("rule 'release fraud models': ") and message in decision.detail


@pytest.mark.parametrize(("github", "message"), [
    ({"eventType": "{data.Big}"}, "eventType came out 70000 characters"),
    ({"eventType": "{tags.none}"}, "eventType came out 0 characters"),
    ({"eventType": "go", "clientPayload": {"big": "{data.Big}"}}, "GitHub takes less than 65536"),
])
def test_repository_dispatch_limits_at_decide_time(sample: Sample, github: dict[str, Any],
                                                   message: str) -> None:
    raw = sample("model_registered")
    raw["data"].update(Big="x" * 70_000)
    rule = {"name": "r", "when": {"types": ["ModelRegistered"]},
            "github": {"repository": "contoso/ops", **github}}
    decision = decide(parse_event(raw), settings(rule))
    assert isinstance(decision, ActionResult) and decision.outcome is Outcome.REFUSED
    assert message in decision.detail


def test_the_plan_detail_holds_no_credential(sample: Sample) -> None:
    plan = plan_of(decide(model(sample, stage="production"), settings(
        RELEASE, AMLEVENTS_GITHUB_TOKEN="github_pat_secret_value")))
    assert "github_pat" not in json.dumps(plan.as_dict())


def _compact_size(value: Any) -> int:
    """What GitHub counts: the compact JSON, non-ASCII text as itself (not \\u escapes)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _sized(sample: Sample, rule: dict[str, Any], big: str) -> CicdPlan | ActionResult:
    raw = sample("model_registered")
    raw["data"].update(Big=big)
    return decide(parse_event(raw), settings(rule))


def test_workflow_inputs_count_non_ascii_text_as_itself_up_to_the_limit(sample: Sample) -> None:
    rule = {"name": "r", "when": {"types": ["ModelRegistered"]},
            "github": {"repository": "contoso/ops", "workflow": "w.yml", "ref": "main",
                       "inputs": {"big": "{data.Big}"}}}
    rid = "amlevents-" + "0" * 24  # every request id has this length
    room = 65_535 - _compact_size({"big": "", "amlevents_request_id": rid})
    (dispatch,) = plan_of(_sized(sample, rule, "é" * room)).dispatches
    assert _compact_size(dict(dispatch.request.body["inputs"])) == 65_535  # at the limit: sent
    over = _sized(sample, rule, "é" * (room + 1))
    assert over == ActionResult(Outcome.REFUSED, "refused", "rule 'r': the workflow inputs are "
                                "65536 characters; GitHub takes at most 65535")


def test_a_client_payload_counts_utf8_bytes_up_to_the_limit(sample: Sample) -> None:
    rule = {"name": "r", "when": {"types": ["ModelRegistered"]},
            "github": {"repository": "contoso/ops", "eventType": "go",
                       "clientPayload": {"big": "{data.Big}"}}}
    rid = "amlevents-" + "0" * 24
    room = 65_535 - len(json.dumps({"big": "", "amlevents_request_id": rid},
                                   separators=(",", ":")))
    big = "é" * (room // 2) + "x" * (room % 2)  # two bytes each in UTF-8
    (dispatch,) = plan_of(_sized(sample, rule, big)).dispatches
    payload = dict(dispatch.request.body["client_payload"])
    assert len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()) == 65_535
    over = _sized(sample, rule, big + "x")
    assert over == ActionResult(Outcome.REFUSED, "refused", "rule 'r': the client payload is "
                                "65536 bytes; GitHub takes less than 65536")


def test_a_request_id_in_non_ascii_text_still_counts_as_carried(sample: Sample) -> None:
    rule = {**RELEASE, "github": {**RELEASE["github"], "requestIdInput": None,
                                  "inputs": {"id": "café {requestId}"}}}
    (dispatch,) = plan_of(decide(model(sample, stage="production"), settings(rule))).dispatches
    assert dispatch.carries_request_id
    assert dispatch.request.body["inputs"] == {"id": f"café {dispatch.request_id}"}
