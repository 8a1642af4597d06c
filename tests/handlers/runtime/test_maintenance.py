"""The daily prune: rows older than the retention go, recent rows and live claims stay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.maintenance import DAY_S, prune_ledger

Sample = Callable[[str], dict[str, Any]]


def test_rows_older_than_the_retention_are_pruned(make_dispatcher: Callable[..., Dispatcher],
                                                  sample: Sample) -> None:
    now = [1_700_000_000.0]
    env = {**make_dispatcher().env, "AMLEVENTS_LEDGER_RETENTION_DAYS": "7"}
    dispatcher = Dispatcher(env, clock=lambda: now[0])
    old = sample("run_completed")
    dispatcher.dispatch(old, function="on_ml_event")
    now[0] += 8 * DAY_S
    recent = sample("model_deployed")
    dispatcher.dispatch(recent, function="on_ml_event")
    assert prune_ledger(dispatcher) == 1
    assert [e.event_id for e in dispatcher.ledger.entries()] == [recent["id"]]
    assert prune_ledger(dispatcher) == 0
