"""Which function takes which event types, and which concerns act on them (routing.py): pure."""

from __future__ import annotations

import pytest

from handlers.events.parse import ML_EVENT_TYPES
from handlers.runtime import routing

PREFIX = "Microsoft.MachineLearningServices."
REGISTERED, DEPLOYED = PREFIX + "ModelRegistered", PREFIX + "ModelDeployed"
COMPLETED, STATUS, DRIFT = PREFIX + "RunCompleted", PREFIX + "RunStatusChanged", \
    PREFIX + "DatasetDriftDetected"


@pytest.mark.parametrize(("event_type", "function"), [
    (REGISTERED, "on_model_registered"),
    (REGISTERED.upper(), "on_model_registered"),  # event types compare ignoring case
    (DRIFT, "on_drift_detected"),
    (STATUS, "on_run_status"),
    (COMPLETED.lower(), "on_run_status"),
    (DEPLOYED, "on_ml_event"),  # no dedicated function: the catch-all
    ("Contoso.Other", "on_ml_event"),
])
def test_function_for(event_type: str, function: str) -> None:
    assert routing.function_for(event_type) == function


def test_accepts() -> None:
    assert routing.accepts("on_run_status", COMPLETED)
    assert routing.accepts("on_run_status", STATUS)
    assert not routing.accepts("on_run_status", REGISTERED)
    assert all(routing.accepts("on_ml_event", t) for t in ML_EVENT_TYPES)
    assert not routing.accepts("on_nothing", REGISTERED)


def test_each_type_has_a_home_concern_and_its_handler() -> None:
    assert routing.HOME_CONCERN == {REGISTERED: "deploy", DRIFT: "retrain", STATUS: "notify",
                                    COMPLETED: "notify", DEPLOYED: "notify"}
    assert set(routing.HANDLERS) == set(ML_EVENT_TYPES)
    assert all(routing.HANDLERS[t] is routing.CONCERN_HANDLERS[c]
               for t, c in routing.HOME_CONCERN.items())
    assert [name for name, _ in routing.EXTRA_CONCERNS] == ["retrain", "cicd"]


@pytest.mark.parametrize(("concern", "event_type", "key"), [
    ("deploy", REGISTERED, "k1"),  # the home concern keeps the event's own key
    ("cicd", REGISTERED, "k1-cicd"),
    ("retrain", STATUS, "k1-retrain"),
    ("notify", STATUS, "k1"),
    ("notify", "Contoso.Other", "k1-notify"),
])
def test_concern_keys_and_back(concern: str, event_type: str, key: str) -> None:
    assert routing.concern_key("k1", concern, event_type) == key
    assert routing.concern_of(key, event_type) == concern


def test_a_key_that_only_looks_like_a_concern_row_belongs_to_the_home_concern() -> None:
    # An event id ending "-notify" on a RunStatusChanged is the home (notify) row itself.
    assert routing.concern_of("abc-notify", STATUS) == "notify"
    assert routing.concern_of("abc", "Contoso.Other") == ""
