"""Retraining through the handler: a dry run rehearses the cooldown as the live runner keeps it,
for v1 drift and model-monitor breaches; a breach's notification says what breached."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
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


def breach(sample: Sample, event_id: str) -> Any:
    """The breach sample as another event of the same monitor (its own id)."""
    from handlers.events.parse import parse_event

    raw = sample("model_monitor_breach")
    raw["id"] = event_id
    return parse_event(raw)


def test_dry_run_folds_breaches_inside_the_cooldown_like_the_live_run(
        sample: Sample, make_dispatcher: Callable[..., Dispatcher]) -> None:
    now = [1_000_000.0]
    ctx = rehearsal(make_dispatcher, now).context()
    assert handle(breach(sample, "b-1"), ctx).outcome is Outcome.PLANNED
    now[0] += 60
    cooling = handle(breach(sample, "b-2"), ctx)
    assert cooling.outcome is Outcome.SKIPPED and cooling.action == "retraining cooling down"
    now[0] += 3600
    assert handle(breach(sample, "b-3"), ctx).outcome is Outcome.PLANNED


def test_the_breach_notification_says_what_breached(
        sample: Sample, make_dispatcher: Callable[..., Dispatcher], base_env: dict[str, str]) -> None:
    # GIVEN notifications going out for real, to the local folder outbox
    dispatcher = make_dispatcher(AMLEVENTS_DRY_RUN_NOTIFY="false")
    result = dispatcher.dispatch(sample("model_monitor_breach"), function="on_run_status")
    assert result.outcome is Outcome.DONE, result.detail
    # THEN the message names the signal, its features and each metric against its threshold,
    # instead of a generic "run failed"
    [sent] = Path(base_env["AMLEVENTS_NOTIFY_OUTBOX_DIR"]).rglob("*.json")
    summary = json.loads(sent.read_text(encoding="utf-8"))["summary"]
    assert summary["title"] == ("Model monitor breach: credit_card_fraud_monitor_data_drift "
                                "(TransactionAmount, MerchantCategory)")
    facts = summary["facts"]
    assert facts["Signal"] == "credit_card_fraud_monitor_data_drift"
    assert facts["Monitor"] == "credit_card_fraud_monitor"
    assert facts["Features"] == "TransactionAmount, MerchantCategory"
    assert facts["Breached"] == ("TransactionAmount: jensen_shannon_distance 0.41 > 0.1; "
                                 "MerchantCategory: pearsons_chi_squared_test 0.012 < 0.05")
    assert "Run failed" not in summary["title"]
