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
    # five samples, each received once
    assert demo.returncode == 0, demo.stderr
    match = re.search(r"ledger (\S+)", demo.stdout)
    assert match, demo.stdout
    used = Path(match.group(1))
    assert used.is_file() and used.parent != tmp_path
    assert not mine.exists() and not (tmp_path / ".amlevents").exists()
    listed = run_cli("ledger", "--json", cwd=tmp_path, AMLEVENTS_LEDGER="sqlite",
                     AMLEVENTS_LEDGER_PATH=str(used))
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 5 and {row["attempts"] for row in rows} == {1}
    assert "retry" not in {row["outcome"] for row in rows}
