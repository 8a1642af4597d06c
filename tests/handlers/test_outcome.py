"""What a handler returns and what the ledger records of it (handlers/outcome.py): pure values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.outcome import TERMINAL, ActionResult, Outcome, plan_detail


@dataclass(frozen=True)
class _Plan:
    details: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return "deploy fraud-detector:3 to fraud-online"

    def as_dict(self) -> Mapping[str, Any]:
        return self.details


def test_the_outcomes_spell_as_the_ledger_stores_them() -> None:
    assert [o.value for o in Outcome] == ["done", "planned", "skipped", "refused", "invalid",
                                          "failed", "retry", "in_progress"]
    # Only a retry and a claim in progress may change later.
    assert set(Outcome) - TERMINAL == {Outcome.RETRY, Outcome.IN_PROGRESS}


def test_skipped_keeps_the_reason_as_detail() -> None:
    assert ActionResult.skipped("tag absent") == ActionResult(
        Outcome.SKIPPED, "nothing to do", "tag absent")
    assert ActionResult.skipped("late", action="deploy") == ActionResult(
        Outcome.SKIPPED, "deploy", "late")
    assert ActionResult(Outcome.DONE, "x").detail == ""


def test_planned_and_done_record_the_summary_and_the_plan_as_compact_sorted_json() -> None:
    plan = _Plan({"model": "fraud-detector", "instances": 2})
    assert ActionResult.planned(plan) == ActionResult(
        Outcome.PLANNED, "deploy fraud-detector:3 to fraud-online",
        '{"instances":2,"model":"fraud-detector"}')
    # A fact the adapter learned joins the plan; what JSON cannot say is written as text.
    when = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
    assert ActionResult.done(plan, run_id="run-7", at=when) == ActionResult(
        Outcome.DONE, "deploy fraud-detector:3 to fraud-online",
        '{"at":"2026-11-30 12:00:00+00:00","instances":2,"model":"fraud-detector",'
        '"run_id":"run-7"}')
    assert ActionResult.done(plan).detail == plan_detail(plan)
    # A fact named like a plan key wins: it is what happened, the plan is what was asked.
    assert plan_detail(plan, instances=3) == '{"instances":3,"model":"fraud-detector"}'
