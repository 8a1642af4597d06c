"""Several processes opening one fresh SQLite ledger at once (worker processes, instances sharing
a file): every one of them opens it, none is told the path is unusable."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from handlers.ledger.sqlite import SqliteLedgerStore

PROCESSES = 6
FILES = 40


def _open_when_released(path: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        SqliteLedgerStore(path).close()
        results.put("opened")
    except Exception as exc:  # noqa: BLE001 - what failed is the assertion's message
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_fresh_file_at_once_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")  # quick to start: the race needs them together
    outcomes = []
    for n in range(FILES):
        start, results = context.Event(), context.Queue()
        path = str(tmp_path / f"ledger-{n}.sqlite3")
        workers = [context.Process(target=_open_when_released, args=(path, start, results))
                   for _ in range(PROCESSES)]
        for worker in workers:
            worker.start()
        start.set()
        outcomes += [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
    failed = [outcome for outcome in outcomes if outcome != "opened"]
    assert not failed, f"{len(failed)} of {len(outcomes)} opens failed: {failed[:3]}"
