"""Retraining through the handler: a dry run rehearses the cooldown as the live runner keeps it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from handlers.outcome import Outcome
from handlers.retrain.handler import handle
from handlers.runtime.dispatch import Dispatcher
from tests.handlers.retrain.test_decide import TARGET, drift_event

Sample = Callable[[str], dict[str, Any]]


def drift(sample: Sample, event_id: str) -> Any:
    """The documented drift sample delivered as another event (its own id)."""
    def with_id(name: str) -> dict[str, Any]:
        raw = sample(name)
        raw["id"] = event_id
        return raw
    return drift_event(with_id)


def rehearsal(make_dispatcher: Callable[..., Dispatcher], now: list[float]) -> Dispatcher:
    return Dispatcher({**make_dispatcher().env, "AMLEVENTS_RETRAIN_DEFAULT_TARGET": json.dumps(TARGET),
                       "AMLEVENTS_RETRAIN_COOLDOWN_S": "3600"}, clock=lambda: now[0])


def test_dry_run_keeps_the_cooldown_like_the_live_run(sample: Sample,
                                                      make_dispatcher: Callable[..., Dispatcher]
                                                      ) -> None:
    # Reported: a dry run planned a second run inside the cooldown, where live would skip it.
    now = [1_000_000.0]
    ctx = rehearsal(make_dispatcher, now).context()
    first = handle(drift(sample, "drift-1"), ctx)
    assert first.outcome is Outcome.PLANNED
    assert handle(drift(sample, "drift-1"), ctx).outcome is Outcome.PLANNED
    now[0] += 60
    cooling = handle(drift(sample, "drift-2"), ctx)
    assert cooling.outcome is Outcome.SKIPPED and cooling.action == "retraining cooling down"
    assert "AMLEVENTS_RETRAIN_COOLDOWN_S" in cooling.detail
    now[0] += 3600
    assert handle(drift(sample, "drift-3"), ctx).outcome is Outcome.PLANNED
