"""Throughput: events/s through the local host, Event Grid batches of 100, dry-run actions, SQLite.

Baselines measured in the same run, each the median of three passes:
- the one-commit floor of any ledgered handler: parse the event's JSON, one SQLite insert+commit;
- the exactly-once floor: parse the JSON, insert+commit a claim, update+commit the outcome (acting
  exactly once needs both commits: the claim before acting, the outcome after), minimal Python.
Prints events/s through the host with 1 worker process (in the host's own process) and with 2
(FUNCTIONS_WORKER_PROCESS_COUNT=2: the events invoked in two spawned worker processes), the goal
(>= 6,000 on 2 cores) against the better of the two, the dispatcher alone per event, and
`dispatch / exactly-once floor` (goal <= 2.0x).
Run: .venv/bin/python benchmarks/throughput.py [--events N] [--clients C]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ledger_rows import claim, create, finish
from load import BATCH, push_through_host

ROOT = Path(__file__).resolve().parent.parent


def make_events(count: int) -> list[dict[str, Any]]:
    """Distinct failed-run and drift events (half each) from the documented samples."""
    samples = [json.loads((ROOT / "samples" / "events" / f"{name}.json").read_text())[0]
               for name in ("run_status_changed", "dataset_drift_detected")]
    return [{**samples[i % 2], "id": str(uuid.uuid4())} for i in range(count)]


def floor_per_event_s(events: list[dict[str, Any]], path: Path, *, commits: int) -> float:
    """Seconds per event for json.loads + an INSERT and commit (+ an UPDATE and commit when
    `commits` is 2), WAL and synchronous=NORMAL as the ledger's default, minimal Python."""
    conn = create(path, ledger=False)
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, type TEXT, outcome TEXT)")
    texts = [json.dumps(e) for e in events]
    start = time.perf_counter()
    for text in texts:
        event = json.loads(text)
        conn.execute("INSERT INTO t VALUES (?, ?, 'in_progress')", (event["id"], event["eventType"]))
        if commits == 2:
            conn.execute("UPDATE t SET outcome = 'done' WHERE id = ?", (event["id"],))
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / len(events)


def ledger_sql_per_event_s(events: list[dict[str, Any]], path: Path) -> float:
    """Seconds per event for json.loads + the SQLite ledger's own two statements (its schema and
    indexes, the row with the event stored in it), minimal Python: what the ledger's writes cost
    before any of the app's Python, to set beside the exactly-once floor's three-column table."""
    conn = create(path, ledger=True)
    texts = [json.dumps(e) for e in events]
    start = time.perf_counter()
    for text in texts:
        event = json.loads(text)
        key = event["id"].replace("-", "")
        claim(conn, key, event, "j" + text)
        finish(conn, key)
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / len(events)


def median_floor_s(events: list[dict[str, Any]], workdir: Path, commits: int) -> float:
    """The floor's median over three passes, each into a new file."""
    return statistics.median(floor_per_event_s(events, workdir / f"floor{commits}-{i}.sqlite3",
                                               commits=commits) for i in range(3))


def settings(events: list[dict[str, Any]], workdir: Path, name: str) -> dict[str, str]:
    """Dry run on the events' topic, a fresh SQLite ledger, a local outbox (a dry run validates
    the notification channels as the live run would)."""
    return {"AMLEVENTS_ALLOWED_TOPICS": events[0]["topic"], "AMLEVENTS_DRY_RUN": "true",
            "AMLEVENTS_LEDGER_PATH": str(workdir / f"{name}.sqlite3"),
            "AMLEVENTS_NOTIFY_OUTBOX_DIR": str(workdir / "outbox")}


def run_host(events: list[dict[str, Any]], workdir: Path, clients: int,
             processes: int) -> tuple[float, int]:
    """Seconds to push every event through the local host in batches of 100, with `processes`
    worker processes and a fresh ledger; and how many rows that ledger then holds."""
    from handlers.runtime.dispatch import default_dispatcher

    os.environ.update(settings(events, workdir, f"ledger-{processes}"))
    elapsed = push_through_host(events, "on_ml_event", clients, processes)
    default_dispatcher.cache_clear()  # with worker processes, this process never opened it
    return elapsed, len(default_dispatcher().ledger.entries())


def dispatch_only_per_event_s(events: list[dict[str, Any]], workdir: Path) -> float:
    """Seconds per event through the Dispatcher alone (no HTTP): where the host's time goes."""
    from handlers.runtime.dispatch import Dispatcher

    dispatcher = Dispatcher(settings(events, workdir, "dispatch"))
    dispatcher.context()
    texts = [json.dumps(e) for e in events]
    start = time.perf_counter()
    for text in texts:
        dispatcher.dispatch(json.loads(text), function="on_ml_event")
    return (time.perf_counter() - start) / len(events)


def main() -> None:
    """Measure the floors, the dispatcher and the host; print them and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    events = make_events(args.events)
    with tempfile.TemporaryDirectory(prefix="amlevents-bench-") as tmp:
        workdir = Path(tmp)
        one_commit = median_floor_s(events, workdir, 1)
        exactly_once = median_floor_s(events, workdir, 2)
        ledger_sql = statistics.median(ledger_sql_per_event_s(events, workdir / f"sql-{i}.sqlite3")
                                       for i in range(3))
        dispatch_only = dispatch_only_per_event_s(make_events(len(events)), workdir)
        runs = {processes: run_host(events, workdir, args.clients, processes)
                for processes in (1, 2)}
    ledgered = {processes: rows for processes, (_, rows) in runs.items()}
    print(f"events                        : {len(events)} in batches of {BATCH}, "
          f"{args.clients} client(s); ledgered {ledgered[1]} and {ledgered[2]}")
    print(f"one-commit floor              : {one_commit * 1e6:8.1f} us/event "
          "(json + insert+commit)")
    print(f"exactly-once floor            : {exactly_once * 1e6:8.1f} us/event "
          "(json + insert+commit + update+commit: the claim, the outcome)")
    print(f"the ledger's own statements   : {ledger_sql * 1e6:8.1f} us/event "
          f"(json + its insert, the event stored, 3 indexes, + its update: "
          f"{ledger_sql / exactly_once:.2f}x the exactly-once floor)")
    for processes, (elapsed, _) in runs.items():
        label = f"{processes} worker process{'es' if processes > 1 else ''}"
        print(f"{'local host, ' + label:30}: {elapsed / len(events) * 1e6:8.1f} us/event "
              f"({len(events) / elapsed:,.0f} events/s; dry-run, SQLite)")
    best = min(runs, key=lambda processes: runs[processes][0])
    per_event = runs[best][0] / len(events)
    print(f"{'local host, the better':30}: {1 / per_event:,.0f} events/s, {best} worker "
          f"process{'es' if best > 1 else ''} (goal >= 6,000 on 2 cores)")
    print(f"host / exactly-once floor     : {per_event / exactly_once:8.2f}x (the better)")
    print(f"dispatch alone (no HTTP)      : {dispatch_only * 1e6:8.1f} us/event "
          f"({dispatch_only / one_commit:.2f}x the one-commit floor)")
    print(f"dispatch / exactly-once floor : {dispatch_only / exactly_once:.2f}x (goal <= 2.0x)")
    for processes, rows in ledgered.items():
        if rows != len(events):
            raise SystemExit(f"ledger ({processes} worker processes) has {rows} rows for "
                             f"{len(events)} events")


if __name__ == "__main__":
    main()
