"""Publishing outcome events through the dispatcher: once per outcome, later if the topic was down.

The real azure-eventgrid client publishes to the simulator's CloudEvents topic over HTTP; a
subscription on it to an Event Hub records every event it would deliver (the simulator's record
of a destination without a local emulator), which is what these tests read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from amlevents.simulator.delivery import DeliveryEngine
from amlevents.simulator.journal import FolderDeadLetterWriter, Journal
from amlevents.simulator.service import LOCAL_OUTCOME_TOPIC_ID
from amlevents.simulator.subscriptions import parse_subscriptions
from amlevents.simulator.topic import EventGridTopic, PublishEndpoint
from amlevents.simulator.topic_server import TopicServer
from handlers.outcome import Outcome
from handlers.publish.publish import state_key
from handlers.publish.settings import PUBLISH_DRY_RUN, TOPIC_ENDPOINT, TOPIC_KEY
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.routing import ON_MODEL_REGISTERED, ON_RUN_STATUS
from tests.fakes.azurite import free_port

Sample = Callable[[str], dict[str, Any]]
KEY = "outcome-topic-key-0123456789"
HUB = ("/subscriptions/0000/resourceGroups/rg/providers/Microsoft.EventHub/namespaces/ns/"
       "eventhubs/outcomes")


@dataclass
class OutcomeTopic:
    """The simulated outcome topic, and what reached it."""

    url: str
    endpoint: PublishEndpoint
    engine: DeliveryEngine
    record: Path

    def received(self) -> list[dict[str, Any]]:
        """Every CloudEvent the topic accepted, as its subscription received it."""
        assert self.engine.drain(10)
        return [event for path in sorted(self.record.rglob("*.json"))
                for event in json.loads(path.read_text("utf-8"))]


def outcome_topic(tmp_path: Path, input_schema: str = "CloudEventSchemaV1_0") -> Iterator[Any]:
    subscriptions = parse_subscriptions({"subscriptions": [{
        "name": "all-outcomes", "eventDeliverySchema": input_schema,
        "topic": "outcomes" if input_schema == "CloudEventSchemaV1_0" else "workspace",
        "destination": {"endpointType": "EventHub", "properties": {"resourceId": HUB}},
        "deadLetter": {"blobContainerName": "eventgrid-deadletter"}}]})
    journal = Journal()
    engine = DeliveryEngine("http://127.0.0.1:9", journal=journal, time_scale=0.001,
                            topic_id=LOCAL_OUTCOME_TOPIC_ID,
                            dead_letters=FolderDeadLetterWriter(tmp_path / "dead"),
                            recorder=FolderDeadLetterWriter(tmp_path / "received")).start()
    endpoint = PublishEndpoint(EventGridTopic(subscriptions, engine, journal,
                                              topic_id=LOCAL_OUTCOME_TOPIC_ID,
                                              input_schema=input_schema), keys=[KEY])
    server = TopicServer(endpoint, "127.0.0.1", 0).start()
    try:
        yield OutcomeTopic(server.url, endpoint, engine, tmp_path / "received")
    finally:
        server.stop()
        engine.stop()


@pytest.fixture
def topic(tmp_path: Path) -> Iterator[OutcomeTopic]:
    """The outcome topic (CloudEventSchemaV1_0), served on a free port."""
    yield from outcome_topic(tmp_path)


@pytest.fixture
def dispatcher(make_dispatcher: Callable[..., Dispatcher], topic: OutcomeTopic) -> Dispatcher:
    """Dry run except notifications (live, to the folder outbox), publishing to the topic."""
    return make_dispatcher(**{TOPIC_ENDPOINT: topic.url, TOPIC_KEY: KEY,
                              "AMLEVENTS_DRY_RUN_NOTIFY": "false"})


def tagged(sample: Sample) -> dict[str, Any]:
    """A ModelRegistered event asking for deployment."""
    event = sample("model_registered")
    event["data"]["ModelTags"] = {"deploy": "true"}
    return event


def outbox(dispatcher: Dispatcher) -> list[Path]:
    """Notifications really sent (the folder outbox channel writes one .json each)."""
    return sorted(Path(dispatcher.env["AMLEVENTS_NOTIFY_OUTBOX_DIR"]).rglob("*.json"))


def test_each_outcome_is_published_once(dispatcher: Dispatcher, topic: OutcomeTopic,
                                        sample: Sample) -> None:
    event = tagged(sample)
    first = dispatcher.dispatch(event, function=ON_MODEL_REGISTERED)
    again = dispatcher.dispatch(event, function=ON_MODEL_REGISTERED)  # a redelivery
    assert first.outcome is Outcome.PLANNED and again.duplicate and not again.should_retry
    run = sample("run_status_changed")
    assert dispatcher.dispatch(run, function=ON_RUN_STATUS).outcome is Outcome.DONE
    dispatcher.dispatch(run, function=ON_RUN_STATUS)
    received = topic.received()
    assert [e["type"] for e in received].count("amlevents.DeploymentPlanned") == 1
    assert [e["type"] for e in received].count("amlevents.NotificationSent") == 1
    assert len(received) == 2
    planned = next(e for e in received if e["type"] == "amlevents.DeploymentPlanned")
    assert planned["subject"] == event["subject"] and planned["source"] == "/amlevents/local"
    assert planned["data"]["dryRun"] is True and planned["data"]["sourceEventId"] == event["id"]
    assert planned["data"]["plan"]["endpoint"] == "sklearn-regression-model"
    state = dispatcher.ledger.get_state(state_key(first.key))
    assert state is not None and state["status"] == "published" and state["id"] == planned["id"]


def test_topic_down_publishes_later_without_acting_again(dispatcher: Dispatcher,
                                                         topic: OutcomeTopic,
                                                         sample: Sample) -> None:
    run = sample("run_status_changed")
    topic.endpoint.available = False
    first = dispatcher.dispatch(run, function=ON_RUN_STATUS)
    # The action is done and recorded; the delivery fails so Event Grid redelivers it.
    assert first.should_retry and first.outcome is Outcome.RETRY
    assert first.action == "outcome event not published" and "HTTP 503" in first.detail
    assert dispatcher.ledger.get(first.key).outcome is Outcome.DONE  # type: ignore[union-attr]
    assert len(outbox(dispatcher)) == 1
    pending = dispatcher.ledger.get_state(state_key(first.key))
    assert pending is not None and pending["status"] == "pending"
    again = dispatcher.dispatch(run, function=ON_RUN_STATUS)  # still down: still pending
    assert again.should_retry and len(outbox(dispatcher)) == 1
    topic.endpoint.available = True
    later = dispatcher.dispatch(run, function=ON_RUN_STATUS)  # Event Grid's next attempt
    assert later.outcome is Outcome.DONE and later.duplicate and not later.should_retry
    assert len(outbox(dispatcher)) == 1  # notified once, not once per delivery
    (published,) = topic.received()
    assert published["type"] == "amlevents.NotificationSent"
    assert published["data"]["attempts"] >= 2  # the ledger counted the deliveries
    sent_at = datetime.fromisoformat(published["time"].replace("Z", "+00:00"))
    assert sent_at == datetime.fromisoformat(pending["time"])  # the first attempt's, as its id
    dispatcher.dispatch(run, function=ON_RUN_STATUS)
    assert len(topic.received()) == 1
    state = dispatcher.ledger.get_state(state_key(first.key))
    assert state is not None and state["status"] == "published" and state["attempts"] == 3


def test_an_unreachable_topic_is_retried(make_dispatcher: Callable[..., Dispatcher],
                                         sample: Sample, caplog: pytest.LogCaptureFixture) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/api/events"
    dispatcher = make_dispatcher(**{TOPIC_ENDPOINT: nobody, TOPIC_KEY: KEY})
    result = dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    assert result.should_retry and "unreachable" in result.detail
    entry = dispatcher.ledger.get(result.key)
    assert entry is not None and entry.outcome is Outcome.PLANNED
    # the warning names the event, its type and why, for the operator
    state = dispatcher.ledger.get_state(state_key(result.key))
    assert state is not None and state["status"] == "pending"
    assert (f"outcome event {state['id']} (amlevents.DeploymentPlanned) not published, will "
            f"retry: outcome topic unreachable") in caplog.text


def test_off_when_the_endpoint_is_empty(make_dispatcher: Callable[..., Dispatcher],
                                        sample: Sample) -> None:
    dispatcher = make_dispatcher()
    result = dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.PLANNED
    assert dispatcher.ledger.get_state(state_key(result.key)) is None


def test_a_dry_run_is_not_published_when_the_setting_says_no(
        make_dispatcher: Callable[..., Dispatcher], topic: OutcomeTopic, sample: Sample) -> None:
    dispatcher = make_dispatcher(**{TOPIC_ENDPOINT: topic.url, TOPIC_KEY: KEY,
                                    PUBLISH_DRY_RUN: "false"})
    result = dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    assert result.outcome is Outcome.PLANNED
    assert topic.received() == []
    assert dispatcher.ledger.get_state(state_key(result.key)) is None


def test_a_wrong_key_is_retried_and_named_without_its_value(
        make_dispatcher: Callable[..., Dispatcher], topic: OutcomeTopic, sample: Sample) -> None:
    dispatcher = make_dispatcher(**{TOPIC_ENDPOINT: topic.url, TOPIC_KEY: "wrong-key-0123456"})
    result = dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    assert result.should_retry and "HTTP 401" in result.detail and TOPIC_KEY in result.detail
    assert "wrong-key-0123456" not in result.detail
    assert topic.received() == []


def test_an_event_the_topic_refuses_is_kept_not_retried(
        make_dispatcher: Callable[..., Dispatcher], tmp_path: Path, sample: Sample,
        caplog: pytest.LogCaptureFixture) -> None:
    # A topic whose input schema is EventGridSchema refuses CloudEvents (400): retrying cannot help.
    for wrong in outcome_topic(tmp_path / "eg", input_schema="EventGridSchema"):
        dispatcher = make_dispatcher(**{TOPIC_ENDPOINT: wrong.url, TOPIC_KEY: KEY})
        result = dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
        assert result.outcome is Outcome.PLANNED and not result.should_retry
        state = dispatcher.ledger.get_state(state_key(result.key))
        assert state is not None and state["status"] == "refused"
        assert "HTTP 400" in state["last_error"]
        assert (f"outcome event {state['id']} (amlevents.DeploymentPlanned) refused by the "
                f"topic, not retried: {state['last_error']}") in caplog.text
        again = dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
        assert not again.should_retry
        assert wrong.received() == []


def test_a_delivery_holding_the_lease_sends_alone(make_dispatcher: Callable[..., Dispatcher],
                                                  topic: OutcomeTopic, sample: Sample,
                                                  base_env: dict[str, str]) -> None:
    now = [1_000_000.0]
    dispatcher = Dispatcher({**base_env, TOPIC_ENDPOINT: topic.url, TOPIC_KEY: KEY},
                            clock=lambda: now[0])
    topic.endpoint.available = False
    first = dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    assert first.should_retry
    # Another instance took the lease (it is sending): this delivery leaves the send to it.
    dispatcher.ledger.update_state(state_key(first.key), lambda state: {
        **(state or {}), "status": "sending", "token": "other", "lease_until_s": now[0] + 60})
    topic.endpoint.available = True
    busy = dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    assert not busy.should_retry and topic.received() == []
    now[0] += 61  # that instance died mid-send: its lease expires, the next delivery sends
    dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    (published,) = topic.received()
    assert published["type"] == "amlevents.DeploymentPlanned"


def test_published_events_never_carry_a_secret(make_dispatcher: Callable[..., Dispatcher],
                                               topic: OutcomeTopic, sample: Sample) -> None:
    secrets = {"AMLEVENTS_NOTIFY_WEBHOOK_SECRET": "whsec-0123456789abcdef",
               "AMLEVENTS_NOTIFY_SLACK_URL": "https://hooks.slack.example/services/T/B/s3cr3tpath",
               "AMLEVENTS_NOTIFY_SMTP_PASSWORD": "smtp-password-42"}
    dispatcher = make_dispatcher(**{TOPIC_ENDPOINT: topic.url, TOPIC_KEY: KEY,
                                    "AMLEVENTS_DRY_RUN_NOTIFY": "false", **secrets})
    dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    dispatcher.dispatch(sample("run_status_changed"), function=ON_RUN_STATUS)
    received = topic.received()
    assert {e["type"] for e in received} >= {"amlevents.DeploymentPlanned"}
    text = json.dumps(received)
    for value in (*secrets.values(), KEY):
        assert value not in text


def publish_records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, tuple[Any, ...]]]:
    """(level, format, args) of each record of the publish logger, in order."""
    return [(r.levelno, str(r.msg), tuple(r.args or ())) for r in caplog.records
            if r.name == "amlevents.publish"]


def test_a_published_event_is_logged_and_its_state_kept_whole(
        topic: OutcomeTopic, sample: Sample, base_env: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="amlevents.publish")
    now = [1_700_000_000.0]
    dispatcher = Dispatcher({**base_env, TOPIC_ENDPOINT: topic.url, TOPIC_KEY: KEY},
                            clock=lambda: now[0])
    event = tagged(sample)
    result = dispatcher.dispatch(event, function=ON_MODEL_REGISTERED)
    (sent,) = topic.received()
    # THEN the state records the event sent, when, and on which attempt; the lease is gone
    state = dispatcher.ledger.get_state(state_key(result.key))
    assert state == {"status": "published", "id": sent["id"], "type": sent["type"],
                     "time": state["time"] if state else None, "attempts": 1,
                     "published_at": "2023-11-14T22:13:20.000+00:00"}
    # AND one info line names the event, its type and the Azure ML event's subject
    assert publish_records(caplog) == [(logging.INFO, "outcome event %s %s published (%s)",
                                        (sent["id"], "amlevents.DeploymentPlanned",
                                         event["subject"]))]
    assert caplog.records[-1].getMessage() == (
        f"outcome event {sent['id']} amlevents.DeploymentPlanned published ({event['subject']})")


def test_a_send_left_to_the_lease_holder_is_logged_once(
        topic: OutcomeTopic, sample: Sample, base_env: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1_000_000.0]
    dispatcher = Dispatcher({**base_env, TOPIC_ENDPOINT: topic.url, TOPIC_KEY: KEY},
                            clock=lambda: now[0])
    topic.endpoint.available = False
    first = dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    pending = dispatcher.ledger.get_state(state_key(first.key))
    assert pending is not None
    assert {k: v for k, v in pending.items() if k not in ("id", "time")} == {
        "status": "pending", "type": "amlevents.DeploymentPlanned", "attempts": 1,
        "last_error": pending["last_error"]}
    assert first.detail == (
        "the action is recorded as planned; its outcome event is not published yet "
        f"(RetryableError: {pending['last_error']}); a redelivery publishes it without acting "
        "again")
    # Another instance holds the lease until exactly now + 60
    dispatcher.ledger.update_state(state_key(first.key), lambda state: {
        **(state or {}), "status": "sending", "token": "other", "lease_until_s": now[0] + 60})
    topic.endpoint.available = True
    caplog.clear()
    caplog.set_level(logging.INFO, logger="amlevents.publish")
    dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    assert publish_records(caplog) == [(logging.INFO, "outcome event %s: another delivery is "
                                        "sending it", (pending["id"],))]
    now[0] += 59.5  # just before the lease ends: still held
    dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    assert topic.received() == []
    now[0] += 0.5  # the lease's end: over, this delivery takes over and sends
    dispatcher.dispatch(tagged(sample), function=ON_MODEL_REGISTERED)
    (published,) = topic.received()
    assert published["id"] == pending["id"]
    state = dispatcher.ledger.get_state(state_key(first.key))
    assert state is not None and (state["status"], state["attempts"]) == ("published", 2)
    assert "token" not in state and "lease_until_s" not in state
