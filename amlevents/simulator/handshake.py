"""Endpoint validation, once per endpoint before the first delivery.

Event Grid schema: the SubscriptionValidationEvent handshake (`{"validationResponse": code}`
expected). CloudEvents: the OPTIONS abuse-protection handshake (`WebHook-Allowed-Origin`).
A failed handshake counts as a failed delivery attempt
(https://learn.microsoft.com/azure/event-grid/webhook-event-delivery).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from amlevents.simulator import journal as jr
from amlevents.simulator.delivery_format import JSON
from amlevents.simulator.delivery_policy import Attempt, outcome_for
from amlevents.simulator.subscription_model import Subscription
from amlevents.simulator.transport import Transport

log = logging.getLogger("amlevents.simulator")

VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
WEBHOOK_ORIGIN = "eventgrid.azure.net"


def validation_handshake(transport: Transport, subscription: Subscription, url: str, *,
                         topic_id: str, now: Callable[[], datetime],
                         timeout_s: float) -> Attempt | None:
    """POST a SubscriptionValidationEvent; None if the endpoint echoes the code back."""
    code = str(uuid.uuid4())
    event = {"id": str(uuid.uuid4()), "topic": topic_id, "subject": "",
             "data": {"validationCode": code,
                      "validationUrl": f"https://eventgrid.invalid/validate?id={code}"},
             "eventType": VALIDATION_EVENT_TYPE, "eventTime": jr.iso(now()),
             "metadataVersion": "1", "dataVersion": "2"}
    headers = {"Content-Type": JSON, "aeg-event-type": "SubscriptionValidation",
               "aeg-subscription-name": subscription.name.upper(), "aeg-delivery-count": "0",
               "aeg-metadata-version": "1", "aeg-data-version": "2"}
    result = transport.request("POST", url, headers, json.dumps([event]).encode(), timeout_s)
    if result.status == 200 and _validation_response(result.body) == code:
        return None
    log.warning("validation handshake with %s failed: HTTP %s", url, result.status)
    return Attempt(False, result.status, "ValidationFailed" if result.status == 200
                   else outcome_for(result.status))


def options_handshake(transport: Transport, url: str, timeout_s: float) -> Attempt | None:
    """The CloudEvents OPTIONS handshake; None if our origin is allowed."""
    result = transport.request("OPTIONS", url, {"WebHook-Request-Origin": WEBHOOK_ORIGIN},
                               b"", timeout_s)
    allowed = result.headers.get("webhook-allowed-origin", "")
    if result.status == 200 and allowed in ("*", WEBHOOK_ORIGIN):
        return None
    return Attempt(False, result.status, "ValidationFailed" if result.status == 200
                   else outcome_for(result.status))


def _validation_response(body: bytes) -> str | None:
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    value = answer.get("validationResponse") if isinstance(answer, dict) else None
    return value if isinstance(value, str) else None
