"""Event Grid's retry policy: which answers are retried, after how long, and how they are logged.

From https://learn.microsoft.com/azure/event-grid/delivery-and-retry: success is 200-204 only;
WebHook endpoints do not retry 400, 401, 403, 413; AzureFunction endpoints do not retry 400, 403,
413 and wait 5 minutes or more after 401 and 404. 408 waits 2 minutes or more, 503 30 seconds or
more, everything else follows the schedule 10 s, 30 s, 1 m, 5 m, 10 m, 30 m, 1 h, 3 h, 6 h, then
every 12 h.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRY_SCHEDULE_S = (10, 30, 60, 300, 600, 1800, 3600, 10800, 21600)
THEN_EVERY_S = 43200
NON_RETRIABLE = {"WebHook": frozenset({400, 401, 403, 413}),
                 "AzureFunction": frozenset({400, 403, 413})}
MIN_RETRY_DELAY_S = {"WebHook": {408: 120, 503: 30},
                     "AzureFunction": {401: 300, 404: 300, 408: 120, 503: 30}}
OUTCOMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            408: "TimedOut", 413: "PayloadTooLarge", 429: "Busy", 503: "Busy"}


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt (or handshake) came to."""

    delivered: bool
    status: int | None
    outcome: str


def retry_delay_s(failed_attempts: int, status: int | None, endpoint_type: str = "WebHook") -> int:
    """Seconds to wait after the n-th failed attempt, per schedule and status-code floor."""
    index = failed_attempts - 1
    base = RETRY_SCHEDULE_S[index] if index < len(RETRY_SCHEDULE_S) else THEN_EVERY_S
    return max(base, MIN_RETRY_DELAY_S[endpoint_type].get(status or 0, 0))


def outcome_for(status: int) -> str:
    """lastDeliveryOutcome for an HTTP status (GenericError, as Event Grid logs, otherwise)."""
    return OUTCOMES.get(status, "GenericError")
