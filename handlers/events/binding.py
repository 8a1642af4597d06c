"""What a trigger is handed, straight to the envelope.

The Functions Python worker decodes an `eventGridTrigger` body with azure-functions' own converter:
Event Grid schema becomes `func.EventGridEvent`, CloudEvents 1.0 becomes `func.CloudEvent`
(azure-functions >= 1.25), whatever the trigger is annotated with. Both are read attribute by
attribute with the rules dicts get (fields.py); no dict is built to be parsed again. The CLI hands
dicts or JSON text, read by event_grid.py / cloud_event.py.

The two classes are recognised by their shape (shapes.py describes it for mypy, and the
azure-functions classes satisfy it), so this planning code never imports azure.functions
(layering, cold start).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from handlers.errors import InvalidEvent
from handlers.events.cloud_event import (
    check_spec_version,
    data_version,
    from_cloud_event,
    is_cloud_event,
)
from handlers.events.event_grid import from_event_grid
from handlers.events.fields import Problems, data_object, envelope, load_json, text
from handlers.events.types import CLOUD_EVENT_SCHEMA, EVENT_GRID_SCHEMA, EventEnvelope

if TYPE_CHECKING:  # the shapes are for mypy; at run time objects are recognised below
    from handlers.events.shapes import CloudEventObject, EventGridEventObject


def is_cloud_event_object(event: object) -> TypeGuard[CloudEventObject]:
    """A func.CloudEvent: only it has `specversion` and `get_json`."""
    return hasattr(event, "specversion") and callable(getattr(event, "get_json", None))


def is_event_grid_event_object(event: object) -> TypeGuard[EventGridEventObject]:
    """A func.EventGridEvent: only it has `event_type`, `topic` and `get_json`."""
    return hasattr(event, "event_type") and hasattr(event, "topic") and \
        callable(getattr(event, "get_json", None))


def to_envelope(event: Any) -> EventEnvelope:
    """The envelope of one event: a func.EventGridEvent / func.CloudEvent, a dict, or JSON text."""
    if isinstance(event, Mapping):
        return from_mapping(event)
    if isinstance(event, (bytes, bytearray, str)):
        loaded = load_json(event)
        if not isinstance(loaded, Mapping):
            raise InvalidEvent("body", f"must be a JSON object, got {type(loaded).__name__}")
        return from_mapping(loaded)
    if is_cloud_event_object(event):
        return from_cloud_event_object(event)
    if is_event_grid_event_object(event):
        return from_event_grid_event_object(event)
    raise InvalidEvent("body", f"unsupported event object {type(event).__name__}")


def from_mapping(raw: Mapping[str, Any]) -> EventEnvelope:
    """A dict in either schema; `specversion` tells them apart, as the converter does."""
    return from_cloud_event(raw) if is_cloud_event(raw) else from_event_grid(raw)


def from_event_grid_event_object(event: EventGridEventObject) -> EventEnvelope:
    """A func.EventGridEvent; attributes the converter found no key for are None."""
    problems: Problems = []
    wire = wire_form(event)
    return envelope(
        problems, id=text(event.id, "id", problems, required=True),
        event_type=text(event.event_type, "eventType", problems, required=True),
        topic=text(event.topic, "topic", problems, required=True),
        subject=text(event.subject, "subject", problems, required=True),
        event_time=wire.get("eventTime") or "",
        data_version=text(event.data_version, "dataVersion", problems, required=False),
        data=data_object(event.get_json(), problems), schema=EVENT_GRID_SCHEMA, raw=wire)


def from_cloud_event_object(event: CloudEventObject) -> EventEnvelope:
    """A func.CloudEvent: source is the topic, type the event type, time the event time."""
    problems: Problems = []
    check_spec_version(event.specversion, problems)
    wire = wire_form(event)
    return envelope(
        problems, id=text(event.id, "id", problems, required=True),
        event_type=text(event.type, "type", problems, required=True),
        topic=text(event.source, "source", problems, required=True),
        subject=text(event.subject, "subject", problems, required=False),
        event_time=wire.get("time") or "",
        data_version=data_version(text(event.dataschema, "dataschema", problems, required=False)),
        data=data_object(event.get_json(), problems), schema=CLOUD_EVENT_SCHEMA, raw=wire)


def wire_form(event: EventGridEventObject | CloudEventObject) -> dict[str, Any]:
    """The event in its delivery schema, from the attributes the converter kept (None left out).

    Passed on to people (webhook notifications) and used as the stable content of a malformed
    event's ledger key; never parsed again.
    """
    attributes: dict[str, Any]
    if is_cloud_event_object(event):
        attributes = {
            "specversion": event.specversion, "id": event.id, "source": event.source,
            "type": event.type, "subject": event.subject, "time": iso_time(event.time),
            "datacontenttype": event.datacontenttype, "dataschema": event.dataschema,
            "data": event.get_json(), **event.extension_attrs}
    elif is_event_grid_event_object(event):
        attributes = {
            "id": event.id, "topic": event.topic, "subject": event.subject,
            "eventType": event.event_type, "eventTime": iso_time(event.event_time),
            "dataVersion": event.data_version, "data": event.get_json()}
    else:
        raise TypeError(f"not an azure.functions event: {type(event).__name__}")
    return {name: value for name, value in attributes.items() if value is not None}


def iso_time(value: object) -> str | None:
    """ISO 8601 text of a time the converter parsed; UTC is written with Z, as Event Grid does."""
    if value is None:
        return None
    isoformat = getattr(value, "isoformat", None)
    if not callable(isoformat):  # not what the converter makes; keep it readable
        return str(value)
    written = str(isoformat())
    return written[:-6] + "Z" if written.endswith("+00:00") else written
