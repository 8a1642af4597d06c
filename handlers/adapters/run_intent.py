"""A retraining runner's intent, kept in the monitor's ledger state before it starts a run.

Recorded before the call (so a lost answer is reconciled, not repeated) and dropped when the
service certainly started nothing. Shared by the Data Factory and Azure ML jobs runners, which
name a request differently (`request_id`, `job_name`): `field` says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.errors import RetryableError
from handlers.ledger.ledger import Ledger


def record_intent(ledger: Ledger, key: str, intent: Mapping[str, Any], *, field: str,
                  expected_last: Mapping[str, Any] | None, now: float, grace_s: float,
                  monitor: str) -> None:
    """Store `intent` as pending, unless another request moved first (then RetryableError)."""
    def change(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        state = dict(current or {})
        other = state.get("pending")
        if state.get("last") != expected_last or (
                other and other.get(field) != intent[field]
                and now - float(other["since_s"]) < grace_s):
            return None  # another event moved first; re-evaluate on redelivery
        return {**state, "pending": dict(intent)}

    stored = ledger.update_state(key, change) or {}
    if stored.get("pending") != dict(intent):
        raise RetryableError(f"retraining state of monitor {monitor} changed meanwhile; "
                             "will retry")


def drop_intent(ledger: Ledger, key: str, *, field: str, value: str) -> None:
    """Forget the pending request named `value` (the service started nothing)."""
    def change(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        state = dict(current or {})
        if (state.get("pending") or {}).get(field) != value:
            return None
        state.pop("pending")
        return state

    ledger.update_state(key, change)
