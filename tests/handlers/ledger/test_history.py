"""A row's history: how an attempt is settled, the first claim's quick way and the general one."""

from __future__ import annotations

import json

import pytest

from handlers.ledger.ledger import _settle_history, add_history, parse_history
from handlers.outcome import Outcome

AT, DONE_AT = "2026-11-30T13:00:00.123+00:00", "2026-11-30T13:00:01.456+00:00"


def _fresh(function: str = "on_ml_event") -> str:
    return add_history("", {"n": 1, "at": AT, "function": function, "outcome": "in_progress"})


def _settled_the_general_way(text: str, attempt: int, outcome: Outcome, action: str) -> str:
    items = parse_history(text)
    items[-1].update(outcome=outcome.value, action=action[:160], done_at=DONE_AT)
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("action", [
    "notify: failed run r-1", 'quotes " and \\ backslashes', "ünïcödé {braces} [and] ,commas,",
    "x" * 400, ""])
@pytest.mark.parametrize("outcome", [Outcome.DONE, Outcome.PLANNED, Outcome.FAILED,
                                     Outcome.RETRY])
def test_first_claim_settles_as_the_general_way_would(outcome: Outcome, action: str) -> None:
    text = _fresh()
    settled = _settle_history(text, 1, outcome, action, DONE_AT)
    assert settled == _settled_the_general_way(text, 1, outcome, action)
    assert parse_history(settled) == [{"n": 1, "at": AT, "function": "on_ml_event",
                                       "outcome": outcome.value, "action": action[:160],
                                       "done_at": DONE_AT}]


def test_a_later_attempt_is_settled_in_its_own_item() -> None:
    text = add_history(_fresh(), {"n": 2, "at": AT, "function": "on_ml_event",
                                  "outcome": "in_progress", "after": "retry"})
    items = parse_history(_settle_history(text, 2, Outcome.DONE, "acted", DONE_AT))
    assert items[0]["outcome"] == "in_progress"  # the first attempt's item is left as it was
    assert items[1] == {"n": 2, "at": AT, "function": "on_ml_event", "outcome": "done",
                        "after": "retry", "action": "acted", "done_at": DONE_AT}


def test_an_attempt_without_its_in_progress_item_gets_a_new_one() -> None:
    done = _settle_history(_fresh(), 1, Outcome.DONE, "acted", DONE_AT)
    items = parse_history(_settle_history(done, 1, Outcome.FAILED, "again", DONE_AT))
    assert [item["outcome"] for item in items] == ["done", "failed"]
    assert items[1] == {"n": 1, "at": DONE_AT, "outcome": "failed", "action": "again"}


def test_a_function_name_with_braces_takes_the_general_way() -> None:
    text = _fresh(function="odd{name}")
    settled = _settle_history(text, 1, Outcome.DONE, "acted", DONE_AT)
    assert settled == _settled_the_general_way(text, 1, Outcome.DONE, "acted")
