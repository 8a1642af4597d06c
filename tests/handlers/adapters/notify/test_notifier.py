"""The notifier through the real Dispatcher: fan-out, redelivery, storm control, secrets."""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest

from handlers.adapters.notify import http as notify_http
from handlers.adapters.notify.notifier import Notifier
from handlers.events.parse import RunStatusChanged, parse_event
from handlers.notify import storm
from handlers.notify.decide import decide
from handlers.notify.handler import flush_digests
from handlers.notify.message import Message
from handlers.notify.plan import NotificationPlan
from handlers.notify.settings import NotifySettings
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.routing import ON_RUN_STATUS
from tests.fakes.acs import ACCESS_KEY, FakeAcs, start_fake_acs
from tests.fakes.clock import Clock
from tests.fakes.notify import HttpReceiver, SmtpSink, http_receiver, live_channels_env, smtp_sink

Sample = Callable[[str], dict[str, Any]]
SMTP_PASSWORD = "smtp-Pa55word-xyz"
WEBHOOK_SECRET = "whsec-0123456789abcdef"
STORM_EVENTS = 10_000


@pytest.fixture
def base_env(base_env: dict[str, str]) -> dict[str, str]:
    """The shared settings without the outbox: each test here names the channels it wants."""
    return {**base_env, "AMLEVENTS_NOTIFY_OUTBOX_DIR": ""}

@dataclass
class Sinks:
    """Every channel's local receiver."""

    smtp: SmtpSink
    acs: FakeAcs
    teams: HttpReceiver
    slack: HttpReceiver
    webhook: HttpReceiver

    def env(self) -> dict[str, str]:
        return live_channels_env(self.smtp, self.acs, self.teams, self.slack, self.webhook,
                                 webhook_secret=WEBHOOK_SECRET)

    def counts(self) -> dict[str, int]:
        return {"smtp": len(self.smtp.messages), "acs": len(self.acs.sent),
                "teams": len(self.teams.received), "slack": len(self.slack.received),
                "webhook": len(self.webhook.received)}


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Sinks]:
    with ExitStack() as stack:
        yield Sinks(smtp=stack.enter_context(smtp_sink()),
                    acs=stack.enter_context(start_fake_acs(tmp_path)),
                    teams=stack.enter_context(http_receiver()),
                    slack=stack.enter_context(http_receiver()),
                    webhook=stack.enter_context(http_receiver()))


def failed_run(sample: Sample, n: int, experiment: str = "sweep-a") -> dict[str, Any]:
    return failed_run_from(sample("run_status_changed"), n, experiment)


def failed_run_from(template: dict[str, Any], n: int, experiment: str) -> dict[str, Any]:
    event = copy.deepcopy(template)
    event["id"] = f"evt-{n}"
    event["data"].update(runId=f"HD_{experiment}_{n}", experimentName=experiment,
                         runStatus="Failed")
    return event


def channel_results(dispatcher: Dispatcher, event_id: str) -> dict[str, str]:
    entry = next(e for e in dispatcher.ledger.entries() if e.event_id == event_id)
    return dict(json.loads(entry.detail)["channels"])


def test_one_event_reaches_every_channel(make_dispatcher: Callable[..., Dispatcher],
                                         sinks: Sinks, sample: Sample) -> None:
    dispatcher = make_dispatcher(**sinks.env())
    result = dispatcher.dispatch(failed_run(sample, 1), function=ON_RUN_STATUS)
    assert result.outcome is Outcome.DONE, result.detail
    assert sinks.counts() == {"smtp": 1, "acs": 1, "teams": 1, "slack": 1, "webhook": 1}
    results = channel_results(dispatcher, "evt-1")
    assert sorted(results) == ["acs", "slack", "smtp", "teams", "webhook"]
    assert all(text.startswith("sent: ") for text in results.values()), results
    assert sinks.teams.payloads()[0]["attachments"][0]["contentType"] == \
        "application/vnd.microsoft.card.adaptive"


def test_500_then_200_on_redelivery_sends_exactly_once_per_channel(
        make_dispatcher: Callable[..., Dispatcher], sinks: Sinks, sample: Sample) -> None:
    # GIVEN Teams answers 500 once, then 200
    sinks.teams.statuses = [500]
    dispatcher = make_dispatcher(**sinks.env())
    event = failed_run(sample, 7)
    # WHEN the event is delivered: Teams fails transiently, the others succeed
    first = dispatcher.dispatch(event, function=ON_RUN_STATUS)
    assert first.outcome is Outcome.RETRY and first.should_retry
    assert "teams: will retry: teams: HTTP 500" in first.detail
    assert sinks.counts() == {"smtp": 1, "acs": 1, "teams": 0, "slack": 1, "webhook": 1}
    # AND Event Grid redelivers it
    second = dispatcher.dispatch(event, function=ON_RUN_STATUS)
    # THEN exactly one message arrived on each channel, Teams after two attempts
    assert second.outcome is Outcome.DONE, second.detail
    assert sinks.counts() == {"smtp": 1, "acs": 1, "teams": 1, "slack": 1, "webhook": 1}
    assert sinks.teams.attempts == 2
    results = channel_results(dispatcher, "evt-7")
    assert results["teams"].startswith("sent: HTTP 200")
    assert results["slack"].endswith("(earlier delivery)")
    # AND a third delivery is a duplicate that sends nothing
    assert dispatcher.dispatch(event, function=ON_RUN_STATUS).duplicate
    assert sinks.counts() == {"smtp": 1, "acs": 1, "teams": 1, "slack": 1, "webhook": 1}


def test_a_permanent_failure_does_not_block_the_others(
        make_dispatcher: Callable[..., Dispatcher], sinks: Sinks, sample: Sample) -> None:
    sinks.slack.statuses = [404]
    dispatcher = make_dispatcher(**sinks.env())
    result = dispatcher.dispatch(failed_run(sample, 3), function=ON_RUN_STATUS)
    assert result.outcome is Outcome.FAILED
    results = channel_results(dispatcher, "evt-3")
    assert results["slack"].startswith("failed: slack: HTTP 404")
    assert sinks.counts() == {"smtp": 1, "acs": 1, "teams": 1, "slack": 0, "webhook": 1}


def test_secrets_never_reach_logs_ledger_or_state(
        make_dispatcher: Callable[..., Dispatcher], sinks: Sinks, sample: Sample,
        caplog: pytest.LogCaptureFixture, base_env: dict[str, str]) -> None:
    caplog.set_level(logging.DEBUG)
    env = {**sinks.env(), "AMLEVENTS_NOTIFY_SMTP_USERNAME": "mailer",
           "AMLEVENTS_NOTIFY_SMTP_PASSWORD": SMTP_PASSWORD}
    with smtp_sink(user="mailer", password="other-password") as wrong_smtp:
        env["AMLEVENTS_NOTIFY_SMTP_PORT"] = str(wrong_smtp.port)
        sinks.teams.statuses = [500]
        sinks.webhook.statuses = [403]
        dispatcher = make_dispatcher(**env)
        for _ in range(2):
            dispatcher.dispatch(failed_run(sample, 9), function=ON_RUN_STATUS)
    secrets = [sinks.teams.url, sinks.slack.url, sinks.webhook.url, "TOPSECRETsig123456",
               SMTP_PASSWORD, WEBHOOK_SECRET, ACCESS_KEY, sinks.acs.connection_string]
    with sqlite3.connect(base_env["AMLEVENTS_LEDGER_PATH"]) as db:
        stored = json.dumps(db.execute("SELECT * FROM events").fetchall()) + json.dumps(
            db.execute("SELECT * FROM state").fetchall())
    assert "smtp" in stored and "notify:event:" in stored  # the rows are there ...
    for secret in secrets:  # ... without a secret
        assert secret not in caplog.text
        assert secret not in stored


def test_storm_of_10000_failed_runs(make_dispatcher: Callable[..., Dispatcher],
                                    sample: Sample) -> None:
    # GIVEN two channels limited to 5 messages per 60 s, and 10,000 failed child runs
    # arriving over ~500 s of (test) time, in two experiments
    clock = Clock()
    arrivals: dict[str, list[tuple[float, Any]]] = {"webhook": [], "slack": []}
    with http_receiver() as webhook, http_receiver() as slack:
        receivers = {"webhook": webhook, "slack": slack}

        def collect() -> None:  # stamp each new arrival with the (test) time it came
            for name, receiver in receivers.items():
                for request in receiver.received[len(arrivals[name]):]:
                    arrivals[name].append((clock.now, request.json()))

        env = {"AMLEVENTS_DRY_RUN_NOTIFY": "false", "AMLEVENTS_NOTIFY_WEBHOOK_URL": webhook.url,
               "AMLEVENTS_NOTIFY_SLACK_URL": slack.url, "AMLEVENTS_NOTIFY_STORM_MAX": "5",
               "AMLEVENTS_NOTIFY_STORM_WINDOW_S": "60"}
        dispatcher = Dispatcher({**make_dispatcher().env, **env}, clock=clock)
        template = sample("run_status_changed")
        for n in range(STORM_EVENTS):
            event = failed_run_from(template, n, "sweep-a" if n % 4 else "sweep-b")
            result = dispatcher.dispatch(event, function=ON_RUN_STATUS)
            assert result.outcome is Outcome.DONE, result.detail
            collect()
            clock.now += 0.05
        # WHEN the last window closes and the timer flushes
        clock.now += 61
        flushed = flush_digests(dispatcher.context())
        collect()
    assert len(flushed) == 2 and flush_digests(dispatcher.context()) == []
    # THEN every event is in the ledger, marked sent or digested on each channel
    entries = dispatcher.ledger.entries()
    assert len(entries) == STORM_EVENTS
    verdicts = {"webhook": {"sent": 0, "digested": 0}, "slack": {"sent": 0, "digested": 0}}
    for entry in entries:
        for name, text in json.loads(entry.detail)["channels"].items():
            verdicts[name][text.split(":")[0]] += 1
    assert verdicts["webhook"] == verdicts["slack"]
    # AND at most 5 messages (digests included) per channel per window
    assert len(arrivals["webhook"]) < 100
    payloads = [p for _, p in arrivals["webhook"]]
    notifications = [p for p in payloads if p["kind"] == "notification"]
    digests = [p["digest"] for p in payloads if p["kind"] == "digest"]
    assert len(notifications) == verdicts["webhook"]["sent"]
    window_start, in_window = -1e18, 0
    for at, _ in arrivals["webhook"]:
        if at >= window_start + 60:
            window_start, in_window = at, 0
        in_window += 1
        assert in_window <= 5
    # AND the digest counts add up: nothing dropped
    assert sum(d["total"] for d in digests) == verdicts["webhook"]["digested"]
    assert verdicts["webhook"]["sent"] + verdicts["webhook"]["digested"] == STORM_EVENTS
    per_experiment = {"sweep-a": 0, "sweep-b": 0}
    for digest in digests:
        for group in digest["groups"]:
            per_experiment[group["label"].rsplit(" ", 1)[-1]] += group["count"]
    sent_per_experiment = {"sweep-a": 0, "sweep-b": 0}
    for p in notifications:
        sent_per_experiment[p["summary"]["facts"]["Experiment"]] += 1
    assert {k: per_experiment[k] + sent_per_experiment[k] for k in per_experiment} == \
        {"sweep-a": STORM_EVENTS * 3 // 4, "sweep-b": STORM_EVENTS // 4}
    assert len(arrivals["slack"]) == len(arrivals["webhook"])


def storm_dispatcher(make_dispatcher: Callable[..., Dispatcher], clock: Clock,
                     **env: str) -> Dispatcher:
    settings = {"AMLEVENTS_DRY_RUN_NOTIFY": "false", "AMLEVENTS_NOTIFY_STORM_MAX": "3",
                "AMLEVENTS_NOTIFY_STORM_WINDOW_S": "60", **env}
    return Dispatcher({**make_dispatcher().env, **settings}, clock=clock)


def test_the_digest_goes_out_first_with_the_next_message_after_the_window(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    clock = Clock()
    with http_receiver() as webhook:
        dispatcher = storm_dispatcher(make_dispatcher, clock,
                                      AMLEVENTS_NOTIFY_WEBHOOK_URL=webhook.url)
        # GIVEN 3 sent and 357 held in one window
        for n in range(360):
            dispatcher.dispatch(failed_run(sample, n, "hd-sweep"), function=ON_RUN_STATUS)
        assert len(webhook.received) == 3
        assert channel_results(dispatcher, "evt-359")["webhook"].startswith(
            "digested: held #357 of the storm window opened")
        # WHEN the next failure comes after the window closed
        clock.now += 60
        dispatcher.dispatch(failed_run(sample, 1000, "other"), function=ON_RUN_STATUS)
    # THEN the digest came first, then the message itself
    kinds = [p["kind"] for p in webhook.payloads()]
    assert kinds == ["notification"] * 3 + ["digest", "notification"]
    digest = webhook.payloads()[3]["digest"]
    assert digest["total"] == 357
    (group,) = digest["groups"]
    assert group["label"] == "failed runs in experiment hd-sweep"
    assert group["sampleRunIds"] == ["HD_hd-sweep_3", "HD_hd-sweep_4", "HD_hd-sweep_5"]
    assert group["link"].startswith("https://ml.azure.com/runs/HD_hd-sweep_3?wsid=")
    assert "digest of 357 sent first" in channel_results(dispatcher, "evt-1000")["webhook"]


def test_the_timer_flushes_a_closed_window_once(make_dispatcher: Callable[..., Dispatcher],
                                               sample: Sample, tmp_path: Path) -> None:
    clock = Clock()
    outbox = tmp_path / "outbox"
    dispatcher = storm_dispatcher(make_dispatcher, clock, AMLEVENTS_NOTIFY_OUTBOX_DIR=str(outbox))
    for n in range(5):
        dispatcher.dispatch(failed_run(sample, n), function=ON_RUN_STATUS)
    assert flush_digests(dispatcher.context()) == []  # window still open
    clock.now += 60
    assert flush_digests(dispatcher.context()) == ["outbox: (digest of 2 sent first)"]
    assert flush_digests(dispatcher.context()) == []
    digests = sorted(outbox.glob("digest-*.json"))
    assert len(digests) == 1 and len(list(outbox.glob("notification-*.json"))) == 3
    assert "and 2 more failed runs in experiment sweep-a" in \
        (outbox / digests[0].name.replace(".json", ".eml")).read_text()


def test_a_digest_that_fails_is_kept_and_sent_later(make_dispatcher: Callable[..., Dispatcher],
                                                    sample: Sample) -> None:
    clock = Clock()
    with http_receiver() as webhook:
        dispatcher = storm_dispatcher(make_dispatcher, clock,
                                      AMLEVENTS_NOTIFY_WEBHOOK_URL=webhook.url)
        for n in range(4):
            dispatcher.dispatch(failed_run(sample, n), function=ON_RUN_STATUS)
        clock.now += 60
        webhook.statuses = [503]  # the digest fails once
        result = dispatcher.dispatch(failed_run(sample, 10), function=ON_RUN_STATUS)
        assert result.outcome is Outcome.DONE
        assert "digest of 1 kept for later" in channel_results(dispatcher, "evt-10")["webhook"]
        assert flush_digests(dispatcher.context()) == [
            "webhook: (digest of 1 sent first)"]
    assert [p["kind"] for p in webhook.payloads()] == ["notification"] * 4 + ["digest"]


def test_dry_run_sends_nothing(make_dispatcher: Callable[..., Dispatcher], sinks: Sinks,
                               sample: Sample) -> None:
    env = {**sinks.env(), "AMLEVENTS_DRY_RUN_NOTIFY": "true"}
    dispatcher = make_dispatcher(**env)
    result = dispatcher.dispatch(failed_run(sample, 1), function=ON_RUN_STATUS)
    assert result.outcome is Outcome.PLANNED
    assert json.loads(result.detail)["channels"] == "all"
    assert sinks.counts() == {"smtp": 0, "acs": 0, "teams": 0, "slack": 0, "webhook": 0}
    assert flush_digests(dispatcher.context()) == []


def test_a_rule_picks_the_channels(make_dispatcher: Callable[..., Dispatcher], sinks: Sinks,
                                   sample: Sample) -> None:
    rules = [{"name": "sweeps", "experiment": "hd-*", "channels": ["slack"]},
             {"name": "rest", "channels": ["smtp", "teams"]}]
    dispatcher = make_dispatcher(**sinks.env(), AMLEVENTS_NOTIFY_RULES=json.dumps(rules))
    dispatcher.dispatch(failed_run(sample, 1, "hd-sweep"), function=ON_RUN_STATUS)
    assert sinks.counts() == {"smtp": 0, "acs": 0, "teams": 0, "slack": 1, "webhook": 0}
    dispatcher.dispatch(failed_run(sample, 2, "nightly"), function=ON_RUN_STATUS)
    assert sinks.counts() == {"smtp": 1, "acs": 0, "teams": 1, "slack": 1, "webhook": 0}


def test_no_channel_configured_names_the_settings(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_DRY_RUN_NOTIFY="false")
    result = dispatcher.dispatch(failed_run(sample, 1), function=ON_RUN_STATUS)
    # a bad setting is the operator's to fix: the dispatcher keeps the event (not `done`)
    assert result.outcome is not Outcome.DONE and result.detail.startswith("SettingError")
    assert "no notification channel is configured" in result.detail
    assert "AMLEVENTS_NOTIFY_SMTP_HOST" in result.detail


def test_a_rule_naming_an_unconfigured_channel_names_the_rule(
        make_dispatcher: Callable[..., Dispatcher], tmp_path: Path, sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_DRY_RUN_NOTIFY="false",
                                 AMLEVENTS_NOTIFY_OUTBOX_DIR=str(tmp_path / "o"),
                                 AMLEVENTS_NOTIFY_RULES='[{"name": "x", "channels": ["teams"]}]')
    result = dispatcher.dispatch(failed_run(sample, 1), function=ON_RUN_STATUS)
    assert result.outcome is not Outcome.DONE and not list(tmp_path.glob("o/*"))
    assert "AMLEVENTS_NOTIFY_RULES: x: channel(s) teams are not configured" in result.detail


def test_racing_instances_share_one_storm_budget(make_dispatcher: Callable[..., Dispatcher],
                                                 sample: Sample) -> None:
    # GIVEN 8 workers (instances) delivering 400 failures at once, 3 messages allowed
    clock = Clock()
    with http_receiver() as webhook:
        dispatcher = storm_dispatcher(make_dispatcher, clock,
                                      AMLEVENTS_NOTIFY_WEBHOOK_URL=webhook.url)
        template = sample("run_status_changed")

        def worker(first: int) -> None:
            for n in range(first, 400, 8):
                result = dispatcher.dispatch(failed_run_from(template, n, "race"),
                                             function=ON_RUN_STATUS)
                assert result.outcome is Outcome.DONE, result.detail

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clock.now += 60
        flush_digests(dispatcher.context())
    # THEN exactly 3 messages went out, and the digest stands for the other 397
    kinds = [p["kind"] for p in webhook.payloads()]
    assert kinds == ["notification"] * 3 + ["digest"]
    assert webhook.payloads()[3]["digest"]["total"] == 397


# --- issue 12: every failure classified, every channel isolated, stable ids ---------------------

class CrashingChannel:
    """A channel whose library fails in a way nobody classified (a bug, a surprise)."""

    name = "crashing"

    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: Message) -> str:
        self.calls += 1
        raise UnicodeEncodeError("ascii", message.title, 0, 1, "ordinal not in range(128)")


def test_a_channel_raising_an_unexpected_error_does_not_stop_the_others(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample, tmp_path: Path) -> None:
    # GIVEN a channel that raises an exception of no known kind, before a real webhook
    with http_receiver() as webhook:
        dispatcher = make_dispatcher()
        crashing = CrashingChannel()
        notifier = Notifier({"crashing": crashing, "webhook": notify_http.webhook(
            webhook.url, secret="", timeout_s=5)}, dispatcher.ledger, storm.StormPolicy(10, 60))
        event = parse_event(failed_run(sample, 1))
        assert isinstance(event, RunStatusChanged)
        plan = decide(event, NotifySettings.from_mapping({}))
        assert isinstance(plan, NotificationPlan)
        # WHEN it notifies
        result = notifier.notify(plan)
    # THEN the webhook was sent, the crash is a recorded (permanent) failure of its channel only
    assert len(webhook.received) == 1 and crashing.calls == 1
    assert result.outcome is Outcome.FAILED
    channels = json.loads(result.detail)["channels"]
    assert channels["webhook"].startswith("sent: HTTP 200")
    assert channels["crashing"].startswith("failed: UnicodeEncodeError")


def test_an_unexpected_error_in_a_handler_is_failed_once_not_retried_forever(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample, tmp_path: Path) -> None:
    # GIVEN storm-control state that cannot be read (written by a future version, say)
    dispatcher = make_dispatcher(AMLEVENTS_DRY_RUN_NOTIFY="false",
                                 AMLEVENTS_NOTIFY_OUTBOX_DIR=str(tmp_path / "o"))
    dispatcher.ledger.update_state("notify:storm:outbox", lambda _: {"window_start": "soon"})
    # WHEN an event comes, twice (Event Grid would redeliver a retry for 24 hours)
    first = dispatcher.dispatch(failed_run(sample, 1), function=ON_RUN_STATUS)
    second = dispatcher.dispatch(failed_run(sample, 1), function=ON_RUN_STATUS)
    # THEN it is a permanent failure with its message, recorded once; the trigger does not raise
    assert first.outcome is Outcome.FAILED and not first.should_retry
    assert first.detail.startswith("ValueError: could not convert string to float")
    assert second.duplicate and second.outcome is Outcome.FAILED


def test_poison_text_in_event_data_reaches_every_channel(
        make_dispatcher: Callable[..., Dispatcher], sinks: Sinks, sample: Sample) -> None:
    # GIVEN CR/LF (header injection), a lone surrogate, mentions, markdown links, an ESC sequence
    event = failed_run(sample, 5)
    event["data"].update(experimentName="exp\r\nBcc: victim@evil.example <!channel>",
                         runId="run-\ud800-[x](https://evil.example)\x1b[2J")
    dispatcher = make_dispatcher(**sinks.env())
    # WHEN it is delivered
    result = dispatcher.dispatch(event, function=ON_RUN_STATUS)
    # THEN every channel got it, once (it used to be a 500 and a retry forever, no channel sent)
    assert result.outcome is Outcome.DONE, result.detail
    assert sinks.counts() == {"smtp": 1, "acs": 1, "teams": 1, "slack": 1, "webhook": 1}
    (mail,) = sinks.smtp.messages
    assert mail["Bcc"] is None and "\ufffd" in str(make_header(decode_header(mail["Subject"])))
    assert "<!channel>" not in sinks.slack.payloads()[0]["text"]
    assert sinks.webhook.payloads()[0]["event"]["data"]["runId"].startswith("run-\ufffd-[x]")


def test_a_redelivery_sends_the_same_idempotency_key(
        make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    # GIVEN a receiver that takes the message but answers after our timeout (as if we had been
    # killed after sending): the sender cannot know it arrived
    with http_receiver() as webhook:
        webhook.delay_s, webhook.dedupe = 1.5, True
        dispatcher = make_dispatcher(AMLEVENTS_DRY_RUN_NOTIFY="false",
                                     AMLEVENTS_NOTIFY_OUTBOX_DIR="",
                                     AMLEVENTS_NOTIFY_WEBHOOK_URL=webhook.url,
                                     AMLEVENTS_NOTIFY_TIMEOUT_S="0.5")
        first = dispatcher.dispatch(failed_run(sample, 8), function=ON_RUN_STATUS)
        assert first.outcome is Outcome.RETRY, first.detail
        # WHEN Event Grid redelivers and the receiver is quick again
        webhook.delay_s = 0.0
        second = dispatcher.dispatch(failed_run(sample, 8), function=ON_RUN_STATUS)
    # THEN both POSTs carried the same key, so the receiver dropped the repeat
    assert second.outcome is Outcome.DONE, second.detail
    assert len(webhook.keys) == 2 and webhook.keys[0] == webhook.keys[1]
    assert len(webhook.received) == 1 and webhook.dropped == 1


def test_acs_answer_lost_then_redelivery_sends_one_email(
        make_dispatcher: Callable[..., Dispatcher], sinks: Sinks, sample: Sample) -> None:
    # GIVEN ACS accepts the email but its answer is lost (the connection drops)
    env = {name: value for name, value in sinks.env().items() if "ACS" in name or
           name in ("AMLEVENTS_DRY_RUN_NOTIFY", "AMLEVENTS_NOTIFY_CA_FILE")}
    dispatcher = make_dispatcher(**env)
    sinks.acs.drop_responses = 1
    first = dispatcher.dispatch(failed_run(sample, 4), function=ON_RUN_STATUS)
    assert first.outcome is Outcome.RETRY, first.detail
    # WHEN Event Grid redelivers (another instance could: the first-sent time is in the ledger)
    second = Dispatcher(dispatcher.env).dispatch(failed_run(sample, 4), function=ON_RUN_STATUS)
    # THEN ACS recognized the repeat: one email
    assert second.outcome is Outcome.DONE, second.detail
    assert len(sinks.acs.sent) == 1 and sinks.acs.repeats_answered == 1
