"""Endpoint validation, as Event Grid does it when a WebHook subscription is created or updated.

From https://learn.microsoft.com/azure/event-grid/webhook-event-delivery and
troubleshoot-subscription-validation: the handshake happens at subscription creation (not per
event), and "Azure Functions with Event Grid Trigger" are validated by the Azure infrastructure
itself, so an AzureFunction destination gets none. If the handshake does not complete, "Event
Grid doesn't create the subscription" (DeliveryEngine.create_subscriptions raises).
Event Grid schema: the SubscriptionValidationEvent handshake (`{"validationResponse": code}`
expected). CloudEvents: the OPTIONS abuse-protection handshake (`WebHook-Allowed-Origin`).
Not simulated: the manual (validationUrl) handshake, so a 200 without the code fails at once
where the service would wait up to 10 minutes for a GET on validationUrl.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime

from amlevents.simulator import journal as jr
from amlevents.simulator.delivery_format import JSON
from amlevents.simulator.subscription_model import Subscription
from amlevents.simulator.transport import DeliveryNetworkError, Transport

VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
WEBHOOK_ORIGIN = "eventgrid.azure.net"


def validation_handshake(transport: Transport, subscription: Subscription, url: str, *,
                         topic_id: str, now: Callable[[], datetime], timeout_s: float) -> str:
    """POST a SubscriptionValidationEvent; "" if the endpoint echoes the code back, else why not."""
    code = str(uuid.uuid4())
    event = {"id": str(uuid.uuid4()), "topic": topic_id, "subject": "",
             "data": {"validationCode": code,
                      "validationUrl": f"https://eventgrid.invalid/validate?id={code}"},
             "eventType": VALIDATION_EVENT_TYPE, "eventTime": jr.iso(now()),
             "metadataVersion": "1", "dataVersion": "2"}
    headers = {"Content-Type": JSON, "aeg-event-type": "SubscriptionValidation",
               "aeg-subscription-name": subscription.name.upper(), "aeg-delivery-count": "0",
               "aeg-metadata-version": "1", "aeg-data-version": "2"}
    try:
        result = transport.request("POST", url, headers, json.dumps([event]).encode(), timeout_s)
    except DeliveryNetworkError as exc:
        return f"the validation request to {url} failed ({exc})"
    if result.status != 200:
        return f"the endpoint {url} answered the SubscriptionValidationEvent with HTTP {result.status}"
    if _validation_response(result.body) != code:
        return (f"the endpoint {url} answered HTTP 200 without the validationCode in "
                "validationResponse")
    return ""


def options_handshake(transport: Transport, url: str, timeout_s: float) -> str:
    """The CloudEvents OPTIONS handshake; "" if our origin is allowed, else why not."""
    try:
        result = transport.request("OPTIONS", url, {"WebHook-Request-Origin": WEBHOOK_ORIGIN},
                                   b"", timeout_s)
    except DeliveryNetworkError as exc:
        return f"the OPTIONS validation request to {url} failed ({exc})"
    allowed = result.headers.get("webhook-allowed-origin", "")
    if result.status != 200:
        return f"the endpoint {url} answered the OPTIONS validation with HTTP {result.status}"
    if allowed not in ("*", WEBHOOK_ORIGIN):
        return (f"the endpoint {url} answered OPTIONS with WebHook-Allowed-Origin {allowed!r}, "
                f"not {WEBHOOK_ORIGIN!r} or '*'")
    return ""


def _validation_response(body: bytes) -> str | None:
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    value = answer.get("validationResponse") if isinstance(answer, dict) else None
    return value if isinstance(value, str) else None
