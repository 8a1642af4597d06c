"""SQLite ledger writers: how the embedded ledger's writes scale with processes sharing one file.

WAL lets readers run beside a writer, but writers take turns: the claim and the outcome each hold
the file's write lock while they commit. So worker processes (FUNCTIONS_WORKER_PROCESS_COUNT)
sharing one SQLite ledger scale less than the CPU does. Measured in the same run, each the median
of three passes:

- the CPU baseline: 1, then 2 processes of pure Python work (what 2 cores give at best);
- the ledger: 1, then 2 processes each writing rows as the ledger does (its schema, indexes and
  SQL, the event stored), with Python work between the claim and the outcome (the concern's).

Prints events/s for each and the 2-process / 1-process ratios.
Run: .venv/bin/python benchmarks/sqlite_writers.py [--events N] [--work-us U]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AT = "2026-11-30T12:00:00.000+00:00"
HISTORY = '[{"n":1,"at":"2026-11-30T12:00:00.000+00:00","outcome":"in_progress"}]'


def _spin(loops: int) -> int:
    total = 0
    for _ in range(loops):
        total += 1
    return total


def _loops_per_us() -> float:
    start = time.perf_counter()
    _spin(1_000_000)
    return 1_000_000 / ((time.perf_counter() - start) * 1e6)


def _cpu_only(events: int, loops: int, done: multiprocessing.Queue[float]) -> None:
    for _ in range(events):
        _spin(loops)
    done.put(0.0)


def _ledger_writes(path: str, events: int, loops: int, done: multiprocessing.Queue[float]) -> None:
    from handlers.ledger import sqlite as store

    event = "j" + (ROOT / "samples" / "events" / "run_status_changed.json").read_text()
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous=NORMAL")
    for _ in range(events):
        key = uuid.uuid4().hex
        conn.execute(store._INSERT, (key, key, "RunStatusChanged", "runs/r", "/topic", "on_ml_event",
                                     AT, AT, "in_progress", "", "", 1, 1e12, HISTORY, event))
        _spin(loops)  # the concern's work between the claim and the outcome
        conn.execute(store._UPDATE, ("on_ml_event", AT, "planned", "notify", "{}", 1, 0.0,
                                     HISTORY, key, 1))
    conn.close()
    done.put(0.0)


def _events_per_s(target: str, processes: int, events: int, loops: int, folder: Path) -> float:
    from handlers.ledger import sqlite as store

    path = str(folder / f"{uuid.uuid4().hex}.sqlite3")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(store._SCHEMA)
    conn.executescript(store._INDEXES)
    conn.close()
    context = multiprocessing.get_context("spawn")
    done: multiprocessing.Queue[float] = context.Queue()
    args = (path, events, loops, done) if target == "ledger" else (events, loops, done)
    workers = [context.Process(target=_ledger_writes if target == "ledger" else _cpu_only,
                               args=args) for _ in range(processes)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for _ in workers:
        done.get(timeout=600)
    elapsed = time.perf_counter() - start
    for worker in workers:
        worker.join()
    return processes * events / elapsed


def main() -> None:
    """Measure 1 and 2 processes, CPU only and ledger writes; print the rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000, help="per process")
    parser.add_argument("--work-us", type=float, default=200.0,
                        help="Python work per event between the two writes")
    args = parser.parse_args()
    loops = int(args.work_us * _loops_per_us())
    rates: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="amlevents-bench-") as tmp:
        for target in ("cpu", "ledger"):
            for processes in (1, 2):
                rates[target, processes] = statistics.median(
                    _events_per_s(target, processes, args.events, loops, Path(tmp))
                    for _ in range(3))
    for target, label in (("cpu", "CPU only (baseline)"), ("ledger", "ledger writes")):
        one, two = rates[target, 1], rates[target, 2]
        print(f"{label:22}: 1 process {one:8,.0f} events/s, 2 processes {two:8,.0f} events/s "
              f"({two / one:.2f}x)")
    print(f"ledger scaling / CPU scaling: "
          f"{(rates['ledger', 2] / rates['ledger', 1]) / (rates['cpu', 2] / rates['cpu', 1]):.2f}")


if __name__ == "__main__":
    main()
