"""Replaying recorded events, on every ledger store: exactly once, forced only when asked, quarantine
respected, every replay recorded; in this process or through a host's Event Grid webhook."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from amlevents.cli import RunningHost, build_host
from amlevents.replay import (
    HttpDeliverer,
    LocalDeliverer,
    Replayed,
    Replayer,
    ReplayOptions,
)
from handlers.ledger.ledger import Ledger, ReceivedEvent, event_key
from handlers.ledger.store import open_store
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher

Sample = Callable[[str], dict[str, Any]]
BAD_SETTING = {"AMLEVENTS_CLAIM_TIMEOUT_S": "0"}  # out of range: every event is kept as `retry`


@pytest.fixture
def env(base_env: dict[str, str], backend_env: dict[str, str]) -> dict[str, str]:
    """Good settings over each ledger store in turn."""
    return {**base_env, **backend_env}


@pytest.fixture
def ledger(env: dict[str, str]) -> Iterator[Ledger]:
    opened = Ledger(open_store(env))
    yield opened
    opened.close()


def replay(ledger: Ledger, env: dict[str, str], ref: str, **options: Any) -> list[Replayed]:
    deliverer = LocalDeliverer(env)
    try:
        return Replayer(ledger, deliverer, ReplayOptions(by="ops@test", **options)).replay_rows(
            ledger.find(ref))
    finally:
        deliverer.close()


def settled(ledger: Ledger, sample: dict[str, Any], function: str, outcome: Outcome) -> None:
    """A row for the sample, with its event stored, that ended `outcome`."""
    facts = ReceivedEvent(key=event_key(sample["topic"], sample["eventType"], sample["id"]),
                          event_id=sample["id"], event_type=sample["eventType"],
                          subject=sample["subject"], topic=sample["topic"], function=function,
                          raw=sample, schema="EventGridSchema")
    claim = ledger.claim(facts)
    ledger.finish(claim.entry, outcome, str(outcome), "")


def test_a_retry_from_a_bad_setting_is_replayed_once_after_the_fix(
        env: dict[str, str], ledger: Ledger, sample: Sample) -> None:
    # GIVEN an event kept as `retry` because a setting was invalid
    event = sample("dataset_drift_detected")
    first = Dispatcher({**env, **BAD_SETTING}).dispatch(event, function="on_drift_detected")
    assert first.outcome is Outcome.RETRY
    # WHEN the setting is fixed and the event replayed
    (done,) = replay(ledger, env, event["id"], reason="fixed the claim timeout")
    # THEN it was dispatched again and ended `planned` (dry run), on its second attempt
    assert (done.status, done.before, done.after) == ("replayed", "retry", "planned")
    (row,) = ledger.find(event["id"])
    assert (row.outcome, row.attempts) == (Outcome.PLANNED, 2)
    replays = [item["replay"] for item in row.events() if "replay" in item]
    assert replays == [{"by": "ops@test", "via": "local", "force": False, "was": "retry",
                        "reason": "fixed the claim timeout"}]
    # AND a second replay does nothing, and says why
    (again,) = replay(ledger, env, event["id"])
    assert again.status == "skipped" and "already planned" in again.note
    (row,) = ledger.find(event["id"])
    assert row.attempts == 2 and len([i for i in row.events() if "replay" in i]) == 1


def test_a_failed_event_is_reopened_and_a_settled_one_needs_force(
        env: dict[str, str], ledger: Ledger, sample: Sample) -> None:
    # GIVEN a failed row and a done row, their events stored
    failed, done = sample("run_status_changed"), sample("dataset_drift_detected")
    failed["id"], done["id"] = "failed-1", "done-1"  # the documented samples share one id
    settled(ledger, failed, "on_run_status", Outcome.FAILED)
    settled(ledger, done, "on_drift_detected", Outcome.DONE)
    # WHEN both are replayed without force
    (reopened,) = replay(ledger, env, failed["id"])
    (left,) = replay(ledger, env, done["id"])
    # THEN the failed one acted again (planned, dry run); the done one was left alone
    assert (reopened.status, reopened.after) == ("replayed", "planned")
    assert left.status == "skipped" and "--force" in left.note
    (row,) = ledger.find(done["id"])
    assert (row.outcome, row.attempts) == (Outcome.DONE, 1)
    # AND with force it runs again, and its history says it was forced, by whom
    (forced,) = replay(ledger, env, done["id"], force=True, reason="re-run after the fix")
    assert (forced.status, forced.before, forced.after) == ("replayed", "done", "planned")
    (row,) = ledger.find(done["id"])
    (item,) = [i["replay"] for i in row.events() if "replay" in i]
    assert item["force"] is True and item["was"] == "done" and item["by"] == "ops@test"


def test_a_quarantined_event_is_not_replayed_unless_forced(
        env: dict[str, str], ledger: Ledger, sample: Sample) -> None:
    event = sample("run_status_changed")
    settled(ledger, event, "on_run_status", Outcome.RETRY)
    (row,) = ledger.find(event["id"])
    assert ledger.quarantine(row, by="ops", reason="poison") is not None
    (skipped,) = replay(ledger, env, event["id"])
    assert skipped.status == "skipped" and "quarantined" in skipped.note
    (forced,) = replay(ledger, env, event["id"], force=True)
    assert (forced.status, forced.after) == ("replayed", "planned")


def test_a_dry_run_records_and_delivers_nothing(env: dict[str, str], ledger: Ledger,
                                                sample: Sample) -> None:
    event = sample("run_status_changed")
    settled(ledger, event, "on_run_status", Outcome.FAILED)
    (row,) = ledger.find(event["id"])
    (planned,) = replay(ledger, env, event["id"], dry_run=True)
    assert planned.status == "would replay"
    (after,) = ledger.find(event["id"])
    assert (after.outcome, after.etag, after.history) == (Outcome.FAILED, row.etag, row.history)


def test_a_held_claim_and_a_row_without_its_event_are_left_alone(
        env: dict[str, str], ledger: Ledger, sample: Sample) -> None:
    # GIVEN an event a delivery holds right now, and a row recorded without its event
    event = sample("run_status_changed")
    ledger.claim(ReceivedEvent(key=event_key(event["topic"], event["eventType"], event["id"]),
                               event_id=event["id"], event_type=event["eventType"],
                               subject=event["subject"], topic=event["topic"],
                               function="on_run_status", raw=event))
    bare = sample("dataset_drift_detected") | {"id": "bare-1"}
    ledger.record(ReceivedEvent(key="bare-key", event_id=bare["id"],
                                event_type=bare["eventType"], subject="", topic="",
                                function="on_drift_detected"), Outcome.FAILED, "failed", "")
    # THEN neither is replayed, and each line says why
    (busy,) = replay(ledger, env, event["id"])
    assert busy.status == "skipped" and "another delivery holds the claim" in busy.note
    (bare_line,) = replay(ledger, env, "bare-key")
    assert bare_line.status == "error" and "no event is stored" in bare_line.note
    assert bare_line.unsettled


@pytest.fixture
def host(base_env: dict[str, str], tmp_path: Any) -> Iterator[RunningHost]:
    running = build_host(base_env, bind="127.0.0.1", port=0)
    running.server.start()
    yield running
    running.stop()


def test_replay_through_a_hosts_webhook(host: RunningHost, base_env: dict[str, str],
                                        sample: Sample) -> None:
    # GIVEN the host (the same ledger) and a failed row with its event
    ledger = Ledger(open_store(base_env))
    event = sample("run_status_changed")
    settled(ledger, event, "on_run_status", Outcome.FAILED)
    # WHEN it is replayed through the host's Event Grid URL
    replayer = Replayer(ledger, HttpDeliverer(host.url),
                        ReplayOptions(by="ops@test", via=host.url))
    (line,) = replayer.replay_rows(ledger.find(event["id"]))
    # THEN the host acted on it once, and the row says it was replayed through that URL
    assert (line.status, line.note, line.after) == ("replayed", "HTTP 202", "planned")
    (row,) = ledger.find(event["id"])
    assert [i["replay"]["via"] for i in row.events() if "replay" in i] == [host.url]
    (again,) = replayer.replay_rows(ledger.find(event["id"]))
    assert again.status == "skipped"
    ledger.close()
