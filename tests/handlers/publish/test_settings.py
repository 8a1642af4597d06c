"""AMLEVENTS_OUTCOME_* settings: off when empty, https, keys for the local simulator, dry run."""

from __future__ import annotations

import pytest

from handlers.errors import SettingError
from handlers.publish.settings import (
    PUBLISH_DRY_RUN,
    SOURCE,
    TIMEOUT_S,
    TOPIC_ENDPOINT,
    TOPIC_KEY,
    OutcomeTopicSettings,
)
from handlers.runtime.settings import validate_all
from handlers.settings import SettingsCache

AZURE = "https://amlevents-outcomes.westeurope-1.eventgrid.azure.net/api/events"
LOCAL = "http://127.0.0.1:7072/api/events"


def test_off_when_the_endpoint_is_empty() -> None:
    settings = OutcomeTopicSettings.from_mapping({TOPIC_ENDPOINT: "  "})
    assert not settings.enabled and not settings.publish_dry_run


def test_azure_topic_uses_the_identity_and_keeps_dry_runs_to_itself() -> None:
    settings = OutcomeTopicSettings.from_mapping({TOPIC_ENDPOINT: AZURE,
                                                  "WEBSITE_SITE_NAME": "amlevents-abc"})
    assert settings.enabled and settings.key == "" and not settings.local
    assert settings.publish_dry_run is False  # a rehearsal in Azure reaches no subscriber
    assert settings.source == "/amlevents/amlevents-abc"
    opted = OutcomeTopicSettings.from_mapping({TOPIC_ENDPOINT: AZURE, PUBLISH_DRY_RUN: "true",
                                               SOURCE: "/subscriptions/s/sites/app"})
    assert opted.publish_dry_run and opted.source == "/subscriptions/s/sites/app"


def test_the_local_simulator_publishes_dry_runs_by_default_and_needs_a_key() -> None:
    settings = OutcomeTopicSettings.from_mapping({TOPIC_ENDPOINT: LOCAL, TOPIC_KEY: "k" * 12})
    assert settings.local and settings.publish_dry_run and settings.key == "k" * 12
    assert "k" * 12 not in repr(settings)
    with pytest.raises(SettingError) as caught:
        OutcomeTopicSettings.from_mapping({TOPIC_ENDPOINT: LOCAL})
    assert caught.value.setting == TOPIC_KEY


@pytest.mark.parametrize(("env", "setting"), [
    ({TOPIC_ENDPOINT: "http://topic.example/api/events"}, TOPIC_ENDPOINT),  # not https
    ({TOPIC_ENDPOINT: "topic.example/api/events"}, TOPIC_ENDPOINT),
    ({TOPIC_ENDPOINT: AZURE, PUBLISH_DRY_RUN: "sometimes"}, PUBLISH_DRY_RUN),
    ({TOPIC_ENDPOINT: AZURE, TIMEOUT_S: "0"}, TIMEOUT_S),
])
def test_bad_values_name_their_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingError) as caught:
        OutcomeTopicSettings.from_mapping(env)
    assert caught.value.setting == setting


def test_validate_all_reports_them_for_the_health_check() -> None:
    problems = validate_all(SettingsCache({TOPIC_ENDPOINT: "http://topic.example/api/events"}))
    assert any(name == TOPIC_ENDPOINT for name, _ in problems)


def test_each_refusal_is_spelled_out_whole() -> None:
    def problems(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
        with pytest.raises(SettingError) as caught:
            OutcomeTopicSettings.from_mapping(env)
        return caught.value.problems

    assert problems({TOPIC_ENDPOINT: "topic.example/api/events"}) == ((
        TOPIC_ENDPOINT, "must be the topic's URL, e.g. "
                        "https://TOPIC.REGION-1.eventgrid.azure.net/api/events"),)
    assert problems({TOPIC_ENDPOINT: "ftp://topic.example/api/events"})[0][0] == TOPIC_ENDPOINT
    assert problems({TOPIC_ENDPOINT: "http://topic.example/api/events"}) == ((
        TOPIC_ENDPOINT, "must use https (http only for the local simulator on 127.0.0.1 "
                        "or localhost)"),)
    assert problems({TOPIC_ENDPOINT: LOCAL}) == ((
        TOPIC_KEY, "is required for a local topic (the simulator takes keys, not managed "
                   "identity tokens)"),)
    assert problems({TOPIC_ENDPOINT: AZURE, TIMEOUT_S: "121"}) == ((
        TIMEOUT_S, "must be between 0.5 and 120.0, got 121"),)


def test_the_defaults_and_the_timeout_bounds() -> None:
    assert OutcomeTopicSettings.from_mapping({}) == OutcomeTopicSettings(
        endpoint="", key="", source="/amlevents/local", publish_dry_run=False, timeout_s=10.0)
    for raw, seconds in (("0.5", 0.5), ("120", 120.0)):
        assert OutcomeTopicSettings.from_mapping(
            {TOPIC_ENDPOINT: AZURE, TIMEOUT_S: raw}).timeout_s == seconds
    # localhost is the simulator too; http is allowed there and dry runs are published.
    local = OutcomeTopicSettings.from_mapping(
        {TOPIC_ENDPOINT: "http://localhost:7072/api/events", TOPIC_KEY: "k"})
    assert local.local and local.publish_dry_run and local.enabled
