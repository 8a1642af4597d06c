"""The outcome event catalogue: which CloudEvent a finished ledger row becomes (pure, no I/O).

One ledger row (one Azure ML event acted on by one concern) with a terminal outcome becomes at
most one CloudEvent 1.0:

- `type`: `amlevents.{Kind}` from the concern and the outcome (TYPES below; None: not published);
- `source`: the app (AMLEVENTS_OUTCOME_SOURCE, default `/amlevents/{WEBSITE_SITE_NAME}`);
- `subject`: the source event's subject: the model (`models/{name}:{version}`), the drift monitor
  run (`datadrift/{monitorId}/run/{runId}`), or the run (`experiments/{id}/runs/{runId}`);
- `id`: a UUID derived from the ledger key and the outcome, so a publish that is repeated (an
  answer lost after the topic accepted it) carries the same id: consumers dedupe on id + source;
- `time`: when the ledger recorded the outcome (publish.py keeps the first attempt's);
- `data`: the ledger's facts, never a secret: values of secret settings are masked, and so is any
  value under a key that names a credential (SECRET_KEY_PARTS).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from handlers.errors import InvalidEvent
from handlers.events.workspace import WorkspaceRef
from handlers.ledger.ledger import LedgerEntry
from handlers.notify.message import studio_endpoints_url, studio_run_url
from handlers.outcome import Outcome
from handlers.runtime.redaction import redact

PREFIX = "amlevents."
# Which outcome of which concern is published, as which type. Outcomes left out are not events:
# `retry` and `in_progress` are not outcomes yet; a notification skipped (no rule matched) is
# the common case, not news.
TYPES: Mapping[str, Mapping[Outcome, str]] = {
    "deploy": {Outcome.DONE: "DeploymentSucceeded", Outcome.FAILED: "DeploymentFailed",
               Outcome.REFUSED: "DeploymentRefused", Outcome.INVALID: "DeploymentRefused",
               Outcome.SKIPPED: "DeploymentSkipped", Outcome.PLANNED: "DeploymentPlanned"},
    "retrain": {Outcome.DONE: "RetrainingStarted", Outcome.FAILED: "RetrainingFailed",
                Outcome.REFUSED: "RetrainingRefused", Outcome.INVALID: "RetrainingRefused",
                Outcome.SKIPPED: "RetrainingSkipped", Outcome.PLANNED: "RetrainingPlanned"},
    "notify": {Outcome.DONE: "NotificationSent", Outcome.FAILED: "NotificationFailed",
               Outcome.PLANNED: "NotificationPlanned"},
    "cicd": {Outcome.DONE: "CicdDispatched", Outcome.FAILED: "CicdFailed",
             Outcome.REFUSED: "CicdRefused", Outcome.INVALID: "CicdRefused",
             Outcome.PLANNED: "CicdPlanned"},
}
EVENT_TYPES = tuple(sorted({PREFIX + kind for kinds in TYPES.values() for kind in kinds.values()}))
# A value under a key containing one of these is masked, whatever it is.
SECRET_KEY_PARTS = ("secret", "password", "passwd", "token", "key", "connection", "sas",
                    "signature", "credential", "code", "authorization")
_NOT_SECRET_KEYS = frozenset({"ledgerkey", "monitorkey", "eventkey", "event_key", "monitor_key"})
MASK = "***"
_NAMESPACE = uuid.UUID("3f1c0f5e-6a3b-5b7e-9a55-8d7f1c2b4e10")  # amlevents outcome events
_ADF_STUDIO = "https://adf.azure.com/en/monitoring/pipelineruns"
_RUN_SUBJECT = re.compile(r"(?:^|/)runs?/(?P<run>[^/]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class OutcomeEvent:
    """One outcome event, ready for a CloudEvents publisher."""

    id: str
    type: str
    source: str
    subject: str
    time: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_cloud_event(self) -> dict[str, Any]:
        """The CloudEvents 1.0 JSON form (what the topic receives)."""
        return {"specversion": "1.0", "id": self.id, "source": self.source, "type": self.type,
                "subject": self.subject, "time": self.time,
                "datacontenttype": "application/json", "data": dict(self.data)}


def event_type(concern: str, outcome: Outcome) -> str | None:
    """The outcome event type of a concern's outcome, or None when it is not published."""
    kind = TYPES.get(concern, {}).get(outcome)
    return PREFIX + kind if kind else None


def event_id(ledger_key: str, outcome: Outcome) -> str:
    """The same id for the same outcome of the same ledger row, on every attempt."""
    return str(uuid.uuid5(_NAMESPACE, f"{ledger_key}/{outcome.value}"))


def build_event(entry: LedgerEntry, concern: str, *, source: str, dry_run: bool,
                secrets: Iterable[str] = (), studio: str = "https://ml.azure.com"
                ) -> OutcomeEvent | None:
    """The outcome event of a finished ledger row, or None when its outcome is not published."""
    kind = event_type(concern, entry.outcome)
    if kind is None:
        return None
    plan = _plan(entry.detail)
    data: dict[str, Any] = {
        "concern": concern, "outcome": entry.outcome.value, "dryRun": dry_run,
        "action": entry.action, "detail": "" if plan is not None else entry.detail,
        "plan": plan, "sourceEventId": entry.event_id, "sourceEventType": entry.event_type,
        "sourceSubject": entry.subject, "workspace": entry.topic,
        "runIds": _run_ids(plan), "links": _links(concern, entry, plan, studio),
        "ledgerKey": entry.key, "attempts": entry.attempts, "recordedAt": entry.updated_at}
    return OutcomeEvent(id=event_id(entry.key, entry.outcome), type=kind, source=source,
                        subject=entry.subject or entry.event_type, time=entry.updated_at,
                        data=scrub(data, tuple(secrets)))


def _plan(detail: str) -> dict[str, Any] | None:
    """The ledger's detail as an object when it is a plan's JSON (done, planned), else None."""
    if not detail.startswith("{"):
        return None
    try:
        value = json.loads(detail)
    except (ValueError, RecursionError):  # a detail cut short, or text that only looks like JSON
        return None
    return value if isinstance(value, dict) else None


def _run_ids(plan: Mapping[str, Any] | None) -> list[str]:
    """Run ids the action started or found (Data Factory runs)."""
    if not plan:
        return []
    return [str(plan[name]) for name in ("run_id",) if plan.get(name)]


def _workspace(topic: str) -> WorkspaceRef | None:
    try:
        return WorkspaceRef.from_topic(topic)
    except InvalidEvent:
        return None


def _links(concern: str, entry: LedgerEntry, plan: Mapping[str, Any] | None,
           studio: str) -> dict[str, str]:
    """Where a person looks next: studio pages of the workspace, the Data Factory run."""
    links: dict[str, str] = {}
    ws = _workspace(entry.topic)
    if ws is not None and concern == "deploy":
        links["endpoints"] = studio_endpoints_url(studio, ws)
    if ws is not None and concern == "notify":
        run = _RUN_SUBJECT.search(entry.subject)
        if run:
            links["run"] = studio_run_url(studio, ws, run["run"])
    target = (plan or {}).get("target")
    run_id = (plan or {}).get("run_id")
    if concern == "retrain" and run_id and isinstance(target, Mapping) \
            and target.get("factory"):  # a Data Factory run (other targets have no such page)
        factory = (f"/subscriptions/{target.get('subscription', '')}/resourceGroups/"
                   f"{target.get('resourceGroup', '')}/providers/Microsoft.DataFactory/"
                   f"factories/{target.get('factory', '')}")
        links["dataFactoryRun"] = (f"{_ADF_STUDIO}/{quote(str(run_id), safe='')}"
                                   f"?factory={quote(factory, safe='/')}")
    return links


def _secret_key(name: str) -> bool:
    lowered = name.lower()
    return lowered not in _NOT_SECRET_KEYS and any(part in lowered for part in SECRET_KEY_PARTS)


def scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` with every secret setting's value masked, and values under credential-like keys."""
    if isinstance(value, Mapping):
        return {str(k): MASK if _secret_key(str(k)) and v not in (None, "", [], {}) else
                scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        return redact(value, secrets)
    return value
