"""Message building: studio links, text/HTML email, Adaptive Card, Slack blocks, webhook JSON."""

from __future__ import annotations

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
    assert [b["type"] for b in card["body"]] == ["TextBlock", "FactSet"]
    assert card["actions"][0]["url"].startswith("https://ml.azure.com/runs/")


def test_slack_escapes_and_limits_fields(sample: Sample) -> None:
    body = as_slack(message(sample, experimentName="a<b>&c"))
    fields = body["blocks"][1]["fields"]
    assert "*Experiment*\na&lt;b&gt;&amp;c" in [f["text"] for f in fields]
    assert len(fields) <= 10 and len(body["blocks"][0]["text"]["text"]) <= 150


def test_webhook_json_is_summary_plus_event(sample: Sample) -> None:
    body = as_webhook(message(sample))
    assert body["kind"] == "notification" and body["id"] == "k.smtp"
    assert body["summary"]["facts"]["Workspace"] == "ml-ws"
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
    assert dict(msg.facts)["Window"] == "1970-01-01 00:00:00Z – 1970-01-01 00:05:00Z"
    assert as_webhook(msg)["digest"]["total"] == 358
    card = as_teams(msg)["attachments"][0]["content"]
    assert card["body"][2]["text"].startswith("and 357 more")
    assert "• and 357 more" in as_slack(msg)["blocks"][2]["text"]["text"]
