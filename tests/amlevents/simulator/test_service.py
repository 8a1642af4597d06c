"""`amlevents serve` with AMLEVENTS_TOPIC_KEY: the real EventGridPublisherClient publishes to the
host's topic, which filters through infra/subscriptions.json and delivers to the host's functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.eventgrid import EventGridPublisherClient

from amlevents.cli import RunningHost, build_host
from amlevents.simulator.service import SimulatorSettings
from handlers.runtime.dispatch import default_dispatcher

Sample = Callable[[str], dict[str, Any]]
KEY = "local-topic-key-0123456789"


@pytest.fixture
def running(base_env: dict[str, str], tmp_path: Path) -> Iterator[RunningHost]:
    env = {**base_env, "AMLEVENTS_TOPIC_KEY": KEY,
           "AMLEVENTS_SIMULATOR_DIR": str(tmp_path / "sim"),
           "AMLEVENTS_SIMULATOR_TIME_SCALE": "0.001"}
    host = build_host(env, bind="127.0.0.1", port=0)
    host.server.start()
    yield host
    host.stop()


def publisher(host: RunningHost, key: str = KEY) -> EventGridPublisherClient:
    return EventGridPublisherClient(f"{host.url}/api/events", AzureKeyCredential(key))


def test_published_events_are_filtered_and_delivered(running: RunningHost,
                                                     sample: Sample) -> None:
    untagged = sample("model_registered")
    tagged = sample("model_registered")
    tagged["id"] = "tagged-1"
    tagged["data"]["ModelTags"] = {"deploy": "true"}
    failed_run = sample("run_status_changed")
    completed = sample("run_status_changed")
    completed["id"], completed["data"]["runStatus"] = "completed-1", "Completed"
    publisher(running).send([untagged, tagged, failed_run, completed])
    assert running.simulator.drain(30)
    # GIVEN the shipped subscriptions: deploy=true and runStatus=failed filters
    ledger = {(e.event_id, e.event_type.rsplit(".", 1)[-1]): e.outcome.value
              for e in default_dispatcher().ledger.entries()}
    assert ledger == {("tagged-1", "ModelRegistered"): "planned",
                      (failed_run["id"], "RunStatusChanged"): "planned"}
    journal = {(j["event_id"], j["outcome"]) for j in running.simulator.outcomes()}
    assert (untagged["id"], "filtered") in journal and ("completed-1", "filtered") in journal
    assert ("tagged-1", "delivered") in journal


def test_wrong_or_missing_key_is_401(running: RunningHost, sample: Sample) -> None:
    with pytest.raises((ClientAuthenticationError, HttpResponseError)) as caught:
        publisher(running, key="wrong-key").send([sample("run_status_changed")])
    assert getattr(caught.value, "status_code", None) == 401
    assert default_dispatcher().ledger.entries() == []


def test_simulator_is_off_without_a_key() -> None:
    assert SimulatorSettings.from_mapping({}) is None


def test_the_input_schema_setting_defaults_to_event_grid_schema() -> None:
    from amlevents.simulator.service import SIMULATOR_INPUT_SCHEMA
    from handlers.errors import SettingError

    default = SimulatorSettings.from_mapping({"AMLEVENTS_TOPIC_KEY": KEY})
    assert default is not None and default.input_schema == "EventGridSchema"
    cloud = SimulatorSettings.from_mapping({"AMLEVENTS_TOPIC_KEY": KEY,
                                            SIMULATOR_INPUT_SCHEMA: "CloudEventSchemaV1_0"})
    assert cloud is not None and cloud.input_schema == "CloudEventSchemaV1_0"
    for unsupported in ("CustomEventSchema", "cloudevents"):
        with pytest.raises(SettingError) as caught:
            SimulatorSettings.from_mapping({"AMLEVENTS_TOPIC_KEY": KEY,
                                            SIMULATOR_INPUT_SCHEMA: unsupported})
        assert caught.value.setting == SIMULATOR_INPUT_SCHEMA


def test_a_cloud_events_topic_needs_cloud_events_subscriptions(tmp_path: Path) -> None:
    # The shipped subscriptions deliver Event Grid schema, which a CloudEvents topic cannot.
    from amlevents.simulator import SubscriptionsError
    from amlevents.simulator.service import SIMULATOR_INPUT_SCHEMA, TopicSimulator
    from handlers.runtime.routing import FUNCTION_EVENT_TYPES

    settings = SimulatorSettings.from_mapping({
        "AMLEVENTS_TOPIC_KEY": KEY, SIMULATOR_INPUT_SCHEMA: "CloudEventSchemaV1_0",
        "AMLEVENTS_SIMULATOR_DIR": str(tmp_path / "sim")})
    assert settings is not None
    with pytest.raises(SubscriptionsError, match="CloudEvents cannot be delivered in Event Grid"):
        TopicSimulator(settings, "http://127.0.0.1:9", FUNCTION_EVENT_TYPES)
