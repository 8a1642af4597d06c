"""The topic: the publish endpoint's logic (no sockets) and the in-process topic behind it.

`PublishEndpoint.handle(method, target, headers, body)` answers what an Event Grid topic answers
to `azure.eventgrid.EventGridPublisherClient` (checked against azure-eventgrid 4.22's source):
`POST /api/events?api-version=2018-01-01`, key in `aeg-sas-key` (AzureKeyCredential) or a SAS
token in `aeg-sas-token` (AzureSasCredential / `generate_sas`), body a JSON array of Event Grid
events (`application/json; charset=utf-8`) or of CloudEvents
(`application/cloudevents-batch+json; charset=utf-8`); a single event object is accepted too.
Answers: 200 (empty body) when accepted; 401 wrong or missing key; 400 malformed body or events
(every problem listed); 413 over 1 MB (Event Grid's limit for an event and for a publish call);
404/405/415 for wrong path, method or content type. Errors use ARM's
`{"error": {"code", "message"}}` shape, which the SDK shows in its exception.

`EventGridTopic.publish(events)` routes validated events: each (event, subscription) pair is
either handed to delivery (in the subscription's schema, batched as configured) or journaled as
filtered with the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from amlevents.simulator import journal as jr
from amlevents.simulator.delivery import LOCAL_TOPIC_ID, to_delivery_schema
from amlevents.simulator.filters import evaluate, event_type_of, is_cloud_event
from amlevents.simulator.journal import Journal, JournalEntry
from amlevents.simulator.subscriptions import Batching, Subscription

MAX_PUBLISH_BYTES = 1024 * 1024
PUBLISH_PATH = "/api/events"
EVENT_GRID_REQUIRED = ("id", "subject", "eventType", "eventTime")
CLOUD_EVENT_REQUIRED = ("id", "source", "type", "specversion")
CLOUD_EVENT_CONTEXT = frozenset({"id", "source", "type", "specversion", "time", "subject",
                                 "datacontenttype", "dataschema", "data", "data_base64"})
_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")
_JSON_TYPES = {"application/json": None, "application/cloudevents+json": True,
               "application/cloudevents-batch+json": True}


class Deliverer(Protocol):
    """Takes one batch for one subscription (DeliveryEngine does)."""

    def submit(self, subscription: Subscription, events: Sequence[Mapping[str, Any]]) -> None:
        """Queue the batch."""
        ...


@dataclass(frozen=True)
class Routing:
    """What happened to one event for one subscription at publish time."""

    event_id: str
    subscription: str
    matched: bool
    reason: str = ""


class EventGridTopic:
    """In-process topic: filters published events and hands matches to delivery."""

    def __init__(self, subscriptions: Sequence[Subscription], deliverer: Deliverer,
                 journal: Journal, *, topic_id: str = LOCAL_TOPIC_ID,
                 now: Callable[[], datetime] = jr.utc_now) -> None:
        self.subscriptions = tuple(subscriptions)
        self.deliverer, self.journal = deliverer, journal
        self.topic_id = topic_id
        self._now = now

    def publish(self, events: Sequence[Mapping[str, Any]]) -> tuple[Routing, ...]:
        """Route valid events (see validation_problems) to every matching subscription."""
        stamped = [self._stamp(e) for e in events]
        if not self.subscriptions:
            for event in stamped:
                self._filtered(event, None, "the topic has no subscriptions")
            return tuple(Routing(str(e["id"]), "", False, "no subscriptions") for e in stamped)
        routings: list[Routing] = []
        for subscription in self.subscriptions:
            matched = []
            for event in stamped:
                result = evaluate(subscription.filter, event)
                routings.append(Routing(str(event["id"]), subscription.name, result.matched,
                                        result.reason))
                if result.matched:
                    matched.append(to_delivery_schema(event, subscription.event_delivery_schema))
                else:
                    self._filtered(event, subscription, result.reason)
            for batch in split_batches(matched, subscription.batching):
                self.deliverer.submit(subscription, batch)
        return tuple(routings)

    def _stamp(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Fill what Event Grid fills: topic, dataVersion, metadataVersion (EG schema only)."""
        if is_cloud_event(event):
            return dict(event)
        defaults = {"topic": self.topic_id, "dataVersion": "", "metadataVersion": "1"}
        return {**defaults, **{k: v for k, v in event.items() if v is not None or k == "data"}}

    def _filtered(self, event: Mapping[str, Any], subscription: Subscription | None,
                  reason: str) -> None:
        self.journal.record(JournalEntry(
            time=jr.iso(self._now()), outcome=jr.FILTERED, event_id=str(event.get("id", "")),
            event_type=event_type_of(event), subscription=subscription.name if subscription
            else "", function=subscription.function if subscription else "", reason=reason))


def split_batches(events: Sequence[dict[str, Any]],
                  batching: Batching | None) -> list[list[dict[str, Any]]]:
    """One event per request by default; else up to maxEvents and about the preferred size."""
    if batching is None:
        return [[event] for event in events]
    limit_bytes = batching.preferred_batch_size_in_kilobytes * 1024
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for event in events:
        event_size = len(json.dumps(event).encode("utf-8"))
        if current and (len(current) >= batching.max_events_per_batch
                        or size + event_size > limit_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(event)
        size += event_size
    return batches + ([current] if current else [])


@dataclass(frozen=True)
class PublishResponse:
    """An HTTP answer: status, headers, body bytes."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


def error_response(status: int, code: str, message: str) -> PublishResponse:
    """An ARM-style JSON error."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")
    return PublishResponse(status, {"Content-Type": "application/json; charset=utf-8"}, body)


class PublishError(Exception):
    """A publish request refused, with the answer to give."""

    def __init__(self, response: PublishResponse) -> None:
        super().__init__(response.body.decode("utf-8", "replace"))
        self.response = response


class PublishEndpoint:
    """The topic endpoint's request handling, transport-free."""

    def __init__(self, topic: EventGridTopic, *, keys: Sequence[str],
                 path: str = PUBLISH_PATH, max_body_bytes: int = MAX_PUBLISH_BYTES,
                 now: Callable[[], datetime] = jr.utc_now) -> None:
        if not keys or not all(keys):
            raise ValueError("the topic needs at least one non-empty access key")
        self.topic, self.keys = topic, tuple(keys)
        self.path, self.max_body_bytes = path.rstrip("/").lower(), max_body_bytes
        self._now = now

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               body: bytes) -> PublishResponse:
        """Answer one request to the topic."""
        try:
            events = self._accept(method, target, {k.lower(): v for k, v in headers.items()},
                                  body)
        except PublishError as refused:
            return refused.response
        self.topic.publish(events)
        return PublishResponse(200)

    def _accept(self, method: str, target: str, headers: Mapping[str, str],
                body: bytes) -> list[dict[str, Any]]:
        parts = urlsplit(target)
        if parts.path.rstrip("/").lower() != self.path:
            raise PublishError(error_response(404, "NotFound", f"no topic at {parts.path}; "
                                              f"publish to {self.path}"))
        if method.upper() != "POST":
            raise PublishError(error_response(405, "MethodNotAllowed", "publish with POST"))
        _refuse(401, "Unauthorized", self._auth_problem(headers))
        if not parse_qs(parts.query).get("api-version", [""])[0]:
            raise PublishError(error_response(400, "BadRequest", "the api-version query "
                               "parameter is required, e.g. ?api-version=2018-01-01"))
        if len(body) > self.max_body_bytes:
            raise PublishError(error_response(413, "RequestEntityTooLarge", f"the request is "
                               f"{len(body)} bytes; Event Grid accepts at most "
                               f"{self.max_body_bytes} bytes (1 MB) per publish"))
        cloud = _content_kind(headers.get("content-type", "application/json"))
        events = parse_events(body, cloud)
        _refuse(400, "BadRequest", "; ".join(validation_problems(events, self._now())[:10]))
        return events

    def _auth_problem(self, headers: Mapping[str, str]) -> str:
        key = headers.get("aeg-sas-key")
        if key is not None:
            matched = any(hmac.compare_digest(key.encode(), k.encode()) for k in self.keys)
            return "" if matched else "the aeg-sas-key header does not match the topic's keys"
        token = headers.get("aeg-sas-token")
        if token is not None:
            return sas_problem(token, self.keys, self._now())
        return "missing credentials: send the topic key in aeg-sas-key or a SAS in aeg-sas-token"


def _refuse(status: int, code: str, message: str) -> None:
    if message:
        raise PublishError(error_response(status, code, message))


def _content_kind(content_type: str) -> bool | None:
    """True for CloudEvents, None for application/json (either schema, told by the events)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in _JSON_TYPES:
        raise PublishError(error_response(415, "UnsupportedMediaType", f"Content-Type "
                           f"{content_type!r}; use application/json or "
                           "application/cloudevents-batch+json"))
    return _JSON_TYPES[media_type]


def parse_events(body: bytes, cloud: bool | None) -> list[dict[str, Any]]:
    """Decode the body into event objects, or refuse with a 400 naming the problem."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _bad(f"the body is not UTF-8 (byte {exc.start})") from exc
    except (ValueError, RecursionError) as exc:
        raise _bad(f"the body is not valid JSON: {str(exc)[:200]}") from exc
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise _bad("the body is an empty array; send at least one event")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(f"event [{index}] must be a JSON object, not {type(item).__name__}")
    kinds = {is_cloud_event(item) for item in items}
    if len(kinds) > 1 or (cloud and kinds != {True}):
        raise _bad("mixed schemas: with a CloudEvents Content-Type, or in one batch, every "
                   "event must be a CloudEvent (specversion) or none may be")
    return items


def _bad(message: str) -> PublishError:
    return PublishError(error_response(400, "BadRequest", message))


def validation_problems(events: Sequence[Mapping[str, Any]], now: datetime) -> list[str]:
    """Every problem with the events' required properties and types."""
    problems: list[str] = []
    for index, event in enumerate(events):
        checker = _cloud_problems if is_cloud_event(event) else _event_grid_problems
        problems.extend(f"event [{index}]: {p}" for p in checker(event))
    return problems


def _event_grid_problems(event: Mapping[str, Any]) -> list[str]:
    problems = _required_strings(event, EVENT_GRID_REQUIRED, non_empty=("id", "eventType"))
    problems += _optional_strings(event, ("topic", "dataVersion", "metadataVersion"))
    if event.get("metadataVersion") not in (None, "1"):
        problems.append("metadataVersion must be \"1\" when present")
    if isinstance(event.get("eventTime"), str) and _parse_time(event["eventTime"]) is None:
        problems.append(f"eventTime {event['eventTime']!r} is not an ISO 8601 date-time")
    return problems


def _cloud_problems(event: Mapping[str, Any]) -> list[str]:
    problems = _required_strings(event, CLOUD_EVENT_REQUIRED, non_empty=CLOUD_EVENT_REQUIRED)
    problems += _optional_strings(event, ("time", "subject", "datacontenttype", "dataschema"))
    if event.get("specversion") not in (None, "1.0"):
        problems.append(f"specversion {event['specversion']!r} is not supported; use \"1.0\"")
    if isinstance(event.get("time"), str) and _parse_time(event["time"]) is None:
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


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sas_problem(token: str, keys: Sequence[str], now: datetime) -> str:
    """Why a SAS token (`r=...&e=...&s=...`, as azure.eventgrid.generate_sas) is refused."""
    parts = dict(p.split("=", 1) for p in token.split("&") if "=" in p)
    resource, expiry, signature = parts.get("r"), parts.get("e"), parts.get("s")
    if not (resource and expiry and signature):
        return "the aeg-sas-token is malformed; expected r=..., e=... and s=..."
    unsigned = f"r={resource}&e={expiry}".encode("ascii", "replace")
    if not any(hmac.compare_digest(_sign(key, unsigned), unquote(signature)) for key in keys):
        return "the aeg-sas-token signature does not match the topic's keys"
    expires = _parse_time(unquote(expiry))
    if expires is None:
        return f"the aeg-sas-token expiry {unquote(expiry)!r} is not a date-time"
    return "" if expires > now else f"the aeg-sas-token expired at {unquote(expiry)}"


def _sign(key: str, message: bytes) -> str:
    try:
        secret = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return ""  # keys that are not base64 cannot sign SAS tokens
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()
