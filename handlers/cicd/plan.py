"""What the CI/CD concern decides: for one event, one request per fired rule, exactly as sent.

Each request carries a request id derived from the event and the rule (`request_id`), so a run
can name itself after it and a redelivery can find the run an earlier, unanswered request
started. The requests hold no credential: the adapter adds it when it sends them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REQUEST_ID_PREFIX = "amlevents-"
# What a request id looks like, wherever a run shows it (a run name, a display title).
REQUEST_ID = re.compile(REQUEST_ID_PREFIX + r"[0-9a-f]{24}")
_SUMMARY_MAX = 300


def request_id(event_key: str, rule: str) -> str:
    """The request id of one rule for one event: the same on every delivery of the event."""
    material = f"{event_key}\n{rule.strip().lower()}".encode("utf-8", "surrogatepass")
    return REQUEST_ID_PREFIX + hashlib.sha256(material).hexdigest()[:24]


@dataclass(frozen=True)
class HttpRequest:
    """One REST call as it goes on the wire, without its Authorization header."""

    method: str
    url: str
    body: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """For the ledger and the dry run."""
        return {"method": self.method, "url": self.url, "body": dict(self.body)}


@dataclass(frozen=True)
class Dispatch:
    """Start one run for one rule: the service, the target, the request and its request id."""

    rule: str
    service: str  # github | azurePipelines
    action: str  # workflow_dispatch | repository_dispatch | run_pipeline
    target: Mapping[str, Any]
    request: HttpRequest
    request_id: str
    carries_request_id: bool  # False: a lost answer cannot be looked up (never sent twice)
    empty: tuple[str, ...] = ()  # placeholders that came out empty

    def describe(self) -> str:
        """The target in a few words."""
        t = self.target
        if self.action == "workflow_dispatch":
            return f"GitHub workflow {t['workflow']} in {t['repository']} on {t['ref']}"
        if self.action == "repository_dispatch":
            return f"GitHub repository_dispatch {t['eventType']!r} to {t['repository']}"
        branch = f" on {t['branch']}" if t.get("branch") else ""
        return (f"Azure Pipelines pipeline {t['pipelineId']} in "
                f"{t['organization']}/{t['project']}{branch}")

    def as_dict(self) -> dict[str, Any]:
        """For the ledger: the rule, the target, the request id and the exact request."""
        found: dict[str, Any] = {"rule": self.rule, "target": dict(self.target),
                                 "requestId": self.request_id,
                                 "request": self.request.as_dict()}
        if not self.carries_request_id:
            found["requestIdPassed"] = False
        if self.empty:
            found["emptyPlaceholders"] = list(self.empty)
        return found


@dataclass(frozen=True)
class CicdPlan:
    """Start one CI/CD run per fired rule, in rule order."""

    event_key: str
    dispatches: tuple[Dispatch, ...]

    def summary(self) -> str:
        """One line for the ledger."""
        if len(self.dispatches) == 1:
            one = self.dispatches[0]
            line = f"start {one.describe()} (rule {one.rule!r})"
        else:
            line = (f"start {len(self.dispatches)} CI/CD runs: "
                    + "; ".join(d.describe() for d in self.dispatches))
        return line if len(line) <= _SUMMARY_MAX else line[:_SUMMARY_MAX - 1] + "…"

    def as_dict(self) -> Mapping[str, Any]:
        """Details for the ledger (no credential)."""
        return {"dispatches": [d.as_dict() for d in self.dispatches]}
