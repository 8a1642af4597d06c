"""Message building: studio links, text/HTML email, Adaptive Card, Slack blocks, webhook JSON."""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from handlers.events.parse import RunStatusChanged, parse_event
from handlers.events.workspace import WorkspaceRef
from handlers.notify.decide import build_notice
from handlers.notify.message import (
    CARD_CONTENT_TYPE,
    Digest,
    DigestGroup,
    Message,
    Notice,
    as_email,
    as_html,
    as_slack,
    as_teams,
    as_text,
    as_webhook,
    digest_message,
    email_message_id,
    email_subject,
    notice_message,
    printable,
    studio_endpoints_url,
    studio_run_url,
    well_formed,
)

Sample = Callable[[str], dict[str, Any]]
WS = WorkspaceRef("0000-1111", "ml-rg", "ml-ws")


def message(sample: Sample, **data: Any) -> Message:
    raw = sample("run_status_changed")
    raw["topic"] = WS.resource_id
    raw["data"].update(data)
    event = parse_event(raw)
    assert isinstance(event, RunStatusChanged)
    return notice_message(build_notice(event, "https://ml.azure.com"), "k.smtp")


def test_studio_run_link_has_the_documented_shape() -> None:
    assert studio_run_url("https://ml.azure.com", WS, "HD_1a/2") == (
        "https://ml.azure.com/runs/HD_1a%2F2?wsid=/subscriptions/0000-1111/resourcegroups/ml-rg"
        "/workspaces/ml-ws")


def test_the_message_states_every_fact(sample: Sample) -> None:
    msg = message(sample)
    assert msg.title == ("Run failed: AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5 in "
                         "automl-local-regression")
    facts = dict(msg.facts)
    assert facts == {"Event": "RunStatusChanged", "Status": "failed",
                     "Experiment": "automl-local-regression",
                     "Run": "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5", "Run type": "-",
                     "Time": "2017-06-26T18:41:00.9584103Z", "Workspace": "ml-ws",
                     "Resource group": "ml-rg"}
    assert msg.link == studio_run_url("https://ml.azure.com", WS,
                                      "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5")


def test_text_and_html_email(sample: Sample) -> None:
    msg = message(sample, experimentName="<script>x</script>")
    text, html = as_text(msg), as_html(msg)
    assert "Experiment: <script>x</script>" in text and msg.link in text
    assert "<script>" not in html and "&lt;script&gt;" in html
    mail = as_email(msg, "from@contoso.com", ("a@contoso.com", "b@contoso.com"))
    assert mail["To"] == "a@contoso.com, b@contoso.com"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]


def test_teams_adaptive_card_shape(sample: Sample) -> None:
    body = as_teams(message(sample))
    assert body["type"] == "message"
    assert body["attachments"][0]["contentType"] == CARD_CONTENT_TYPE
    card = body["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and card["$schema"].startswith("http://adaptivecards")
    # The title, then one "label: value" line per fact, all RichTextBlocks of TextRuns.
    assert {b["type"] for b in card["body"]} == {"RichTextBlock"}
    assert card["body"][0]["inlines"][0]["text"].startswith("Run failed: AutoML_ad912b2d")
    facts = {b["inlines"][0]["text"]: b["inlines"][1]["text"] for b in card["body"][1:]}
    assert facts["Experiment: "] == "automl-local-regression" and len(facts) == 8
    assert card["actions"][0]["url"].startswith("https://ml.azure.com/runs/")


def test_slack_escapes_and_limits_fields(sample: Sample) -> None:
    body = as_slack(message(sample, experimentName="a<b>&c"))
    fields = body["blocks"][1]["fields"]
    assert {"type": "plain_text", "text": "Experiment\na<b>&c", "emoji": False} in fields
    assert body["text"].endswith("in a&lt;b&gt;&amp;c")
    assert len(fields) <= 10 and len(body["blocks"][0]["text"]["text"]) <= 150


def test_webhook_json_is_summary_plus_event(sample: Sample) -> None:
    body = as_webhook(message(sample))
    assert body["kind"] == "notification" and body["id"] == "k.smtp"
    assert body["summary"]["facts"]["Workspace"] == "ml-ws"
    # the summary's fields are a documented contract for webhook receivers
    summary = body["summary"]
    assert set(summary) == {"eventId", "eventType", "title", "status", "eventTime", "workspace",
                            "topic", "link", "group", "facts"}
    assert (summary["eventId"], summary["status"], summary["workspace"], summary["group"]) == (
        "831e1650-001e-001b-66ab-eeb76e069631", "failed", "ml-ws",
        "failed runs in experiment automl-local-regression")
    assert summary["eventTime"] == "2017-06-26T18:41:00.9584103Z"
    assert summary["topic"] == WS.resource_id and summary["link"] == message(sample).link
    assert body["event"]["eventType"] == "Microsoft.MachineLearningServices.RunStatusChanged"


def test_digest_says_how_many_more() -> None:
    digest = Digest("digest-teams-1", "teams", 0.0, 300.0, (
        DigestGroup("failed runs in experiment X", 357, ("r1", "r2"), "https://l/1"),
        DigestGroup("failed runs in experiment Y", 1)))
    msg = digest_message(digest)
    assert msg.kind == "digest" and msg.link == "https://l/1"
    assert msg.lines == ("and 357 more failed runs in experiment X (e.g. r1, r2)",
                         "and 1 more failed runs in experiment Y")
    assert msg.title == "Storm control: 358 more notifications held back"
    assert msg.facts == (("Window", "1970-01-01 00:00:00Z – 1970-01-01 00:05:00Z"),
                         ("Held back", "358"))
    assert as_webhook(msg)["digest"]["total"] == 358
    card = as_teams(msg)["attachments"][0]["content"]
    assert card["body"][3]["inlines"][0]["text"].startswith("and 357 more")
    assert "• and 357 more" in as_slack(msg)["blocks"][2]["text"]["text"]


# --- poison event data (issue 12, rows 2 and 7): shown, never interpreted; never a crash ------

def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


def test_header_injection_and_lone_surrogates_make_a_clean_email(sample: Sample) -> None:
    # GIVEN CR/LF (a header injection attempt) in the experiment, a lone surrogate in the run id
    msg = message(sample, experimentName="exp\r\nBcc: victim@evil.example\r\n\r\nforged body",
                  runId="run-\ud800-" + "x" * 3000)
    # WHEN the email is built and serialized as smtplib sends it
    mail = as_email(msg, "from@contoso.com", ("a@contoso.com",))
    raw = mail.as_bytes(policy=email.policy.SMTP)
    # THEN there is one Subject, no injected header, every line within RFC 5322's 998 octets
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None and len(parsed.get_all("Subject") or []) == 1
    subject = str(parsed["Subject"])
    assert "\r" not in subject and "\n" not in subject
    assert subject.startswith("[amlevents] Run failed: run-\ufffd-xxx") and len(subject) < 300
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    plain = parsed.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "Experiment: exp Bcc: victim@evil.example forged body" in text
    assert not any(line.startswith("Bcc:") for line in text.splitlines())


def test_every_rendering_is_valid_utf8_without_surrogates(sample: Sample) -> None:
    msg = message(sample, experimentName="e\ud83d", runId="\udfff\x00\x1b[2J\x07")
    for body in (as_teams(msg), as_slack(msg), as_webhook(msg)):
        for text in _strings(body):
            text.encode("utf-8")  # strict: a lone surrogate would raise
            assert "\x1b" not in text or body is as_webhook(msg)
    assert "\x1b" not in as_text(msg) and "\x07" not in as_html(msg)


SLACK_POISON = {"runId": "<!channel> <!here|here> <@U024BE7LH>",
                "experimentName": "<https://evil.example|click me> *bold* _it_ & :fire:"}


def _slack_parsed_texts(body: dict[str, Any]) -> list[str]:
    """The strings Slack parses for mrkdwn and control sequences (plain_text objects it does not)."""
    texts = [body["text"]]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                texts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(body["blocks"])
    return texts


def test_slack_shows_mentions_and_links_from_event_data_literally(sample: Sample) -> None:
    body = as_slack(message(sample, **SLACK_POISON))
    # Slack parses &, < and > as control characters in `text` and in mrkdwn objects ...
    for text in _slack_parsed_texts(body):
        assert "<" not in text and ">" not in text, text
        assert "&" not in text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
    assert body["text"].startswith("Run failed: &lt;!channel&gt; &lt;!here|here&gt;")
    assert body["mrkdwn"] is False  # ... and formatting (*bold*) in the fallback text is off
    assert _slack_parsed_texts(body) == [body["text"]]  # no mrkdwn object carries event data
    # ... so event data is in plain_text objects (shown as is, emoji codes not converted)
    plain = [node for node in _nodes(body["blocks"]) if node.get("type") == "plain_text"]
    assert all(node.get("emoji") is False for node in plain)
    shown = "\n".join(node["text"] for node in plain)
    assert "<!channel>" in shown and "<https://evil.example|click me> *bold*" in shown


def _nodes(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value, *(n for v in value.values() for n in _nodes(v))]
    if isinstance(value, list):
        return [n for item in value for n in _nodes(item)]
    return []


TEAMS_POISON = {"runId": "[click here](https://evil.example/phish)",
                "experimentName": "**urgent** _x_ {{{DATE(2017-02-14T06:00:00Z, SHORT)}}"}


def test_teams_card_shows_markdown_from_event_data_literally(sample: Sample) -> None:
    card = as_teams(message(sample, **TEAMS_POISON))["attachments"][0]["content"]
    nodes = _nodes(card["body"])
    # TextBlock text and Fact titles/values are markdown; TextRun text is not (Adaptive Cards).
    markdown = [n["text"] for n in nodes if n.get("type") == "TextBlock"]
    markdown += [n[k] for n in nodes if n.get("type") == "FactSet" for f in n["facts"]
                 for k in ("title", "value") for n in [f]]
    assert not any("evil.example" in t or "**urgent**" in t for t in markdown), markdown
    runs = "\n".join(n["text"] for n in nodes if n.get("type") == "TextRun")
    assert "[click here](https://evil.example/phish)" in runs and "**urgent** _x_" in runs
    assert "{{DATE(" not in runs  # not evaluated as a date function either
    assert card["version"] >= "1.2"  # RichTextBlock and TextRun came in 1.2
    (action,) = card["actions"]
    assert action["url"].startswith("https://ml.azure.com/runs/%5Bclick%20here%5D")


def test_html_email_escapes_markup_in_attributes_and_text(sample: Sample) -> None:
    html = as_html(message(sample, experimentName='<a href="https://evil.example">x</a>',
                           runId='"><img src=x onerror=alert(1)>'))
    assert "evil.example\">" not in html and "<img" not in html and "<a href=\"https://evil" not in html
    assert "&lt;a href=&quot;https://evil.example&quot;&gt;x&lt;/a&gt;" in html


def test_long_event_data_is_shortened_for_people_but_whole_for_webhooks(sample: Sample) -> None:
    msg = message(sample, experimentName="e" * 100_000)
    assert max(len(v) for _, v in msg.facts) <= 1000 and len(msg.title) <= 300
    assert as_webhook(msg)["event"]["data"]["experimentName"] == "e" * 100_000
    slack = as_slack(msg)
    assert all(len(n["text"]) <= 2000 for n in _nodes(slack["blocks"]) if "text" in n
               and isinstance(n["text"], str))
    assert len(json.dumps(as_teams(msg))) < 28_000  # Teams' message size limit


# --- the exact bodies (Teams, email): each style, spacing and colour is the channel's contract ---

LINKED = Message(id="k.teams", kind="notification", title="Run failed: r1",
                 facts=(("Run", "r1"), ("Status", "failed")), lines=("one line",),
                 link='https://ml.azure.com/runs/r1?a=1&b="2"', payload={})


def _run(text: str, **style: str) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def test_the_teams_card_exactly() -> None:
    # a notification: the title bold, medium and red (Attention); the first fact close under it
    # (Small), the next ones with no gap (None); then the lines; the link as the card's action
    card = as_teams(LINKED)
    assert card == {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
        "content": {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": "1.4", "msteams": {"width": "Full"},
            "body": [
                {"type": "RichTextBlock", "spacing": "Default", "id": "amlevents-k.teams",
                 "inlines": [_run("Run failed: r1", weight="Bolder", size="Medium",
                                  color="Attention")]},
                {"type": "RichTextBlock", "spacing": "Small",
                 "inlines": [_run("Run: ", weight="Bolder"), _run("r1")]},
                {"type": "RichTextBlock", "spacing": "None",
                 "inlines": [_run("Status: ", weight="Bolder"), _run("failed")]},
                {"type": "RichTextBlock", "spacing": "Default", "inlines": [_run("one line")]}],
            "actions": [{"type": "Action.OpenUrl", "title": "Open in Azure ML studio",
                         "url": 'https://ml.azure.com/runs/r1?a=1&b="2"'}]}}]}


def test_a_digest_card_is_amber_and_without_a_link_has_no_action() -> None:
    digest = Message(id="digest-1", kind="digest", title="T", facts=(), lines=(), link="",
                     payload={})
    card = as_teams(digest)["attachments"][0]["content"]
    assert card["body"] == [{"type": "RichTextBlock", "spacing": "Default",
                             "id": "amlevents-digest-1",
                             "inlines": [_run("T", weight="Bolder", size="Medium",
                                              color="Warning")]}]
    assert "actions" not in card


def test_the_html_email_exactly() -> None:
    assert as_html(LINKED) == (
        '<html><body><h2>Run failed: r1</h2><table>'
        '<tr><th align="left">Run</th><td>r1</td></tr>'
        '<tr><th align="left">Status</th><td>failed</td></tr></table>'
        '<ul><li>one line</li></ul>'
        '<p><a href="https://ml.azure.com/runs/r1?a=1&amp;b=&quot;2&quot;">'
        'Open in Azure ML studio</a></p>'
        '<p style="color:#888">sent by amlevents</p></body></html>')
    bare = Message(id="d", kind="digest", title="T", facts=(), lines=(), link="", payload={})
    assert as_html(bare) == ('<html><body><h2>T</h2><table></table>'
                             '<p style="color:#888">sent by amlevents</p></body></html>')


# --- every rendering compared whole (helper A2): a mutant's "XX..XX" or upper-cased string, a
# dropped default or an off-by-one limit shows up as a difference somewhere below ----------------

def test_well_formed_replaces_lone_surrogates_in_keys_values_and_items_whole() -> None:
    assert well_formed("ok \ud800 \udfff") == "ok \ufffd \ufffd"
    assert well_formed("plain") == "plain"
    assert well_formed({"k\ud83d": ["a\udc00", ("b", 1)], "n": None, "f": 2.5}) == {
        "k\ufffd": ["a\ufffd", ["b", 1]], "n": None, "f": 2.5}
    assert well_formed(7) == 7


@pytest.mark.parametrize(("text", "limit", "shown"), [
    ("abc", 3, "abc"),  # exactly at the limit: whole
    ("abcd", 3, "ab…"),  # one over: cut to limit-1 plus the ellipsis
    ("a\r\nb\tc\x0bd\x85e\u2028f", 1000, "a b c d e f"),  # every break (and runs of them) a space
    ("a\n\n\nb", 1000, "a b"),
    ("bell\x07 esc\x1b nul\x00 del\x7f c1\x9f", 1000,
     "bell\ufffd esc\ufffd nul\ufffd del\ufffd c1\ufffd"),
    ("rtl\u202eevil\u2066x\u200e", 1000, "rtl\ufffdevil\ufffdx\ufffd"),
    ("lone\ud800", 1000, "lone\ufffd"),
    ("é" * 5, 4, "ééé…"),  # not ASCII: cleaned, then cut the same way
])
def test_printable_cleans_and_cuts_at_exactly_the_limit(text: str, limit: int, shown: str) -> None:
    assert printable(text, limit) == shown


def test_printable_defaults_to_a_thousand_characters() -> None:
    assert printable("x" * 1000) == "x" * 1000
    assert printable("x" * 1001) == "x" * 999 + "…"
    assert printable(12) == "12"  # type: ignore[arg-type]  # not a string: shown as one


def test_studio_links_quote_the_workspace_and_run_whole() -> None:
    ws = WorkspaceRef("sub 1", "rg/ä", "ws?#")
    assert studio_endpoints_url("https://ml.azure.com", ws) == (
        "https://ml.azure.com/endpoints?wsid=/subscriptions/sub%201/resourcegroups/rg/%C3%A4"
        "/workspaces/ws%3F%23")
    assert studio_run_url("https://ml.azure.cn", ws, "r/1 ?\ud800") == (
        "https://ml.azure.cn/runs/r%2F1%20%3F%EF%BF%BD?wsid=/subscriptions/sub%201"
        "/resourcegroups/rg/%C3%A4/workspaces/ws%3F%23")


RUN_ID = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
RUN_LINK = ("https://ml.azure.com/runs/AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
            "?wsid=/subscriptions/0000-1111/resourcegroups/ml-rg/workspaces/ml-ws")
RUN_FACTS = (("Event", "RunStatusChanged"), ("Status", "failed"),
             ("Experiment", "automl-local-regression"), ("Run", RUN_ID), ("Run type", "-"),
             ("Time", "2017-06-26T18:41:00.9584103Z"), ("Workspace", "ml-ws"),
             ("Resource group", "ml-rg"))
RUN_TITLE = f"Run failed: {RUN_ID} in automl-local-regression"


def test_a_notification_message_whole(sample: Sample) -> None:
    raw = sample("run_status_changed")
    raw["topic"] = WS.resource_id
    msg = message(sample)
    assert msg == Message(
        id="k.smtp", kind="notification", title=RUN_TITLE, facts=RUN_FACTS, lines=(),
        link=RUN_LINK, first_sent_s=None,
        payload={"source": "amlevents", "kind": "notification", "id": "k.smtp",
                 "summary": {"eventId": "831e1650-001e-001b-66ab-eeb76e069631",
                             "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
                             "title": RUN_TITLE, "status": "failed",
                             "eventTime": "2017-06-26T18:41:00.9584103Z", "workspace": "ml-ws",
                             "topic": WS.resource_id, "link": RUN_LINK,
                             "group": "failed runs in experiment automl-local-regression",
                             "facts": dict(RUN_FACTS)},
                 "event": raw})
    assert as_webhook(msg) == msg.payload


def test_a_notice_message_makes_title_facts_and_link_printable_but_keeps_the_event() -> None:
    notice = Notice(event_id="e", event_type="T", title="t\n" + "x" * 300, status="s",
                    event_time="now", workspace="w", topic="tp", link="https://l/\ud800",
                    group="g", facts=(("Run", "a\r\nb"), ("Long", "y" * 1001)),
                    event={"data": {"v": "\ud800\n"}})
    msg = notice_message(notice, "id1")
    assert msg.title == "t " + "x" * 247 + "…"  # TITLE_MAX 250
    assert msg.facts == (("Run", "a b"), ("Long", "y" * 999 + "…"))
    assert msg.link == "https://l/\ufffd"
    assert msg.payload["event"] == {"data": {"v": "\ufffd\n"}}  # whole, only made valid UTF-8
    assert msg.payload["summary"]["facts"] == {"Run": "a\r\nb", "Long": "y" * 1001}


def test_the_plain_text_email_exactly() -> None:
    assert as_text(LINKED) == (
        "Run failed: r1\n\nRun: r1\nStatus: failed\n\none line\n\n"
        "Open in Azure ML studio: https://ml.azure.com/runs/r1?a=1&b=\"2\"\n\n"
        "-- sent by amlevents\n")
    bare = Message(id="d", kind="digest", title="T", facts=(), lines=(), link="", payload={})
    assert as_text(bare) == "T\n\n\n-- sent by amlevents\n"


@pytest.mark.parametrize(("title", "subject"), [
    ("t" * 250, "[amlevents] " + "t" * 250),  # a title at TITLE_MAX: whole
    ("t" * 251, "[amlevents] " + "t" * 249 + "…"),  # one longer: cut at 262 characters
    ("a\r\nBcc: x", "[amlevents] a Bcc: x")])
def test_the_email_subject_is_one_line_cut_at_its_limit(title: str, subject: str) -> None:
    msg = Message(id="i", kind="notification", title=title, facts=(), lines=(), link="",
                  payload={})
    assert email_subject(msg) == subject


def test_the_message_id_replaces_what_rfc_5322_does_not_allow() -> None:
    msg = Message(id="a b<c>@d\"é.x!#$%&'*+/=?^_`{|}~-", kind="notification", title="t",
                  facts=(), lines=(), link="", payload={})
    assert email_message_id(msg) == "<a-b-c--d--.x!#$%&'*+/=?^_`{|}~-@amlevents>"


def test_the_email_headers_and_parts_exactly() -> None:
    mail = as_email(LINKED, "from@contoso.com", ("a@contoso.com", "b@contoso.com"))
    assert mail.items() == [("Subject", "[amlevents] Run failed: r1"),
                            ("From", "from@contoso.com"), ("To", "a@contoso.com, b@contoso.com"),
                            ("Message-ID", "<k.teams@amlevents>"), ("MIME-Version", "1.0"),
                            ("Content-Type", "multipart/alternative")]
    # the header names as they go on the wire (CRLF: the SMTP policy, as smtplib sends)
    assert bytes(mail).startswith(
        b"Subject: [amlevents] Run failed: r1\r\nFrom: from@contoso.com\r\n"
        b"To: a@contoso.com, b@contoso.com\r\nMessage-ID: <k.teams@amlevents>\r\n")
    assert [(part.get_content_type(), part.get_content()) for part in mail.iter_parts()] == [
        ("text/plain", as_text(LINKED)), ("text/html", as_html(LINKED) + "\n")]


def _plain_text(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def test_the_slack_body_exactly() -> None:
    assert as_slack(LINKED) == {"text": "Run failed: r1", "mrkdwn": False, "blocks": [
        {"type": "header", "block_id": "amlevents-k.teams", "text": _plain_text("Run failed: r1")},
        {"type": "section", "fields": [_plain_text("Run\nr1"), _plain_text("Status\nfailed")]},
        {"type": "section", "text": _plain_text("• one line")},
        {"type": "actions", "elements": [
            {"type": "button", "text": _plain_text("Open in Azure ML studio"),
             "url": 'https://ml.azure.com/runs/r1?a=1&b="2"'}]}]}


def test_a_bare_slack_body_has_a_header_only_and_never_empty_text() -> None:
    bare = Message(id="d", kind="digest", title="", facts=(("Empty", ""),), lines=(), link="",
                   payload={})
    # a fact without a value is left out; an empty text would be refused by Slack: "-"
    assert as_slack(bare) == {"text": "", "mrkdwn": False, "blocks": [
        {"type": "header", "block_id": "amlevents-d", "text": _plain_text("-")}]}


def test_slack_limits_at_their_exact_boundaries() -> None:
    def slack(**fields: Any) -> dict[str, Any]:
        base: dict[str, Any] = dict(id="i", kind="notification", title="t", facts=(), lines=(),
                                    link="", payload={})
        return as_slack(Message(**{**base, **fields}))

    # header text: 150 characters whole, 151 cut to 149 plus the ellipsis
    assert slack(title="h" * 150)["blocks"][0]["text"]["text"] == "h" * 150
    assert slack(title="h" * 151)["blocks"][0]["text"]["text"] == "h" * 149 + "…"
    # block_id: at most 255 characters
    assert slack(id="b" * 300)["blocks"][0]["block_id"] == ("amlevents-" + "b" * 300)[:255]
    # fields: 2000 characters each ("label\nvalue"), at most 10
    assert slack(facts=(("L", "v" * 1998),))["blocks"][1]["fields"] == [
        _plain_text("L\n" + "v" * 1998)]
    assert slack(facts=(("L", "v" * 1999),))["blocks"][1]["fields"] == [
        _plain_text("L\n" + "v" * 1997 + "…")]
    eleven = tuple((f"L{n}", f"v{n}") for n in range(11))
    assert slack(facts=eleven)["blocks"][1]["fields"] == [
        _plain_text(f"L{n}\nv{n}") for n in range(10)]
    # the lines' section: 3000 characters ("• " and the line)
    assert slack(lines=("x" * 2998,))["blocks"][1]["text"] == _plain_text("• " + "x" * 2998)
    assert slack(lines=("x" * 2999,))["blocks"][1]["text"] == _plain_text(
        "• " + "x" * 2997 + "…")
    assert slack(lines=("a", "b"))["blocks"][1]["text"] == _plain_text("• a\n• b")
    # a button URL: up to 3000 characters, a longer link gets no button (Slack refuses it)
    url = "https://l/" + "u" * 2990
    assert slack(link=url)["blocks"][1] == {"type": "actions", "elements": [
        {"type": "button", "text": _plain_text("Open in Azure ML studio"), "url": url}]}
    assert [b["type"] for b in slack(link=url + "u")["blocks"]] == ["header"]


def test_the_teams_card_id_is_cut_at_200_and_double_braces_are_kept_literal() -> None:
    msg = Message(id="i" * 300, kind="notification", title="{{DATE(x)}} {x}",
                  facts=(("{{L", "v}}"),), lines=("{{{a",), link="", payload={})
    body = as_teams(msg)["attachments"][0]["content"]["body"]
    assert body[0]["id"] == ("amlevents-" + "i" * 300)[:200]
    assert [[run["text"] for run in block["inlines"]] for block in body] == [
        ["{\u200b{DATE(x)}} {x}"], ["{\u200b{L: ", "v}}"], ["{\u200b{\u200b{a"]]


DIGEST = Digest("digest-teams-1", "teams", 0.0, 300.0, (
    DigestGroup("failed runs in experiment X", 357, ("r1", "r2"), "https://l/1"),
    DigestGroup("failed runs in experiment Y", 1)))
DIGEST_LINES = ("and 357 more failed runs in experiment X (e.g. r1, r2)",
                "and 1 more failed runs in experiment Y")
DIGEST_FACTS = (("Window", "1970-01-01 00:00:00Z – 1970-01-01 00:05:00Z"),
                ("Held back", "358"))


def test_the_digest_message_whole() -> None:
    assert digest_message(DIGEST) == Message(
        id="digest-teams-1", kind="digest", title="Storm control: 358 more notifications held back",
        facts=DIGEST_FACTS, lines=DIGEST_LINES, link="https://l/1",
        payload={"source": "amlevents", "kind": "digest", "id": "digest-teams-1",
                 "digest": {"windowStart": "1970-01-01 00:00:00Z",
                            "windowEnd": "1970-01-01 00:05:00Z", "total": 358,
                            "groups": [{"label": "failed runs in experiment X", "count": 357,
                                        "sampleRunIds": ["r1", "r2"], "link": "https://l/1"},
                                       {"label": "failed runs in experiment Y", "count": 1,
                                        "sampleRunIds": [], "link": ""}]}},
        # the window's end: every retry of this digest agrees on when it was first sent
        first_sent_s=300.0)


def test_the_digest_renderings_whole() -> None:
    msg = digest_message(DIGEST)
    assert as_text(msg) == (
        "Storm control: 358 more notifications held back\n\n"
        "Window: 1970-01-01 00:00:00Z – 1970-01-01 00:05:00Z\nHeld back: 358\n\n"
        "and 357 more failed runs in experiment X (e.g. r1, r2)\n"
        "and 1 more failed runs in experiment Y\n\n"
        "Open in Azure ML studio: https://l/1\n\n-- sent by amlevents\n")
    assert email_subject(msg) == "[amlevents] Storm control: 358 more notifications held back"
    assert as_slack(msg) == {
        "text": "Storm control: 358 more notifications held back", "mrkdwn": False, "blocks": [
            {"type": "header", "block_id": "amlevents-digest-teams-1",
             "text": _plain_text("Storm control: 358 more notifications held back")},
            {"type": "section", "fields": [
                _plain_text("Window\n1970-01-01 00:00:00Z – 1970-01-01 00:05:00Z"),
                _plain_text("Held back\n358")]},
            {"type": "section", "text": _plain_text("\n".join(f"• {x}" for x in DIGEST_LINES))},
            {"type": "actions", "elements": [
                {"type": "button", "text": _plain_text("Open in Azure ML studio"),
                 "url": "https://l/1"}]}]}
    card = as_teams(msg)["attachments"][0]["content"]
    assert card["body"] == [
        {"type": "RichTextBlock", "spacing": "Default", "id": "amlevents-digest-teams-1",
         "inlines": [_run("Storm control: 358 more notifications held back", weight="Bolder",
                          size="Medium", color="Warning")]},
        {"type": "RichTextBlock", "spacing": "Small", "inlines": [
            _run("Window: ", weight="Bolder"),
            _run("1970-01-01 00:00:00Z – 1970-01-01 00:05:00Z")]},
        {"type": "RichTextBlock", "spacing": "None", "inlines": [
            _run("Held back: ", weight="Bolder"), _run("358")]},
        *({"type": "RichTextBlock", "spacing": "Default", "inlines": [_run(line)]}
          for line in DIGEST_LINES)]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in Azure ML studio",
                                "url": "https://l/1"}]


def test_a_digest_of_one_is_singular_and_links_the_first_group_with_a_link() -> None:
    msg = digest_message(Digest("d1", "slack", 60.0, 120.5, (
        DigestGroup("a", 1), DigestGroup("b", 0, (), "https://l/b"),
        DigestGroup("c", 0, (), "https://l/c"))))
    assert msg.title == "Storm control: 1 more notification held back"
    assert msg.link == "https://l/b"
    assert msg.facts == (("Window", "1970-01-01 00:01:00Z – 1970-01-01 00:02:00Z"),
                         ("Held back", "1"))
    assert msg.first_sent_s == 120.5
    none = digest_message(Digest("d2", "slack", 0.0, 1.0, (DigestGroup("a", 2),)))
    assert (none.title, none.link) == ("Storm control: 2 more notifications held back", "")


@pytest.mark.parametrize(("groups", "last_lines"), [
    (20, ["and 1 more g18", "and 1 more g19"]),  # LINES_MAX groups: every one shown
    (21, ["and 1 more g18", "and 2 more groups (every group is in the webhook JSON)"]),
    (25, ["and 1 more g18", "and 6 more groups (every group is in the webhook JSON)"])])
def test_a_digest_shows_twenty_lines_at_most(groups: int, last_lines: list[str]) -> None:
    msg = digest_message(Digest("d", "teams", 0.0, 1.0, tuple(
        DigestGroup(f"g{n}", 1) for n in range(groups))))
    assert len(msg.lines) == 20 and list(msg.lines[-2:]) == last_lines
    assert len(msg.payload["digest"]["groups"]) == groups  # the webhook keeps every group


def test_a_digest_line_is_printable_and_bounded() -> None:
    msg = digest_message(Digest("d", "teams", 0.0, 1.0, (
        DigestGroup("runs\nof \ud800", 2, ("r\t1", "x" * 2000)),)))
    assert msg.lines == (("and 2 more runs of \ufffd (e.g. r 1, " + "x" * 2000)[:999] + "…",)
    assert msg.payload["digest"]["groups"][0]["label"] == "runs\nof \ufffd"


def test_the_digest_window_is_in_utc_whatever_the_hosts_time_zone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        msg = digest_message(DIGEST)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert msg.facts == DIGEST_FACTS
    assert msg.payload["digest"]["windowEnd"] == "1970-01-01 00:05:00Z"
