"""Message building: studio links, text/HTML email, Adaptive Card, Slack blocks, webhook JSON."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable
from typing import Any

from handlers.events.parse import RunStatusChanged, parse_event
from handlers.events.workspace import WorkspaceRef
from handlers.notify.decide import build_notice
from handlers.notify.message import (
    CARD_CONTENT_TYPE,
    Digest,
    DigestGroup,
    Message,
    as_email,
    as_html,
    as_slack,
    as_teams,
    as_text,
    as_webhook,
    digest_message,
    notice_message,
    studio_run_url,
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
