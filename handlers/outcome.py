"""What became of an event (Outcome), what a handler returns (ActionResult), what it decides (Plan).

Pure values: planning code and the ledger both import this module, never the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    """What happened to an event."""

    DONE = "done"
    PLANNED = "planned"
    SKIPPED = "skipped"
    REFUSED = "refused"
    INVALID = "invalid"
    FAILED = "failed"
    RETRY = "retry"
    IN_PROGRESS = "in_progress"


TERMINAL = frozenset({Outcome.DONE, Outcome.PLANNED, Outcome.SKIPPED, Outcome.REFUSED,
                      Outcome.INVALID, Outcome.FAILED})


class Plan(Protocol):
    """A decided action: a one-line summary and the details an adapter needs."""

    def summary(self) -> str:
        """One line for the ledger's action column."""

    def as_dict(self) -> Mapping[str, Any]:
        """The plan's details (no secrets) for the ledger's detail column."""


@dataclass(frozen=True)
class ActionResult:
    """The outcome of handling one event: outcome, one-line action, and detail."""

    outcome: Outcome
    action: str
    detail: str = ""

    @classmethod
    def skipped(cls, reason: str, action: str = "nothing to do") -> ActionResult:
        """Nothing to do, with the reason."""
        return cls(Outcome.SKIPPED, action, reason)

    @classmethod
    def planned(cls, plan: Plan) -> ActionResult:
        """A dry run: the plan is recorded, nothing is touched."""
        return cls(Outcome.PLANNED, plan.summary(), plan_detail(plan))

    @classmethod
    def done(cls, plan: Plan, **facts: Any) -> ActionResult:
        """The plan was carried out; `facts` (run ids, ...) join the detail."""
        return cls(Outcome.DONE, plan.summary(), plan_detail(plan, **facts))


# Built once: json.dumps with options builds an encoder per call (every planned or done event).
_DETAIL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def plan_detail(plan: Plan, **facts: Any) -> str:
    """The ledger's detail for a plan: compact, key-sorted JSON."""
    details = plan.as_dict()
    return _DETAIL_JSON({**details, **facts} if facts else details)
