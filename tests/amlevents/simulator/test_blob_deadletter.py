"""Dead letters to Azure Blob Storage: the real azure-storage-blob client against Azurite."""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from azure.storage.blob import BlobServiceClient

from amlevents.simulator import (
    DeadLetter,
    DeliveryEngine,
    EventFilter,
    FolderDeadLetterWriter,
    Journal,
    JournalEntry,
    RetryPolicy,
    Subscription,
)
from amlevents.simulator.blob_deadletter import BlobDeadLetterWriter
from amlevents.simulator.service import (
    SIMULATOR_DEADLETTER_CONNECTION,
    SimulatorSettings,
    TopicSimulator,
)
from handlers.errors import SettingError

if TYPE_CHECKING:
    from tests.amlevents.simulator.conftest import Receiver

INFRA = Path(__file__).resolve().parents[3] / "infra"
SCALE = 0.001  # 10 s of Event Grid's schedule takes 10 ms
KEY = "local-topic-key-0123456789"
EVENT = {"id": "e-1", "topic": "/subscriptions/s/workspaces/ws", "subject": "models/m:1",
         "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
         "eventTime": "2017-06-26T18:41:00.9584103Z", "data": {"ModelName": "m"},
         "dataVersion": "", "metadataVersion": "1"}
CLIENT_ERROR = "UndeliverableDueToProbationCausedByClientError"
DEAD_LETTER_FIELDS = {"deadLetterReason", "deliveryAttempts", "lastDeliveryOutcome",
                      "lastHttpStatusCode", "publishTime", "lastDeliveryAttemptTime"}


def container_name() -> str:
    """A fresh container per test: Azurite runs for the whole session."""
    return f"deadletter-{uuid.uuid4().hex[:12]}"


def subscription(container: str) -> Subscription:
    """A subscription to on_model_registered dead-lettering to `container`."""
    return Subscription(name="model-registered", function="on_model_registered",
                        filter=EventFilter(), retry_policy=RetryPolicy(30, 1440),
                        dead_letter=DeadLetter(container))


def blobs(connection: str, container: str) -> dict[str, bytes]:
    """Every blob of the container, read back with a client of its own."""
    client = BlobServiceClient.from_connection_string(connection).get_container_client(container)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


@pytest.fixture
def journal() -> Journal:
    """An in-memory journal."""
    return Journal()


@pytest.fixture
def blob_engine(receiver: Receiver, journal: Journal,
                azurite_blob: str) -> Iterator[DeliveryEngine]:
    """A started engine delivering to the receiver, dead-lettering to Azurite."""
    with DeliveryEngine(receiver.url, journal=journal, time_scale=SCALE,
                        dead_letters=BlobDeadLetterWriter(azurite_blob)) as started:
        yield started


def deliver(engine: DeliveryEngine, journal: Journal, sub: Subscription) -> JournalEntry:
    """Create the subscription, submit, wait until done, and return the single journal entry."""
    engine.create_subscriptions([sub])
    engine.submit(sub, [EVENT])
    assert engine.drain(timeout=10)
    (entry,) = journal.entries()
    return entry


def test_a_400_is_dead_lettered_to_a_blob(blob_engine: DeliveryEngine, journal: Journal,
                                          receiver: Receiver, azurite_blob: str) -> None:
    # GIVEN a receiver answering 400 and a container that does not exist yet
    receiver.script.statuses = [400]
    container = container_name()
    # WHEN the event is delivered
    entry = deliver(blob_engine, journal, subscription(container))
    # THEN the container was created and holds one blob, Event Grid's layout, the documented record
    assert (entry.outcome, entry.reason) == ("dead_lettered", CLIENT_ERROR)
    assert len(receiver.notifications()) == 1
    (name, data), = blobs(azurite_blob, container).items()
    assert entry.location == f"blob://{container}/{name}"
    today = datetime.now(UTC)  # the docs: "non-zero padded date and hour (UTC)"
    assert name.startswith(f"AMLEVENTS-LOCAL/MODEL-REGISTERED/{today.year}/{today.month}/"
                           f"{today.day}/")
    assert name.endswith(".json")
    (record,) = json.loads(data)
    assert DEAD_LETTER_FIELDS <= set(record)
    assert record["id"] == EVENT["id"] and record["data"] == EVENT["data"]
    assert (record["deadLetterReason"], record["deliveryAttempts"], record["lastDeliveryOutcome"],
            record["lastHttpStatusCode"]) == (CLIENT_ERROR, 1, "BadRequest", 400)
    assert datetime.fromisoformat(record["lastDeliveryAttemptTime"]) >= datetime.fromisoformat(
        record["publishTime"])


def test_the_blob_holds_exactly_what_the_folder_writer_writes(azurite_blob: str,
                                                              tmp_path: Path) -> None:
    # GIVEN the same records for the folder and the blob writer, twice into one container
    records = [{**EVENT, "deadLetterReason": "MaxDeliveryAttemptsExceeded", "note": "ü"},
               {**EVENT, "id": "e-2"}]
    container = container_name()
    writer = BlobDeadLetterWriter(azurite_blob)
    # WHEN both write
    path = FolderDeadLetterWriter(tmp_path).write(container, "T/S/a.json", records)
    first = writer.write(container, "T/S/a.json", records)
    second = writer.write(container, "T/S/b.json", records[:1])
    # THEN the bytes are the same, and the existing container was reused
    assert (first, second) == (f"blob://{container}/T/S/a.json", f"blob://{container}/T/S/b.json")
    stored = blobs(azurite_blob, container)
    assert stored["T/S/a.json"] == Path(path).read_bytes()
    assert json.loads(stored["T/S/b.json"]) == records[:1]
    properties = BlobServiceClient.from_connection_string(azurite_blob).get_blob_client(
        container, "T/S/a.json").get_blob_properties()
    assert properties.content_settings.content_type == "application/json"


def test_unreachable_storage_is_journaled_as_a_failed_write(receiver: Receiver,
                                                            journal: Journal) -> None:
    # GIVEN blob storage on a port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
                  f"a2V5;BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    receiver.script.statuses = [400]
    with DeliveryEngine(receiver.url, journal=journal, time_scale=SCALE,
                        dead_letters=BlobDeadLetterWriter(connection)) as engine:
        # WHEN the event is dead-lettered THEN the journal says the write failed (no crash, no key)
        entry = deliver(engine, journal, subscription(container_name()))
    assert entry.outcome == "dropped"
    assert "dead-letter write failed: blob deadletter-" in entry.reason
    assert "a2V5" not in entry.reason


def test_development_storage_means_azurite_blob_on_its_well_known_port() -> None:
    for value in ("UseDevelopmentStorage=true", " usedevelopmentstorage = TRUE; "):
        assert BlobDeadLetterWriter(value).account_url.rstrip("/") == (
            "http://127.0.0.1:10000/devstoreaccount1")


def _settings(tmp_path: Path, connection: str) -> SimulatorSettings:
    # The shipped model-registered subscription, without its tag filter, to a fresh container.
    shipped = json.loads((INFRA / "subscriptions.json").read_text(encoding="utf-8"))
    (sub,) = [s for s in shipped["subscriptions"] if s.get("function") == "on_model_registered"]
    sub["filter"]["advancedFilters"] = []
    sub["deadLetter"]["blobContainerName"] = container_name()
    path = tmp_path / "subscriptions.json"
    path.write_text(json.dumps({"subscriptions": [sub]}), encoding="utf-8")
    shutil.copy(INFRA / "subscriptions.schema.json", tmp_path)  # read next to the file
    settings = SimulatorSettings.from_mapping({
        "AMLEVENTS_TOPIC_KEY": KEY, "AMLEVENTS_SUBSCRIPTIONS_FILE": str(path),
        "AMLEVENTS_SIMULATOR_DIR": str(tmp_path / "sim"), "AMLEVENTS_SIMULATOR_TIME_SCALE": "0.001",
        SIMULATOR_DEADLETTER_CONNECTION: connection})
    assert settings is not None
    return settings


def test_the_topic_simulator_dead_letters_to_the_connection_setting(
        tmp_path: Path, receiver: Receiver, azurite_blob: str) -> None:
    # GIVEN the topic simulator with the dead-letter connection set, delivering to a 400 receiver
    settings = _settings(tmp_path, azurite_blob)
    assert azurite_blob not in repr(settings)
    receiver.script.statuses = [400]
    simulator = TopicSimulator(settings, receiver.url, ["on_model_registered"]).start()
    try:
        # WHEN an event is published to the topic
        # No topic: the simulator's topic (AMLEVENTS_ALLOWED_TOPICS unset: the local one) fills it.
        event = {k: v for k, v in EVENT.items() if k != "topic"}
        event["eventTime"] = datetime.now(UTC).isoformat()
        reply = simulator.route("POST", "/api/events?api-version=2018-01-01",
                                {"aeg-sas-key": KEY, "Content-Type": "application/json"},
                                json.dumps([event]).encode())
        assert reply.status == 200
        assert simulator.drain(10)
    finally:
        simulator.stop()
    # THEN it was dead-lettered to a blob, and no dead-letter folder was written
    (outcome,) = simulator.outcomes()
    assert outcome["outcome"] == "dead_lettered"
    container, _, name = outcome["location"].removeprefix("blob://").partition("/")
    (record,) = json.loads(blobs(azurite_blob, container)[name])
    assert DEAD_LETTER_FIELDS <= set(record) and record["lastHttpStatusCode"] == 400
    assert not (tmp_path / "sim" / "deadletters").exists()


def test_a_malformed_connection_setting_is_named_not_echoed(tmp_path: Path) -> None:
    secret = "AccountName=x;AccountKey=c2VjcmV0LWtleQ==;no-equals-sign"
    with pytest.raises(SettingError) as caught:
        TopicSimulator(_settings(tmp_path, secret), "http://127.0.0.1:9", ["on_model_registered"])
    assert caught.value.setting == SIMULATOR_DEADLETTER_CONNECTION
    assert "c2VjcmV0" not in str(caught.value)

