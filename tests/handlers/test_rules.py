"""The matching vocabulary notification and CI/CD rules share (handlers/rules.py): pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from handlers.events.parse import parse_event
from handlers.rules import SHORT_TYPES, Criteria, Facts, facts_of, parse_criteria, short_type

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
    tags = {"area": "diabetes", "type": "regression"}
    assert facts_of(parse_event(sample("model_registered"))) == Facts(
        "modelregistered", models=("sklearn_regression_model",), tags=tags)
    # Model ids are "name:version"; a rule's model glob is on the name.
    assert facts_of(parse_event(sample("model_deployed"))) == Facts(
        "modeldeployed", status="deployed",
        models=("sklearn_regression_model", "sklearn_regression_model"), tags=tags)
    assert facts_of(parse_event(sample("run_status_changed"))) == Facts(
        "runstatuschanged", status="failed", experiment="automl-local-regression")
    assert facts_of(parse_event(sample("run_completed"))) == Facts(
        "runcompleted", status="completed", experiment="automl-local-regression")
    assert facts_of(parse_event(sample("dataset_drift_detected"))) == Facts(
        "datasetdriftdetected")


def test_a_run_status_is_matched_trimmed_and_lower_cased_with_the_run_tags(
        sample: Sample) -> None:
    raw = sample("run_status_changed")
    raw["data"].update(runStatus=" Failed ", runTags={"Team": "fraud"})
    assert facts_of(parse_event(raw)) == Facts(
        "runstatuschanged", status="failed", experiment="automl-local-regression",
        tags={"Team": "fraud"})
    raw = sample("run_completed")
    raw["data"]["runTags"] = {"stage": "nightly"}
    assert facts_of(parse_event(raw)).tags == {"stage": "nightly"}


def test_a_deployed_model_name_keeps_its_own_colons(sample: Sample) -> None:
    raw = sample("model_deployed")
    raw["data"]["ModelIds"] = "team:fraud:3"  # only the last ":" starts the version
    assert facts_of(parse_event(raw)).models == ("team:fraud",)


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


TAGS_PROBLEM = ("rule 1: tags must be an object of name -> value pattern "
                "(null: the tag is there, whatever its value)")


@pytest.mark.parametrize(("item", "problems"), [
    ({"types": ["Drift"]}, ["rule 1: types must be among " + ", ".join(SHORT_TYPES)]),
    ({"events": ["ModelRegistered", "Drift"]},
     ["rule 1: events must be among " + ", ".join(SHORT_TYPES)]),
    ({"types": "ModelRegistered"}, ["rule 1: types must be an array of strings"]),
    ({"events": [1]}, ["rule 1: events must be an array of strings"]),
    ({"types": ["ModelRegistered"], "events": ["ModelDeployed"]},
     ["rule 1: give types or events, not both"]),
    ({"runStatus": ["failed"], "statuses": ["failed"]},
     ["rule 1: give runStatus or statuses, not both"]),
    ({"statuses": "failed"}, ["rule 1: statuses must be an array of strings"]),
    ({"runStatus": ["failed", 2]}, ["rule 1: runStatus must be an array of strings"]),
    ({"tags": ["stage"]}, [TAGS_PROBLEM]),
    ({"tags": {"stage": 1}}, [TAGS_PROBLEM]),
    ({"model": 3}, ["rule 1: model must be a string pattern"]),
    ({"experiment": ["a"]}, ["rule 1: experiment must be a string pattern"]),
])
def test_each_problem_names_the_rule_and_the_key(item: dict[str, Any],
                                                 problems: list[str]) -> None:
    assert problems_of(**item) == problems


def test_a_problem_leaves_that_criterion_open_and_the_others_parsed() -> None:
    found = parse_criteria({"types": "x", "model": 3, "experiment": "e-*", "tags": [1],
                            "runStatus": ["Failed "]}, "rule 2", lambda message: None)
    assert found == Criteria(experiment="e-*", statuses=frozenset({"failed"}))


def test_every_criterion_parsed() -> None:
    assert criteria(types=["modelregistered", " RunStatusChanged "], model="fraud-*",
                    experiment="nightly", tags={"Stage": "prod*", "approved": None},
                    runStatus=[" Failed", "completed"]) == Criteria(
        types=frozenset({"ModelRegistered", "RunStatusChanged"}), model="fraud-*",
        experiment="nightly", tags=(("Stage", "prod*"), ("approved", None)),
        statuses=frozenset({"failed", "completed"}))
    # The older spellings read the same; no criteria at all: anything.
    assert criteria(events=["RunCompleted"], statuses=["Failed"]) == Criteria(
        types=frozenset({"RunCompleted"}), statuses=frozenset({"failed"}))
    assert criteria() == Criteria()


def test_a_concern_limits_the_types_its_rules_may_list() -> None:
    problems: list[str] = []
    parse_criteria({"events": ["ModelRegistered"]}, "rule 1", problems.append,
                   types=("RunStatusChanged",))
    assert problems == ["rule 1: events must be among RunStatusChanged"]


def test_short_types() -> None:
    assert SHORT_TYPES == ("ModelRegistered", "ModelDeployed", "RunCompleted",
                           "RunStatusChanged", "DatasetDriftDetected")
    assert short_type("RUNCOMPLETED") == "RunCompleted" and short_type("Nope") == ""
    assert short_type(" microsoft.machinelearningservices.modeldeployed ") == "ModelDeployed"
    assert short_type("") == ""


def test_an_experiment_glob_ignores_case_and_a_run_without_tags_lacks_them(
        sample: Sample) -> None:
    run = facts_of(parse_event(sample("run_status_changed")))
    assert criteria(experiment="AUTOML-LOCAL-*").matches(run)
    assert not criteria(experiment="automl-remote-*").matches(run)
    assert not criteria(tags={"stage": None}).matches(run)
    assert criteria(types=["RunStatusChanged"], runStatus=["FAILED"]).matches(run)
