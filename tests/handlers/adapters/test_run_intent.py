"""The run intent both retraining runners record before they ask a service to start a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.adapters.run_intent import drop_intent, record_intent
from handlers.errors import RetryableError
from handlers.ledger.ledger import Ledger
from handlers.ledger.sqlite import SqliteLedgerStore

KEY = "retrain/mon"


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(SqliteLedgerStore(str(tmp_path / "ledger.sqlite3")))


def intent(request: str, since_s: float) -> dict[str, object]:
    return {"request": request, "since_s": since_s}


def record(ledger: Ledger, request: str, now: float, last: dict[str, str] | None = None) -> None:
    record_intent(ledger, KEY, intent(request, now), field="request", expected_last=last,
                  now=now, grace_s=120.0, monitor="mon")


def test_an_intent_is_recorded_as_pending(ledger: Ledger) -> None:
    record(ledger, "a", 1000.0)
    state = ledger.get_state(KEY)
    assert state is not None and state["pending"] == intent("a", 1000.0)
    record(ledger, "a", 1000.0)  # the same request again (a redelivery) is not a conflict


def test_another_request_pending_within_the_grace_makes_this_one_wait(ledger: Ledger) -> None:
    # GIVEN a request another event made 119 s ago, whose answer has not come back
    record(ledger, "a", 1000.0)
    # WHEN this event wants to start its own THEN it is told to come back later, naming the monitor
    with pytest.raises(RetryableError, match=r"^retraining state of monitor mon changed "
                                             r"meanwhile; will retry$"):
        record(ledger, "b", 1119.0)
    # AND once the grace has passed, the old request is taken to be lost and this one proceeds
    record(ledger, "b", 1120.0)
    state = ledger.get_state(KEY)
    assert state is not None and state["pending"] == intent("b", 1120.0)


def test_a_run_started_meanwhile_makes_this_one_wait(ledger: Ledger) -> None:
    # GIVEN the runner saw no last run, but another event recorded one meanwhile
    ledger.update_state(KEY, lambda current: {"last": {"run": "r1"}})
    with pytest.raises(RetryableError, match="changed meanwhile"):
        record(ledger, "a", 1000.0, last=None)
    record(ledger, "a", 1000.0, last={"run": "r1"})  # with what is there now: recorded


def test_dropping_forgets_only_the_named_request(ledger: Ledger) -> None:
    record(ledger, "a", 1000.0)
    drop_intent(ledger, KEY, field="request", value="other")
    assert (ledger.get_state(KEY) or {}).get("pending") == intent("a", 1000.0)
    drop_intent(ledger, KEY, field="request", value="a")
    assert "pending" not in (ledger.get_state(KEY) or {})
