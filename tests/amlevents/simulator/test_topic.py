"""The topic endpoint with the real EventGridPublisherClient, over HTTP and HTTPS (trustme)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import shutil
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import pytest
import trustme
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas

from amlevents.simulator.delivery import DeliveryEngine
from amlevents.simulator.journal import FolderDeadLetterWriter, Journal
from amlevents.simulator.subscriptions import (
    Batching,
    Subscription,
    SubscriptionsError,
    load_subscriptions,
)
from amlevents.simulator.topic import (
    EventGridTopic,
    PublishEndpoint,
    PublishResponse,
    split_batches,
)
from tests.fakes.server import serve_in_thread

if TYPE_CHECKING:
    from tests.amlevents.simulator.conftest import Receiver

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples" / "events"
KEY = base64.b64encode(b"amlevents-local-topic-key").decode()
WORKSPACE = ("/subscriptions/{subscription-id}/resourceGroups/{resource-group-name}/providers/"
             "Microsoft.MachineLearningServices/workspaces/{workspace-name}")
ML = "Microsoft.MachineLearningServices."
EVENT = {"id": "e-1", "subject": "models/m:1", "eventType": f"{ML}ModelRegistered",
         "eventTime": "2017-06-26T18:41:00.9584103Z", "data": {"ModelTags": {"deploy": "true"}},
         "dataVersion": ""}
CLOUD = {"specversion": "1.0", "id": "c-1", "source": WORKSPACE, "type": f"{ML}ModelDeployed",
         "subject": "endpoints/e", "time": "2024-01-01T00:00:00Z", "data": {}}


class RecordingDeliverer:
    """Collects what the topic hands to delivery."""

    def __init__(self) -> None:
        self.batches: list[tuple[Subscription, list[dict[str, Any]]]] = []
        self.created: list[str] = []

    def create_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        """Record the subscriptions the topic created."""
        self.created.extend(s.name for s in subscriptions)

    def submit(self, subscription: Subscription, events: Sequence[Mapping[str, Any]]) -> None:
        """Record one batch."""
        self.batches.append((subscription, [dict(e) for e in events]))

    def functions(self) -> list[str]:
        """The target function of each batch, in order."""
        return [subscription.function for subscription, _ in self.batches]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TopicServer

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        response = self.server.endpoint.handle(self.command, self.path, dict(self.headers), body)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TopicServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, endpoint: PublishEndpoint) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.endpoint = endpoint


@pytest.fixture
def journal() -> Journal:
    """An in-memory journal."""
    return Journal()


@pytest.fixture
def deliverer() -> RecordingDeliverer:
    """The recording stand-in for delivery."""
    return RecordingDeliverer()


@pytest.fixture
def endpoint(deliverer: RecordingDeliverer, journal: Journal) -> PublishEndpoint:
    """The endpoint over the shipped subscriptions."""
    topic = EventGridTopic(load_subscriptions(ROOT / "infra" / "subscriptions.json"),
                           deliverer, journal, topic_id=WORKSPACE)
    return PublishEndpoint(topic, keys=[KEY])


Serve = Callable[..., str]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a server around an endpoint; return its /api/events URL (https with tls=True)."""
    servers = contextlib.ExitStack()

    def start(endpoint: PublishEndpoint, tls: bool = False) -> str:
        server = _TopicServer(endpoint)
        if tls:
            authority = trustme.CA()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            authority.issue_cert("127.0.0.1").configure_cert(context)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        servers.enter_context(serve_in_thread(server, poll_interval=0.05))
        scheme = "https" if tls else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}/api/events"

    with servers:
        yield start


def client(url: str, credential: Any = None) -> EventGridPublisherClient:
    """The real SDK client (azure-eventgrid 4.22 ignores constructor transport kwargs for
    basic topics, so per-call kwargs such as connection_verify go to send())."""
    return EventGridPublisherClient(url, credential or AzureKeyCredential(KEY))


def test_event_grid_events_from_the_sdk(serve: Serve, endpoint: PublishEndpoint,
                                        deliverer: RecordingDeliverer) -> None:
    client(serve(endpoint)).send(EventGridEvent(
        subject="models/m:1", event_type=f"{ML}ModelRegistered", data_version="1",
        data={"ModelTags": {"deploy": "True"}}))
    ((subscription, (event,)),) = deliverer.batches
    assert subscription.name == "model-registered-deploy"
    assert (event["topic"], event["metadataVersion"]) == (WORKSPACE, "1")  # stamped


def write_subscriptions(tmp_path: Path, document: dict[str, Any]) -> Path:
    """A subscriptions file (with the schema next to it, where the loader reads it)."""
    path = tmp_path / "subscriptions.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    shutil.copy(ROOT / "infra" / "subscriptions.schema.json", tmp_path)
    return path


def shipped(**overrides: Any) -> dict[str, Any]:
    """The shipped subscriptions document, each subscription with the overrides."""
    document = json.loads((ROOT / "infra" / "subscriptions.json").read_text("utf-8"))
    document["subscriptions"] = [{**s, **overrides} for s in document["subscriptions"]]
    return dict(document)


def run_failed(event_id: str = "") -> CloudEvent:
    """A failed run as a CloudEvent (the SDK fills id and time)."""
    return CloudEvent(source=WORKSPACE, type=f"{ML}RunStatusChanged", id=event_id or None,
                      subject="experiments/x/runs/y", data={"runStatus": "Failed"},
                      extensions={"tenant": "t1"})


def test_an_event_grid_topic_refuses_cloud_events(serve: Serve, endpoint: PublishEndpoint,
                                                  deliverer: RecordingDeliverer) -> None:
    # GIVEN the default topic (input schema EventGridSchema) WHEN the SDK sends CloudEvents
    with pytest.raises(HttpResponseError) as caught:
        client(serve(endpoint)).send([run_failed()])
    # THEN 400 naming the topic's input schema; nothing is converted or delivered
    assert caught.value.status_code == 400
    assert "input schema is EventGridSchema" in str(caught.value)
    assert deliverer.batches == []


def test_a_cloud_events_topic_delivers_cloud_events(serve: Serve, tmp_path: Path,
                                                    journal: Journal,
                                                    deliverer: RecordingDeliverer) -> None:
    # GIVEN a CloudEvents topic whose subscriptions deliver CloudEvents
    path = write_subscriptions(tmp_path, shipped(eventDeliverySchema="CloudEventSchemaV1_0"))
    topic = EventGridTopic(load_subscriptions(path), deliverer, journal, topic_id=WORKSPACE,
                           input_schema="CloudEventSchemaV1_0")
    url = serve(PublishEndpoint(topic, keys=[KEY]))
    # WHEN the SDK sends CloudEvents
    running = CloudEvent(source=WORKSPACE, type=f"{ML}RunStatusChanged",
                         subject="experiments/x/runs/y", data={"runStatus": "Running"})
    client(url).send([run_failed("c-9"), running])
    # THEN the failed run reaches on_run_status, as the CloudEvent that was published
    ((subscription, (event,)),) = deliverer.batches
    assert subscription.function == "on_run_status"
    assert (event["specversion"], event["id"], event["type"], event["source"], event["tenant"]) == (
        "1.0", "c-9", f"{ML}RunStatusChanged", WORKSPACE, "t1")
    # AND Event Grid events are refused by this topic
    with pytest.raises(HttpResponseError) as caught:
        client(url).send(EVENT)
    assert caught.value.status_code == 400
    assert "input schema is CloudEventSchemaV1_0" in str(caught.value)


def test_a_cloud_events_topic_cannot_deliver_event_grid_schema(tmp_path: Path,
                                                               journal: Journal) -> None:
    # CloudEvents -> Event Grid schema is not a conversion Event Grid offers: no such subscription.
    subscriptions = load_subscriptions(ROOT / "infra" / "subscriptions.json")
    with pytest.raises(SubscriptionsError) as caught:
        EventGridTopic(subscriptions, RecordingDeliverer(), journal,
                       input_schema="CloudEventSchemaV1_0")
    assert "'run-failed-alert'" in str(caught.value)
    assert "EventGridSchema" in str(caught.value) and "CloudEventSchemaV1_0" in str(caught.value)
    with pytest.raises(ValueError, match="CustomEventSchema"):
        EventGridTopic([], RecordingDeliverer(), journal, input_schema="CustomEventSchema")


def test_an_event_grid_topic_delivers_cloud_events_with_the_data_version(
        serve: Serve, tmp_path: Path, journal: Journal, deliverer: RecordingDeliverer) -> None:
    # GIVEN an Event Grid schema topic and a subscription delivering CloudEvents
    path = write_subscriptions(tmp_path, shipped(eventDeliverySchema="CloudEventSchemaV1_0"))
    topic = EventGridTopic(load_subscriptions(path), deliverer, journal, topic_id=WORKSPACE)
    # WHEN an event with dataVersion "1" is published
    client(serve(PublishEndpoint(topic, keys=[KEY]))).send(EventGridEvent(
        subject="models/m:1", event_type=f"{ML}ModelRegistered", data_version="1",
        data={"ModelTags": {"deploy": "true"}}))
    # THEN it is delivered as a CloudEvent whose dataschema carries it (Event Grid's "#1")
    ((_, (event,)),) = deliverer.batches
    assert (event["specversion"], event["source"], event["dataschema"]) == (
        "1.0", WORKSPACE, "#1")


@pytest.mark.parametrize(("sample", "functions"), [
    ("model_registered", []), ("dataset_drift_detected", ["on_drift_detected"]),
    ("run_status_changed", ["on_run_status"]), ("model_deployed", ["on_ml_event"]),
    ("run_completed", ["on_ml_event"])])
def test_documented_samples_published_as_dicts(serve: Serve, endpoint: PublishEndpoint,
                                               deliverer: RecordingDeliverer, journal: Journal,
                                               sample: str, functions: list[str]) -> None:
    events = json.loads((SAMPLES / f"{sample}.json").read_text("utf-8"))
    client(serve(endpoint)).send(events)
    assert deliverer.functions() == functions
    filtered = [e for e in journal.entries() if e.outcome == "filtered"]
    # Every other subscription to our functions on the workspace topic filtered the event out.
    assert len(filtered) == len(deliverer.created) - len(functions)
    assert all(e.reason for e in filtered)


def test_wrong_key_is_refused(serve: Serve, endpoint: PublishEndpoint) -> None:
    with pytest.raises(ClientAuthenticationError) as caught:
        client(serve(endpoint), AzureKeyCredential("wrong")).send(EVENT)
    assert caught.value.status_code == 401
    assert "aeg-sas-key header does not match" in str(caught.value)


def test_an_event_naming_another_topic_is_refused(endpoint: PublishEndpoint,
                                                 deliverer: RecordingDeliverer) -> None:
    # The service sets `topic`: absent, it is filled in; present, it must be the topic's id exactly.
    other = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.EventGrid/topics/other"
    for topic in (other, WORKSPACE.lower(), ""):
        response = endpoint.handle("POST", TARGET, EG_JSON, body([EVENT, {**EVENT, "topic": topic}]))
        assert response.status == 400, topic
        message = json.loads(response.body)["error"]["message"]
        assert f"event [1]: topic {topic!r} is not this topic ({WORKSPACE!r})" in message
    assert deliverer.batches == []
    assert endpoint.handle("POST", TARGET, EG_JSON, body([{**EVENT, "topic": WORKSPACE},
                                                          EVENT])).status == 200
    assert [event["topic"] for _, (event,) in deliverer.batches] == [WORKSPACE, WORKSPACE]


def test_numbers_are_filtered_and_delivered_as_exact_decimals(
        serve: Serve, receiver: Receiver, tmp_path: Path) -> None:
    # GIVEN filters on decimals that a float cannot tell apart
    document = {"subscriptions": [{
        "name": "above", "function": "on_ml_event",
        "deadLetter": {"blobContainerName": "eventgrid-deadletter"},
        "filter": {"advancedFilters": [
            {"operatorType": "NumberGreaterThan", "key": "data.score", "value": 1.1},
            {"operatorType": "NumberLessThan", "key": "data.score", "value": 2.2}]}}]}
    path = write_subscriptions(tmp_path, document)
    path.write_text(path.read_text("utf-8").replace("2.2", "1.1000000000000002"), "utf-8")
    journal = Journal()
    with DeliveryEngine(receiver.url, journal=journal, time_scale=0.001,
                        endpoint_type="AzureFunction",
                        dead_letters=FolderDeadLetterWriter(tmp_path)) as engine:
        endpoint = PublishEndpoint(EventGridTopic(load_subscriptions(path), engine, journal,
                                                  topic_id=WORKSPACE), keys=[KEY])
        # WHEN events carrying 1.1, 1.1000000000000001 and 1.1000000000000002 are published
        raw = json.dumps([{**EVENT, "id": f"e-{i}", "data": {"score": f"@{i}"}}
                          for i in range(3)])
        for index, number in enumerate(("1.1", "1.1000000000000001", "1.1000000000000002")):
            raw = raw.replace(f'"@{index}"', number)
        assert endpoint.handle("POST", TARGET, EG_JSON, raw.encode()).status == 200
        assert engine.drain(timeout=10)
    # THEN only 1.1 < x < 1.1000000000000002 passes, delivered with the digits it was sent with
    assert {(e.event_id, e.outcome) for e in journal.entries()} == {
        ("e-0", "filtered"), ("e-1", "delivered"), ("e-2", "filtered")}
    (notification,) = receiver.notifications()
    assert b'"score": 1.1000000000000001}' in notification.body


def test_sas_tokens_from_generate_sas(serve: Serve, endpoint: PublishEndpoint,
                                      deliverer: RecordingDeliverer) -> None:
    url = serve(endpoint)
    valid = generate_sas(url, KEY, datetime.now(UTC) + timedelta(minutes=5))
    client(url, AzureSasCredential(valid)).send(EVENT)
    expired = generate_sas(url, KEY, datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(ClientAuthenticationError, match="expired"):
        client(url, AzureSasCredential(expired)).send(EVENT)
    assert deliverer.functions() == ["on_model_registered"]


def documented_sas(resource: str, expiry: str, key: str, *, dotnet: bool = False) -> str:
    """A SAS built as the docs' samples build it (Python: quote_plus of `isoformat()`; C#:
    HttpUtility.UrlEncode, lower-case escapes, of the en-US `DateTime.ToString`)."""
    def encode(text: str) -> str:
        quoted = quote_plus(text)
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted) if dotnet else quoted

    unsigned = f"r={encode(resource)}&e={encode(expiry)}"
    digest = hmac.new(base64.b64decode(key), unsigned.encode("utf-8"), hashlib.sha256).digest()
    return f"{unsigned}&s={encode(base64.b64encode(digest).decode())}"


def test_sas_tokens_must_name_this_topic(serve: Serve, endpoint: PublishEndpoint,
                                         deliverer: RecordingDeliverer) -> None:
    url = serve(endpoint)
    later = datetime.now(UTC) + timedelta(minutes=5)
    # A valid signature for another topic's URL is refused ...
    for resource in (url.replace("/api/events", "/api/other"),
                     "https://other.westus2-1.eventgrid.azure.net/api/events"):
        with pytest.raises(ClientAuthenticationError) as caught:
            client(url, AzureSasCredential(generate_sas(resource, KEY, later))).send(EVENT)
        assert caught.value.status_code == 401 and "not this topic" in str(caught.value)
    # ... and this topic's URL is compared case-insensitively, its query ignored
    client(url, AzureSasCredential(generate_sas(url.upper(), KEY, later))).send(EVENT)
    assert deliverer.functions() == ["on_model_registered"]


@pytest.mark.parametrize(("expiry", "dotnet"), [
    ("6/15/2099 6:20:15 PM", True),  # the docs' C# sample: en-US DateTime.ToString
    ("2099-06-15T18:20:15.123456", False),  # the docs' Python sample: naive UTC isoformat()
    ("2099-06-15 18:20:15.123456+00:00", False),  # azure-eventgrid's generate_sas: str(datetime)
    ("2099-06-15T18:20:15.1234567Z", False),  # .NET round-trip "o", seven fraction digits
])
def test_sas_expiry_in_each_documented_format(serve: Serve, endpoint: PublishEndpoint,
                                              deliverer: RecordingDeliverer, expiry: str,
                                              dotnet: bool) -> None:
    url = serve(endpoint)
    client(url, AzureSasCredential(documented_sas(url, expiry, KEY, dotnet=dotnet))).send(EVENT)
    expired = expiry.replace("2099", "2001")
    with pytest.raises(ClientAuthenticationError, match="expired"):
        client(url, AzureSasCredential(documented_sas(url, expired, KEY, dotnet=dotnet))).send(
            EVENT)
    assert deliverer.functions() == ["on_model_registered"]


def test_a_naive_generate_sas_expiry_is_utc(serve: Serve, endpoint: PublishEndpoint,
                                            deliverer: RecordingDeliverer) -> None:
    url = serve(endpoint)
    naive = datetime.now(UTC).replace(tzinfo=None)
    client(url, AzureSasCredential(generate_sas(url, KEY, naive + timedelta(minutes=5)))).send(
        EVENT)
    with pytest.raises(ClientAuthenticationError, match="expired"):
        client(url, AzureSasCredential(generate_sas(url, KEY, naive - timedelta(minutes=5)))).send(
            EVENT)


def test_oversized_publish_is_413(serve: Serve, endpoint: PublishEndpoint) -> None:
    big = {**EVENT, "data": {"blob": "x" * (1024 * 1024)}}
    with pytest.raises(HttpResponseError) as caught:
        client(serve(endpoint)).send(big)
    assert caught.value.status_code == 413


def test_https_with_a_trusted_local_ca(serve: Serve, endpoint: PublishEndpoint,
                                       deliverer: RecordingDeliverer, tmp_path: Path) -> None:
    url = serve(endpoint, tls=True)
    client(url).send(EVENT, connection_verify=str(tmp_path / "ca.pem"))
    assert deliverer.functions() == ["on_model_registered"]


EG_JSON = {"content-type": "application/json; charset=utf-8", "aeg-sas-key": KEY}
CE_JSON = {"content-type": "application/cloudevents-batch+json; charset=utf-8",
           "aeg-sas-key": KEY}
TARGET = "/api/events?api-version=2018-01-01"


def body(value: Any) -> bytes:
    """JSON bytes."""
    return json.dumps(value).encode()


# (method, target, headers, body, status, message fragment) on the Event Grid schema topic
REQUESTS: list[tuple[str, str, dict[str, str], bytes, int, str]] = [
    ("POST", TARGET, EG_JSON, body([EVENT]), 200, ""),
    ("POST", TARGET, EG_JSON, body(EVENT), 200, ""),  # a single object
    ("POST", "/api/events/?api-version=2018-01-01", {"aeg-sas-key": KEY}, body([EVENT]), 200, ""),
    ("POST", TARGET, {"content-type": "application/json"}, body([EVENT]), 401,
     "missing credentials"),
    ("POST", "/api/events", EG_JSON, body([EVENT]), 400, "api-version query parameter"),
    ("POST", "/api/other?api-version=1", EG_JSON, b"[]", 404, "no topic at /api/other"),
    ("GET", TARGET, EG_JSON, b"", 405, "POST"),
    ("POST", TARGET, {**EG_JSON, "content-type": "text/plain"}, body([EVENT]), 415, "text/plain"),
    ("POST", TARGET, EG_JSON, b"{not json", 400, "not valid JSON"),
    ("POST", TARGET, EG_JSON, b'[{"id": NaN}]', 400, "not valid JSON"),
    ("POST", TARGET, EG_JSON, b"\xff\xfe", 400, "not UTF-8"),
    ("POST", TARGET, EG_JSON, b"[]", 400, "empty array"),
    ("POST", TARGET, EG_JSON, b"[1]", 400, "event [0] must be a JSON object, not int"),
    ("POST", TARGET, EG_JSON, body([{**EVENT, "eventTime": None}]), 400,
     "event [0]: missing required string 'eventTime'"),
    ("POST", TARGET, EG_JSON, body([EVENT, {**EVENT, "eventTime": "yesterday"}]), 400,
     "event [1]: eventTime 'yesterday' is not an ISO 8601 date-time"),
    ("POST", TARGET, EG_JSON, body([{**EVENT, "id": ""}]), 400, "'id' must not be empty"),
    ("POST", TARGET, EG_JSON, body([{**EVENT, "subject": 5}]), 400, "'subject' must be a string"),
    ("POST", TARGET, EG_JSON, body([{**EVENT, "metadataVersion": "2"}]), 400, "metadataVersion"),
    ("POST", TARGET, CE_JSON, body([CLOUD]), 400, "this topic's input schema is EventGridSchema"),
    ("POST", TARGET, CE_JSON, body([EVENT]), 400, "this topic's input schema is EventGridSchema"),
    ("POST", TARGET, EG_JSON, body([EVENT, CLOUD]), 400,
     "event [1] is a CloudEvent; this topic's input schema is EventGridSchema"),
    ("POST", TARGET, EG_JSON, b" " * (1024 * 1024 + 1), 413, "at most 1048576 bytes"),
]

# The same on a CloudEvents topic (input schema CloudEventSchemaV1_0).
CE_ONE = {**CE_JSON, "content-type": "application/cloudevents+json; charset=utf-8"}
CLOUD_REQUESTS: list[tuple[dict[str, str], bytes, int, str]] = [
    (CE_ONE, body(CLOUD), 200, ""),
    (CE_JSON, body([CLOUD]), 200, ""),
    (CE_JSON, body([{**CLOUD, "source": None}]), 400, "missing required string 'source'"),
    (CE_JSON, body([{**CLOUD, "specversion": "0.3"}]), 400, "use \"1.0\""),
    (CE_JSON, body([{**CLOUD, "Tenant": "x"}]), 400, "extension attribute"),
    (CE_JSON, body([{**CLOUD, "data_base64": "eA=="}]), 400, "mutually exclusive"),
    (CE_ONE, body([CLOUD]), 400, "one CloudEvent object"),
    (CE_JSON, body(CLOUD), 400, "a JSON array of CloudEvents"),
    (CE_JSON, body([EVENT]), 400, "missing required string 'source'"),
    (EG_JSON, body([CLOUD]), 400, "this topic's input schema is CloudEventSchemaV1_0"),
]


@pytest.mark.parametrize(("method", "target", "headers", "payload", "status", "message"),
                         REQUESTS)
def test_transport_free_handler(endpoint: PublishEndpoint, method: str, target: str,
                                headers: dict[str, str], payload: bytes, status: int,
                                message: str) -> None:
    response = endpoint.handle(method, target, headers, payload)
    assert response.status == status, response.body
    if message:
        assert message in json.loads(response.body)["error"]["message"]
    else:
        assert response == PublishResponse(200)


@pytest.mark.parametrize(("headers", "payload", "status", "message"), CLOUD_REQUESTS)
def test_transport_free_handler_of_a_cloud_events_topic(
        journal: Journal, tmp_path: Path, headers: dict[str, str], payload: bytes, status: int,
        message: str) -> None:
    path = write_subscriptions(tmp_path, shipped(eventDeliverySchema="CloudEventSchemaV1_0"))
    topic = EventGridTopic(load_subscriptions(path), RecordingDeliverer(), journal,
                           topic_id=WORKSPACE, input_schema="CloudEventSchemaV1_0")
    response = PublishEndpoint(topic, keys=[KEY]).handle("POST", TARGET, headers, payload)
    assert response.status == status, response.body
    if message:
        assert message in json.loads(response.body)["error"]["message"]


def test_every_event_problem_is_listed(endpoint: PublishEndpoint) -> None:
    response = endpoint.handle("POST", TARGET, EG_JSON, body([{"id": "x"}]))
    message = json.loads(response.body)["error"]["message"]
    assert all(f"'{name}'" in message for name in ("subject", "eventType", "eventTime"))


def test_refused_requests_publish_nothing(endpoint: PublishEndpoint,
                                          deliverer: RecordingDeliverer, journal: Journal) -> None:
    endpoint.handle("POST", TARGET, EG_JSON, body([EVENT, {**EVENT, "id": ""}]))
    assert deliverer.batches == [] and journal.entries() == ()


def test_a_topic_without_subscriptions_journals_each_event(journal: Journal) -> None:
    topic = EventGridTopic([], RecordingDeliverer(), journal)
    topic.publish([EVENT])
    (entry,) = journal.entries()
    assert (entry.outcome, entry.event_id, entry.reason) == (
        "filtered", "e-1", "the topic has no subscriptions")


def test_batches_respect_count_and_preferred_size() -> None:
    events = [{"id": str(i), "data": "x" * 400} for i in range(5)]
    assert [len(b) for b in split_batches(events, None)] == [1, 1, 1, 1, 1]
    assert [len(b) for b in split_batches(events, Batching(2, 64))] == [2, 2, 1]
    assert [len(b) for b in split_batches(events, Batching(10, 1))] == [2, 2, 1]
    assert [len(b) for b in split_batches([{"data": "x" * 5000}], Batching(10, 1))] == [1]


def test_end_to_end_sdk_to_function_host(serve: Serve, receiver: Receiver,
                                         tmp_path: Path) -> None:
    journal = Journal()
    with DeliveryEngine(receiver.url, journal=journal, time_scale=0.001,
                        dead_letters=FolderDeadLetterWriter(tmp_path)) as engine:
        topic = EventGridTopic(load_subscriptions(ROOT / "infra" / "subscriptions.json"),
                               engine, journal, topic_id=WORKSPACE)
        client(serve(PublishEndpoint(topic, keys=[KEY]))).send(
            json.loads((SAMPLES / "run_status_changed.json").read_text("utf-8")))
        assert engine.drain(timeout=10)
    (notification,) = receiver.notifications()
    assert notification.path.endswith("functionName=on_run_status")
    assert notification.json()[0]["data"]["runStatus"] == "failed"
    outcomes = sorted(e.outcome for e in journal.entries())
    assert outcomes.count("delivered") == 1 and set(outcomes) == {"delivered", "filtered"}
    assert len(outcomes) == len(topic.subscriptions)  # every other subscription filtered it
