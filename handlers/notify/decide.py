"""Run and deployment events → notifications (failed runs by default), routed by rules.

RunStatusChanged fires for every status (Running, Finalizing, Completed, Failed, ...), not only
failures as older docs said, so the status check is what keeps people from being flooded:
https://learn.microsoft.com/azure/machine-learning/how-to-use-event-grid
"""

from __future__ import annotations

from dataclasses import replace

from handlers.errors import InvalidEvent
from handlers.events.parse import MlEvent, ModelDeployed, RunCompleted, RunStatusChanged
from handlers.events.workspace import WorkspaceRef
from handlers.ledger.ledger import event_key
from handlers.notify.message import (
    TITLE_MAX,
    Notice,
    printable,
    studio_endpoints_url,
    studio_run_url,
)
from handlers.notify.plan import NotificationPlan
from handlers.notify.settings import (
    MODEL_DEPLOYED,
    RULES,
    RUN_COMPLETED,
    RUN_STATUSES,
    NotifySettings,
    Rule,
)
from handlers.outcome import ActionResult
from handlers.rules import Facts, facts_of


def decide(event: MlEvent, settings: NotifySettings) -> NotificationPlan | ActionResult:
    """A plan for the events the settings and rules ask to notify about, else a skip."""
    if isinstance(event, RunStatusChanged):
        status = event.run_status.strip().lower()
        if status not in settings.run_statuses:
            return ActionResult.skipped(
                f"run status {event.run_status!r} is not in {RUN_STATUSES} "
                f"({', '.join(sorted(settings.run_statuses))})")
    elif isinstance(event, RunCompleted):
        if not settings.run_completed:
            return ActionResult.skipped(
                f"RunCompleted notifications are off ({RUN_COMPLETED})")
    elif isinstance(event, ModelDeployed):
        if not settings.model_deployed:
            return ActionResult.skipped(
                f"ModelDeployed notifications are off ({MODEL_DEPLOYED})")
    else:
        return ActionResult.skipped(f"{event.envelope.event_type} does not notify")
    facts = facts_of(event)
    rule = _first_match(settings.rules, facts)
    if settings.rules and rule is None:
        return ActionResult.skipped(f"no rule in {RULES} matches this event")
    if rule is not None and rule.channels == ():
        return ActionResult.skipped(f"rule {rule.name!r} mutes this event (no channels)")
    envelope = event.envelope
    return NotificationPlan(
        event_key=event_key(envelope.topic, envelope.event_type, envelope.id),
        notice=build_notice(event, settings.studio_endpoint),
        rule=rule.name if rule else "default", channels=rule.channels if rule else None)


def rule_matches(rule: Rule, facts: Facts) -> bool:
    """True when every criterion the rule gives holds (the shared vocabulary: handlers/rules)."""
    return rule.criteria.matches(facts)


def _first_match(rules: tuple[Rule, ...], facts: Facts) -> Rule | None:
    return next((rule for rule in rules if rule_matches(rule, facts)), None)


def _workspace(topic: str) -> WorkspaceRef | None:
    try:
        return WorkspaceRef.from_topic(topic)
    except InvalidEvent:
        return None  # a notification without a link beats no notification


_GROUP_MAX = 300  # a storm-control group label is kept in ledger state (64 KB per Table entity)


def build_notice(event: RunStatusChanged | RunCompleted | ModelDeployed, studio: str) -> Notice:
    """The facts people are told about one event, each one printable line of bounded length."""
    notice = _notice(event, studio)
    return replace(notice, title=printable(notice.title, TITLE_MAX),
                   group=printable(notice.group, _GROUP_MAX),
                   facts=tuple((label, printable(value)) for label, value in notice.facts))


def _notice(event: RunStatusChanged | RunCompleted | ModelDeployed, studio: str) -> Notice:
    envelope = event.envelope
    ws = _workspace(envelope.topic)
    kind = envelope.event_type.rsplit(".", 1)[-1]
    where = [("Workspace", ws.workspace if ws else envelope.topic)]
    if ws:
        where.append(("Resource group", ws.resource_group))
    if isinstance(event, ModelDeployed):
        return Notice(
            event_id=envelope.id, event_type=envelope.event_type,
            title=f"Model deployed to {event.service_name}", status="deployed",
            event_time=envelope.event_time, workspace=ws.workspace if ws else "",
            topic=envelope.topic, link=studio_endpoints_url(studio, ws) if ws else "",
            group=f"deployments to {event.service_name}",
            facts=(("Event", kind), ("Service", event.service_name),
                   ("Compute", event.service_compute_type),
                   ("Models", ", ".join(event.model_ids)), ("Time", envelope.event_time),
                   *where),
            event=envelope.raw)
    if isinstance(event, RunStatusChanged) and event.is_monitor_breach:
        return _breach_notice(event, studio, ws, where, kind)
    status = (event.run_status if isinstance(event, RunStatusChanged) else "Completed").strip()
    return Notice(
        event_id=envelope.id, event_type=envelope.event_type,
        title=f"Run {status.lower()}: {event.run_id} in {event.experiment_name}",
        status=status, event_time=envelope.event_time, workspace=ws.workspace if ws else "",
        topic=envelope.topic, link=studio_run_url(studio, ws, event.run_id) if ws else "",
        group=f"{status.lower()} runs in experiment {event.experiment_name}",
        facts=(("Event", kind), ("Status", status), ("Experiment", event.experiment_name),
               ("Run", event.run_id), ("Run type", event.run_type or "-"),
               ("Time", envelope.event_time), *where),
        event=envelope.raw)


_BREACHES_SHOWN = 10  # one line per breached metric; the rest are counted


def _breach_notice(event: RunStatusChanged, studio: str, ws: WorkspaceRef | None,
                   where: list[tuple[str, str]], kind: str) -> Notice:
    """What a model monitor's breach says: the signal, its features, each metric vs threshold."""
    envelope, breach = event.envelope, event.monitor_breach
    assert breach is not None  # is_monitor_breach
    features = ", ".join(breach.features) or "-"
    lines = [v.describe() for v in breach.violations[:_BREACHES_SHOWN]]
    if len(breach.violations) > _BREACHES_SHOWN:
        lines.append(f"+{len(breach.violations) - _BREACHES_SHOWN} more")
    signal = breach.signal or "(signal not named)"
    title = f"Model monitor breach: {signal}"
    if breach.features:
        title += f" ({features})"
    return Notice(
        event_id=envelope.id, event_type=envelope.event_type, title=title,
        status=event.run_status.strip(), event_time=envelope.event_time,
        workspace=ws.workspace if ws else "", topic=envelope.topic,
        link=studio_run_url(studio, ws, event.run_id) if ws else "",
        group=f"model monitor breaches of {breach.monitor_key or event.experiment_name}",
        facts=(("Event", f"{kind} (model monitor breach)"), ("Signal", signal),
               ("Monitor", breach.monitor or "-"), ("Features", features),
               ("Breached", "; ".join(lines) or breach.message), ("Monitoring run", event.run_id),
               ("Experiment", event.experiment_name), ("Time", envelope.event_time), *where),
        event=envelope.raw)
