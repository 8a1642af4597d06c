"""Local Event Grid simulator: subscriptions file, filtering, topic endpoint, delivery.

Wiring (the local host does this for `amlevents serve`)::

    subscriptions = load_subscriptions("infra/subscriptions.json", known_functions=names)
    journal = Journal(".amlevents/journal.jsonl")
    engine = DeliveryEngine("http://127.0.0.1:7071", journal=journal,
                            endpoint_type="AzureFunction",
                            dead_letters=FolderDeadLetterWriter(".amlevents/deadletters"))
    # Creates the subscriptions (a WebHook engine validates each endpoint here, once).
    topic = EventGridTopic(subscriptions, engine, journal, topic_id=workspace_id,
                           input_schema="EventGridSchema")
    endpoint = PublishEndpoint(topic, keys=[topic_key])
    engine.start()
    ...  # serve: endpoint.handle(method, target, headers, body) -> PublishResponse
    engine.stop()

No module here does anything at import time.
"""

from __future__ import annotations

from amlevents.simulator.delivery import DeliveryEngine, retry_delay_s, to_delivery_schema
from amlevents.simulator.filters import AdvancedFilter, EventFilter, FilterResult, evaluate
from amlevents.simulator.journal import (
    DeadLetterWriter,
    FolderDeadLetterWriter,
    Journal,
    JournalEntry,
)
from amlevents.simulator.subscriptions import (
    Batching,
    DeadLetter,
    RetryPolicy,
    Subscription,
    SubscriptionsError,
    SubscriptionValidationError,
    load_subscriptions,
    parse_subscriptions,
)
from amlevents.simulator.topic import (
    EventGridTopic,
    PublishEndpoint,
    PublishResponse,
    Routing,
)
from amlevents.simulator.transport import (
    DeliveryNetworkError,
    HttpClientTransport,
    HttpResult,
    Transport,
)

__all__ = [
    "AdvancedFilter",
    "Batching",
    "DeadLetter",
    "DeadLetterWriter",
    "DeliveryEngine",
    "DeliveryNetworkError",
    "EventFilter",
    "EventGridTopic",
    "FilterResult",
    "FolderDeadLetterWriter",
    "HttpClientTransport",
    "HttpResult",
    "Journal",
    "JournalEntry",
    "PublishEndpoint",
    "PublishResponse",
    "RetryPolicy",
    "Routing",
    "Subscription",
    "SubscriptionValidationError",
    "SubscriptionsError",
    "Transport",
    "evaluate",
    "load_subscriptions",
    "parse_subscriptions",
    "retry_delay_s",
    "to_delivery_schema",
]
