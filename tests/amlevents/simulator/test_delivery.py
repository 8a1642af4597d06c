"""Delivery against a real HTTP receiver: handshake, retries, dead-letter, time-scaled."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from amlevents.simulator.delivery import DeliveryEngine, retry_delay_s, to_delivery_schema
from amlevents.simulator.filters import EventFilter
from amlevents.simulator.journal import FolderDeadLetterWriter, Journal, JournalEntry, blob_name
from amlevents.simulator.subscriptions import (
    Batching,
    DeadLetter,
    RetryPolicy,
    Subscription,
    SubscriptionValidationError,
)

if TYPE_CHECKING:
    from tests.amlevents.simulator.conftest import Receiver

SCALE = 0.001  # 10 s of Event Grid's schedule takes 10 ms
# The reason the service writes for an event its endpoint refused (400, 413...).
CLIENT_ERROR = "UndeliverableDueToProbationCausedByClientError"
EVENT = {"id": "e-1", "topic": "/subscriptions/s/workspaces/ws", "subject": "models/m:1",
         "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
         "eventTime": "2017-06-26T18:41:00.9584103Z", "data": {"ModelName": "m"},
         "dataVersion": "", "metadataVersion": "1"}


def subscription(attempts: int = 30, ttl_minutes: int = 1440, **overrides: Any) -> Subscription:
    """A subscription to on_model_registered with a dead-letter container."""
    values: dict[str, Any] = {
        "name": "model-registered", "function": "on_model_registered", "filter": EventFilter(),
        "retry_policy": RetryPolicy(attempts, ttl_minutes),
        "dead_letter": DeadLetter("eventgrid-deadletter"), **overrides}
    return Subscription(**values)


@pytest.fixture
def journal() -> Journal:
    """An in-memory journal."""
    return Journal()


@pytest.fixture
def engine(receiver: Receiver, journal: Journal, tmp_path: Path) -> Iterator[DeliveryEngine]:
    """A started engine delivering to the receiver, time-scaled."""
    with DeliveryEngine(receiver.url, journal=journal, time_scale=SCALE,
                        dead_letters=FolderDeadLetterWriter(tmp_path / "deadletters")) as started:
        yield started


def deliver(engine: DeliveryEngine, journal: Journal, sub: Subscription,
            events: list[dict[str, Any]] | None = None) -> JournalEntry:
    """Create the subscription, submit, wait until done, and return the single journal entry."""
    engine.create_subscriptions([sub])
    engine.submit(sub, events or [EVENT])
    assert engine.drain(timeout=10)
    (entry,) = journal.entries()
    return entry


def dead_letters(tmp_path: Path) -> list[dict[str, Any]]:
    """Every dead-letter record written."""
    files = sorted((tmp_path / "deadletters").rglob("*.json"))
    return [record for f in files for record in json.loads(f.read_text("utf-8"))]


def test_webhook_is_validated_at_creation_then_delivered_to(
        engine: DeliveryEngine, journal: Journal, receiver: Receiver) -> None:
    # GIVEN a WebHook subscription WHEN it is created THEN the handshake happens right away
    engine.create_subscriptions([subscription()])
    (handshake,) = receiver.requests()
    assert handshake.headers["aeg-event-type"] == "SubscriptionValidation"
    assert handshake.json()[0]["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    # WHEN an event is delivered THEN it is a plain notification (no second handshake)
    engine.submit(subscription(), [EVENT])
    assert engine.drain(timeout=10)
    (entry,) = journal.entries()
    _, notification = receiver.requests()
    assert notification.path == "/runtime/webhooks/EventGrid?functionName=on_model_registered"
    assert notification.headers["aeg-event-type"] == "Notification"
    assert notification.headers["content-type"] == "application/json; charset=utf-8"
    assert notification.headers["aeg-subscription-name"] == "MODEL-REGISTERED"
    assert notification.json() == [EVENT]
    assert (entry.outcome, entry.delivery_attempts, entry.last_http_status_code) == (
        "delivered", 1, 200)


def test_webhook_is_validated_once_not_per_event(engine: DeliveryEngine,
                                                 receiver: Receiver) -> None:
    engine.create_subscriptions([subscription()])
    engine.create_subscriptions([subscription()])  # the same subscription again: no new handshake
    for index in range(3):
        engine.submit(subscription(), [{**EVENT, "id": f"e-{index}"}])
    assert engine.drain(timeout=10)
    kinds = [r.headers["aeg-event-type"] for r in receiver.requests()]
    assert kinds == ["SubscriptionValidation", "Notification", "Notification", "Notification"]


@pytest.mark.parametrize(("script", "message"), [
    ({"handshake_statuses": [500]}, "HTTP 500"),
    ({"wrong_validation_code": True}, "validationResponse"),
])
def test_a_failed_validation_means_no_subscription(engine: DeliveryEngine, receiver: Receiver,
                                                   journal: Journal, script: dict[str, Any],
                                                   message: str) -> None:
    # GIVEN an endpoint that fails the handshake
    for name, value in script.items():
        setattr(receiver.script, name, value)
    # WHEN the subscription is created THEN creation fails, naming the subscription and why
    with pytest.raises(SubscriptionValidationError) as caught:
        engine.create_subscriptions([subscription()])
    assert "'model-registered'" in str(caught.value) and message in str(caught.value)
    # AND nothing can be delivered through it; the handshake was tried once, never retried
    with pytest.raises(ValueError, match="not created"):
        engine.submit(subscription(), [EVENT])
    assert engine.drain(timeout=5)
    assert [r.headers["aeg-event-type"] for r in receiver.requests()] == [
        "SubscriptionValidation"]
    assert journal.entries() == ()


def test_azure_function_destinations_are_never_validated(receiver: Receiver, journal: Journal,
                                                         tmp_path: Path) -> None:
    # GIVEN an AzureFunction endpoint whose handshake answer would fail
    receiver.script.handshake_statuses = [500]
    with DeliveryEngine(receiver.url, journal=journal, time_scale=SCALE,
                        endpoint_type="AzureFunction",
                        dead_letters=FolderDeadLetterWriter(tmp_path)) as engine:
        # WHEN subscriptions in both delivery schemas are created and an event delivered to each
        cloud = subscription(name="cloud-sub", event_delivery_schema="CloudEventSchemaV1_0")
        engine.create_subscriptions([subscription(), cloud])
        engine.submit(subscription(), [EVENT])
        engine.submit(cloud, [to_delivery_schema(EVENT, "CloudEventSchemaV1_0")])
        assert engine.drain(timeout=10)
    # THEN no handshake of either kind was sent
    assert [r.method for r in receiver.requests()] == ["POST", "POST"]
    assert all(r.headers["aeg-event-type"] == "Notification" for r in receiver.requests())
    assert [e.outcome for e in journal.entries()] == ["delivered", "delivered"]


def test_retries_500_and_503_then_succeeds(engine: DeliveryEngine, journal: Journal,
                                           receiver: Receiver) -> None:
    receiver.script.statuses = [500, 503]
    entry = deliver(engine, journal, subscription())
    counts = [r.headers["aeg-delivery-count"] for r in receiver.notifications()]
    assert counts == ["0", "1", "2"]
    assert (entry.outcome, entry.delivery_attempts) == ("delivered", 3)


@pytest.mark.parametrize("status", [404, 408, 429, 502])
def test_other_failures_are_retried(engine: DeliveryEngine, journal: Journal,
                                    receiver: Receiver, status: int) -> None:
    receiver.script.statuses = [status]
    assert deliver(engine, journal, subscription()).delivery_attempts == 2


@pytest.mark.parametrize(("status", "outcome"), [
    (400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge")])
def test_client_errors_go_straight_to_dead_letter(engine: DeliveryEngine, journal: Journal,
                                                  receiver: Receiver, tmp_path: Path,
                                                  status: int, outcome: str) -> None:
    receiver.script.statuses = [status]
    entry = deliver(engine, journal, subscription())
    (record,) = dead_letters(tmp_path)
    assert len(receiver.notifications()) == 1
    assert (entry.outcome, entry.reason) == ("dead_lettered", CLIENT_ERROR)
    assert record["id"] == EVENT["id"] and record["data"] == EVENT["data"]
    assert record["deadLetterReason"] == CLIENT_ERROR
    assert (record["deliveryAttempts"], record["lastDeliveryOutcome"],
            record["lastHttpStatusCode"]) == (1, outcome, status)
    assert datetime.fromisoformat(record["lastDeliveryAttemptTime"]) >= datetime.fromisoformat(
        record["publishTime"])
    assert Path(entry.location).is_relative_to(
        tmp_path / "deadletters" / "eventgrid-deadletter" / "AMLEVENTS-LOCAL" / "MODEL-REGISTERED")


def test_max_delivery_attempts_then_dead_letter(engine: DeliveryEngine, journal: Journal,
                                                receiver: Receiver, tmp_path: Path) -> None:
    receiver.script.statuses = [500] * 10
    entry = deliver(engine, journal, subscription(attempts=3))
    (record,) = dead_letters(tmp_path)
    assert len(receiver.notifications()) == 3
    assert (record["deadLetterReason"], record["deliveryAttempts"], record["lastDeliveryOutcome"],
            record["lastHttpStatusCode"]) == ("MaxDeliveryAttemptsExceeded", 3, "GenericError", 500)
    assert entry.reason == "MaxDeliveryAttemptsExceeded"


def test_time_to_live_is_checked_at_the_next_attempt(engine: DeliveryEngine, journal: Journal,
                                                     receiver: Receiver, tmp_path: Path) -> None:
    # Attempts at 0 s, 10 s, 40 s; the next one (100 s) finds the 1-minute TTL passed.
    receiver.script.statuses = [500] * 5
    deliver(engine, journal, subscription(ttl_minutes=1))
    (record,) = dead_letters(tmp_path)
    assert (record["deadLetterReason"], record["deliveryAttempts"]) == ("TimeToLiveExceeded", 3)
    elapsed = (datetime.fromisoformat(record["lastDeliveryAttemptTime"])
               - datetime.fromisoformat(record["publishTime"])).total_seconds()
    assert 40 <= elapsed < 60  # simulated seconds


def test_network_errors_are_retried_then_dead_lettered(journal: Journal, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # An AzureFunction destination: no handshake at creation, so the failures are deliveries.
    with DeliveryEngine(f"http://127.0.0.1:{closed_port}", journal=journal, time_scale=SCALE,
                        endpoint_type="AzureFunction",
                        dead_letters=FolderDeadLetterWriter(tmp_path / "deadletters")) as engine:
        entry = deliver(engine, journal, subscription(attempts=2))
    (record,) = dead_letters(tmp_path)
    assert (record["lastDeliveryOutcome"], record["lastHttpStatusCode"]) == ("SocketError", None)
    assert entry.delivery_attempts == 2


def test_cloud_events_use_the_options_handshake(engine: DeliveryEngine, journal: Journal,
                                                receiver: Receiver) -> None:
    sub = subscription(event_delivery_schema="CloudEventSchemaV1_0")
    engine.create_subscriptions([sub])
    (options,) = receiver.requests()
    assert options.method == "OPTIONS"
    assert options.headers["webhook-request-origin"] == "eventgrid.azure.net"
    deliver(engine, journal, sub, [to_delivery_schema(EVENT, "CloudEventSchemaV1_0")])
    _, notification = receiver.requests()
    assert notification.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    body = notification.json()
    assert (body["specversion"], body["type"], body["source"]) == (
        "1.0", EVENT["eventType"], EVENT["topic"])


def test_dead_letter_blobs_use_non_zero_padded_date_and_hour(receiver: Receiver,
                                                             journal: Journal,
                                                             tmp_path: Path) -> None:
    # GIVEN the clock at 2019-08-08 05:07 UTC (the docs' example: .../2019/8/8/5/{guid}.json)
    receiver.script.statuses = [400]
    moment = datetime(2019, 8, 8, 5, 7, tzinfo=UTC)
    with DeliveryEngine(receiver.url, journal=journal, time_scale=SCALE, now=lambda: moment,
                        dead_letters=FolderDeadLetterWriter(tmp_path / "deadletters")) as engine:
        entry = deliver(engine, journal, subscription())
    # THEN the blob is {container}/{TOPIC}/{SUBSCRIPTION}/2019/8/8/5/{guid}.json
    relative = Path(entry.location).relative_to(tmp_path / "deadletters")
    assert relative.parts[:-1] == ("eventgrid-deadletter", "AMLEVENTS-LOCAL", "MODEL-REGISTERED",
                                   "2019", "8", "8", "5")
    assert relative.suffix == ".json"


def test_batches_are_arrays_and_all_or_none(engine: DeliveryEngine, journal: Journal,
                                            receiver: Receiver) -> None:
    receiver.script.statuses = [500]
    events = [{**EVENT, "id": f"e-{i}"} for i in range(3)]
    engine.create_subscriptions([subscription(batching=Batching(10, 64))])
    engine.submit(subscription(batching=Batching(10, 64)), events)
    assert engine.drain(timeout=10)
    first, second = receiver.notifications()
    assert first.json() == second.json() == events
    assert [e.event_id for e in journal.entries()] == ["e-0", "e-1", "e-2"]


def test_without_dead_letter_the_event_is_dropped_but_journaled(
        engine: DeliveryEngine, journal: Journal, receiver: Receiver, tmp_path: Path) -> None:
    receiver.script.statuses = [400]
    entry = deliver(engine, journal, subscription(dead_letter=None))
    assert entry.outcome == "dropped" and CLIENT_ERROR in entry.reason
    assert dead_letters(tmp_path) == []


def test_stop_dead_letters_pending_retries(receiver: Receiver, journal: Journal,
                                           tmp_path: Path) -> None:
    receiver.script.statuses = [500]
    engine = DeliveryEngine(receiver.url, journal=journal, time_scale=1.0,
                            dead_letters=FolderDeadLetterWriter(tmp_path / "deadletters")).start()
    engine.create_subscriptions([subscription()])
    engine.submit(subscription(), [EVENT])
    assert not engine.drain(timeout=0.2)  # the retry waits 10 real seconds
    engine.stop()
    engine.submit(subscription(), [{**EVENT, "id": "late"}])
    records = {record["id"]: record for record in dead_letters(tmp_path)}
    assert (records["e-1"]["deadLetterReason"], records["e-1"]["deliveryAttempts"]) == (
        "SimulatorStopped", 1)
    assert (records["late"]["deadLetterReason"], records["late"]["deliveryAttempts"]) == (
        "SimulatorStopped", 0)


def test_function_key_and_journal_file(receiver: Receiver, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with DeliveryEngine(receiver.url, journal=journal, function_key="k/1", time_scale=SCALE,
                        dead_letters=FolderDeadLetterWriter(tmp_path)) as engine:
        deliver(engine, journal, subscription())
    assert receiver.notifications()[0].path.endswith("functionName=on_model_registered&code=k/1")
    (line,) = (tmp_path / "journal.jsonl").read_text("utf-8").splitlines()
    assert json.loads(line)["outcome"] == "delivered"


def test_blob_names_follow_the_documented_layout() -> None:
    # manage-event-delivery: "myblobcontainer/MY-BLOB-SUBSCRIPTION/2019/8/8/5/{guid}.json"
    name = blob_name("amlevents-local", "My-Blob-Subscription",
                     datetime(2019, 8, 8, 7, 30, tzinfo=timezone(timedelta(hours=2))))
    prefix, guid = name.rsplit("/", 1)
    assert prefix == "AMLEVENTS-LOCAL/MY-BLOB-SUBSCRIPTION/2019/8/8/5"
    assert re.fullmatch(r"[0-9a-f-]{36}\.json", guid)


@pytest.mark.parametrize(("failed", "status", "endpoint_type", "expected"), [
    (1, 500, "WebHook", 10), (2, 500, "WebHook", 30), (3, 500, "WebHook", 60),
    (4, 500, "WebHook", 300), (5, 500, "WebHook", 600), (6, 500, "WebHook", 1800),
    (7, 500, "WebHook", 3600), (8, 500, "WebHook", 10800), (9, 500, "WebHook", 21600),
    (10, 500, "WebHook", 43200), (29, None, "WebHook", 43200),
    (1, 503, "WebHook", 30), (1, 408, "WebHook", 120), (5, 408, "WebHook", 600),
    (1, 404, "WebHook", 10), (1, 404, "AzureFunction", 300), (1, 401, "AzureFunction", 300),
])
def test_retry_schedule(failed: int, status: int | None, endpoint_type: str,
                        expected: int) -> None:
    assert retry_delay_s(failed, status, endpoint_type) == expected


def test_event_grid_to_cloud_events_as_the_service_maps_it() -> None:
    # The documented pairs (e.g. Microsoft.HealthcareApis.FhirResourceUpdated): dataVersion "2"
    # is delivered as "dataschema": "#2"; a Blob event's "" as "#". metadataVersion is dropped.
    event = {**EVENT, "dataVersion": "2"}
    assert to_delivery_schema(event, "CloudEventSchemaV1_0") == {
        "specversion": "1.0", "id": EVENT["id"], "source": EVENT["topic"],
        "type": EVENT["eventType"], "subject": EVENT["subject"], "time": EVENT["eventTime"],
        "dataschema": "#2", "data": EVENT["data"]}
    assert to_delivery_schema(EVENT, "CloudEventSchemaV1_0")["dataschema"] == "#"
    assert to_delivery_schema(EVENT, "EventGridSchema") == EVENT


def test_cloud_events_are_never_converted_to_event_grid_schema() -> None:
    # A CloudEvents topic delivers CloudEvents only: that conversion does not exist.
    cloud = to_delivery_schema(EVENT, "CloudEventSchemaV1_0")
    assert to_delivery_schema(cloud, "CloudEventSchemaV1_0") == cloud
    with pytest.raises(ValueError, match="CloudEvents"):
        to_delivery_schema(cloud, "EventGridSchema")
