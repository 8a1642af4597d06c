"""What a delivery looks like: the event in the subscription's schema, and the notification POST.

Event Grid schema bodies are arrays, CloudEvents bodies one object
(`application/cloudevents+json`) or, with batching, an array
(`application/cloudevents-batch+json`); header `aeg-event-type: Notification`
(https://learn.microsoft.com/azure/event-grid/delivery-and-retry).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from amlevents.simulator import journal as jr
from amlevents.simulator.subscription_model import CLOUD_EVENT_SCHEMA, Subscription

JSON = "application/json; charset=utf-8"


def to_delivery_schema(event: Mapping[str, Any], schema: str) -> dict[str, Any]:
    """Convert a published event to the subscription's delivery schema (both ways)."""
    cloud_in = "specversion" in event
    if (schema == CLOUD_EVENT_SCHEMA) == cloud_in:
        return dict(event)
    if cloud_in:
        return {"id": event["id"], "topic": event["source"], "subject": event.get("subject") or "",
                "eventType": event["type"], "eventTime": event.get("time") or jr.iso(jr.utc_now()),
                "data": event.get("data"), "dataVersion": "", "metadataVersion": "1"}
    converted = {"specversion": "1.0", "id": event["id"], "source": event.get("topic", ""),
                 "type": event["eventType"], "subject": event["subject"],
                 "time": event["eventTime"], "datacontenttype": "application/json"}
    return {**converted, "data": event.get("data")}


def notification(subscription: Subscription, events: Sequence[Mapping[str, Any]],
                 attempt: int) -> tuple[dict[str, str], bytes]:
    """Headers and body of the `attempt`-th (1-based) notification POST of one batch."""
    cloud = subscription.event_delivery_schema == CLOUD_EVENT_SCHEMA
    payload: Any
    if cloud and subscription.batching is None:
        content_type, payload = "application/cloudevents+json; charset=utf-8", events[0]
    elif cloud:
        content_type, payload = "application/cloudevents-batch+json; charset=utf-8", events
    else:
        content_type, payload = JSON, events
    headers = {"Content-Type": content_type, "aeg-event-type": "Notification",
               "aeg-subscription-name": subscription.name.upper(),
               "aeg-delivery-count": str(attempt - 1), "aeg-metadata-version": "1",
               "aeg-data-version": str(events[0].get("dataVersion", ""))}
    return headers, json.dumps(payload).encode("utf-8")
