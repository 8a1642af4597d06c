"""What a delivery looks like: the event in the subscription's schema, and the notification POST.

Event Grid schema bodies are arrays, CloudEvents bodies one object
(`application/cloudevents+json`) or, with batching, an array
(`application/cloudevents-batch+json`); header `aeg-event-type: Notification`
(https://learn.microsoft.com/azure/event-grid/delivery-and-retry). Numbers are written with the
digits they were published with (jsonnum.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from amlevents.simulator import jsonnum
from amlevents.simulator.subscription_model import CLOUD_EVENT_SCHEMA, Subscription

JSON = "application/json; charset=utf-8"


def to_delivery_schema(event: Mapping[str, Any], schema: str) -> dict[str, Any]:
    """The published event in the subscription's delivery schema.

    Event Grid schema -> CloudEvents 1.0 as the service does it; the documented pairs of the same
    event in both schemas (e.g. Microsoft.HealthcareApis.FhirResourceUpdated, dataVersion "2" ->
    "dataschema": "#2"; Blob events' "" -> "#") show the mapping: topic -> source, eventType ->
    type, eventTime -> time, dataVersion -> dataschema "#{dataVersion}", metadataVersion dropped,
    no datacontenttype added. CloudEvents -> Event Grid schema does not exist (a CloudEvents topic
    delivers CloudEvents only): ValueError.
    """
    cloud_in = "specversion" in event
    if (schema == CLOUD_EVENT_SCHEMA) == cloud_in:
        return dict(event)
    if cloud_in:
        raise ValueError("CloudEvents are never converted to the Event Grid schema: a topic whose "
                         "input schema is CloudEventSchemaV1_0 delivers CloudEvents only")
    converted = {"specversion": "1.0", "id": event["id"], "source": event.get("topic", ""),
                 "type": event["eventType"], "subject": event["subject"],
                 "time": event["eventTime"], "dataschema": f"#{event.get('dataVersion') or ''}"}
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
    headers.update(delivery_attributes(subscription, events[0]))
    return headers, jsonnum.dumps(payload).encode("utf-8")


def delivery_attributes(subscription: Subscription, event: Mapping[str, Any]) -> dict[str, str]:
    """The destination's deliveryAttributeMappings as headers: Static values as given, Dynamic
    ones read from the event (`data.a.b`, or a top-level property); a missing one is left out."""
    if subscription.destination is None:
        return {}
    headers: dict[str, str] = {}
    for attribute in subscription.destination.attributes:
        if attribute.type == "Static":
            headers[attribute.name] = attribute.value
            continue
        value: Any = event
        for part in attribute.source_field.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None and not isinstance(value, (Mapping, list)):
            headers[attribute.name] = value if isinstance(value, str) else jsonnum.dumps(value)
    return headers
