"""The CI/CD plan's own words: each target described, the ledger's details, the summary's cap."""

from __future__ import annotations

import hashlib
from typing import Any

from handlers.cicd.plan import CicdPlan, Dispatch, HttpRequest, request_id

REQUEST = HttpRequest("POST", "https://api.github.com/repos/contoso/ops/dispatches", {"a": 1})


def dispatch(action: str, target: dict[str, Any], *, rule: str = "r",
             carries: bool = True, empty: tuple[str, ...] = ()) -> Dispatch:
    return Dispatch(rule=rule, service="github", action=action, target=target, request=REQUEST,
                    request_id="amlevents-" + "0" * 24, carries_request_id=carries, empty=empty)


def workflow(name: str = "release.yml", rule: str = "r") -> Dispatch:
    return dispatch("workflow_dispatch",
                    {"workflow": name, "repository": "contoso/ops", "ref": "main"}, rule=rule)


def test_each_target_is_described_in_a_few_words() -> None:
    assert workflow().describe() == "GitHub workflow release.yml in contoso/ops on main"
    assert dispatch("repository_dispatch", {"eventType": "go", "repository": "contoso/ops"}) \
        .describe() == "GitHub repository_dispatch 'go' to contoso/ops"
    pipeline = {"pipelineId": 42, "organization": "contoso", "project": "ML Ops"}
    assert dispatch("run_pipeline", {**pipeline, "branch": "main"}).describe() == \
        "Azure Pipelines pipeline 42 in contoso/ML Ops on main"
    # no branch (or an empty one): the pipeline's default, nothing said
    assert dispatch("run_pipeline", pipeline).describe() == \
        "Azure Pipelines pipeline 42 in contoso/ML Ops"
    assert dispatch("run_pipeline", {**pipeline, "branch": ""}).describe() == \
        "Azure Pipelines pipeline 42 in contoso/ML Ops"


def test_the_ledger_details_say_what_was_not_passed() -> None:
    plain = workflow()
    assert plain.as_dict() == {
        "rule": "r", "target": {"workflow": "release.yml", "repository": "contoso/ops",
                                "ref": "main"},
        "requestId": "amlevents-" + "0" * 24,
        "request": {"method": "POST", "url": REQUEST.url, "body": {"a": 1}}}
    odd = dispatch("repository_dispatch", {"eventType": "go", "repository": "contoso/ops"},
                   carries=False, empty=("data.Missing", "tags.stage"))
    assert odd.as_dict() == {
        "rule": "r", "target": {"eventType": "go", "repository": "contoso/ops"},
        "requestId": "amlevents-" + "0" * 24,
        "request": {"method": "POST", "url": REQUEST.url, "body": {"a": 1}},
        "requestIdPassed": False, "emptyPlaceholders": ["data.Missing", "tags.stage"]}
    plan = CicdPlan("key", (plain, odd))
    assert plan.as_dict() == {"dispatches": [plain.as_dict(), odd.as_dict()]}
    assert HttpRequest("GET", "https://x.example").as_dict() == {
        "method": "GET", "url": "https://x.example", "body": {}}


def test_the_summary_names_one_run_or_counts_several() -> None:
    assert CicdPlan("key", (workflow(rule="release"),)).summary() == \
        "start GitHub workflow release.yml in contoso/ops on main (rule 'release')"
    assert CicdPlan("key", (workflow("a.yml"), workflow("b.yml"))).summary() == (
        "start 2 CI/CD runs: GitHub workflow a.yml in contoso/ops on main; "
        "GitHub workflow b.yml in contoso/ops on main")


def test_the_summary_is_kept_whole_up_to_300_characters_then_cut() -> None:
    fixed = len("start GitHub workflow  in contoso/ops on main (rule 'r')")
    exactly = CicdPlan("key", (workflow("w" * (300 - fixed)),)).summary()
    assert len(exactly) == 300 and exactly.endswith("on main (rule 'r')")
    longer = CicdPlan("key", (workflow("w" * (301 - fixed)),)).summary()
    # one character over: the last two go, an ellipsis says so (300 in all)
    assert longer == (f"start GitHub workflow {'w' * (301 - fixed)} in contoso/ops on main "
                      "(rule 'r')")[:299] + "…"
    assert longer.endswith("(rule 'r…") and len(longer) == 300


def test_the_request_id_ignores_the_rule_names_case_and_padding() -> None:
    assert request_id("k", " Release ") == request_id("k", "release")
    assert request_id("k", "release") != request_id("k2", "release")
    assert request_id("k", "release") == "amlevents-" + hashlib.sha256(
        b"k\nrelease").hexdigest()[:24]


def test_a_rule_name_with_a_lone_surrogate_still_has_a_request_id() -> None:
    # JSON may carry "\ud800" (a lone surrogate): the request id must not fail on it
    assert request_id("k", "r\ud800") == "amlevents-" + hashlib.sha256(
        "k\nr\ud800".encode("utf-8", "surrogatepass")).hexdigest()[:24]
