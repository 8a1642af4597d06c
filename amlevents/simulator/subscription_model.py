"""The subscriptions file as frozen values, and the error that lists every problem found in it.

Names follow ARM's eventSubscription (see amlevents/simulator/subscriptions.py, which loads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from amlevents.simulator.filters import EventFilter

EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"
DELIVERY_SCHEMAS = (EVENT_GRID_SCHEMA, CLOUD_EVENT_SCHEMA)
# A custom topic's declared `inputSchema`. The third one, CustomEventSchema (with an
# inputSchemaMapping), is not simulated.
INPUT_SCHEMAS = (EVENT_GRID_SCHEMA, CLOUD_EVENT_SCHEMA)


def delivery_schema_problem(input_schema: str, delivery_schema: str) -> str:
    """Why a topic with `input_schema` cannot have a subscription delivering `delivery_schema`.

    https://learn.microsoft.com/azure/event-grid/event-schema-compatibility: Event Grid schema in
    -> Event Grid schema or CloudEvents out; CloudEvents in -> CloudEvents out only.
    """
    if input_schema == CLOUD_EVENT_SCHEMA and delivery_schema != CLOUD_EVENT_SCHEMA:
        return (f"CloudEvents cannot be delivered in Event Grid schema: a topic whose input "
                f"schema is {CLOUD_EVENT_SCHEMA} delivers {CLOUD_EVENT_SCHEMA} only, not "
                f"{delivery_schema}")
    return ""


@dataclass(frozen=True)
class RetryPolicy:
    """ARM's retryPolicy (defaults are Event Grid's)."""

    max_delivery_attempts: int = 30
    event_time_to_live_in_minutes: int = 1440


@dataclass(frozen=True)
class Batching:
    """Output batching (defaults are ARM's when batching is on)."""

    max_events_per_batch: int = 1
    preferred_batch_size_in_kilobytes: int = 64


@dataclass(frozen=True)
class DeadLetter:
    """Where undeliverable events go: a blob container (a local folder in the simulator)."""

    blob_container_name: str


# Destinations (ARM's EventSubscriptionDestination `endpointType`). `function` in the file is an
# AzureFunction destination of this app; the others are written as ARM writes them.
AZURE_FUNCTION = "AzureFunction"
WEBHOOK = "WebHook"
EVENT_HUB = "EventHub"
SERVICE_BUS_QUEUE = "ServiceBusQueue"
SERVICE_BUS_TOPIC = "ServiceBusTopic"
STORAGE_QUEUE = "StorageQueue"
ENDPOINT_TYPES = (WEBHOOK, EVENT_HUB, SERVICE_BUS_QUEUE, SERVICE_BUS_TOPIC, STORAGE_QUEUE)
# deliveryWithResourceIdentity: the topic's managed identity signs the delivery (ARM supports it
# for these; a WebHook authenticates with Entra ID app settings instead).
IDENTITY_ENDPOINT_TYPES = (EVENT_HUB, SERVICE_BUS_QUEUE, SERVICE_BUS_TOPIC, STORAGE_QUEUE)
# Which topic a subscription belongs to: the workspace's system topic (Azure ML events), or
# amlevents' own outcome topic (amlevents.* CloudEvents).
WORKSPACE_TOPIC = "workspace"
OUTCOMES_TOPIC = "outcomes"
TOPICS = (WORKSPACE_TOPIC, OUTCOMES_TOPIC)


@dataclass(frozen=True)
class DeliveryAttribute:
    """ARM's deliveryAttributeMappings item: a header on each delivery (Static or Dynamic)."""

    name: str
    type: str  # Static | Dynamic
    value: str = field(default="", repr=False)  # Static (may be a secret)
    source_field: str = ""  # Dynamic: a property of the event, e.g. data.endpoint
    is_secret: bool = False


@dataclass(frozen=True)
class Destination:
    """Where a subscription delivers, with ARM's properties for its endpointType.

    `unresolved` lists `{placeholder}` values of the file that no value was given for: such a
    subscription is not created (the template skips it too).
    """

    endpoint_type: str
    endpoint_url: str = field(default="", repr=False)  # WebHook (may hold a key)
    resource_id: str = ""  # EventHub, ServiceBusQueue/Topic; StorageQueue: the storage account
    queue_name: str = ""  # StorageQueue
    queue_message_ttl_s: int | None = None  # StorageQueue; -1 = never expires
    identity: str = ""  # deliveryWithResourceIdentity: SystemAssigned
    attributes: tuple[DeliveryAttribute, ...] = ()
    unresolved: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subscription:
    """One event subscription: to one function of the app, or to another destination."""

    name: str
    function: str
    filter: EventFilter = field(default_factory=EventFilter)
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    batching: Batching | None = None
    dead_letter: DeadLetter | None = None
    event_delivery_schema: str = EVENT_GRID_SCHEMA
    description: str = ""
    destination: Destination | None = None  # None: the AzureFunction `function`
    topic: str = WORKSPACE_TOPIC

    @property
    def endpoint_type(self) -> str:
        """ARM's endpointType of the destination."""
        return self.destination.endpoint_type if self.destination else AZURE_FUNCTION

    @property
    def target(self) -> str:
        """What the journal names as the destination: the function, URL host, queue or resource."""
        if self.destination is None:
            return self.function
        dest = self.destination
        if dest.endpoint_type == WEBHOOK:
            from urllib.parse import urlsplit

            return f"webhook {urlsplit(dest.endpoint_url).hostname or '?'}"
        if dest.endpoint_type == STORAGE_QUEUE:
            return f"queue {dest.queue_name}"
        return f"{dest.endpoint_type} {dest.resource_id.rsplit('/', 1)[-1]}"


class SubscriptionsError(ValueError):
    """The subscriptions file is unreadable or invalid; `problems` lists every finding."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n  - "
                         + "\n  - ".join(self.problems))


class SubscriptionValidationError(SubscriptionsError):
    """A WebHook endpoint failed Event Grid's validation handshake: no subscription was created."""


class ProblemReport:
    """Collects problems for one subscription, prefixed with its name."""

    def __init__(self, problems: list[str], label: str) -> None:
        self.problems, self.label = problems, label

    def add(self, field: str, message: str) -> None:
        """Record one problem with a field of the subscription."""
        self.problems.append(f"{self.label}: {field}: {message}")
