"""The `amlevents` console script, run as a user runs it: serve, send, ledger, demo."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlevents.local_settings import LOCAL_DEFAULTS, LocalSettingsError, local_env

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "events"
CLI = [sys.executable, "-m", "amlevents.cli"]
SAMPLE_EVENTS = sum(len(json.loads(p.read_text())) for p in SAMPLES.glob("*.json"))
DOCUMENTED_ID = "831e1650-001e-001b-66ab-eeb76e069631"  # the documented samples share one id
DEPLOY_ID = json.loads((SAMPLES / "amlevents_model_registered_deploy.json").read_text())[0]["id"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLEVENTS_")}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, timeout=120,
                          text=stdin is None, input=stdin)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`amlevents serve` from a directory with no settings at all."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLEVENTS_")}
    process = subprocess.Popen([*CLI, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                assert response.status == 200
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(process.communicate()[1].decode()) from None
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_serve_send_and_ledger_share_the_default_ledger(served: str, tmp_path: Path) -> None:
    sent = run_cli("send", str(SAMPLES), "--url", served, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    # every sample file: the five documented ones, and those the project wrote (samples/events)
    assert sent.stdout.count("HTTP 202") == len(list(SAMPLES.glob("*.json")))
    listed = run_cli("ledger", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) >= SAMPLE_EVENTS  # an event several concerns act on has a row for each
    assert all({"id", "type", "subject", "topic", "outcome", "detail"} <= row.keys()
               for row in rows)
    outcomes = {(row["id"], row["type"].rsplit(".", 1)[-1]): row["outcome"] for row in rows}
    assert outcomes[(DOCUMENTED_ID, "ModelRegistered")] == "skipped"  # no deploy tag
    assert outcomes[(DEPLOY_ID, "ModelRegistered")] == "planned"  # deploy=true, dry run
    assert outcomes[(DOCUMENTED_ID, "DatasetDriftDetected")] == "planned"
    assert "retry" not in {row["outcome"] for row in rows}
    count = len(rows)
    assert (tmp_path / ".amlevents" / "ledger.sqlite3").exists()
    # Sending again is a redelivery: nothing new is acted on, attempts are counted.
    run_cli("send", str(SAMPLES / "run_status_changed.json"), "--url", served, cwd=tmp_path)
    rows = [json.loads(line) for line in
            run_cli("ledger", "--json", cwd=tmp_path).stdout.splitlines()]
    assert len(rows) == count
    assert max(row["attempts"] for row in rows) == 2


def test_send_reads_stdin(served: str, tmp_path: Path) -> None:
    content = (SAMPLES / "dataset_drift_detected.json").read_bytes()
    sent = run_cli("send", "-", "--url", served, cwd=tmp_path, stdin=content)
    assert sent.returncode == 0 and b"on_drift_detected: HTTP 202" in sent.stdout


def test_send_reports_an_unreachable_host(tmp_path: Path) -> None:
    sent = run_cli("send", str(SAMPLES), "--url", f"http://127.0.0.1:{free_port()}",
                   cwd=tmp_path)
    assert sent.returncode == 2 and "is `amlevents serve` running?" in sent.stderr


def test_demo_prints_the_samples_with_outcomes(tmp_path: Path) -> None:
    demo = run_cli("demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    counted = re.search(r"^(\d+) row\(s\)$", demo.stdout, flags=re.MULTILINE)
    assert counted and int(counted.group(1)) >= SAMPLE_EVENTS
    for kind in ("ModelRegistered", "ModelDeployed", "RunCompleted", "RunStatusChanged",
                 "DatasetDriftDetected"):
        assert kind in demo.stdout
    assert "planned" in demo.stdout and "skipped" in demo.stdout
    # The failed run's notification really went out, to the demo's local folder outbox.
    assert "done" in demo.stdout and "notifications (folder outbox" in demo.stdout
    assert "https://ml.azure.com/runs/AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5" in demo.stdout


def test_local_settings_json_then_environment_override_defaults(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"IsEncrypted": False, "Values": {"AMLEVENTS_DRY_RUN": "false", "A": "file"}}))
    env = local_env(tmp_path, environ={"A": "environment"})
    assert env["AMLEVENTS_DRY_RUN"] == "false"
    assert env["A"] == "environment"
    assert env["AMLEVENTS_ALLOWED_TOPICS"] == LOCAL_DEFAULTS["AMLEVENTS_ALLOWED_TOPICS"]


def test_broken_local_settings_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text("{oops")
    with pytest.raises(LocalSettingsError, match="local.settings.json"):
        local_env(tmp_path, environ={})
    result = run_cli("ledger", cwd=tmp_path)
    assert result.returncode == 2 and "local.settings.json" in result.stderr


def test_serve_explains_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2 and "cannot listen" in result.stderr


def test_serve_beyond_loopback_needs_a_key(tmp_path: Path) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2 and "AMLEVENTS_HOST_KEY" in result.stderr
