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


@dataclass(frozen=True)
class Subscription:
    """One event subscription targeting one function of the app."""

    name: str
    function: str
    filter: EventFilter = field(default_factory=EventFilter)
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    batching: Batching | None = None
    dead_letter: DeadLetter | None = None
    event_delivery_schema: str = EVENT_GRID_SCHEMA
    description: str = ""


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
