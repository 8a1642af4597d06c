"""`amlevents serve` as an Event Grid topic too: the simulator wired to the local host.

When AMLEVENTS_TOPIC_KEY is set, `POST /api/events` on the host's port accepts what the real
`EventGridPublisherClient` sends (key in `aeg-sas-key`, or a SAS for this URL in
`aeg-sas-token`) in the topic's input schema (AMLEVENTS_SIMULATOR_INPUT_SCHEMA, EventGridSchema by
default, as the workspace's system topic), filters it through the subscriptions file and
delivers it, with Event Grid's retries and dead-lettering, to the host's own functions (Azure
Function destinations: no validation handshake, as in Azure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlevents.host.server import RawBody, Reply
from handlers.errors import SettingError
from handlers.runtime.settings import ALLOWED_TOPICS
from handlers.settings import SettingsReader

if TYPE_CHECKING:
    from amlevents.simulator import DeadLetterWriter

TOPIC_KEY = "AMLEVENTS_TOPIC_KEY"
SUBSCRIPTIONS_FILE = "AMLEVENTS_SUBSCRIPTIONS_FILE"
SIMULATOR_DIR = "AMLEVENTS_SIMULATOR_DIR"
SIMULATOR_TIME_SCALE = "AMLEVENTS_SIMULATOR_TIME_SCALE"
SIMULATOR_DEADLETTER_CONNECTION = "AMLEVENTS_SIMULATOR_DEADLETTER_CONNECTION"
SIMULATOR_INPUT_SCHEMA = "AMLEVENTS_SIMULATOR_INPUT_SCHEMA"
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
            input_schema=_input_schema(reader))
        reader.raise_if_invalid()
        return settings


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


class TopicSimulator:
    """The publish route plus the delivery engine behind it."""

    def __init__(self, settings: SimulatorSettings, host_url: str,
                 functions: Iterable[str], *, function_key: str | None = None) -> None:
        from amlevents import simulator as sim

        subscriptions = sim.load_subscriptions(settings.subscriptions_file,
                                               known_functions=functions)
        self.journal = sim.Journal(str(settings.directory / "journal.jsonl"))
        topic_id = settings.topic_id or sim.delivery.LOCAL_TOPIC_ID
        self.engine = sim.DeliveryEngine(
            host_url, journal=self.journal, dead_letters=_dead_letter_writer(settings),
            function_key=function_key, time_scale=settings.time_scale,
            endpoint_type="AzureFunction", topic_id=topic_id)
        topic = sim.EventGridTopic(subscriptions, self.engine, self.journal, topic_id=topic_id,
                                   input_schema=settings.input_schema)
        self.endpoint = sim.PublishEndpoint(topic, keys=[settings.topic_key])
        self.path = self.endpoint.path

    def route(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The local host's extra route for the topic endpoint."""
        answer = self.endpoint.handle(method, target, headers, body)
        content_type = dict(answer.headers).get("Content-Type", "application/json")
        return Reply(answer.status, RawBody(answer.body, content_type),
                     {k: v for k, v in answer.headers.items() if k.lower() != "content-type"})

    def start(self) -> TopicSimulator:
        """Start delivering."""
        self.engine.start()
        return self

    def stop(self) -> None:
        """Stop delivering (pending retries are dead-lettered, never dropped)."""
        self.engine.stop()

    def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is pending; True when drained."""
        return bool(self.engine.drain(timeout_s))

    def outcomes(self) -> list[dict[str, Any]]:
        """The journal: one entry per (event, subscription)."""
        return [asdict(entry) for entry in self.journal.entries()]
