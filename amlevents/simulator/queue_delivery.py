"""StorageQueue destinations: events into Azure Queue Storage (Azurite locally), as Event Grid does.

Event Grid writes one queue message per event: the event's JSON in the subscription's delivery
schema (one object, never an array), Base64-encoded (what the service writes today, and what
the Functions queue trigger expects; MicrosoftDocs/azure-docs#102923), with the destination's
`queueMessageTimeToLiveInSeconds` (-1: never expires; absent: the queue's default, 7 days).
https://learn.microsoft.com/azure/event-grid/handler-storage-queues

The queue must exist: Event Grid does not create it, and a missing queue is a 404 that the retry
policy for Azure resources retries after 5 minutes or more, then dead-letters. Every storage
account of the file maps to the one local account of AMLEVENTS_SIMULATOR_QUEUE_CONNECTION.
azure-storage-queue is imported when the sender is built, never at import.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from amlevents.simulator import jsonnum
from amlevents.simulator.delivery_policy import Attempt, outcome_for
from amlevents.simulator.subscription_model import Subscription
from handlers.ledger.table import DEV_CONNECTION_STRING

DEV_QUEUE_CONNECTION_STRING = DEV_CONNECTION_STRING.replace(
    "TableEndpoint=http://127.0.0.1:10002/", "QueueEndpoint=http://127.0.0.1:10001/")
_TIMEOUTS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 20}


def expand_development_storage(connection_string: str) -> str:
    """`UseDevelopmentStorage=true` (any case or spacing) → Azurite's queue connection string."""
    if connection_string.replace(" ", "").rstrip(";").lower() == "usedevelopmentstorage=true":
        return DEV_QUEUE_CONNECTION_STRING
    return connection_string


def queue_message(event: Mapping[str, Any]) -> str:
    """One event as Event Grid stores it in a queue message: its JSON, Base64-encoded."""
    return base64.b64encode(jsonnum.dumps(event).encode("utf-8")).decode("ascii")


class QueueSender:
    """Sends each event of a batch as one message to the subscription's queue."""

    def __init__(self, connection_string: str) -> None:
        from azure.storage.queue import QueueServiceClient

        # The delivery engine retries, as Event Grid does: no SDK retries under it.
        # ValueError for a malformed string; its message never echoes the value (account key).
        self._service = QueueServiceClient.from_connection_string(
            expand_development_storage(connection_string), retry_total=0, **_TIMEOUTS)
        self._lock = threading.Lock()

    @property
    def account_url(self) -> str:
        """The queue service URL (no credentials in it)."""
        return str(self._service.url)

    def send(self, subscription: Subscription, events: Sequence[Mapping[str, Any]]) -> Attempt:
        """Enqueue each event; the attempt fails at the first message the service refuses."""
        from azure.core.exceptions import (
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        destination = subscription.destination
        assert destination is not None and destination.queue_name
        queue = self._service.get_queue_client(destination.queue_name)
        ttl = destination.queue_message_ttl_s
        for event in events:
            try:
                queue.send_message(queue_message(event), time_to_live=ttl)
            except HttpResponseError as exc:
                status = int(exc.status_code or 500)
                return Attempt(False, status, outcome_for(status))
            except ServiceResponseError:
                return Attempt(False, None, "TimedOut")
            except ServiceRequestError:
                return Attempt(False, None, "SocketError")
        return Attempt(True, 201, "Delivered")
