"""The matching vocabulary notification and CI/CD rules share (handlers/rules.py): pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from handlers.events.parse import parse_event
from handlers.rules import SHORT_TYPES, Criteria, facts_of, parse_criteria, short_type

Sample = Callable[[str], dict[str, Any]]


def criteria(**item: Any) -> Criteria:
    problems: list[str] = []
    found = parse_criteria(item, "rule 1", problems.append)
    assert problems == []
    return found


def problems_of(**item: Any) -> list[str]:
    problems: list[str] = []
    parse_criteria(item, "rule 1", problems.append)
    return problems


def registered(sample: Sample, tags: dict[str, str], name: str = "fraud-detector") -> Any:
    raw = sample("model_registered")
    raw["data"].update(ModelName=name, ModelTags=tags)
    return facts_of(parse_event(raw))


def test_facts_of_every_event_type(sample: Sample) -> None:
    model = facts_of(parse_event(sample("model_registered")))
    assert (model.kind, model.models, model.status) == (
        "modelregistered", ("sklearn_regression_model",), None)
    deployed = facts_of(parse_event(sample("model_deployed")))
    assert deployed.status == "deployed" and deployed.tags and deployed.models
    assert all(":" not in m for m in deployed.models)  # "name:version" ids, matched on the name
    run = facts_of(parse_event(sample("run_status_changed")))
    assert (run.kind, run.status, run.experiment) == (
        "runstatuschanged", "failed", "automl-local-regression")
    assert facts_of(parse_event(sample("run_completed"))).status == "completed"
    drift = facts_of(parse_event(sample("dataset_drift_detected")))
    assert (drift.kind, drift.models, drift.experiment, dict(drift.tags)) == (
        "datasetdriftdetected", (), None, {})


@pytest.mark.parametrize(("tags", "wanted", "matches"), [
    ({"stage": "Production"}, {"stage": "production"}, True),  # values ignore case
    ({"Stage": "production"}, {"STAGE": "prod*"}, True),  # names ignore case, globs
    ({"stage": "staging"}, {"stage": "production"}, False),
    ({"approved": ""}, {"approved": None}, True),  # a bare name: present, even empty
    ({}, {"approved": None}, False),
    ({"stage": "production"}, {"stage": "production", "approved": None}, False),  # every one
])
def test_tags(sample: Sample, tags: dict[str, str], wanted: dict[str, Any],
              matches: bool) -> None:
    assert criteria(tags=wanted).matches(registered(sample, tags)) is matches


@pytest.mark.parametrize(("item", "matches"), [
    ({"types": ["ModelRegistered"]}, True),
    ({"types": ["modelregistered"]}, True),
    ({"events": ["Microsoft.MachineLearningServices.ModelRegistered"]}, True),
    ({"types": ["RunStatusChanged"]}, False),
    ({"model": "FRAUD-*"}, True),
    ({"model": "churn-*"}, False),
    ({"experiment": "*"}, False),  # a model event has no experiment
    ({"runStatus": ["failed"]}, False),  # nor a run status
])
def test_criteria_on_a_registered_model(sample: Sample, item: dict[str, Any],
                                        matches: bool) -> None:
    assert criteria(**item).matches(registered(sample, {})) is matches


def test_run_criteria(sample: Sample) -> None:
    run = facts_of(parse_event(sample("run_status_changed")))
    assert criteria(runStatus=["Failed"], experiment="automl-*").matches(run)
    assert criteria(statuses=["failed"]).matches(run)  # the notification rules' spelling
    assert not criteria(runStatus=["completed"]).matches(run)
    assert not criteria(model="*").matches(run)  # a run event names no model


def test_no_criteria_match_everything(sample: Sample) -> None:
    assert Criteria().matches(facts_of(parse_event(sample("dataset_drift_detected"))))


@pytest.mark.parametrize(("item", "message"), [
    ({"types": ["Drift"]}, "types must be among"),
    ({"types": "ModelRegistered"}, "types must be an array of strings"),
    ({"types": ["ModelRegistered"], "events": ["ModelDeployed"]}, "give types or events"),
    ({"runStatus": ["failed"], "statuses": ["failed"]}, "give runStatus or statuses"),
    ({"tags": ["stage"]}, "tags must be an object"),
    ({"tags": {"stage": 1}}, "tags must be an object"),
    ({"model": 3}, "model must be a string pattern"),
    ({"experiment": ["a"]}, "experiment must be a string pattern"),
])
def test_problems_name_the_rule_and_the_key(item: dict[str, Any], message: str) -> None:
    found = problems_of(**item)
    assert found and all(p.startswith("rule 1: ") for p in found)
    assert any(message in p for p in found), found


def test_a_concern_limits_the_types_its_rules_may_list() -> None:
    problems: list[str] = []
    parse_criteria({"events": ["ModelRegistered"]}, "rule 1", problems.append,
                   types=("RunStatusChanged",))
    assert problems == ["rule 1: events must be among RunStatusChanged"]


def test_short_types() -> None:
    assert short_type("RUNCOMPLETED") == "RunCompleted" and short_type("Nope") == ""
    assert len(SHORT_TYPES) == 5
