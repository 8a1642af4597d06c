"""Destinations beyond the app's functions: the file's shapes, and what the simulator does with each.

WebHook: validated at creation, then delivered over HTTP (delivery attributes as headers).
StorageQueue: one Base64 JSON message per event in Azurite's queue service (azure-storage-queue).
EventHub, ServiceBusQueue, ServiceBusTopic: no local emulator, so said at start and recorded.
The real EventGridPublisherClient publishes in every test that goes through a topic.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient
from azure.storage.queue import QueueServiceClient

from amlevents.simulator import journal as jr
from amlevents.simulator.delivery import DeliveryEngine
from amlevents.simulator.journal import FolderDeadLetterWriter, Journal
from amlevents.simulator.queue_delivery import QueueSender, queue_message
from amlevents.simulator.subscriptions import (
    SubscriptionsError,
    parse_subscriptions,
    schema_problems,
)
from amlevents.simulator.topic import EventGridTopic, PublishEndpoint
from amlevents.simulator.topic_server import TopicServer
from handlers.errors import SettingError

if TYPE_CHECKING:
    from tests.amlevents.simulator.conftest import Receiver

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "infra" / "subscriptions.schema.json").read_text("utf-8"))
SAMPLES = ROOT / "samples" / "events"
KEY = "destination-test-key-0123456789"
ACCOUNT = ("/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/"
           "events")
HUB = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.EventHub/namespaces/ns/eventhubs/ml"
SB_QUEUE = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ServiceBus/namespaces/ns/queues/q"
SB_TOPIC = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ServiceBus/namespaces/ns/topics/t"
DEAD_LETTER = {"blobContainerName": "eventgrid-deadletter"}


def sample(name: str) -> dict[str, Any]:
    """One documented sample event (Event Grid schema)."""
    return copy.deepcopy(json.loads((SAMPLES / f"{name}.json").read_text("utf-8"))[0])


def document(**subscription: Any) -> dict[str, Any]:
    """A one-subscription document."""
    return {"subscriptions": [{"name": "sub-one", "deadLetter": DEAD_LETTER, **subscription}]}


def queue_destination(queue: str, **extra: Any) -> dict[str, Any]:
    """A StorageQueue destination as ARM writes it."""
    return {"endpointType": "StorageQueue",
            "properties": {"resourceId": ACCOUNT, "queueName": queue, **extra}}


def problems(doc: dict[str, Any], **values: str) -> list[str]:
    """The semantic problems (SubscriptionsError) and the schema's, together."""
    found = list(schema_problems(doc, SCHEMA))
    try:
        parse_subscriptions(doc, values=values)
    except SubscriptionsError as exc:
        found += list(exc.problems)
    return found


# -- the file's shapes ------------------------------------------------------------------------

@pytest.mark.parametrize("destination", [
    {"endpointType": "WebHook", "properties": {"endpointUrl": "https://hooks.example/x"}},
    {"endpointType": "EventHub", "properties": {"resourceId": HUB}},
    {"endpointType": "ServiceBusQueue", "properties": {"resourceId": SB_QUEUE}},
    {"endpointType": "ServiceBusTopic", "properties": {"resourceId": SB_TOPIC}},
    queue_destination("ml-events", queueMessageTimeToLiveInSeconds=-1),
], ids=lambda d: d["endpointType"])
def test_each_destination_kind_is_accepted_with_arms_fields(destination: dict[str, Any]) -> None:
    doc = document(destination=destination)
    assert problems(doc) == []
    (parsed,) = parse_subscriptions(doc)
    assert parsed.endpoint_type == destination["endpointType"] and parsed.function == ""


@pytest.mark.parametrize(("destination", "field"), [
    ({"endpointType": "StorageQueue", "properties": {"resourceId": ACCOUNT}}, "queueName"),
    ({"endpointType": "StorageQueue", "properties": {"queueName": "q1x"}}, "resourceId"),
    ({"endpointType": "EventHub", "properties": {}}, "resourceId"),
    ({"endpointType": "ServiceBusTopic", "properties": {}}, "resourceId"),
    ({"endpointType": "WebHook", "properties": {}}, "endpointUrl"),
    ({"endpointType": "EventHub"}, "properties"),
], ids=lambda v: v if isinstance(v, str) else v["endpointType"])
def test_a_destination_missing_a_field_is_refused_naming_it(destination: dict[str, Any],
                                                           field: str) -> None:
    found = problems(document(destination=destination))
    # Both nets name the subscription and the missing field.
    schema = [p for p in schema_problems(document(destination=destination), SCHEMA)]
    assert schema and all(p.startswith("subscription 'sub-one':") for p in schema)
    assert any(field in p for p in schema), schema
    assert any(p.startswith("subscription 'sub-one': destination") and field in p
               for p in found), found


@pytest.mark.parametrize(("subscription", "needle"), [
    ({"destination": {"endpointType": "EventHub", "properties": {"resourceId": ACCOUNT}}},
     "resourceId"),  # a storage account is not an event hub
    ({"destination": queue_destination("Bad_Queue")}, "queueName"),
    ({"destination": queue_destination("q-1", queueMessageTimeToLiveInSeconds=0)},
     "queueMessageTimeToLiveInSeconds"),
    ({"destination": {"endpointType": "WebHook",
                      "properties": {"endpointUrl": "http://hooks.example/x"}}}, "https"),
    ({"destination": queue_destination("q-1"), "batching": {"maxEventsPerBatch": 5}},
     "batching"),
    ({"deliveryWithResourceIdentity": {
        "identity": {"type": "SystemAssigned"},
        "destination": {"endpointType": "WebHook",
                        "properties": {"endpointUrl": "https://hooks.example/x"}}}},
     "endpointType"),
    ({"deliveryWithResourceIdentity": {
        "identity": {"type": "UserAssigned"},
        "destination": {"endpointType": "EventHub", "properties": {"resourceId": HUB}}}},
     "identity"),
    ({"function": "on_ml_event", "destination": queue_destination("q-1")}, "exactly one"),
    ({"topic": "outcomes", "function": "on_ml_event",
      "eventDeliverySchema": "CloudEventSchemaV1_0"}, "function"),
    ({"topic": "outcomes", "destination": queue_destination("q-1")}, "CloudEventSchemaV1_0"),
    ({"topic": "elsewhere", "destination": queue_destination("q-1")}, "topic"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_what_arm_refuses_is_refused(subscription: dict[str, Any], needle: str) -> None:
    found = problems(document(**subscription))
    assert any(needle in p for p in found), found


def test_placeholders_take_their_values_or_leave_the_subscription_uncreated() -> None:
    doc = document(deliveryWithResourceIdentity={
        "identity": {"type": "SystemAssigned"},
        "destination": {"endpointType": "EventHub", "properties": {"resourceId": "{eventHubId}"}}})
    assert problems(doc) == []
    (without,) = parse_subscriptions(doc)
    assert without.destination is not None and without.destination.unresolved == ("eventHubId",)
    (given,) = parse_subscriptions(doc, values={"eventHubId": HUB})
    assert given.destination is not None and given.destination.resource_id == HUB
    assert given.destination.unresolved == () and given.destination.identity == "SystemAssigned"
    # A value is checked as the literal would be.
    assert any("resourceId" in p for p in problems(doc, eventHubId=ACCOUNT))
    journal = Journal()
    topic = EventGridTopic([without], _NoDelivery(), journal)
    assert topic.subscriptions == ()  # not created, as the template does not deploy it


class _NoDelivery:
    def create_subscriptions(self, subscriptions: Any) -> None:
        assert list(subscriptions) == []

    def submit(self, subscription: Any, events: Any) -> None:
        raise AssertionError("nothing is delivered")


def test_the_shipped_examples_validate() -> None:
    shipped = json.loads((ROOT / "infra" / "subscriptions.json").read_text("utf-8"))
    jsonschema.validate(shipped, SCHEMA, cls=jsonschema.Draft202012Validator)
    by_name = {s["name"]: s for s in shipped["subscriptions"]}
    hub = by_name["ml-events-to-event-hub"]
    assert hub["filter"]["includedEventTypes"] is None  # every workspace event
    assert hub["deliveryWithResourceIdentity"]["destination"]["endpointType"] == "EventHub"
    failed = by_name["deployment-failed-webhook"]
    assert failed["topic"] == "outcomes"
    assert failed["filter"]["includedEventTypes"] == ["amlevents.DeploymentFailed"]
    assert failed["destination"]["endpointType"] == "WebHook"


# -- delivery ---------------------------------------------------------------------------------

@pytest.fixture
def queues(azurite_queue: str) -> QueueServiceClient:
    """A client of Azurite's queue service (the test's own view of the destination)."""
    return QueueServiceClient.from_connection_string(azurite_queue)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Any]]:
    """Engines and servers started by a test, stopped after it."""
    started: list[Any] = []
    yield started
    for thing in reversed(started):
        thing.stop()


def _topic(subscriptions: Any, tmp_path: Path, running: list[Any], *,
           input_schema: str = "EventGridSchema", queue_connection: str | None = None,
           base_url: str = "http://127.0.0.1:9") -> tuple[str, DeliveryEngine, Journal]:
    """A topic served over HTTP with a delivery engine behind it; (URL, engine, journal)."""
    journal = Journal()
    engine = DeliveryEngine(
        base_url, journal=journal, time_scale=0.0001, topic_id=jr_topic(),
        dead_letters=FolderDeadLetterWriter(tmp_path / "dead"),
        queues=QueueSender(queue_connection) if queue_connection else None,
        recorder=FolderDeadLetterWriter(tmp_path / "not-delivered")).start()
    running.append(engine)
    topic = EventGridTopic(subscriptions, engine, journal, topic_id=jr_topic(),
                           input_schema=input_schema)
    server = TopicServer(PublishEndpoint(topic, keys=[KEY]), "127.0.0.1", 0).start()
    running.append(server)
    return server.url, engine, journal


def jr_topic() -> str:
    """The topic id the tests' topics take: the samples' workspace, as its system topic."""
    return ("/subscriptions/{subscription-id}/resourceGroups/{resource-group-name}/providers/"
            "Microsoft.MachineLearningServices/workspaces/{workspace-name}")


@pytest.mark.parametrize("schema", ["EventGridSchema", "CloudEventSchemaV1_0"])
def test_storage_queue_receives_each_event_in_the_subscriptions_schema(
        queues: QueueServiceClient, azurite_queue: str, tmp_path: Path, running: list[Any],
        schema: str) -> None:
    name = f"q{uuid.uuid4().hex[:12]}"
    queues.create_queue(name)
    (subscription,) = parse_subscriptions(document(
        destination=queue_destination(name, queueMessageTimeToLiveInSeconds=-1),
        eventDeliverySchema=schema))
    url, engine, journal = _topic([subscription], tmp_path, running,
                                  queue_connection=azurite_queue)
    events = [sample("model_registered"), sample("run_status_changed")]
    EventGridPublisherClient(url, AzureKeyCredential(KEY)).send(events)
    assert engine.drain(10)
    messages = list(queues.get_queue_client(name).receive_messages(max_messages=32))
    received = [json.loads(base64.b64decode(m.content)) for m in messages]
    assert sorted(e["id"] for e in received) == sorted(e["id"] for e in events)
    for event in received:  # one event per message, never an array, in the schema
        assert isinstance(event, dict)
        assert ("specversion" in event) == (schema == "CloudEventSchemaV1_0")
        assert event.get("topic", event.get("source")) == jr_topic()
    assert all(m.expires_on.year == 9999 for m in messages)  # -1: never expires
    assert {e.outcome for e in journal.entries()} == {jr.DELIVERED}
    assert {e.function for e in journal.entries()} == {f"queue {name}"}


def test_queue_message_is_base64_json_of_one_event() -> None:
    event = sample("model_deployed")
    assert json.loads(base64.b64decode(queue_message(event))) == event


def test_a_missing_queue_is_retried_then_dead_lettered(azurite_queue: str, tmp_path: Path,
                                                        running: list[Any]) -> None:
    # Event Grid does not create the queue: 404, retried (Azure resources: after 5 min or more),
    # then dead-lettered at maxDeliveryAttempts.
    (subscription,) = parse_subscriptions(document(
        destination=queue_destination("no-such-queue"),
        retryPolicy={"maxDeliveryAttempts": 2}))
    url, engine, journal = _topic([subscription], tmp_path, running,
                                  queue_connection=azurite_queue)
    EventGridPublisherClient(url, AzureKeyCredential(KEY)).send([sample("model_registered")])
    assert engine.drain(20)
    (entry,) = journal.entries()
    assert entry.outcome == jr.DEAD_LETTERED and entry.delivery_attempts == 2
    assert entry.reason == jr.MAX_DELIVERY_ATTEMPTS_EXCEEDED
    assert entry.last_http_status_code == 404
    record = json.loads(Path(entry.location).read_text("utf-8"))[0]
    assert record["lastDeliveryOutcome"] == "NotFound"


@pytest.mark.parametrize("destination", [
    {"endpointType": "EventHub", "properties": {"resourceId": HUB}},
    {"endpointType": "ServiceBusQueue", "properties": {"resourceId": SB_QUEUE}},
    {"endpointType": "ServiceBusTopic", "properties": {"resourceId": SB_TOPIC}},
], ids=lambda d: d["endpointType"])
def test_event_hub_and_service_bus_are_recorded_not_delivered(
        destination: dict[str, Any], tmp_path: Path, running: list[Any]) -> None:
    (subscription,) = parse_subscriptions(document(destination=destination,
                                                   eventDeliverySchema="CloudEventSchemaV1_0"))
    url, engine, journal = _topic([subscription], tmp_path, running)
    event = sample("run_completed")
    EventGridPublisherClient(url, AzureKeyCredential(KEY)).send([event])
    assert engine.drain(10)
    (entry,) = journal.entries()
    assert entry.outcome == jr.NOT_DELIVERED and "not delivered locally" in entry.reason
    (recorded,) = json.loads(Path(entry.location).read_text("utf-8"))
    assert recorded["id"] == event["id"] and recorded["specversion"] == "1.0"
    assert Path(entry.location).is_relative_to(tmp_path / "not-delivered")


def test_webhook_destination_is_validated_then_delivered_with_its_attributes(
        receiver: Receiver, tmp_path: Path, running: list[Any]) -> None:
    (subscription,) = parse_subscriptions(document(
        eventDeliverySchema="CloudEventSchemaV1_0",
        destination={"endpointType": "WebHook", "properties": {
            "endpointUrl": "{hook}",
            "deliveryAttributeMappings": [
                {"name": "x-static", "type": "Static", "properties": {"value": "fixed"}},
                {"name": "x-status", "type": "Dynamic",
                 "properties": {"sourceField": "data.runStatus"}}]}}),
        values={"hook": f"{receiver.url}/hooks/outcomes"})
    url, engine, _ = _topic([subscription], tmp_path, running)
    assert [r.method for r in receiver.requests()] == ["OPTIONS"]  # at creation, once
    EventGridPublisherClient(url, AzureKeyCredential(KEY)).send([sample("run_status_changed")])
    assert engine.drain(10)
    (delivery,) = receiver.notifications()
    assert delivery.path == "/hooks/outcomes"
    assert delivery.headers["x-static"] == "fixed" and delivery.headers["x-status"] == "failed"
    assert delivery.headers["content-type"].startswith("application/cloudevents+json")


def test_a_webhook_failing_validation_is_not_created(receiver: Receiver, tmp_path: Path,
                                                     running: list[Any]) -> None:
    from amlevents.simulator import SubscriptionValidationError

    receiver.script.handshake_statuses = [403]
    (subscription,) = parse_subscriptions(document(destination={
        "endpointType": "WebHook", "properties": {"endpointUrl": f"{receiver.url}/hook"}}))
    with pytest.raises(SubscriptionValidationError, match="sub-one"):
        _topic([subscription], tmp_path, running)


# -- the service: notices, settings, the outcome topic ----------------------------------------

def _service_env(tmp_path: Path, subscriptions: dict[str, Any], **extra: str) -> dict[str, str]:
    path = tmp_path / "subscriptions.json"
    path.write_text(json.dumps(subscriptions), encoding="utf-8")
    (tmp_path / "subscriptions.schema.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    return {"AMLEVENTS_TOPIC_KEY": KEY, "AMLEVENTS_SUBSCRIPTIONS_FILE": str(path),
            "AMLEVENTS_SIMULATOR_DIR": str(tmp_path / "sim"),
            "AMLEVENTS_SIMULATOR_TIME_SCALE": "0.001", **extra}


def test_the_service_says_per_subscription_what_is_not_delivered(tmp_path: Path) -> None:
    from amlevents.simulator.service import SimulatorSettings, TopicSimulator

    subs = {"subscriptions": [
        {"name": "to-hub", "deadLetter": DEAD_LETTER,
         "destination": {"endpointType": "EventHub", "properties": {"resourceId": HUB}}},
        {"name": "to-queue", "deadLetter": DEAD_LETTER, "destination": queue_destination("q-1")},
        {"name": "to-nowhere", "deadLetter": DEAD_LETTER, "destination": {
            "endpointType": "ServiceBusQueue", "properties": {"resourceId": "{sbQueueId}"}}},
        {"name": "outcomes-hook", "deadLetter": DEAD_LETTER, "topic": "outcomes",
         "eventDeliverySchema": "CloudEventSchemaV1_0", "destination": {
             "endpointType": "EventHub", "properties": {"resourceId": HUB}}}]}
    settings = SimulatorSettings.from_mapping(_service_env(tmp_path, subs))
    assert settings is not None
    simulator = TopicSimulator(settings, "http://127.0.0.1:9", ["on_ml_event"])
    notices = "\n".join(simulator.notices)
    assert "'to-hub': EventHub destinations are not delivered locally" in notices
    assert "'to-queue': StorageQueue not delivered: set AMLEVENTS_SIMULATOR_QUEUE_CONNECTION" \
        in notices
    assert "'to-nowhere' not created: no value for {sbQueueId}" in notices
    assert "'outcomes-hook' not created: the outcome topic is served here only when" in notices
    assert simulator.outcome_server is None


def test_subscription_values_must_be_a_json_object(tmp_path: Path) -> None:
    from amlevents.simulator.service import SIMULATOR_SUBSCRIPTION_VALUES, SimulatorSettings

    env = _service_env(tmp_path, {"subscriptions": []})
    for bad in ("not json", "[1]", '{"a": 1}'):
        with pytest.raises(SettingError) as caught:
            SimulatorSettings.from_mapping({**env, SIMULATOR_SUBSCRIPTION_VALUES: bad})
        assert caught.value.setting == SIMULATOR_SUBSCRIPTION_VALUES
        assert bad not in str(caught.value)  # values may hold keys: never echoed


def test_the_outcome_topic_is_served_on_its_local_url_and_can_go_down(tmp_path: Path) -> None:
    from amlevents.simulator.service import SimulatorSettings, TopicSimulator
    from tests.fakes.azurite import free_port

    endpoint = f"http://127.0.0.1:{free_port()}/api/events"
    subs = {"subscriptions": [
        {"name": "outcomes-hub", "deadLetter": DEAD_LETTER, "topic": "outcomes",
         "eventDeliverySchema": "CloudEventSchemaV1_0",
         "destination": {"endpointType": "EventHub", "properties": {"resourceId": HUB}}}]}
    settings = SimulatorSettings.from_mapping(_service_env(
        tmp_path, subs, AMLEVENTS_OUTCOME_TOPIC_ENDPOINT=endpoint,
        AMLEVENTS_OUTCOME_TOPIC_KEY="outcome-key-0123456789"))
    assert settings is not None
    simulator = TopicSimulator(settings, "http://127.0.0.1:9", ["on_ml_event"]).start()
    try:
        event = CloudEvent(source="/amlevents/test", type="amlevents.DeploymentFailed",
                           data={"concern": "deploy"}, subject="models/m:1")
        client = EventGridPublisherClient(endpoint, AzureKeyCredential("outcome-key-0123456789"))
        client.send([event])
        # The app's key and the simulator's topic key both open it (a topic has two keys).
        EventGridPublisherClient(endpoint, AzureKeyCredential(KEY)).send([event])
        simulator.outcome_endpoint.available = False
        with pytest.raises(HttpResponseError) as down:
            client.send([event])
        assert down.value.status_code == 503
        simulator.outcome_endpoint.available = True
        with pytest.raises(HttpResponseError) as wrong_schema:
            client.send([sample("model_registered")])
        assert wrong_schema.value.status_code == 400
        assert simulator.drain(10)
    finally:
        simulator.stop()
    entries = [e for e in simulator.journal.entries() if e.event_id == event.id]
    assert [e.outcome for e in entries] == [jr.NOT_DELIVERED, jr.NOT_DELIVERED]
