"""The topic: the publish endpoint's logic (no sockets) and the in-process topic behind it.

`PublishEndpoint.handle(method, target, headers, body)` answers what an Event Grid custom topic
answers to `azure.eventgrid.EventGridPublisherClient` (checked against azure-eventgrid 4.22's
source): `POST /api/events?api-version=2018-01-01`, key in `aeg-sas-key` (AzureKeyCredential) or
a SAS token in `aeg-sas-token` (AzureSasCredential / `generate_sas`, checked against this topic's
URL: sas.py), body in the topic's one declared input schema (publish_checks.py): Event Grid
events (`application/json`) on an EventGridSchema topic, CloudEvents
(`application/cloudevents-batch+json`) on a CloudEventSchemaV1_0 topic.
Answers: 200 (empty body) when accepted; 401 wrong or missing key or SAS; 400 malformed body or
events, another schema, or a `topic` that is not this topic (every problem listed); 413 over
1 MB (Event Grid's limit for an event and for a publish call); 404/405/415 for wrong path,
method or content type. Errors use ARM's `{"error": {"code", "message"}}` shape, which the SDK
shows in its exception.

`EventGridTopic(subscriptions, ...)` creates the subscriptions (refusing a delivery schema the
input schema cannot give, and WebHook endpoints that fail validation; leaving out those whose
destination has a `{placeholder}` without a value, as the template does) and
`publish(events)` routes validated events: each (event, subscription) pair is either handed to
delivery (in the subscription's schema, batched as configured) or journaled as filtered with
the reason.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from amlevents.simulator import journal as jr
from amlevents.simulator import jsonnum
from amlevents.simulator.delivery import LOCAL_TOPIC_ID, to_delivery_schema
from amlevents.simulator.filters import evaluate, event_type_of
from amlevents.simulator.journal import Journal, JournalEntry
from amlevents.simulator.publish_checks import (
    BodyRefused,
    media_type,
    parse_events,
    validation_problems,
)
from amlevents.simulator.sas import sas_problem
from amlevents.simulator.subscription_model import (
    EVENT_GRID_SCHEMA,
    INPUT_SCHEMAS,
    Batching,
    Subscription,
    SubscriptionsError,
    delivery_schema_problem,
)

MAX_PUBLISH_BYTES = 1024 * 1024
PUBLISH_PATH = "/api/events"


class Deliverer(Protocol):
    """Creates subscriptions and takes batches for them (DeliveryEngine does)."""

    def create_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        """Create them (validating WebHook endpoints); SubscriptionValidationError if not."""
        ...

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
    """In-process topic with one input schema: creates its subscriptions, filters published
    events and hands matches to delivery."""

    def __init__(self, subscriptions: Sequence[Subscription], deliverer: Deliverer,
                 journal: Journal, *, topic_id: str = LOCAL_TOPIC_ID,
                 input_schema: str = EVENT_GRID_SCHEMA,
                 now: Callable[[], datetime] = jr.utc_now) -> None:
        if input_schema not in INPUT_SCHEMAS:
            raise ValueError(f"input schema {input_schema!r}: the simulated topic takes "
                             f"{' or '.join(INPUT_SCHEMAS)} (CustomEventSchema is not simulated)")
        # A destination whose {placeholder} has no value is not created (nor deployed).
        subscriptions = [s for s in subscriptions
                         if s.destination is None or not s.destination.unresolved]
        problems = [f"subscription {s.name!r}: eventDeliverySchema: {problem}"
                    for s in subscriptions
                    if (problem := delivery_schema_problem(input_schema, s.event_delivery_schema))]
        if problems:  # ARM refuses to create such a subscription
            raise SubscriptionsError(f"topic {topic_id} (input schema {input_schema})", problems)
        self.subscriptions = tuple(subscriptions)
        self.deliverer, self.journal = deliverer, journal
        self.topic_id, self.input_schema = topic_id, input_schema
        self._now = now
        deliverer.create_subscriptions(self.subscriptions)

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
        """Set what Event Grid sets: topic (always this topic's id, see publish_checks.py),
        dataVersion and metadataVersion when absent (Event Grid schema only)."""
        if self.input_schema != EVENT_GRID_SCHEMA:
            return dict(event)
        given = {k: v for k, v in event.items() if v is not None or k == "data"}
        return {"dataVersion": "", "metadataVersion": "1", **given, "topic": self.topic_id}

    def _filtered(self, event: Mapping[str, Any], subscription: Subscription | None,
                  reason: str) -> None:
        self.journal.record(JournalEntry(
            time=jr.iso(self._now()), outcome=jr.FILTERED, event_id=str(event.get("id", "")),
            event_type=event_type_of(event), subscription=subscription.name if subscription
            else "", function=subscription.target if subscription else "", reason=reason))


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
        event_size = len(jsonnum.dumps(event).encode("utf-8"))
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
    """The topic endpoint's request handling, transport-free.

    `scheme` is the one the endpoint is served on: with the Host header and the path it makes the
    topic URL that SAS tokens must name.
    """

    def __init__(self, topic: EventGridTopic, *, keys: Sequence[str],
                 path: str = PUBLISH_PATH, max_body_bytes: int = MAX_PUBLISH_BYTES,
                 scheme: str = "http", now: Callable[[], datetime] = jr.utc_now) -> None:
        if not keys or not all(keys):
            raise ValueError("the topic needs at least one non-empty access key")
        self.topic, self.keys = topic, tuple(keys)
        self.path, self.max_body_bytes = path.rstrip("/").lower(), max_body_bytes
        self.scheme = scheme
        self._now = now
        # False takes the topic down: every request gets 503 ServiceUnavailable, as a topic does
        # in an outage (what a publisher must survive; tests switch it).
        self.available = True

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               body: bytes) -> PublishResponse:
        """Answer one request to the topic."""
        if not self.available:
            return error_response(503, "ServiceUnavailable", "the topic is unavailable; "
                                  "retry later")
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
        schema = self.topic.input_schema
        try:
            media = media_type(headers.get("content-type", "application/json"), schema)
            events = parse_events(body, media, schema)
        except BodyRefused as refused:
            code = "UnsupportedMediaType" if refused.status == 415 else "BadRequest"
            raise PublishError(error_response(refused.status, code, str(refused))) from None
        problems = validation_problems(events, schema, self.topic.topic_id)
        _refuse(400, "BadRequest", "; ".join(problems[:10]))
        return events

    def _auth_problem(self, headers: Mapping[str, str]) -> str:
        key = headers.get("aeg-sas-key")
        if key is not None:
            matched = any(hmac.compare_digest(key.encode(), k.encode()) for k in self.keys)
            return "" if matched else "the aeg-sas-key header does not match the topic's keys"
        token = headers.get("aeg-sas-token")
        if token is not None:
            host = headers.get("host")
            if not host:
                return "no Host header: the aeg-sas-token's resource cannot be checked"
            return sas_problem(token, self.keys, self._now(),
                               f"{self.scheme}://{host}{self.path}")
        return "missing credentials: send the topic key in aeg-sas-key or a SAS in aeg-sas-token"


def _refuse(status: int, code: str, message: str) -> None:
    if message:
        raise PublishError(error_response(status, code, message))
