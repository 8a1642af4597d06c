"""Operating through the `amlevents` console script, as an operator runs it: serve's line per event,
ledger filters, show, replay through the local host, quarantine, prune; control characters escaped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from amlevents.cli import parse_when, printable
from handlers.ledger.ledger import Ledger, ReceivedEvent, event_key
from handlers.ledger.sqlite import SqliteLedgerStore
from handlers.outcome import Outcome
from tests.conftest import load_sample

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "events"
CLI = [sys.executable, "-m", "amlevents.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLEVENTS_")}
    return {**env, **settings}


def run_cli(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, env=clean_env(**settings), capture_output=True,
                          text=True, timeout=120)


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]

    def stop(self) -> str:
        """Stop the host; what it printed."""
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=20)
        return out


def serve(cwd: Path, *flags: str, **settings: str) -> Served:
    port = free_port()
    process = subprocess.Popen([*CLI, "serve", "--port", str(port), *flags], cwd=cwd,
                               env=clean_env(**settings), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2):
                return Served(url, process)
        except OSError as exc:
            # 503 (a setting invalid) still means the host is up
            if getattr(exc, "code", None) == 503:
                return Served(url, process)
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(process.communicate()[1]) from None
            time.sleep(0.1)


@pytest.fixture
def hosts() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for host in started:
        if host.process.poll() is None:
            host.process.kill()
            host.process.communicate(timeout=10)


def test_a_retry_from_a_bad_setting_is_replayed_through_the_host_once(
        tmp_path: Path, hosts: list[Served]) -> None:
    # GIVEN the host running with an invalid setting: the failed run's event is kept as `retry`
    bad = serve(tmp_path, AMLEVENTS_CLAIM_TIMEOUT_S="0")
    hosts.append(bad)
    sent = run_cli("send", str(SAMPLES / "run_status_changed.json"), "--url", bad.url,
                   cwd=tmp_path)
    assert "HTTP 500" in sent.stdout
    printed = bad.stop()
    # (serve printed one line for the event: time, type, subject, function, outcome)
    event = load_sample("run_status_changed")
    assert f"RunStatusChanged  {event['subject']}  on_run_status  retry" in printed
    # WHEN the setting is fixed (the host restarted) and the event replayed through it
    good = serve(tmp_path, "--verbose")
    hosts.append(good)
    first = run_cli("replay", event["id"], "--url", good.url, "--reason", "fixed", cwd=tmp_path)
    second = run_cli("replay", event["id"], "--url", good.url, cwd=tmp_path)
    printed = good.stop()
    # THEN it ended planned, once; the second replay did nothing and said why
    assert first.returncode == 0, first.stdout + first.stderr
    assert "replayed: " in first.stdout and "retry -> planned (HTTP 202)" in first.stdout
    assert second.returncode == 0 and "skipped: " in second.stdout
    assert "already planned: nothing done again" in second.stdout
    assert printed.count("on_run_status  planned") == 1  # --verbose: and what was planned
    assert "notify: Run failed" in printed
    shown = json.loads(run_cli("show", event["id"], "--json", cwd=tmp_path).stdout)
    assert (shown["outcome"], shown["attempts"]) == ("planned", 2)
    assert [h["replay"]["reason"] for h in shown["history"] if "replay" in h] == ["fixed"]
    assert shown["event"]["data"]["runStatus"] == "failed"


def ledger_file(tmp_path: Path, rows: list[tuple[str, Outcome, float, str]]) -> Path:
    """A SQLite ledger with rows (id, outcome, received epoch, subject), events stored."""
    path = tmp_path / "ops.sqlite3"
    now = [0.0]
    ledger = Ledger(SqliteLedgerStore(str(path)), clock=lambda: now[0])
    for event_id, outcome, at, subject in rows:
        now[0] = at
        raw = load_sample("run_status_changed") | {"id": event_id, "subject": subject}
        facts = ReceivedEvent(key=event_key(raw["topic"], raw["eventType"], event_id),
                              event_id=event_id, event_type=raw["eventType"], subject=subject,
                              topic=raw["topic"], function="on_run_status", raw=raw,
                              schema="EventGridSchema")
        claim = ledger.claim(facts)
        ledger.finish(claim.entry, outcome, f"{outcome.value} action", "")
    ledger.close()
    return path


def test_ledger_failed_since_1h_lists_exactly_the_failed_ones(tmp_path: Path) -> None:
    now = time.time()
    path = ledger_file(tmp_path, [
        ("old-failed", Outcome.FAILED, now - 3 * 3600, "experiments/a/runs/1"),
        ("new-failed", Outcome.FAILED, now - 600, "experiments/a/runs/2"),
        ("new-done", Outcome.DONE, now - 300, "experiments/a/runs/3"),
        ("newer-failed", Outcome.FAILED, now - 60, "experiments/b/runs/4")])
    listed = run_cli("ledger", "--outcome", "failed", "--since", "1h", "--json",
                     "--ledger-file", str(path), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [
        "new-failed", "newer-failed"]
    by_subject = run_cli("ledger", "--subject", "experiments/a/*", "--type", "RunStatusChanged",
                         "--limit", "2", "--ledger-file", str(path), cwd=tmp_path)
    assert "2 row(s)" in by_subject.stdout and "failed action" in by_subject.stdout
    wrong = run_cli("ledger", "--outcome", "broken", "--ledger-file", str(path), cwd=tmp_path)
    assert wrong.returncode == 2 and "--outcome 'broken': one of done" in wrong.stderr
    when = run_cli("ledger", "--since", "yesterday", "--ledger-file", str(path), cwd=tmp_path)
    assert when.returncode == 2 and "neither a duration" in when.stderr


def test_control_characters_in_events_are_shown_escaped(tmp_path: Path) -> None:
    # GIVEN an event whose subject carries an ANSI escape and a bidi override
    subject = "experiments/\x1b[2J\x1b[31mred/runs/\u202eevil\x9b"
    path = ledger_file(tmp_path, [("ansi-1", Outcome.FAILED, time.time(), subject)])
    for args in (("show", "ansi-1"), ("ledger",), ("replay", "ansi-1", "--dry-run")):
        result = run_cli(*args, "--ledger-file", str(path), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        # THEN no control character reaches the terminal; each is shown as an escape
        printed = result.stdout + result.stderr
        assert not any(ch in printed for ch in "\x1b\u202e\x9b"), args
    shown = run_cli("show", "ansi-1", "--ledger-file", str(path), cwd=tmp_path).stdout
    assert "\\x1b[2J\\x1b[31mred/runs/\\u202eevil\\x9b" in shown
    assert printable("tab\there\n") == "tab\\x09here\\x0a"


def test_quarantine_then_replay_leaves_it_alone_and_prune_keeps_recent_rows(
        tmp_path: Path) -> None:
    day = 86400.0
    now = time.time()
    path = ledger_file(tmp_path, [("poison", Outcome.RETRY, now - 60, "experiments/p/runs/1"),
                                  ("ancient", Outcome.DONE, now - 120 * day, "experiments/o/1")])
    quarantined = run_cli("ledger", "--ledger-file", str(path), "quarantine", "poison",
                          "--reason", "crashes the SDK", "--by", "ops", cwd=tmp_path)
    assert quarantined.returncode == 0 and "(was retry): quarantined" in quarantined.stdout
    replayed = run_cli("replay", "--outcome", "failed,retry", "--ledger-file", str(path),
                       cwd=tmp_path)
    assert "skipped: poison" in replayed.stdout and "quarantined" in replayed.stdout
    # prune: refuses less than the minimum; dry run counts; then deletes only the old row
    too_soon = run_cli("ledger", "--ledger-file", str(path), "prune", "--older-than", "12h",
                       cwd=tmp_path)
    assert too_soon.returncode == 2 and "at least 2d" in too_soon.stderr
    counted = run_cli("ledger", "--ledger-file", str(path), "prune", "--dry-run", cwd=tmp_path)
    assert "would prune 1 row(s)" in counted.stdout and \
        "AMLEVENTS_LEDGER_RETENTION_DAYS=90" in counted.stdout
    pruned = run_cli("ledger", "--ledger-file", str(path), "prune", "--older-than", "30d",
                     cwd=tmp_path)
    assert pruned.returncode == 0 and "pruned 1 row(s)" in pruned.stdout
    left = run_cli("ledger", "--json", "--ledger-file", str(path), cwd=tmp_path).stdout
    assert [json.loads(line)["id"] for line in left.splitlines()] == ["poison"]


def test_replay_needs_a_selection_and_serve_quiet_prints_no_event_lines(
        tmp_path: Path, hosts: list[Served]) -> None:
    nothing = run_cli("replay", cwd=tmp_path)
    assert nothing.returncode == 2 and "needs event ids, or --outcome" in nothing.stderr
    quiet = serve(tmp_path, "--quiet")
    hosts.append(quiet)
    run_cli("send", str(SAMPLES / "dataset_drift_detected.json"), "--url", quiet.url,
            cwd=tmp_path)
    printed = quiet.stop()
    assert "DatasetDriftDetected" not in printed and "amlevents host on" in printed


def test_parse_when_takes_durations_and_iso_times() -> None:
    from handlers.ledger.ledger import utc_iso

    assert parse_when("2h", now=10_000.0) == utc_iso(10_000.0 - 7200)
    assert parse_when("2024-05-01") == "2024-05-01T00:00:00.000+00:00"
    assert parse_when("2024-05-01T12:00Z") == "2024-05-01T12:00:00.000+00:00"
    assert parse_when("2024-05-01T14:00+02:00") == "2024-05-01T12:00:00.000+00:00"


def test_serve_lines_escape_what_the_event_carries() -> None:
    import io

    from amlevents.cli import EventPrinter
    from handlers.runtime.telemetry import EventSeen

    out = io.StringIO()
    seen = EventSeen(at=0.0, function="on_run_status", event_id="id\x1b]0;x\x07",
                     event_type="Microsoft.MachineLearningServices.RunStatusChanged",
                     subject="experiments/\x1b[31mred", topic="/t", outcome=Outcome.PLANNED,
                     action="notify \u202eevil", detail="line1\nline2", duplicate=True,
                     duration_s=0.012)
    EventPrinter(out=out)(seen)
    EventPrinter(verbose=True, out=out)(seen)
    printed = out.getvalue()
    assert "RunStatusChanged  experiments/\\x1b[31mred  on_run_status  planned (duplicate)" in printed
    assert "[12 ms] id id\\x1b]0;x\\x07" in printed
    assert "notify \\u202eevil — line1\\x0aline2" in printed
    assert not any(ch in printed for ch in "\x1b\x07\u202e")
