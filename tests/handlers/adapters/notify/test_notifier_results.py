"""The notifier's results, ledger state and logs, whole: one fast Notifier over a SQLite ledger.

The channels here are scripted stand-ins for the network adapters (each answers or raises as a
test says); everything between them and the ledger is the real code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import certifi
import pytest

from handlers.adapters.notify.acs_email import AcsEmailChannel
from handlers.adapters.notify.http import HttpChannel
from handlers.adapters.notify.notifier import (
    Notifier,
    build_channels,
    build_notifier,
    event_state_key,
    storm_state_key,
)
from handlers.adapters.notify.outbox import OutboxChannel
from handlers.adapters.notify.smtp import SmtpChannel
from handlers.errors import PermanentError, RetryableError
from handlers.events.parse import parse_event
from handlers.ledger.ledger import Ledger
from handlers.ledger.sqlite import SqliteLedgerStore
from handlers.notify import storm
from handlers.notify.decide import decide
from handlers.notify.message import (
    Message,
    as_slack,
    as_teams,
    as_webhook,
    digest_message,
    notice_message,
)
from handlers.notify.plan import NotificationPlan
from handlers.notify.settings import ChannelSettings, NotifySettings
from handlers.outcome import ActionResult, Outcome, plan_detail
from tests.fakes.clock import T0, Clock

Sample = Callable[[str], dict[str, Any]]
OPENED = "2023-11-14T22:13:20.000+00:00"
SECRET = "sig-0123456789-SECRET"


@dataclass
class Scripted:
    """A channel that answers from a script: a receipt, or an exception to raise (then repeats
    its last answer)."""

    name: str
    answers: list[str | Exception] = field(default_factory=lambda: ["ok"])
    sent: list[Message] = field(default_factory=list)

    def send(self, message: Message) -> str:
        self.sent.append(message)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def has_traceback(record: logging.LogRecord) -> bool:
    """Whether the record carries its exception's traceback (the app's redacting log filter, once
    installed, turns exc_info into a redacted exc_text)."""
    return bool(record.exc_info or record.exc_text)


class NeedsFirstSent(Scripted):
    """A channel whose deduplication needs the first attempt's time (as ACS Email's does); the
    others do not say so at all (no attribute, as the HTTP channels)."""

    needs_first_sent = True


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    store = SqliteLedgerStore(str(tmp_path / "ledger.db"))
    yield Ledger(store, clock=clock)
    store.close()


def make_plan(sample: Sample, n: int = 1, channels: tuple[str, ...] | None = None,
              experiment: str = "sweep") -> NotificationPlan:
    raw = sample("run_status_changed")
    raw["id"] = f"evt-{n}"
    raw["data"].update(runId=f"run-{n}", experimentName=experiment, runStatus="Failed")
    plan = decide(parse_event(raw), NotifySettings.from_mapping({}))
    assert isinstance(plan, NotificationPlan)
    return replace(plan, channels=channels)


def notifier(ledger: Ledger, *channels: Scripted, max_messages: int = 10,
             secrets: tuple[str, ...] = ()) -> Notifier:
    return Notifier({c.name: c for c in channels}, ledger,
                    storm.StormPolicy(max_messages, 60.0), secrets=secrets, lease_s=30.0)


def test_the_state_keys() -> None:
    assert event_state_key("k1") == "notify:event:k1"
    assert storm_state_key("teams") == "notify:storm:teams"


def test_every_channel_sent_is_done_whole(ledger: Ledger, sample: Sample,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="amlevents.notify")
    teams, slack = Scripted("teams", ["HTTP 200"]), Scripted("slack", ["HTTP 202"])
    plan = make_plan(sample)
    result = notifier(ledger, teams, slack).notify(plan)
    assert result == ActionResult(Outcome.DONE, plan.summary(), plan_detail(
        plan, channels={"teams": "sent: HTTP 200", "slack": "sent: HTTP 202"}))
    # each message carries the same id on every redelivery: <event key>.<channel>
    assert teams.sent == [notice_message(plan.notice, f"{plan.event_key}.teams")]
    assert slack.sent == [notice_message(plan.notice, f"{plan.event_key}.slack")]
    assert ledger.get_state(event_state_key(plan.event_key)) == {"channels": {
        "teams": {"status": "sent", "detail": "sent: HTTP 200"},
        "slack": {"status": "sent", "detail": "sent: HTTP 202"}}}
    assert [(r.levelno, r.msg, r.args) for r in caplog.records] == [
        (logging.INFO, "notify %s: sent %s", ("teams", plan.notice.title)),
        (logging.INFO, "notify %s: sent %s", ("slack", plan.notice.title))]


def test_a_plan_s_channels_pick_among_the_configured(ledger: Ledger, sample: Sample) -> None:
    teams, slack = Scripted("teams"), Scripted("slack")
    plan = make_plan(sample, channels=("slack", "smtp"))
    result = notifier(ledger, teams, slack).notify(plan)
    # a rule naming an absent channel is a failure of that channel (validation names it first)
    assert result == ActionResult(Outcome.FAILED, plan.summary(), plan_detail(
        plan, channels={"slack": "sent: ok", "smtp": "not configured"}))
    assert (len(teams.sent), len(slack.sent)) == (0, 1)


def test_a_permanent_and_an_unexpected_failure_fail_their_channel_only(
        ledger: Ledger, sample: Sample, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="amlevents.notify")
    refused = Scripted("slack", [PermanentError(f"slack: HTTP 404 for {SECRET}")])
    crashing = Scripted("teams", [ValueError("surprise")])
    fine = Scripted("webhook")
    plan = make_plan(sample)
    result = notifier(ledger, refused, crashing, fine, secrets=(SECRET,)).notify(plan)
    assert result == ActionResult(Outcome.FAILED, plan.summary(), plan_detail(plan, channels={
        "slack": "failed: slack: HTTP 404 for ***", "teams": "failed: ValueError: surprise",
        "webhook": "sent: ok"}))
    records = [(r.levelno, r.msg, r.args, has_traceback(r)) for r in caplog.records]
    assert records == [
        (logging.ERROR, "notify %s failed: %s", ("slack", "slack: HTTP 404 for ***"), False),
        (logging.ERROR, "notify %s failed unexpectedly: %s", ("teams", "ValueError: surprise"),
         True),
        (logging.INFO, "notify %s: sent %s", ("webhook", plan.notice.title), False)]
    # only what was sent is remembered when nothing will be redelivered
    assert ledger.get_state(event_state_key(plan.event_key)) == {"channels": {
        "webhook": {"status": "sent", "detail": "sent: ok"}}}


def test_a_transient_failure_retries_only_the_unsettled_channels(
        ledger: Ledger, sample: Sample, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="amlevents.notify")
    flaky = Scripted("teams", [RetryableError(f"teams: HTTP 503 {SECRET}"), "HTTP 200"])
    refused = Scripted("slack", [PermanentError("slack: HTTP 404")])
    fine = Scripted("webhook")
    plan = make_plan(sample)
    n = notifier(ledger, flaky, refused, fine, secrets=(SECRET,))
    # WHEN the first delivery meets a 503 on Teams
    with pytest.raises(RetryableError) as info:
        n.notify(plan)
    # THEN the error names every channel's result, secrets masked
    assert str(info.value) == ("teams: will retry: teams: HTTP 503 ***; "
                               "slack: failed: slack: HTTP 404; webhook: sent: ok")
    assert (logging.WARNING, "notify %s failed, will retry: %s",
            ("teams", "teams: HTTP 503 ***")) in [(r.levelno, r.msg, r.args)
                                                  for r in caplog.records]
    # AND the settled channels are remembered, the retried one is not
    assert ledger.get_state(event_state_key(plan.event_key)) == {"channels": {
        "webhook": {"status": "sent", "detail": "sent: ok"},
        "slack": {"status": "failed", "detail": "failed: slack: HTTP 404"}}}
    # WHEN Event Grid redelivers
    result = n.notify(plan)
    # THEN only Teams is tried again; the others keep their earlier result
    assert (len(flaky.sent), len(refused.sent), len(fine.sent)) == (2, 1, 1)
    assert result == ActionResult(Outcome.FAILED, plan.summary(), plan_detail(plan, channels={
        "teams": "sent: HTTP 200", "slack": "failed: slack: HTTP 404 (earlier delivery)",
        "webhook": "sent: ok (earlier delivery)"}))


def test_a_redelivery_after_every_channel_settled_sends_nothing(ledger: Ledger,
                                                                sample: Sample) -> None:
    teams = Scripted("teams", ["r1"])
    plan = make_plan(sample)
    n = notifier(ledger, teams)
    n.notify(plan)
    assert n.notify(plan) == ActionResult.done(plan, channels={
        "teams": "sent: r1 (earlier delivery)"})
    assert len(teams.sent) == 1


def test_the_first_sent_time_is_kept_across_redeliveries(ledger: Ledger, clock: Clock,
                                                         sample: Sample) -> None:
    # GIVEN a channel whose deduplication needs the first attempt's time (ACS repeatability)
    acs = NeedsFirstSent("acs", [RetryableError("acs: timeout"), "accepted"])
    other = Scripted("teams")
    plan = make_plan(sample)
    n = notifier(ledger, acs, other)
    with pytest.raises(RetryableError):
        n.notify(plan)
    clock.now += 90
    n.notify(plan)
    # THEN both attempts say when the first one was made; a channel not asking gets none
    assert [m.first_sent_s for m in acs.sent] == [T0, T0]
    assert [m.first_sent_s for m in other.sent] == [None]
    assert ledger.get_state(event_state_key(plan.event_key)) == {
        "first_sent": {"acs": T0},
        "channels": {"teams": {"status": "sent", "detail": "sent: ok"},
                     "acs": {"status": "sent", "detail": "sent: accepted"}}}


def test_a_held_message_says_which_window_and_logs_at_debug(
        ledger: Ledger, clock: Clock, sample: Sample, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="amlevents.notify")
    teams = Scripted("teams")
    n = notifier(ledger, teams, max_messages=1)
    n.notify(make_plan(sample, 1))
    clock.now += 0.25
    caplog.clear()
    second, third = make_plan(sample, 2), make_plan(sample, 3)
    assert n.notify(second) == ActionResult.done(second, channels={
        "teams": f"digested: held #1 of the storm window opened {OPENED}"})
    assert n.notify(third) == ActionResult.done(third, channels={
        "teams": f"digested: held #2 of the storm window opened {OPENED}"})
    assert [(r.levelno, r.msg, r.args) for r in caplog.records] == [
        (logging.DEBUG, "notify %s: held for the digest", ("teams",))] * 2
    assert len(teams.sent) == 1
    # the held runs are counted in their group, the first run sampled with its link
    state = ledger.get_state(storm_state_key("teams"))
    assert state is not None and state["held"] == {"failed runs in experiment sweep": {
        "count": 2, "runs": ["run-2", "run-3"], "link": second.notice.link}}
    # each admission's verdict is tagged with a fresh token (racing writers tell theirs apart)
    token = state["verdict"]["token"]
    assert isinstance(token, str) and len(token) == 32 and int(token, 16) >= 0
    assert ledger.get_state(event_state_key(second.event_key)) is None  # not sent: not settled


def held_then_closed(ledger: Ledger, clock: Clock, sample: Sample,
                     channel: Scripted) -> Notifier:
    """One message sent and two held on `channel` (limit 1), then the window closed."""
    n = notifier(ledger, channel, max_messages=1, secrets=(SECRET,))
    for k in range(3):
        n.notify(make_plan(sample, k))
    clock.now += 60
    return n


def test_the_digest_goes_out_first_and_is_forgotten(ledger: Ledger, clock: Clock,
                                                    sample: Sample) -> None:
    teams = Scripted("teams")
    n = held_then_closed(ledger, clock, sample, teams)
    plan = make_plan(sample, 9)
    # the digest is a message of the new window: with a limit of 1, the event itself is held
    assert n.notify(plan) == ActionResult.done(plan, channels={"teams": (
        "digested: held #1 of the storm window opened 2023-11-14T22:14:20.000+00:00 "
        "(digest of 2 sent first)")})
    digest = storm.to_digest(
        {"id": str(int(T0 * 1000)), "start": T0, "end": T0 + 60, "groups": {
            "failed runs in experiment sweep": {"count": 2, "runs": ["run-1", "run-2"],
                                                "link": make_plan(sample, 1).notice.link}}},
        "teams")
    assert teams.sent[1:] == [digest_message(digest)]
    assert (ledger.get_state(storm_state_key("teams")) or {})["pending"] == []


def test_a_digest_that_fails_transiently_is_kept_and_logged(
        ledger: Ledger, clock: Clock, sample: Sample, caplog: pytest.LogCaptureFixture) -> None:
    teams = Scripted("teams")
    n = held_then_closed(ledger, clock, sample, teams)
    teams.answers = [RetryableError(f"teams: HTTP 503 {SECRET}"), "ok"]
    caplog.set_level(logging.DEBUG, logger="amlevents.notify")
    assert n.flush() == ["teams: (digest of 2 kept for later)"]
    digest_id = f"digest-teams-{int(T0 * 1000)}"
    assert [(r.levelno, r.msg, r.args) for r in caplog.records] == [
        (logging.WARNING, "notify %s: digest %s not sent, kept for later: %s",
         ("teams", digest_id, "teams: HTTP 503 ***"))]
    (pending,) = (ledger.get_state(storm_state_key("teams")) or {})["pending"]
    assert (pending["lease"], pending["lease_until"]) == ("", 0.0)  # released at once
    # the next flush sends it, once
    assert n.flush() == ["teams: (digest of 2 sent first)"]
    assert n.flush() == []
    assert [m.id for m in teams.sent[1:]] == [digest_id, digest_id]


@pytest.mark.parametrize(("error", "said", "traceback"), [
    (PermanentError("teams: HTTP 400"), "teams: HTTP 400", False),
    (KeyError("k"), "KeyError: 'k'", True)])
def test_a_refused_digest_is_dropped_loudly(ledger: Ledger, clock: Clock, sample: Sample,
                                            caplog: pytest.LogCaptureFixture, error: Exception,
                                            said: str, traceback: bool) -> None:
    teams = Scripted("teams")
    n = held_then_closed(ledger, clock, sample, teams)
    teams.answers = [error]
    caplog.set_level(logging.DEBUG, logger="amlevents.notify")
    assert n.flush() == [f"teams: (digest of 2 refused: {said})"]
    assert [(r.levelno, r.msg, r.args, has_traceback(r)) for r in caplog.records] == [
        (logging.ERROR, "notify %s: digest %s of %d notifications refused, dropped: %s",
         ("teams", f"digest-teams-{int(T0 * 1000)}", 2, said), traceback)]
    assert (ledger.get_state(storm_state_key("teams")) or {})["pending"] == []
    assert n.flush() == []


def test_flush_goes_over_every_channel(ledger: Ledger, clock: Clock, sample: Sample) -> None:
    teams, slack = Scripted("teams"), Scripted("slack")
    n = notifier(ledger, teams, slack, max_messages=1)
    for k in range(2):
        n.notify(make_plan(sample, k))
    assert n.flush() == []  # the window is still open
    clock.now += 60
    assert n.flush() == ["teams: (digest of 1 sent first)", "slack: (digest of 1 sent first)"]
    assert n.flush() == []


def test_build_channels_makes_one_per_configured_channel(tmp_path: Path) -> None:
    ca_file = certifi.where()  # a real bundle: the HTTPS channels load it when built
    settings = ChannelSettings.from_mapping({
        "AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com", "AMLEVENTS_NOTIFY_SMTP_PORT": "2525",
        "AMLEVENTS_NOTIFY_SMTP_STARTTLS": "false", "AMLEVENTS_NOTIFY_SMTP_USERNAME": "mailer",
        "AMLEVENTS_NOTIFY_SMTP_PASSWORD": "pw", "AMLEVENTS_NOTIFY_SMTP_FROM": "ml@contoso.com",
        "AMLEVENTS_NOTIFY_SMTP_TO": "a@contoso.com",
        "AMLEVENTS_NOTIFY_ACS_ENDPOINT": "https://acs.communication.azure.com",
        "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
        "AMLEVENTS_NOTIFY_ACS_TO": "b@contoso.com", "AMLEVENTS_NOTIFY_ACS_POLL_INTERVAL_S": "2",
        "AMLEVENTS_NOTIFY_TEAMS_URL": "https://t.example/x",
        "AMLEVENTS_NOTIFY_SLACK_URL": "https://s.example/x",
        "AMLEVENTS_NOTIFY_WEBHOOK_URL": "https://w.example/x",
        "AMLEVENTS_NOTIFY_WEBHOOK_SECRET": "whsec-123", "AMLEVENTS_NOTIFY_TIMEOUT_S": "7",
        "AMLEVENTS_NOTIFY_CA_FILE": ca_file, "AMLEVENTS_NOTIFY_OUTBOX_DIR": str(tmp_path / "o")})
    channels = build_channels(settings)
    assert list(channels) == ["smtp", "acs", "teams", "slack", "webhook", "outbox"]
    # each channel is built from its own settings (what it would connect with)
    smtp, acs = channels["smtp"], channels["acs"]
    assert isinstance(smtp, SmtpChannel) and vars(smtp) == {
        "_host": "smtp.contoso.com", "_port": 2525, "_starttls": False, "_username": "mailer",
        "_password": "pw", "_sender": "ml@contoso.com", "_to": ("a@contoso.com",),
        "_timeout_s": 7.0, "_ca_file": ca_file}
    assert isinstance(acs, AcsEmailChannel) and {
        k: v for k, v in vars(acs).items() if k not in ("_client", "_lock")} == {
        "_endpoint": "https://acs.communication.azure.com", "_connection_string": "",
        "_sender": "DoNotReply@x.azurecomm.net", "_to": ("b@contoso.com",), "_timeout_s": 7.0,
        "_poll_interval_s": 2.0, "_ca_file": ca_file}
    for name, url, render, secret in (("teams", "https://t.example/x", as_teams, ""),
                                      ("slack", "https://s.example/x", as_slack, ""),
                                      ("webhook", "https://w.example/x", as_webhook, "whsec-123")):
        http = channels[name]
        assert isinstance(http, HttpChannel)
        assert (http.name, http._url, http._render, http._timeout_s, http._secret) == (
            name, url, render, 7.0, secret)
    outbox = channels["outbox"]
    assert isinstance(outbox, OutboxChannel) and outbox.folder == tmp_path / "o"
    assert build_channels(ChannelSettings.from_mapping({})) == {}


def test_acs_by_connection_string_is_built_with_it() -> None:
    value = "endpoint=https://acs.communication.azure.com/;accesskey=YWNzLWtleQ=="
    channels = build_channels(ChannelSettings.from_mapping({
        "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING": value,
        "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
        "AMLEVENTS_NOTIFY_ACS_TO": "b@contoso.com"}))
    acs = channels["acs"]
    assert list(channels) == ["acs"] and isinstance(acs, AcsEmailChannel)
    assert (acs._endpoint, acs._connection_string) == ("", value)


def test_build_notifier_takes_the_storm_limits_and_secrets(ledger: Ledger, sample: Sample) -> None:
    env = {"AMLEVENTS_NOTIFY_WEBHOOK_URL": f"https://w.example/x?sig={SECRET}",
           "AMLEVENTS_NOTIFY_STORM_MAX": "4", "AMLEVENTS_NOTIFY_STORM_WINDOW_S": "30"}
    built = build_notifier(ChannelSettings.from_mapping(env), env, ledger)
    assert (list(built.channels), built.policy, built.ledger) == (
        ["webhook"], storm.StormPolicy(4, 30.0), ledger)
    # the webhook URL's signature is a secret: masked in what the notifier reports
    webhook_error = RetryableError(f"webhook: timeout (the receiver echoed {SECRET})")
    built.channels["webhook"] = Scripted("webhook", [webhook_error])
    with pytest.raises(RetryableError) as info:
        built.notify(make_plan(sample))
    assert str(info.value) == "webhook: will retry: webhook: timeout (the receiver echoed ***)"


def test_a_held_deployment_is_sampled_by_its_event_id(ledger: Ledger, sample: Sample) -> None:
    # A deployment has no run: its digest names the event instead.
    teams = Scripted("teams")
    n = notifier(ledger, teams, max_messages=1)
    n.notify(make_plan(sample))
    deployed = decide(parse_event(sample("model_deployed")),
                      NotifySettings.from_mapping({"AMLEVENTS_NOTIFY_MODEL_DEPLOYED": "true"}))
    assert isinstance(deployed, NotificationPlan)
    n.notify(deployed)
    state = ledger.get_state(storm_state_key("teams"))
    assert state is not None and state["held"]["deployments to my-sklearn-service"] == {
        "count": 1, "runs": ["831e1650-001e-001b-66ab-eeb76e069631"], "link": deployed.notice.link}
