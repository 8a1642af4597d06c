"""Storm: 10,000 failed-run events through the local host with notifications live, under storm control.

A hyperparameter sweep failing thousands of child runs must not flood anyone: each channel sends
at most AMLEVENTS_NOTIFY_STORM_MAX messages per AMLEVENTS_NOTIFY_STORM_WINDOW_S window (digests
included), the rest are folded into digests. This script starts its own loopback sinks (an
aiosmtpd SMTP server and an HTTP webhook receiver), pushes the events in Event Grid batches of
100 from client processes, waits for the last window to close and flushes it (as a timer
would), then prints: time to ledger all (events/s), messages per channel, digests and whether
their counts add up. Baseline, same run: the same events with notify dry-run; the ratio.
Run: .venv/bin/python benchmarks/storm.py [--events N] [--max M] [--window-s S]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import math
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from load import BATCH, push_through_host

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXPERIMENTS = ("sweep-lr", "sweep-depth", "sweep-dropout", "nightly")
_DIGEST_SUBJECT = re.compile(r"Storm control: (\d+) more notification")


@dataclass
class Sink:
    """What one channel's receiver got: (arrival time, kind, digest total) per message."""

    arrivals: list[tuple[float, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, total: int) -> None:
        with self.lock:
            self.arrivals.append((time.monotonic(), kind, total))


class _SmtpHandler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        subject = str(message_from_bytes(envelope.original_content)["Subject"] or "")
        match = _DIGEST_SUBJECT.search(subject)
        self.sink.add("digest" if match else "notification", int(match[1]) if match else 0)
        await asyncio.sleep(0)
        return "250 OK"


def start_webhook(sink: Sink) -> ThreadingHTTPServer:
    """A webhook receiver on loopback, recording each JSON payload's kind."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            kind = payload.get("kind", "")
            sink.add(kind, int(payload.get("digest", {}).get("total", 0)) if kind == "digest" else 0)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_events(count: int) -> list[dict[str, Any]]:
    """Distinct failed-run events over several experiments, from the documented sample."""
    sample = json.loads((ROOT / "samples" / "events" / "run_status_changed.json").read_text())[0]
    events = []
    for n in range(count):
        event = copy.deepcopy(sample)
        experiment = EXPERIMENTS[n % len(EXPERIMENTS)]
        event["id"] = f"storm-{n}"
        event["data"].update(runId=f"HD_{experiment}_{n}", experimentName=experiment,
                             runStatus="Failed")
        events.append(event)
    return events


def push(events: list[dict[str, Any]], env: dict[str, str], clients: int) -> tuple[float, Any]:
    """Seconds until every event is ledgered through a fresh local host; and its dispatcher."""
    os.environ.update(env)
    elapsed = push_through_host(events, "on_run_status", clients)
    from handlers.runtime.dispatch import default_dispatcher

    return elapsed, default_dispatcher()


def verdicts(dispatcher: Any) -> dict[str, Counter[str]]:
    """Per channel, how many ledger rows say sent / digested."""
    counts: dict[str, Counter[str]] = {}
    for entry in dispatcher.ledger.entries():
        for name, text in json.loads(entry.detail).get("channels", {}).items():
            counts.setdefault(name, Counter())[text.split(":")[0]] += 1
    return counts


def main() -> None:
    """Baseline (notify dry-run) and storm (SMTP + webhook live), then the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--max", type=int, default=5, help="messages per channel per window")
    parser.add_argument("--window-s", type=float, default=5.0, help="storm window (seconds)")
    args = parser.parse_args()
    from aiosmtpd.controller import Controller

    events = make_events(args.events)
    topic = events[0]["topic"]
    sinks = {"smtp": Sink(), "webhook": Sink()}
    webhook = start_webhook(sinks["webhook"])
    with tempfile.TemporaryDirectory(prefix="amlevents-storm-") as tmp:
        smtp_port = free_port()
        smtp = Controller(_SmtpHandler(sinks["smtp"]), hostname="127.0.0.1", port=smtp_port)
        smtp.start()
        try:
            base = {"AMLEVENTS_ALLOWED_TOPICS": topic, "AMLEVENTS_DRY_RUN": "true"}
            # A dry run validates the channels as the live run would: the baseline needs one.
            baseline_s, _ = push(events, {**base, "AMLEVENTS_LEDGER_PATH": f"{tmp}/base.db",
                                          "AMLEVENTS_NOTIFY_OUTBOX_DIR": f"{tmp}/outbox"},
                                 args.clients)
            live = {**base, "AMLEVENTS_LEDGER_PATH": f"{tmp}/storm.db",
                    "AMLEVENTS_DRY_RUN_NOTIFY": "false",
                    "AMLEVENTS_NOTIFY_SMTP_HOST": "127.0.0.1",
                    "AMLEVENTS_NOTIFY_SMTP_PORT": str(smtp_port),
                    "AMLEVENTS_NOTIFY_SMTP_STARTTLS": "false",
                    "AMLEVENTS_NOTIFY_SMTP_FROM": "amlevents@contoso.com",
                    "AMLEVENTS_NOTIFY_SMTP_TO": "ml-team@contoso.com",
                    "AMLEVENTS_NOTIFY_WEBHOOK_URL":
                        f"http://127.0.0.1:{webhook.server_address[1]}/hook",
                    "AMLEVENTS_NOTIFY_STORM_MAX": str(args.max),
                    "AMLEVENTS_NOTIFY_STORM_WINDOW_S": str(args.window_s)}
            storm_s, dispatcher = push(events, live, args.clients)
            time.sleep(args.window_s)  # the last window closes; a timer trigger would flush it
            from handlers.notify.handler import flush_digests

            flushed = flush_digests(dispatcher.context())
            ledgered = len(dispatcher.ledger.entries())
            counts = verdicts(dispatcher)
        finally:
            smtp.stop()
            webhook.shutdown()
    report(args, len(events), ledgered, baseline_s, storm_s, sinks, counts, len(flushed))


def report(args: argparse.Namespace, total: int, ledgered: int, baseline_s: float,
           storm_s: float, sinks: dict[str, Sink], counts: dict[str, Counter[str]],
           flushed: int) -> None:
    """Print the figures; exit non-zero if anything was lost or a channel was flooded."""
    print(f"events                       : {total} failed runs, {len(EXPERIMENTS)} experiments, "
          f"batches of {BATCH}, {args.clients} client(s); ledgered {ledgered}")
    print(f"baseline (notify dry-run)    : {baseline_s:6.2f} s ({total / baseline_s:,.0f} events/s)")
    print(f"storm (SMTP + webhook live)  : {storm_s:6.2f} s ({total / storm_s:,.0f} events/s)")
    print(f"ratio storm/baseline         : {storm_s / baseline_s:6.2f}x")
    print(f"storm control                : max {args.max} messages per channel per "
          f"{args.window_s:g} s window; {flushed} digest(s) flushed after the last window")
    problems = [] if ledgered == total else [f"ledger has {ledgered} rows for {total} events"]
    for name, sink in sinks.items():
        kinds = Counter(kind for _, kind, _ in sink.arrivals)
        folded = sum(count for _, kind, count in sink.arrivals if kind == "digest")
        sent, held = counts.get(name, Counter())["sent"], counts.get(name, Counter())["digested"]
        # Windows open one after another from the first message; the flush opens one more.
        windows = math.ceil(storm_s / args.window_s) + 1
        limit = args.max * windows
        adds_up = kinds["notification"] == sent and folded == held and sent + held == total
        print(f"{name:<7} messages received     : {len(sink.arrivals)} ({kinds['notification']} "
              f"notifications + {kinds['digest']} digests) over <= {windows} windows of "
              f"{args.window_s:g} s (limit {args.max} x {windows} = {limit})")
        print(f"{name:<7} digests add up        : {folded} folded in digests + {sent} sent = "
              f"{folded + sent} of {total} -> {'yes' if adds_up else 'NO'}")
        if not adds_up:
            problems.append(f"{name}: digests do not add up")
        if len(sink.arrivals) > limit:
            problems.append(f"{name}: {len(sink.arrivals)} messages > {limit}")
    if problems:
        raise SystemExit("; ".join(problems))


if __name__ == "__main__":
    main()
