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
import json
import multiprocessing
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from ledger_rows import claim, connect, create, finish

ROOT = Path(__file__).resolve().parent.parent


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
    sample = json.loads((ROOT / "samples" / "events" / "run_status_changed.json").read_text())[0]
    stored = "j" + json.dumps(sample)
    conn = connect(path)
    for _ in range(events):
        key = uuid.uuid4().hex
        claim(conn, key, {**sample, "id": key}, stored)
        _spin(loops)  # the concern's work between the claim and the outcome
        finish(conn, key)
    conn.close()
    done.put(0.0)


def _events_per_s(target: str, processes: int, events: int, loops: int, folder: Path) -> float:
    path = str(folder / f"{uuid.uuid4().hex}.sqlite3")
    create(path, ledger=True).close()
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
