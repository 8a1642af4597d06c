"""What a notification says, and how each channel renders it (pure: no I/O).

One `Message` (title, facts, lines, link) per notification or digest, rendered as plain text and
HTML (email), an Adaptive Card inside a Teams Workflows `message`, Slack blocks, or JSON for a
generic webhook. Studio links follow the format azure-ai-ml itself builds
(azure/ai/ml/entities/_job/_studio_url_from_job_id.py):
https://ml.azure.com/runs/{runId}?wsid=/subscriptions/{s}/resourcegroups/{rg}/workspaces/{w}

Event data is data: what people read is one printable line per value (control characters, line
breaks and lone surrogates replaced, long values shortened), and each medium gets it escaped so
that it is shown, never interpreted: HTML-escaped in email, TextRun (no markdown) in Adaptive
Cards, plain_text (and &, <, > escaped where Slack parses) in Slack. The webhook JSON keeps the
event whole, only lone surrogates replaced (they are not valid UTF-8).
"""

from __future__ import annotations

import functools
import html
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from handlers.events.workspace import WorkspaceRef

APP = "amlevents"
LINK_TITLE = "Open in Azure ML studio"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
TITLE_MAX = 250  # characters of a title people read (email subject, card, Slack header)
VALUE_MAX = 1000  # characters of one fact or line (a Teams message is at most ~28 KB)
LINES_MAX = 20  # digest lines shown; the webhook JSON keeps every group
# Slack Block Kit limits: header text 150, a section's text 3000, a field 2000, 10 fields,
# a button URL 3000, a block_id 255 (https://docs.slack.dev/reference/block-kit/blocks).
_SLACK_HEADER_MAX, _SLACK_TEXT_MAX, _SLACK_FIELD_MAX = 150, 3000, 2000
_SLACK_FIELDS_MAX, _SLACK_URL_MAX, _SLACK_BLOCK_ID_MAX = 10, 3000, 255

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_BREAKS = re.compile(r"(?:\r\n|[\n\r\t\v\f\x85\u2028\u2029])+")
# Other C0/C1 controls (ESC sequences, BEL, NUL) and the bidi overrides that make text read
# differently from what it is ("Trojan Source").
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_DOUBLE_BRACE = re.compile(r"\{(?=\{)")
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]")


def well_formed(value: Any) -> Any:
    """`value` (str, or JSON-like) with lone surrogates replaced: JSON allows them, UTF-8 not."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, Mapping):
        return {well_formed(k): well_formed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [well_formed(item) for item in value]
    return value


def printable(text: str, limit: int = VALUE_MAX) -> str:
    """One printable line: breaks become spaces, controls U+FFFD, at most `limit` characters."""
    text = str(text)
    # Printable ASCII holds no break, control, surrogate or bidi mark: skip the two regex passes
    # (most run ids and names; this is most of a notification's cost in a storm).
    if not (text.isascii() and text.isprintable()):
        text = _CONTROL.sub("\ufffd", _BREAKS.sub(" ", well_formed(text)))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _quote(text: str, safe: str) -> str:
    return urllib.parse.quote(well_formed(text), safe=safe)


@functools.lru_cache(maxsize=256)  # an app hears from a few workspaces: quoted once each
def workspace_query(ws: WorkspaceRef) -> str:
    """The `wsid` query string studio uses to pick the workspace."""
    wsid = (f"/subscriptions/{ws.subscription_id}/resourcegroups/{ws.resource_group}"
            f"/workspaces/{ws.workspace}")
    return "wsid=" + _quote(wsid, safe="/")


def studio_run_url(studio: str, ws: WorkspaceRef, run_id: str) -> str:
    """The studio page of one run."""
    return f"{studio}/runs/{_quote(run_id, safe='')}?{workspace_query(ws)}"


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
    """One message, channel-independent; `payload` is the webhook's JSON body.

    `id` is stable for one event on one channel (or one digest), so every redelivery sends the
    same id and receivers can drop repeats. `first_sent_s` is when this message was first tried
    on its channel, for channels whose deduplication needs it (ACS Repeatability-First-Sent).
    """

    id: str
    kind: str  # "notification" or "digest"
    title: str
    facts: tuple[tuple[str, str], ...]
    lines: tuple[str, ...]
    link: str
    payload: Mapping[str, Any]
    first_sent_s: float | None = None


def notice_message(notice: Notice, message_id: str) -> Message:
    """The message for one event (event data made printable; the webhook body kept whole)."""
    payload = {"source": APP, "kind": "notification", "id": message_id,
               "summary": notice.summary(), "event": dict(notice.event)}
    facts = tuple((label, printable(value)) for label, value in notice.facts)
    return Message(message_id, "notification", printable(notice.title, TITLE_MAX), facts, (),
                   well_formed(notice.link), well_formed(payload))


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
        lines.append(printable(digest_line(group) + sample))
    if len(lines) > LINES_MAX:
        more = len(lines) - LINES_MAX + 1
        lines[LINES_MAX - 1:] = [f"and {more} more groups (every group is in the webhook JSON)"]
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
    # A digest goes out once its window has closed: the window's end is a first-sent time
    # every retry of it agrees on (ACS repeatability), with no state to keep.
    return Message(digest.id, "digest", title, facts, tuple(lines), well_formed(first_link),
                   well_formed(payload), first_sent_s=digest.window_end_s)


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
    """The subject line of an email: one printable line (a CR/LF would end the header)."""
    return printable(f"[{APP}] {message.title}", TITLE_MAX + len(APP) + 3)


def email_message_id(message: Message) -> str:
    """The RFC 5322 Message-ID: the same for every send of one message (receivers may dedupe)."""
    return f"<{_MESSAGE_ID_UNSAFE.sub('-', message.id)}@{APP}>"


def as_email(message: Message, sender: str, to: tuple[str, ...]) -> EmailMessage:
    """A MIME email with plain text and HTML alternatives and a stable Message-ID."""
    # email.policy.SMTP folds long headers (RFC 5322 2.2.3) and writes CRLF, as smtplib sends.
    mail = EmailMessage(policy=SMTP)
    mail["Subject"] = email_subject(message)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    # Stable per message, so a mail system can spot the duplicate if a send is ever repeated.
    mail["Message-ID"] = email_message_id(message)
    mail.set_content(as_text(message))
    mail.add_alternative(as_html(message), subtype="html")
    return mail


def _text_run(text: str, **style: Any) -> dict[str, Any]:
    # TextRun text is never markdown (TextBlock and Fact text are); "{{" would still start a
    # DATE()/TIME() function, so a zero-width space keeps it literal.
    return {"type": "TextRun", "text": _DOUBLE_BRACE.sub("{\u200b", text), **style}


def _rich(*inlines: dict[str, Any], spacing: str = "Default") -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(inlines), "spacing": spacing}


def as_teams(message: Message) -> dict[str, Any]:
    """A Teams Workflows request body: a `message` with one Adaptive Card attachment.

    Event data goes into RichTextBlock/TextRun only: Adaptive Cards read markdown (links
    included) in TextBlock text and FactSet titles and values, never in a TextRun.
    """
    color = "Attention" if message.kind == "notification" else "Warning"
    title = _rich(_text_run(message.title, weight="Bolder", size="Medium", color=color))
    body: list[dict[str, Any]] = [{**title, "id": f"{APP}-{message.id}"[:200]}]
    body += [_rich(_text_run(f"{label}: ", weight="Bolder"), _text_run(value),
                   spacing="Small" if index == 0 else "None")
             for index, (label, value) in enumerate(message.facts)]
    body += [_rich(_text_run(line)) for line in message.lines]
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard", "version": "1.4", "body": body,
                            "msteams": {"width": "Full"}}
    if message.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": LINK_TITLE, "url": message.link}]
    return {"type": "message",
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None,
                             "content": card}]}


def _slack_escaped(text: str) -> str:
    # &, < and > are Slack's control characters wherever it parses text (<!channel>,
    # <url|label>): https://docs.slack.dev/messaging/formatting-message-text#escaping
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str, limit: int) -> dict[str, Any]:
    # plain_text is shown as is: no mrkdwn, no mentions, no links; emoji codes not converted.
    shown = text if len(text) <= limit else text[:limit - 1] + "…"
    return {"type": "plain_text", "text": shown or "-", "emoji": False}


def as_slack(message: Message) -> dict[str, Any]:
    """A Slack incoming-webhook body: fallback text plus blocks, event data as plain_text."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "block_id": f"{APP}-{message.id}"[:_SLACK_BLOCK_ID_MAX],
         "text": _plain(message.title, _SLACK_HEADER_MAX)}]
    fields = [_plain(f"{label}\n{value}", _SLACK_FIELD_MAX)
              for label, value in message.facts if value][:_SLACK_FIELDS_MAX]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if message.lines:
        blocks.append({"type": "section", "text": _plain(
            "\n".join(f"• {line}" for line in message.lines), _SLACK_TEXT_MAX)})
    if message.link and len(message.link) <= _SLACK_URL_MAX:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": _plain(LINK_TITLE, 75), "url": message.link}]})
    # The top-level text is the notification and screen-reader fallback: markup off, and the
    # control characters escaped (Slack still parses <...> sequences there).
    return {"text": _slack_escaped(message.title), "mrkdwn": False, "blocks": blocks}


def as_webhook(message: Message) -> Mapping[str, Any]:
    """The generic webhook body: the summary plus the event (or the digest)."""
    return message.payload
