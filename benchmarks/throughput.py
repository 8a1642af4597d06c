"""Throughput: events/s through the local host, Event Grid batches of 100, dry-run actions, SQLite.

Baseline measured in the same run: the floor of any ledgered event handler, i.e. parse the
event's JSON and do one SQLite insert-and-commit. Prints events/s and the per-event overhead
ratio (goals: >= 2,000 events/s on 2 cores; overhead <= 3x the floor).
Run: .venv/bin/python benchmarks/throughput.py [--events N] [--clients C]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from load import BATCH, push_through_host

ROOT = Path(__file__).resolve().parent.parent


def make_events(count: int) -> list[dict[str, Any]]:
    """Distinct failed-run and drift events (half each) from the documented samples."""
    samples = [json.loads((ROOT / "samples" / "events" / f"{name}.json").read_text())[0]
               for name in ("run_status_changed", "dataset_drift_detected")]
    return [{**samples[i % 2], "id": str(uuid.uuid4())} for i in range(count)]


def floor_per_event_s(events: list[dict[str, Any]], workdir: Path) -> float:
    """Seconds per event for json.loads + one INSERT + commit (WAL, synchronous=NORMAL)."""
    conn = sqlite3.connect(workdir / "floor.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT)")
    texts = [json.dumps(e) for e in events]
    start = time.perf_counter()
    for text in texts:
        event = json.loads(text)
        conn.execute("INSERT INTO t VALUES (?, ?)", (event["id"], event["eventType"]))
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / len(events)


def run_host(events: list[dict[str, Any]], workdir: Path, clients: int) -> float:
    """Seconds to push every event through the local host in batches of 100."""
    os.environ.update({
        "AMLEVENTS_ALLOWED_TOPICS": events[0]["topic"], "AMLEVENTS_DRY_RUN": "true",
        "AMLEVENTS_LEDGER_PATH": str(workdir / "ledger.sqlite3")})
    return push_through_host(events, "on_ml_event", clients)


def dispatch_only_per_event_s(events: list[dict[str, Any]], workdir: Path) -> float:
    """Seconds per event through the Dispatcher alone (no HTTP): where the host's time goes."""
    from handlers.runtime.dispatch import Dispatcher

    dispatcher = Dispatcher({"AMLEVENTS_ALLOWED_TOPICS": events[0]["topic"],
                             "AMLEVENTS_LEDGER_PATH": str(workdir / "dispatch.sqlite3")})
    dispatcher.context()
    texts = [json.dumps(e) for e in events]
    start = time.perf_counter()
    for text in texts:
        dispatcher.dispatch(json.loads(text), function="on_ml_event")
    return (time.perf_counter() - start) / len(events)


def main() -> None:
    """Measure the floor and the host, print both and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    events = make_events(args.events)
    with tempfile.TemporaryDirectory(prefix="amlevents-bench-") as tmp:
        workdir = Path(tmp)
        floor = floor_per_event_s(events, workdir)
        dispatch_only = dispatch_only_per_event_s(make_events(len(events)), workdir)
        elapsed = run_host(events, workdir, args.clients)
        from handlers.runtime.dispatch import default_dispatcher

        ledgered = len(default_dispatcher().ledger.entries())
    per_event = elapsed / len(events)
    print(f"events                     : {len(events)} in batches of {BATCH}, "
          f"{args.clients} client(s); ledgered {ledgered}")
    print(f"floor (json + insert+commit): {floor * 1e6:8.1f} us/event "
          f"({1 / floor:,.0f} events/s)")
    print(f"local host, dry-run, SQLite : {per_event * 1e6:8.1f} us/event "
          f"({len(events) / elapsed:,.0f} events/s; goal >= 2,000)")
    print(f"overhead ratio host/floor   : {per_event / floor:8.2f}x (goal <= 3x)")
    print(f"dispatch alone (no HTTP)    : {dispatch_only * 1e6:8.1f} us/event "
          f"({dispatch_only / floor:.2f}x the floor; exactly-once needs 2 commits: claim, outcome)")
    if ledgered != len(events):
        raise SystemExit(f"ledger has {ledgered} rows for {len(events)} events")


if __name__ == "__main__":
    main()
