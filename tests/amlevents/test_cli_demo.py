"""`amlevents demo` (what `make run` runs): a fresh embedded ledger, whatever the settings say."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "amlevents.cli"]
# The emulator's documented development account, pointed at a port nobody listens on.
UNREACHABLE_TABLE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJP"
    "LlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLEVENTS_")}
    return subprocess.run([*CLI, *args], cwd=cwd, env={**env, **settings}, capture_output=True,
                          text=True, timeout=120)


def test_demo_uses_a_fresh_sqlite_ledger_even_when_settings_choose_another(tmp_path: Path) -> None:
    # GIVEN local settings that choose their own SQLite file, and an environment that chooses the
    # Table ledger (on an endpoint that does not answer)
    mine = tmp_path / "mine.sqlite3"
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"IsEncrypted": False, "Values": {"AMLEVENTS_LEDGER_PATH": str(mine)}}))

    # WHEN the demo runs
    demo = run_cli("demo", cwd=tmp_path, AMLEVENTS_LEDGER="table",
                   AMLEVENTS_LEDGER_TABLE_CONNECTION=UNREACHABLE_TABLE.format(port=free_port()))

    # THEN it printed the SQLite file it used, in a folder of its own, and that file holds the
    # samples (the five documented ones and the project's deploy=true one), each received once
    assert demo.returncode == 0, demo.stderr
    match = re.search(r"ledger (\S+)", demo.stdout)
    assert match, demo.stdout
    used = Path(match.group(1))
    assert used.is_file() and used.parent != tmp_path
    assert not mine.exists() and not (tmp_path / ".amlevents").exists()
    listed = run_cli("ledger", "--json", cwd=tmp_path, AMLEVENTS_LEDGER="sqlite",
                     AMLEVENTS_LEDGER_PATH=str(used))
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    samples = Path(__file__).resolve().parents[2] / "samples" / "events"
    # one row per event, and one more per other concern acting on it
    assert len(rows) >= sum(len(json.loads(p.read_text())) for p in samples.glob("*.json"))
    assert {row["attempts"] for row in rows} == {1}
    assert "retry" not in {row["outcome"] for row in rows}


def test_demo_shows_the_planned_deployment_and_the_command_to_see_it_again(
        tmp_path: Path) -> None:
    # WHEN the demo runs on embedded defaults
    demo = run_cli("demo", cwd=tmp_path)

    # THEN the deploy=true sample was planned (dry run), the plan is printed...
    assert demo.returncode == 0, demo.stderr
    assert ("planned: deploy sklearn_regression_model:21 to managed endpoint "
            "sklearn-regression-model as v21 (100% traffic)") in demo.stdout
    assert "plan: deployment=v21, endpoint=sklearn-regression-model" in demo.stdout
    # ... and the one command printed to see it again works as printed
    match = re.search(r"see it again, whole: (\S+) (show .+)$", demo.stdout, flags=re.MULTILINE)
    assert match, demo.stdout
    shown = run_cli(*match.group(2).split(), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "outcome   planned  (attempts 1)" in shown.stdout
    assert '"deploy": "true"' in shown.stdout  # the source event, stored with its row


def test_each_sample_gets_its_own_outcome(tmp_path: Path) -> None:
    # WHEN the demo runs on embedded defaults (dry run, notifications to a folder outbox)
    demo = run_cli("demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    used = re.search(r"ledger (\S+)", demo.stdout)
    assert used, demo.stdout
    listed = run_cli("ledger", "--json", cwd=tmp_path, AMLEVENTS_LEDGER_PATH=used.group(1))
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    home = {(row["id"][:8], row["type"].rsplit(".", 1)[-1]): row["outcome"] for row in rows
            if "-" not in row["key"]}
    # THEN each event got the outcome its sample calls for (not merely some set of outcomes):
    # the deploy=true model and the drift are planned, the failed run and the breach notify
    # (sent to the outbox: done), the rest are skipped with nothing to do
    assert home == {
        ("5f0c7a8e", "ModelRegistered"): "planned",
        ("831e1650", "DatasetDriftDetected"): "planned",
        ("831e1650", "RunStatusChanged"): "done",
        ("6a1f0e52", "RunStatusChanged"): "done",
        ("0c9d8e7f", "RunStatusChanged"): "skipped",
        ("831e1650", "ModelRegistered"): "skipped",
        ("831e1650", "ModelDeployed"): "skipped",
        ("831e1650", "RunCompleted"): "skipped",
    }, home
    # AND the breach also plans a retraining (its second concern)
    assert {(row["id"][:8], row["key"].split("-", 1)[1], row["outcome"]) for row in rows
            if "-" in row["key"]} >= {("6a1f0e52", "retrain", "planned")}
