"""The folder outbox: one .json and one .eml per message; a redelivery overwrites."""

from __future__ import annotations

import email
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handlers.adapters.notify.outbox import OutboxChannel, local_only, summarize
from handlers.events.parse import RunStatusChanged, parse_event
from handlers.notify.decide import build_notice
from handlers.notify.message import notice_message
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.routing import ON_RUN_STATUS


def test_writes_json_and_eml_once_per_message(tmp_path: Path,
                                              sample: Callable[[str], dict[str, Any]]) -> None:
    event = parse_event(sample("run_status_changed"))
    assert isinstance(event, RunStatusChanged)
    message = notice_message(build_notice(event, "https://ml.azure.com"), "abc123.outbox")
    channel = OutboxChannel(str(tmp_path / "outbox"))
    channel.send(message)
    channel.send(message)
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == ["notification-abc123.outbox.eml", "notification-abc123.outbox.json"]
    body = json.loads((tmp_path / "outbox" / files[1]).read_text())
    assert body["summary"]["title"].startswith("Run failed")
    mail = email.message_from_bytes((tmp_path / "outbox" / files[0]).read_bytes())
    assert mail["Subject"].startswith("[amlevents] Run failed")


def test_the_demo_sends_to_the_outbox_only(tmp_path: Path, sample: Callable[[str], dict[str, Any]],
                                           base_env: dict[str, str]) -> None:
    # GIVEN settings that name real channels (the demo must not touch them)
    env = {**base_env, "AMLEVENTS_NOTIFY_TEAMS_URL": "https://prod.logic.azure.com/x?sig=abc",
           "AMLEVENTS_NOTIFY_RULES": '[{"channels": ["teams"]}]'}
    folder = str(tmp_path / "outbox")
    dispatcher = Dispatcher(local_only(env, folder))
    result = dispatcher.dispatch(sample("run_status_changed"), function=ON_RUN_STATUS)
    assert result.outcome is Outcome.DONE, result.detail
    assert set(json.loads(result.detail)["channels"]) == {"outbox"}
    lines = summarize(folder)
    assert lines[0].startswith("notification-") and "Run failed: AutoML_ad912b2d" in lines[0]
    assert lines[1].strip().startswith("https://ml.azure.com/runs/")


def test_local_only_blanks_every_other_channel_and_the_rules_whole() -> None:
    # Blank strings (not None): the result is a settings mapping of strings, and a blank
    # overrides a value the process environment may already hold.
    env = {"AMLEVENTS_NOTIFY_SLACK_URL": "https://hooks.slack.com/x", "OTHER": "kept"}
    assert local_only(env, "/tmp/out") == {
        "OTHER": "kept", "AMLEVENTS_NOTIFY_SMTP_HOST": "", "AMLEVENTS_NOTIFY_ACS_ENDPOINT": "",
        "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING": "", "AMLEVENTS_NOTIFY_TEAMS_URL": "",
        "AMLEVENTS_NOTIFY_SLACK_URL": "", "AMLEVENTS_NOTIFY_WEBHOOK_URL": "",
        "AMLEVENTS_NOTIFY_WEBHOOK_SECRET": "", "AMLEVENTS_NOTIFY_RULES": "",
        "AMLEVENTS_NOTIFY_OUTBOX_DIR": "/tmp/out", "AMLEVENTS_DRY_RUN_NOTIFY": "false"}
