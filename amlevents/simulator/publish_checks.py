"""What a topic accepts in a publish request body, for its one declared input schema.

A custom topic declares one `inputSchema` when it is created
(https://learn.microsoft.com/azure/event-grid/event-schema-compatibility); events in another
schema are refused, never converted:

- EventGridSchema: `application/json`, a JSON array of Event Grid events (a single object is taken
  too). `topic` is the service's to set: absent, it is filled in; present, "it must match the
  Event Grid topic Azure Resource Manager ID exactly" (event-schema), else the request is refused.
- CloudEventSchemaV1_0: `application/cloudevents+json` (one event) or
  `application/cloudevents-batch+json` (a JSON array), CloudEvents 1.0 JSON.

Every problem is listed in the 400 answer. Numbers are read as exact decimals (jsonnum.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from amlevents.simulator import jsonnum
from amlevents.simulator.filters import is_cloud_event
from amlevents.simulator.subscription_model import CLOUD_EVENT_SCHEMA, EVENT_GRID_SCHEMA

EVENT_GRID_REQUIRED = ("id", "subject", "eventType", "eventTime")
CLOUD_EVENT_REQUIRED = ("id", "source", "type", "specversion")
CLOUD_EVENT_CONTEXT = frozenset({"id", "source", "type", "specversion", "time", "subject",
                                 "datacontenttype", "dataschema", "data", "data_base64"})
_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")
JSON_MEDIA = "application/json"
CLOUD_EVENT_MEDIA = "application/cloudevents+json"
CLOUD_BATCH_MEDIA = "application/cloudevents-batch+json"
# The media types each input schema takes.
MEDIA_TYPES = {EVENT_GRID_SCHEMA: (JSON_MEDIA,),
               CLOUD_EVENT_SCHEMA: (CLOUD_EVENT_MEDIA, CLOUD_BATCH_MEDIA)}


class BodyRefused(Exception):
    """The body is refused: `status` (400 or 415) and the message for the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str, input_schema: str) -> str:
    """The request's media type, if the topic's input schema takes it; else BodyRefused."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in MEDIA_TYPES[input_schema]:
        return media
    known = {m for types in MEDIA_TYPES.values() for m in types}
    if media in known:
        raise BodyRefused(400, f"Content-Type {media}: this topic's input schema is "
                               f"{input_schema}; publish with "
                               f"{' or '.join(MEDIA_TYPES[input_schema])}")
    raise BodyRefused(415, f"Content-Type {content_type!r}; this topic takes "
                           f"{' or '.join(MEDIA_TYPES[input_schema])}")


def parse_events(body: bytes, media: str, input_schema: str) -> list[dict[str, Any]]:
    """Decode the body into event objects in the topic's input schema, or BodyRefused (400)."""
    try:
        payload = jsonnum.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BodyRefused(400, f"the body is not UTF-8 (byte {exc.start})") from exc
    except (ValueError, RecursionError) as exc:
        raise BodyRefused(400, f"the body is not valid JSON: {str(exc)[:200]}") from exc
    if media == CLOUD_EVENT_MEDIA and not isinstance(payload, dict):
        raise BodyRefused(400, f"{CLOUD_EVENT_MEDIA} carries one CloudEvent object; send an "
                               f"array as {CLOUD_BATCH_MEDIA}")
    if media == CLOUD_BATCH_MEDIA and not isinstance(payload, list):
        raise BodyRefused(400, f"{CLOUD_BATCH_MEDIA} carries a JSON array of CloudEvents")
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise BodyRefused(400, "the body is an empty array; send at least one event")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BodyRefused(400, f"event [{index}] must be a JSON object, "
                                   f"not {type(item).__name__}")
        if input_schema == EVENT_GRID_SCHEMA and is_cloud_event(item):
            raise BodyRefused(400, f"event [{index}] is a CloudEvent; this topic's input schema "
                                   f"is {EVENT_GRID_SCHEMA} (events are not converted)")
    return items


def validation_problems(events: Sequence[Mapping[str, Any]], input_schema: str,
                        topic_id: str) -> list[str]:
    """Every problem with the events' required properties, types and topic."""
    problems: list[str] = []
    for index, event in enumerate(events):
        found = (_cloud_problems(event) if input_schema == CLOUD_EVENT_SCHEMA
                 else _event_grid_problems(event, topic_id))
        problems.extend(f"event [{index}]: {p}" for p in found)
    return problems


def _event_grid_problems(event: Mapping[str, Any], topic_id: str) -> list[str]:
    problems = _required_strings(event, EVENT_GRID_REQUIRED, non_empty=("id", "eventType"))
    problems += _optional_strings(event, ("topic", "dataVersion", "metadataVersion"))
    topic = event.get("topic")
    if isinstance(topic, str) and topic != topic_id:
        problems.append(f"topic {topic!r} is not this topic ({topic_id!r}); leave it out and "
                        "Event Grid sets it")
    if event.get("metadataVersion") not in (None, "1"):
        problems.append("metadataVersion must be \"1\" when present")
    if isinstance(event.get("eventTime"), str) and parse_time(event["eventTime"]) is None:
        problems.append(f"eventTime {event['eventTime']!r} is not an ISO 8601 date-time")
    return problems


def _cloud_problems(event: Mapping[str, Any]) -> list[str]:
    problems = _required_strings(event, CLOUD_EVENT_REQUIRED, non_empty=CLOUD_EVENT_REQUIRED)
    problems += _optional_strings(event, ("time", "subject", "datacontenttype", "dataschema"))
    if event.get("specversion") not in (None, "1.0"):
        problems.append(f"specversion {event['specversion']!r} is not supported; use \"1.0\"")
    if isinstance(event.get("time"), str) and parse_time(event["time"]) is None:
        problems.append(f"time {event['time']!r} is not an RFC 3339 date-time")
    if "data" in event and "data_base64" in event:
        problems.append("data and data_base64 are mutually exclusive")
    problems += [f"extension attribute {name!r} must be lower-case letters and digits"
                 for name in event if name not in CLOUD_EVENT_CONTEXT
                 and not _EXTENSION_NAME.match(str(name))]
    return problems


def _required_strings(event: Mapping[str, Any], names: Sequence[str],
                      non_empty: Sequence[str]) -> list[str]:
    problems = []
    for name in names:
        value = event.get(name)
        if not isinstance(value, str):
            problems.append(f"missing required string {name!r}" if value is None
                            else f"{name!r} must be a string")
        elif name in non_empty and not value:
            problems.append(f"{name!r} must not be empty")
    return problems


def _optional_strings(event: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    return [f"{name!r} must be a string" for name in names
            if event.get(name) is not None and not isinstance(event[name], str)]


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time, aware (UTC when it has no offset); None if it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
