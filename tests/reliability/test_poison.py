"""Poison inputs (issue 12): content problems end once, settings problems name the setting, and
no secret reaches a log, the ledger, an HTTP answer or the outbox.

Every input goes through the app as Event Grid sends it (the local host over HTTP, redelivered
while it answers 5xx), with every notification channel live against real local receivers:
aiosmtpd, the fake ACS over HTTPS, and HTTP receivers standing in for Teams, Slack and a webhook.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from handlers.ledger.ledger import LedgerEntry
from handlers.outcome import TERMINAL, Outcome
from handlers.runtime.routing import ON_MODEL_REGISTERED, ON_RUN_STATUS
from tests.conftest import load_sample
from tests.fakes.acs import ACCESS_KEY, FakeAcs, start_fake_acs
from tests.fakes.notify import (
    SECRET_PATH,
    HttpReceiver,
    SmtpSink,
    http_receiver,
    live_channels_env,
    smtp_sink,
)
from tests.reliability.conftest import Figures, Host, ledger_rows
from tests.reliability.workers import dispatch_once

HOST_KEY = "poison-host-key-SECRET-5a6b7c"
WEBHOOK_SECRET = "poison-hmac-SECRET-8d9e0f"
TEAMS_SIG = "TEAMSsigSECRET0123456789"
BAD_ACS_KEY = "ACSkeySECRETnotbase64"
ATTEMPTS = 3  # deliveries of one input (Event Grid would go on for 24 hours)


@dataclass(frozen=True)
class Poison:
    """One poison input: what is sent, with which settings, and what must come of it."""

    row: str  # the row, or "+" for one added here
    name: str
    function: str
    events: tuple[dict[str, Any], ...]
    settings: tuple[tuple[str, str], ...] = ()  # overrides of the live settings
    receivers: tuple[tuple[str, str, Any], ...] = ()  # (receiver, attribute, value)
    setting: str = ""  # a settings problem: retried (kept), and named in the answer
    outcome: Outcome = Outcome.DONE
    detail: str = ""  # in every row's ledger detail
    delivered: int = 5  # channels that get the message (of smtp, acs, teams, slack, webhook)


def _run(key: str, run_id: str = "", **data: Any) -> dict[str, Any]:
    raw = load_sample("run_status_changed")
    raw["id"] = f"poison-run-{key}"
    raw["data"].update(runStatus="Failed", runId=run_id or f"run-{key}", **data)
    return raw


def _model(key: str, **tags: str) -> dict[str, Any]:
    raw = load_sample("model_registered")
    raw["id"] = f"poison-model-{key}"
    raw["data"].update(ModelVersion=7, ModelTags={"deploy": "true", **tags})
    return raw


POISONS = [
    # Row 1: digits that str.isdigit() accepts and int() refuses, and more digits than int() takes
    *(Poison("1", f"{tag}={value[:3]}... ({len(value)} chars)", ON_MODEL_REGISTERED,
             (_model(f"{tag}-{len(value)}-{ord(value[0])}", **{tag: value}),),
             outcome=Outcome.REFUSED, detail=f"tag {tag}: must be a whole number", delivered=0)
      for tag in ("deploy_instance_count", "deploy_traffic") for value in ("²", "³", "9" * 5000)),
    Poison("1", "deploy_cpu_cores in Arabic-Indic digits", ON_MODEL_REGISTERED,
           (_model("cpu", deploy_target="aci", deploy_cpu_cores="١.٥"),),
           outcome=Outcome.REFUSED, detail="tag deploy_cpu_cores", delivered=0),
    Poison("+", "a 100 KB tag value and a NUL in a tag name", ON_MODEL_REGISTERED,
           (_model("huge", deploy_endpoint="e" * 100_000, **{"x\x00y": "1"}),),
           outcome=Outcome.REFUSED, detail="tag deploy_endpoint", delivered=0),
    # Row 2: header injection and lone surrogates, which broke the email channel and so all
    Poison("2", "CR/LF in experimentName", ON_RUN_STATUS,
           (_run("crlf", experimentName="exp\r\nBcc: victim@evil.example\r\n\r\nforged"),)),
    Poison("2", "lone surrogate in runId", ON_RUN_STATUS, (_run("surrogate", "r-\ud800"),)),
    Poison("2", "lone surrogates everywhere", ON_RUN_STATUS,
           (_run("s2", experimentName="\udfff", runType="\udbff"),)),
    # Row 7: data shown, never interpreted
    Poison("7", "Slack control sequences", ON_RUN_STATUS,
           (_run("slack", "<!channel>", experimentName="<https://evil.example|click> <@U024BE7LH>"),)),
    Poison("7", "markdown links for Teams", ON_RUN_STATUS,
           (_run("teams", "[x](https://evil.example)", experimentName="**urgent** [y](https://e.x)"),)),
    Poison("7", "HTML for the email body", ON_RUN_STATUS,
           (_run("html", experimentName='<a href="https://evil.example">x</a><script>1</script>'),)),
    Poison("+", "Adaptive Cards date function", ON_RUN_STATUS,
           (_run("date", experimentName="{{DATE(2017-02-14T06:00:00Z, SHORT)}}"),)),
    Poison("+", "terminal escapes, NUL, BEL", ON_RUN_STATUS,
           (_run("esc", experimentName="\x1b[2J\x1b]0;pwned\x07\x00"),)),
    Poison("+", "bidi override", ON_RUN_STATUS,
           (_run("bidi", experimentName="invoice\u202egpj.exe"),)),
    Poison("+", "a 100,000-character experiment", ON_RUN_STATUS,
           (_run("long", experimentName="x" * 100_000),)),
    Poison("+", "percent-encoded CR/LF and a path in the run id", ON_RUN_STATUS,
           (_run("encoded", "../../%0d%0aBcc:%20x@evil.example"),)),
    Poison("+", "astral characters and emoji codes", ON_RUN_STATUS,
           (_run("emoji", "emoji-\U0001f525", experimentName=":fire: \U0001d54f"),)),
    # Row 5: a receiver echoing the URL (and its token) in a 400
    Poison("5", "webhook 400 echoing the URL path", ON_RUN_STATUS, (_run("echo"),),
           receivers=(("webhook", "statuses", [400]), ("webhook", "echo_path", True)),
           outcome=Outcome.FAILED, detail="webhook: HTTP 400", delivered=4),
    Poison("+", "webhook redirecting elsewhere", ON_RUN_STATUS, (_run("redirect"),),
           receivers=(("webhook", "statuses", [302]),
                      ("webhook", "location", "http://127.0.0.1:9/elsewhere")),
           outcome=Outcome.FAILED, detail="webhook: HTTP 302", delivered=4),
    # Row 3: a webhook URL that cannot be sent to (kept for retry: the operator fixes it)
    Poison("3", "Teams URL with a space", ON_RUN_STATUS, (_run("teams-space"),),
           settings=(("AMLEVENTS_NOTIFY_TEAMS_URL", "TEAMS_SPACE"),),
           setting="AMLEVENTS_NOTIFY_TEAMS_URL", outcome=Outcome.RETRY, delivered=0),
    Poison("3", "Slack URL with a line break", ON_RUN_STATUS, (_run("slack-newline"),),
           settings=(("AMLEVENTS_NOTIFY_SLACK_URL", "SLACK_NEWLINE"),),
           setting="AMLEVENTS_NOTIFY_SLACK_URL", outcome=Outcome.RETRY, delivered=0),
    # Row 4: an ACS key that is not base64
    Poison("4", "ACS key not base64", ON_RUN_STATUS, (_run("acs-key"),),
           settings=(("AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING", "ACS_BAD_KEY"),),
           setting="AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING", outcome=Outcome.RETRY, delivered=0),
]


@dataclass
class Sinks:
    """Every channel's receiver."""

    smtp: SmtpSink
    acs: FakeAcs
    http: dict[str, HttpReceiver]

    def env(self) -> dict[str, str]:
        return {**live_channels_env(self.smtp, self.acs, self.http["teams"], self.http["slack"],
                                    self.http["webhook"], webhook_secret=WEBHOOK_SECRET),
                "AMLEVENTS_NOTIFY_STORM_MAX": "1000", "AMLEVENTS_HOST_KEY": HOST_KEY}

    def poisoned(self, value: str) -> str:
        """Settings values that cannot work, each carrying a secret."""
        return {"TEAMS_SPACE": self.http["teams"].url.replace("/paths/", "/pa ths/") +
                f"&sig={TEAMS_SIG}",
                "SLACK_NEWLINE": self.http["slack"].url + f"\n&sig={TEAMS_SIG}",
                "ACS_BAD_KEY": f"endpoint={self.acs.endpoint};accesskey={BAD_ACS_KEY}"}[value]

    def counts(self) -> list[int]:
        return [len(self.smtp.messages), len(self.acs.sent),
                *(len(self.http[name].received) for name in ("teams", "slack", "webhook"))]

    def reset(self) -> None:
        for receiver in self.http.values():
            receiver.statuses, receiver.echo_path, receiver.location = [], False, ""


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Sinks]:
    with ExitStack() as stack:
        yield Sinks(smtp=stack.enter_context(smtp_sink()),
                    acs=stack.enter_context(start_fake_acs(tmp_path)),
                    http={name: stack.enter_context(http_receiver())
                          for name in ("teams", "slack", "webhook")})


@dataclass
class Seen:
    """Everything the app said: HTTP answers, and where the secrets must not be."""

    answers: list[str] = field(default_factory=list)


def test_poison_inputs_end_once_and_leak_nothing(
        start_host: Callable[..., Host], base_env: dict[str, str], sinks: Sinks,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], tmp_path: Path,
        figures: Figures) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' included
    outbox = tmp_path / "outbox"
    live = {**base_env, **sinks.env(), "AMLEVENTS_NOTIFY_OUTBOX_DIR": str(outbox)}
    seen = Seen()
    endless: list[str] = []
    wrong: list[str] = []
    for poison in POISONS:
        # GIVEN the live settings (with this input's poisoned ones) and its receivers' behaviour
        env = {**live, **{k: sinks.poisoned(v) for k, v in poison.settings}}
        sinks.reset()
        for receiver, attribute, value in poison.receivers:
            setattr(sinks.http[receiver], attribute, copy.copy(value))
        host = start_host(env, key=HOST_KEY)
        before = sinks.counts()
        # WHEN it is delivered as Event Grid would: again while the host answers 5xx
        statuses = []
        for _ in range(ATTEMPTS):
            status, reply = host.post(poison.function, list(poison.events))
            statuses.append(status)
            seen.answers.append(json.dumps(reply))
            if status < 500:
                break
        rows = [_row(env, raw) for raw in poison.events]
        delivered = sum(1 for a, b in zip(before, sinks.counts(), strict=True) if b > a)
        # THEN a content problem ends at once (202), recorded with its final outcome; a
        # settings problem is kept (5xx, retry) and its answer names the setting
        if poison.setting:
            ok = statuses[-1] >= 500 and poison.setting in seen.answers[-1]
        else:
            ok = statuses == [202]
            if statuses[-1] >= 500:
                endless.append(f"row {poison.row}: {poison.name}: {seen.answers[-1][:300]}")
        ok = ok and all(r.outcome is poison.outcome and poison.detail in r.detail for r in rows)
        ok = ok and delivered == poison.delivered
        if not ok:
            wrong.append(f"row {poison.row}: {poison.name}: statuses {statuses}, "
                         f"outcomes {[(r.outcome.value, r.detail[:200]) for r in rows]}, "
                         f"delivered on {delivered} channels")
        assert all(r.outcome in TERMINAL for r in rows) or poison.setting
    # AND a redelivery of everything (as after a crash) sends nothing twice
    before = sinks.counts()
    host = start_host(live, key=HOST_KEY)
    for poison in POISONS:
        if not poison.setting:
            host.post(poison.function, list(poison.events))
    assert sinks.counts() == before
    # AND no secret is in a log line, a traceback, stderr, the ledger, an answer or the outbox
    secrets = {"webhook sig": SECRET_PATH.split("sig=")[1], "teams sig": TEAMS_SIG,
               "ACS key": ACCESS_KEY, "bad ACS key": BAD_ACS_KEY, "host key": HOST_KEY,
               "webhook secret": WEBHOOK_SECRET}
    logs = "\n".join(f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records)
    captured = capfd.readouterr()
    places = {"logs": logs + captured.out + captured.err, "ledger": _ledger_text(live),
              "HTTP answers": "\n".join(seen.answers),
              "outbox": "\n".join(p.read_text(errors="replace") for p in outbox.glob("*"))}
    leaks = [f"{what} in {where}" for what, value in secrets.items()
             for where, text in places.items() if value in text]
    assert wrong == [], "\n".join(wrong)
    assert endless == [] and leaks == [], (endless, leaks)
    assert len(list(outbox.glob("notification-*.json"))) >= 10
    figures.record("poison", f"{len(POISONS)} inputs -> {len(endless)} endless retries for "
                             f"content problems, {len(leaks)} secrets in logs/ledger/HTTP "
                             "answers/outbox")


def _row(env: dict[str, str], raw: dict[str, Any]) -> LedgerEntry:
    rows = [r for r in ledger_rows(env) if r.event_id == raw["id"]]
    assert len(rows) == 1, (raw["id"], rows)
    return rows[0]


def _ledger_text(env: dict[str, str]) -> str:
    with sqlite3.connect(env["AMLEVENTS_LEDGER_PATH"]) as db:
        return json.dumps([db.execute(f"SELECT * FROM {table}").fetchall()
                           for table in ("events", "state")], default=_stored_event_text)


def _stored_event_text(value: Any) -> str:
    """The event stored with a row (bytes, maybe compressed) as the text it holds."""
    from handlers.ledger.stored_event import decode_event

    return json.dumps(decode_event(bytes(value)).event) if value else ""


def test_kill_9_after_the_webhook_took_the_message_then_redelivery(
        start_host: Callable[..., Host], base_env: dict[str, str], figures: Figures) -> None:
    # GIVEN a worker that sent the webhook its message and was killed before it heard back
    # (so before the ledger could record that channel as sent)
    raw = _run("kill-9")
    with http_receiver() as webhook:
        webhook.delay_s, webhook.dedupe = 10.0, True
        env = {**base_env, "AMLEVENTS_DRY_RUN_NOTIFY": "false", "AMLEVENTS_NOTIFY_OUTBOX_DIR": "",
               "AMLEVENTS_NOTIFY_WEBHOOK_URL": webhook.url, "AMLEVENTS_CLAIM_TIMEOUT_S": "2"}
        spawn = multiprocessing.get_context("spawn")
        done = spawn.Queue()
        worker = spawn.Process(target=dispatch_once, args=(env, raw, ON_RUN_STATUS, done),
                               daemon=True)
        worker.start()
        deadline = time.monotonic() + 60
        while not webhook.attempts:
            assert worker.is_alive() and time.monotonic() < deadline, "worker never posted"
            time.sleep(0.02)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(timeout=10)
        assert worker.exitcode == -signal.SIGKILL and done.empty()
        # WHEN Event Grid redelivers after the dead worker's claim expired
        webhook.delay_s = 0.0
        time.sleep(2.1)
        host = start_host(env)
        statuses = host.redeliver(ON_RUN_STATUS, [raw], attempts=5, interval_s=1.0)
        (row,) = [r for r in ledger_rows(env) if r.event_id == raw["id"]]
    # THEN the message went out again with the same Idempotency-Key, and the receiver could
    # (and did) drop the repeat: one message, however many times it was sent
    assert statuses[-1] == 202 and row.outcome is Outcome.DONE, (statuses, row.detail)
    assert len(webhook.keys) == 2 and webhook.keys[0] == webhook.keys[1] != ""
    assert len(webhook.received) == 1 and webhook.dropped == 1
    figures.record("poison [kill -9 mid-send]",
                   f"worker SIGKILLed after the webhook took the message -> redelivery "
                   f"{statuses} sent it again with the same Idempotency-Key "
                   f"({webhook.keys[0]}); receiver kept {len(webhook.received)}, "
                   f"dropped {webhook.dropped}")
