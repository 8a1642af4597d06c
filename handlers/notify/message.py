"""What a notification says, and how each channel renders it (pure: no I/O).

One `Message` (title, facts, lines, link) per notification or digest, rendered as plain text and
HTML (email), an Adaptive Card inside a Teams Workflows `message`, Slack blocks, or JSON for a
generic webhook. Studio links follow the format azure-ai-ml itself builds
(azure/ai/ml/entities/_job/_studio_url_from_job_id.py):
https://ml.azure.com/runs/{runId}?wsid=/subscriptions/{s}/resourcegroups/{rg}/workspaces/{w}
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from handlers.events.workspace import WorkspaceRef

APP = "amlevents"
LINK_TITLE = "Open in Azure ML studio"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_SLACK_FIELDS_MAX = 10  # Slack allows at most 10 fields in a section block


def workspace_query(ws: WorkspaceRef) -> str:
    """The `wsid` query string studio uses to pick the workspace."""
    wsid = (f"/subscriptions/{ws.subscription_id}/resourcegroups/{ws.resource_group}"
            f"/workspaces/{ws.workspace}")
    return "wsid=" + urllib.parse.quote(wsid, safe="/")


def studio_run_url(studio: str, ws: WorkspaceRef, run_id: str) -> str:
    """The studio page of one run."""
    return f"{studio}/runs/{urllib.parse.quote(run_id, safe='')}?{workspace_query(ws)}"


def studio_endpoints_url(studio: str, ws: WorkspaceRef) -> str:
    """The studio list of endpoints of a workspace."""
    return f"{studio}/endpoints?{workspace_query(ws)}"


@dataclass(frozen=True)
class Notice:
    """The facts of one event worth telling people about."""

    event_id: str
    event_type: str
    title: str
    status: str
    event_time: str
    workspace: str
    topic: str
    link: str
    group: str  # what storm control folds it into, e.g. "failed runs in experiment X"
    facts: tuple[tuple[str, str], ...]
    event: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def summary(self) -> dict[str, Any]:
        """The notice as flat JSON (no raw event)."""
        return {"eventId": self.event_id, "eventType": self.event_type, "title": self.title,
                "status": self.status, "eventTime": self.event_time,
                "workspace": self.workspace, "topic": self.topic, "link": self.link,
                "group": self.group, "facts": dict(self.facts)}


@dataclass(frozen=True)
class DigestGroup:
    """Notifications of one kind held back in one window."""

    label: str
    count: int
    sample_run_ids: tuple[str, ...] = ()
    link: str = ""


@dataclass(frozen=True)
class Digest:
    """What storm control held back on one channel in one window."""

    id: str
    channel: str
    window_start_s: float
    window_end_s: float
    groups: tuple[DigestGroup, ...]

    @property
    def total(self) -> int:
        """How many notifications the digest stands for."""
        return sum(group.count for group in self.groups)


@dataclass(frozen=True)
class Message:
    """One message, channel-independent; `payload` is the webhook's JSON body."""

    id: str
    kind: str  # "notification" or "digest"
    title: str
    facts: tuple[tuple[str, str], ...]
    lines: tuple[str, ...]
    link: str
    payload: Mapping[str, Any]


def notice_message(notice: Notice, message_id: str) -> Message:
    """The message for one event."""
    payload = {"source": APP, "kind": "notification", "id": message_id,
               "summary": notice.summary(), "event": dict(notice.event)}
    return Message(message_id, "notification", notice.title, notice.facts, (), notice.link,
                   payload)


def _clock(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def digest_line(group: DigestGroup) -> str:
    """'and 357 more failed runs in experiment X'."""
    return f"and {group.count} more {group.label}"


def digest_message(digest: Digest) -> Message:
    """The message standing for every notification held back in one window."""
    lines = []
    for group in digest.groups:
        sample = f" (e.g. {', '.join(group.sample_run_ids)})" if group.sample_run_ids else ""
        lines.append(digest_line(group) + sample)
    first_link = next((g.link for g in digest.groups if g.link), "")
    title = (f"Storm control: {digest.total} more notification"
             f"{'s' if digest.total != 1 else ''} held back")
    facts = (("Window", f"{_clock(digest.window_start_s)} – {_clock(digest.window_end_s)}"),
             ("Held back", str(digest.total)))
    payload = {"source": APP, "kind": "digest", "id": digest.id,
               "digest": {"windowStart": _clock(digest.window_start_s),
                          "windowEnd": _clock(digest.window_end_s), "total": digest.total,
                          "groups": [{"label": g.label, "count": g.count,
                                      "sampleRunIds": list(g.sample_run_ids), "link": g.link}
                                     for g in digest.groups]}}
    return Message(digest.id, "digest", title, facts, tuple(lines), first_link, payload)


def as_text(message: Message) -> str:
    """Plain text (email body)."""
    out = [message.title, ""]
    out += [f"{label}: {value}" for label, value in message.facts]
    if message.lines:
        out += ["", *message.lines]
    if message.link:
        out += ["", f"{LINK_TITLE}: {message.link}"]
    out += ["", f"-- sent by {APP}"]
    return "\n".join(out) + "\n"


def as_html(message: Message) -> str:
    """HTML (email body): a heading, a table of facts, the lines, the link."""
    esc = html.escape
    rows = "".join(f"<tr><th align=\"left\">{esc(k)}</th><td>{esc(v)}</td></tr>"
                   for k, v in message.facts)
    items = "".join(f"<li>{esc(line)}</li>" for line in message.lines)
    parts = [f"<h2>{esc(message.title)}</h2>", f"<table>{rows}</table>"]
    if items:
        parts.append(f"<ul>{items}</ul>")
    if message.link:
        parts.append(f"<p><a href=\"{esc(message.link, quote=True)}\">{LINK_TITLE}</a></p>")
    parts.append(f"<p style=\"color:#888\">sent by {APP}</p>")
    return "<html><body>" + "".join(parts) + "</body></html>"


def email_subject(message: Message) -> str:
    """The subject line of an email."""
    return f"[{APP}] {message.title}"


def as_email(message: Message, sender: str, to: tuple[str, ...]) -> EmailMessage:
    """A MIME email with plain text and HTML alternatives and a stable Message-ID."""
    mail = EmailMessage()
    mail["Subject"] = email_subject(message)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    # Stable per message, so a mail system can spot the duplicate if a send is ever repeated.
    mail["Message-ID"] = f"<{message.id}@{APP}>"
    mail.set_content(as_text(message))
    mail.add_alternative(as_html(message), subtype="html")
    return mail


def as_teams(message: Message) -> dict[str, Any]:
    """A Teams Workflows request body: a `message` with one Adaptive Card attachment."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": "Attention" if message.kind == "notification" else "Warning"},
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in message.facts]}]
    body += [{"type": "TextBlock", "text": line, "wrap": True} for line in message.lines]
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard", "version": "1.4", "body": body,
                            "msteams": {"width": "Full"}}
    if message.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": LINK_TITLE, "url": message.link}]
    return {"type": "message",
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None,
                             "content": card}]}


def _mrkdwn(text: str) -> str:
    # Slack's only required escapes: https://api.slack.com/reference/surfaces/formatting
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def as_slack(message: Message) -> dict[str, Any]:
    """A Slack incoming-webhook body: fallback text plus blocks."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}}]
    fields = [{"type": "mrkdwn", "text": f"*{_mrkdwn(k)}*\n{_mrkdwn(v)}"}
              for k, v in message.facts if v][:_SLACK_FIELDS_MAX]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if message.lines:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": "\n".join(f"• {_mrkdwn(line)}" for line in message.lines)}})
    if message.link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": LINK_TITLE},
             "url": message.link}]})
    return {"text": message.title, "blocks": blocks}


def as_webhook(message: Message) -> Mapping[str, Any]:
    """The generic webhook body: the summary plus the event (or the digest)."""
    return message.payload
