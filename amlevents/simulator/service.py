"""`amlevents serve` as an Event Grid topic too: the simulator wired to the local host.

When AMLEVENTS_TOPIC_KEY is set, `POST /api/events` on the host's port accepts what the real
`EventGridPublisherClient` sends (key in `aeg-sas-key`, or a SAS for this URL in
`aeg-sas-token`) in the topic's input schema (AMLEVENTS_SIMULATOR_INPUT_SCHEMA, EventGridSchema by
default, as the workspace's system topic), filters it through the subscriptions file and
delivers it, with Event Grid's retries and dead-lettering, to each subscription's destination:
the host's own functions (Azure Function destinations: no validation handshake, as in Azure),
webhooks (validated once, at creation), Storage queues (AMLEVENTS_SIMULATOR_QUEUE_CONNECTION,
e.g. Azurite's queue service). Event Hub and Service Bus destinations have no local emulator: it
says so at start, per subscription, and records what each would have received under
`{AMLEVENTS_SIMULATOR_DIR}/not-delivered/`.

The outcome topic: when AMLEVENTS_OUTCOME_TOPIC_ENDPOINT is a 127.0.0.1 / localhost URL, the
simulator serves amlevents' outcome topic there (CloudEventSchemaV1_0, keys
AMLEVENTS_OUTCOME_TOPIC_KEY and AMLEVENTS_TOPIC_KEY), and the subscriptions whose `topic` is
`outcomes` route what the app publishes to it.

Placeholders of the subscriptions file (`{name}` for an endpointUrl or resourceId) take their
values from AMLEVENTS_SIMULATOR_SUBSCRIPTION_VALUES (a JSON object, as the template's
subscriptionValues); a subscription with a placeholder left without a value is not created.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from amlevents.host.server import RawBody, Reply
from handlers.errors import SettingError
from handlers.runtime.settings import ALLOWED_TOPICS
from handlers.settings import SettingsReader

if TYPE_CHECKING:
    from amlevents.simulator import DeadLetterWriter, Subscription
    from amlevents.simulator.queue_delivery import QueueSender

log = logging.getLogger("amlevents.simulator")

TOPIC_KEY = "AMLEVENTS_TOPIC_KEY"
SUBSCRIPTIONS_FILE = "AMLEVENTS_SUBSCRIPTIONS_FILE"
SIMULATOR_DIR = "AMLEVENTS_SIMULATOR_DIR"
SIMULATOR_TIME_SCALE = "AMLEVENTS_SIMULATOR_TIME_SCALE"
SIMULATOR_DEADLETTER_CONNECTION = "AMLEVENTS_SIMULATOR_DEADLETTER_CONNECTION"
SIMULATOR_INPUT_SCHEMA = "AMLEVENTS_SIMULATOR_INPUT_SCHEMA"
SIMULATOR_QUEUE_CONNECTION = "AMLEVENTS_SIMULATOR_QUEUE_CONNECTION"
SIMULATOR_SUBSCRIPTION_VALUES = "AMLEVENTS_SIMULATOR_SUBSCRIPTION_VALUES"
# The app's own settings for its outcome topic (handlers/publish/settings.py owns them).
OUTCOME_TOPIC_ENDPOINT = "AMLEVENTS_OUTCOME_TOPIC_ENDPOINT"
OUTCOME_TOPIC_KEY = "AMLEVENTS_OUTCOME_TOPIC_KEY"
LOCAL_OUTCOME_TOPIC_ID = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
                          "local/providers/Microsoft.EventGrid/topics/amlevents-outcomes")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# The topic's declared inputSchema (ARM's names); CustomEventSchema is not simulated.
_INPUT_SCHEMAS = {"eventgridschema": "EventGridSchema",
                  "cloudeventschemav1_0": "CloudEventSchemaV1_0"}
DEFAULT_SUBSCRIPTIONS = Path(__file__).resolve().parents[2] / "infra" / "subscriptions.json"


@dataclass(frozen=True)
class SimulatorSettings:
    """Where the subscriptions, journal and dead letters are; how fast retries run."""

    topic_key: str
    subscriptions_file: Path
    directory: Path
    time_scale: float
    topic_id: str
    # Empty: dead letters are files under `directory`; else a Blob Storage connection string.
    deadletter_connection: str = field(default="", repr=False)
    input_schema: str = "EventGridSchema"
    # Empty: StorageQueue destinations are recorded, not delivered; else a storage connection.
    queue_connection: str = field(default="", repr=False)
    # The placeholders' values (may hold webhook keys).
    subscription_values: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # The outcome topic's URL when it is served here (a loopback URL), else "".
    outcome_endpoint: str = ""
    outcome_keys: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> SimulatorSettings | None:
        """None when AMLEVENTS_TOPIC_KEY is not set (the simulator is off)."""
        reader = SettingsReader(env)
        key = reader.text(TOPIC_KEY)
        if not key:
            return None
        settings = cls(
            topic_key=key,
            subscriptions_file=Path(reader.text(SUBSCRIPTIONS_FILE, str(DEFAULT_SUBSCRIPTIONS))),
            directory=Path(reader.text(SIMULATOR_DIR, ".amlevents")),
            time_scale=reader.number(SIMULATOR_TIME_SCALE, 1.0, minimum=1e-6, maximum=1.0),
            topic_id=(reader.items(ALLOWED_TOPICS) or ("",))[0],
            deadletter_connection=reader.text(SIMULATOR_DEADLETTER_CONNECTION),
            input_schema=_input_schema(reader),
            queue_connection=reader.text(SIMULATOR_QUEUE_CONNECTION),
            subscription_values=_subscription_values(reader),
            outcome_endpoint=_local_outcome_endpoint(reader.text(OUTCOME_TOPIC_ENDPOINT)),
            outcome_keys=tuple(k for k in (reader.text(OUTCOME_TOPIC_KEY), key) if k))
        reader.raise_if_invalid()
        return settings


def _subscription_values(reader: SettingsReader) -> tuple[tuple[str, str], ...]:
    raw = reader.text(SIMULATOR_SUBSCRIPTION_VALUES)
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        reader.problem(SIMULATOR_SUBSCRIPTION_VALUES, 'must be a JSON object of strings, e.g. '
                       '{"outcomeWebhookUrl": "http://127.0.0.1:8080/hook"}')
        return ()
    return tuple(sorted((str(k), v) for k, v in value.items()))


def _local_outcome_endpoint(endpoint: str) -> str:
    """The outcome topic's URL if this machine serves it (a loopback URL), else ""."""
    parts = urlsplit(endpoint)
    return endpoint if parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK \
        and parts.port else ""


def _input_schema(reader: SettingsReader) -> str:
    raw = reader.text(SIMULATOR_INPUT_SCHEMA, "EventGridSchema")
    if raw.lower() not in _INPUT_SCHEMAS:
        reader.problem(SIMULATOR_INPUT_SCHEMA, f"must be {' or '.join(_INPUT_SCHEMAS.values())} "
                                               "(CustomEventSchema is not simulated)")
        return "EventGridSchema"
    return _INPUT_SCHEMAS[raw.lower()]


def _dead_letter_writer(settings: SimulatorSettings) -> DeadLetterWriter:
    """Blob Storage (or Azurite) when a connection string is set, else the local folder."""
    from amlevents import simulator as sim

    if not settings.deadletter_connection:
        return sim.FolderDeadLetterWriter(str(settings.directory / "deadletters"))
    from amlevents.simulator.blob_deadletter import BlobDeadLetterWriter

    try:
        return BlobDeadLetterWriter(settings.deadletter_connection)
    except ValueError:  # never echo the value: it holds the account key
        raise SettingError(SIMULATOR_DEADLETTER_CONNECTION,
                           "is not a valid storage connection string") from None


def _queue_sender(settings: SimulatorSettings) -> QueueSender | None:
    if not settings.queue_connection:
        return None
    from amlevents.simulator.queue_delivery import QueueSender

    try:
        return QueueSender(settings.queue_connection)
    except ValueError:  # never echo the value: it holds the account key
        raise SettingError(SIMULATOR_QUEUE_CONNECTION,
                           "is not a valid storage connection string") from None


class TopicSimulator:
    """The publish route plus the delivery engine behind it (and the outcome topic, if local)."""

    def __init__(self, settings: SimulatorSettings, host_url: str,
                 functions: Iterable[str], *, function_key: str | None = None) -> None:
        from amlevents import simulator as sim
        from amlevents.simulator.subscription_model import CLOUD_EVENT_SCHEMA, OUTCOMES_TOPIC

        subscriptions = sim.load_subscriptions(settings.subscriptions_file,
                                               known_functions=functions,
                                               values=dict(settings.subscription_values))
        self.journal = sim.Journal(str(settings.directory / "journal.jsonl"))
        self.notices: list[str] = []
        queues = _queue_sender(settings)
        created = [s for s in subscriptions if self._creatable(s, settings, queues)]
        recorder = sim.FolderDeadLetterWriter(str(settings.directory / "not-delivered"))
        dead_letters = _dead_letter_writer(settings)
        topic_id = settings.topic_id or sim.delivery.LOCAL_TOPIC_ID
        self.engine = sim.DeliveryEngine(
            host_url, journal=self.journal, dead_letters=dead_letters,
            function_key=function_key, time_scale=settings.time_scale,
            endpoint_type="AzureFunction", topic_id=topic_id, queues=queues, recorder=recorder)
        topic = sim.EventGridTopic([s for s in created if s.topic != OUTCOMES_TOPIC],
                                   self.engine, self.journal, topic_id=topic_id,
                                   input_schema=settings.input_schema)
        self.endpoint = sim.PublishEndpoint(topic, keys=[settings.topic_key])
        self.path = self.endpoint.path
        self.outcome_engine: Any = None
        self.outcome_endpoint: Any = None
        self.outcome_server: Any = None
        if settings.outcome_endpoint:
            self.outcome_engine = sim.DeliveryEngine(
                host_url, journal=self.journal, dead_letters=dead_letters,
                time_scale=settings.time_scale, endpoint_type="AzureFunction",
                topic_id=LOCAL_OUTCOME_TOPIC_ID, queues=queues, recorder=recorder)
            outcome_topic = sim.EventGridTopic(
                [s for s in created if s.topic == OUTCOMES_TOPIC], self.outcome_engine,
                self.journal, topic_id=LOCAL_OUTCOME_TOPIC_ID, input_schema=CLOUD_EVENT_SCHEMA)
            url = urlsplit(settings.outcome_endpoint)
            self.outcome_endpoint = sim.PublishEndpoint(
                outcome_topic, keys=settings.outcome_keys, path=url.path or "/api/events")
            from amlevents.simulator.topic_server import TopicServer

            self.outcome_server = TopicServer(self.outcome_endpoint, url.hostname or "127.0.0.1",
                                              int(url.port or 0))
        for notice in self.notices:
            log.warning("%s", notice)

    def _creatable(self, subscription: Subscription, settings: SimulatorSettings,
                   queues: QueueSender | None) -> bool:
        """Whether the subscription is created here; notes why not, or how it is delivered."""
        from amlevents.simulator.delivery import NO_EMULATOR
        from amlevents.simulator.subscription_model import OUTCOMES_TOPIC, STORAGE_QUEUE

        name, kind = subscription.name, subscription.endpoint_type
        destination = subscription.destination
        if destination is not None and destination.unresolved:
            missing = ", ".join("{" + n + "}" for n in destination.unresolved)
            self.notices.append(f"subscription {name!r} not created: no value for {missing} "
                                f"(set it in {SIMULATOR_SUBSCRIPTION_VALUES}; the template "
                                "takes it from subscriptionValues)")
            return False
        if subscription.topic == OUTCOMES_TOPIC and not settings.outcome_endpoint:
            self.notices.append(f"subscription {name!r} not created: the outcome topic is "
                                f"served here only when {OUTCOME_TOPIC_ENDPOINT} is an "
                                "http://127.0.0.1:PORT/... or http://localhost:PORT/... URL")
            return False
        where = settings.directory / "not-delivered" / kind.lower()
        if kind in NO_EMULATOR:
            self.notices.append(f"subscription {name!r}: {kind} destinations are not delivered "
                                f"locally (no emulator here); what it would receive is "
                                f"recorded under {where} and in the journal")
        elif kind == STORAGE_QUEUE and queues is None:
            self.notices.append(f"subscription {name!r}: StorageQueue not delivered: set "
                                f"{SIMULATOR_QUEUE_CONNECTION} (e.g. Azurite's queue service); "
                                f"what it would receive is recorded under {where}")
        return True

    def route(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The local host's extra route for the topic endpoint."""
        answer = self.endpoint.handle(method, target, headers, body)
        content_type = dict(answer.headers).get("Content-Type", "application/json")
        return Reply(answer.status, RawBody(answer.body, content_type),
                     {k: v for k, v in answer.headers.items() if k.lower() != "content-type"})

    def start(self) -> TopicSimulator:
        """Start delivering (and serving the outcome topic)."""
        self.engine.start()
        if self.outcome_engine is not None:
            self.outcome_engine.start()
            self.outcome_server.start()
        return self

    def stop(self) -> None:
        """Stop delivering (pending retries are dead-lettered, never dropped)."""
        if self.outcome_server is not None:
            self.outcome_server.stop()
            self.outcome_engine.stop()
        self.engine.stop()

    def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is pending; True when drained."""
        engines = [self.engine] + ([self.outcome_engine] if self.outcome_engine else [])
        return all(bool(engine.drain(timeout_s)) for engine in engines)

    def outcomes(self) -> list[dict[str, Any]]:
        """The journal: one entry per (event, subscription)."""
        return [asdict(entry) for entry in self.journal.entries()]
