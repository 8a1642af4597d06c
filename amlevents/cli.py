"""`amlevents`: serve the app locally, send events to it, find, show and replay what the ledger
recorded, replay Event Grid's dead letters, run the demo.

Everything printed for people goes through `printable`: events can carry control characters (ANSI
escapes, bidi overrides) in their subjects, tags and ids, and they are shown escaped, never sent to
the terminal. `--json` output is ASCII JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlevents.local_settings import HOST_KEY, LocalSettingsError, local_env
from handlers.ledger.settings import LEDGER_BACKEND, LEDGER_PATH

if TYPE_CHECKING:
    from handlers.ledger.ledger import Ledger, LedgerEntry, LedgerQuery
    from handlers.runtime.telemetry import EventSeen

DEFAULT_URL = "http://localhost:7071"
SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "events"
# The demo's own sample (not from Microsoft's docs): a model registered with deploy=true.
DEPLOY_SAMPLE = SAMPLES / "amlevents_model_registered_deploy.json"
# C0 and C1 controls, DEL, lone surrogates, and the bidi controls that reorder what a terminal shows.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                          "\u2066-\u2069\ud800-\udfff]")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says which and why."""


def printable(text: object) -> str:
    """Text safe for a terminal: control characters shown as escapes (\\x1b, \\u202e)."""
    return _UNPRINTABLE.sub(lambda m: _escape(m.group()), str(text))


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def parse_duration(text: str) -> float:
    """Seconds in `90s`, `30m`, `2h`, `7d`, `1w`; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"{text!r} is not a duration such as 30m, 2h, 7d")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_when(text: str, *, now: float | None = None) -> str:
    """A moment as the ledger writes times (ISO 8601 UTC, milliseconds): `2h` ago, or an ISO date
    or time (UTC when it names no zone)."""
    from handlers.ledger.ledger import utc_iso

    now = time.time() if now is None else now
    try:
        return utc_iso(now - parse_duration(text))
    except UsageError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is neither a duration (2h, 7d) nor an ISO time "
                         "(2024-05-01, 2024-05-01T12:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return utc_iso(moment.timestamp())


@dataclass
class RunningHost:
    """The local server and, when AMLEVENTS_TOPIC_KEY is set, the topic simulator in front."""

    server: Any
    simulator: Any = None
    timers: Any = None
    pool: Any = None  # the worker processes, when FUNCTIONS_WORKER_PROCESS_COUNT is above 1

    @property
    def url(self) -> str:
        """Base URL of the host."""
        return str(self.server.url)

    def stop(self) -> None:
        """Stop the simulator (dead-lettering what is pending), the server, then the workers."""
        if self.timers is not None:
            self.timers.stop()
        if self.simulator is not None:
            self.simulator.stop()
        self.server.stop()
        if self.pool is not None:
            self.pool.close()


def build_host(env: dict[str, str], *, bind: str, port: int, worker_processes: int = 1,
               on_event: Callable[[EventSeen], None] | None = None) -> RunningHost:
    """Apply `env` to the process (as `func start` does), load function_app and wrap it; with
    `worker_processes` above 1, Event Grid invocations run in that many worker processes, whose
    deliveries `on_event` hears of (a listener of telemetry hears only this process's)."""
    os.environ.update(env)
    from amlevents.host.server import FunctionsHost, LocalServer, load_functions
    from amlevents.host.workers import WorkerPool
    from amlevents.logging_setup import install_log_redaction
    from amlevents.simulator.service import SimulatorSettings, TopicSimulator
    from handlers.runtime.dispatch import default_dispatcher

    default_dispatcher.cache_clear()
    install_log_redaction(env)  # before the first request, not the first event
    import function_app

    functions = load_functions(function_app.app)
    key = env.get(HOST_KEY) or None
    host = FunctionsHost(functions, key=key)
    server = LocalServer(host, bind=bind, port=port)  # bound before any worker is started
    if worker_processes > 1:
        try:
            host.pool = WorkerPool(worker_processes, env=dict(os.environ), on_event=on_event)
        except BaseException:
            server.stop()
            raise
    simulator_settings = SimulatorSettings.from_mapping(env)
    if simulator_settings is None:
        return RunningHost(server, pool=host.pool)
    simulator = TopicSimulator(simulator_settings, server.url, functions.event_grid,
                               function_key=key)
    host.extra_routes[simulator.path] = simulator.route
    return RunningHost(server, simulator.start(), pool=host.pool)


def cmd_serve(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Run the local Functions host until Ctrl-C."""
    from amlevents.host.workers import WORKER_PROCESS_COUNT, worker_process_count

    printer = EventPrinter(verbose=args.verbose)
    try:
        processes = worker_process_count(env)  # checked before anything binds or starts
        running = build_host(env, bind=args.host, port=args.port, worker_processes=processes,
                             on_event=None if args.quiet else printer)
    except OSError as exc:
        print(f"amlevents: cannot listen on {args.host}:{args.port}: {exc.strerror} "
              "(is another host running? try --port)", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. binding beyond loopback without AMLEVENTS_HOST_KEY
        print(f"amlevents: {exc}", file=sys.stderr)
        return 2
    url = running.url
    print(f"amlevents host on {url} (Event Grid: {url}/runtime/webhooks/EventGrid"
          f"?functionName=NAME, health: {url}/api/health)", flush=True)
    if processes > 1:
        pids = ", ".join(str(pid) for pid in running.pool.pids)
        print(f"Event Grid functions run in {processes} worker processes "
              f"({WORKER_PROCESS_COUNT}={processes}; pids {pids})", flush=True)
    else:
        print(f"Event Grid functions run in this process: 1 worker, no worker processes "
              f"({WORKER_PROCESS_COUNT}=1; set 2-10 for more)", flush=True)
    if running.simulator is not None:
        print(f"Event Grid topic simulator on {url}/api/events (key: AMLEVENTS_TOPIC_KEY; "
              "delivers through the subscriptions file)", flush=True)
    import function_app
    from amlevents.host.server import load_functions
    from amlevents.timers import TimerRunner

    running.timers = TimerRunner(list(load_functions(function_app.app).timers)).start()
    from handlers.runtime import telemetry

    if not args.quiet:
        telemetry.add_listener(printer)
    try:
        running.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        telemetry.remove_listener(printer)
        running.timers.stop()
        if running.simulator is not None:
            running.simulator.stop()
        if running.pool is not None:  # after their current chunk, not mid-event
            running.pool.close()
    return 0


class EventPrinter:
    """`amlevents serve`'s one line per event: time, type, subject, function, outcome."""

    def __init__(self, *, verbose: bool = False, out: Any = None) -> None:
        self.verbose = verbose
        self.out = out
        self._lock = threading.Lock()

    def __call__(self, seen: EventSeen) -> None:
        """Print one delivery (a listener of handlers.runtime.telemetry)."""
        moment = datetime.fromtimestamp(seen.at).strftime("%H:%M:%S")
        kind = seen.event_type.rsplit(".", 1)[-1] or "?"
        mark = " (duplicate)" if seen.duplicate else ""
        line = (f"{moment}  {printable(kind)}  {printable(seen.subject or '-')}  "
                f"{seen.function}  {seen.outcome.value}{mark}")
        if self.verbose:
            line += (f"  [{seen.duration_s * 1000:.0f} ms] id {printable(seen.event_id)}\n"
                     f"          {printable(seen.action)}"
                     + (f" — {printable(seen.detail[:300])}" if seen.detail else ""))
        with self._lock:
            print(line, file=self.out or sys.stdout, flush=True)


def iter_event_files(paths: Sequence[str]) -> Iterable[tuple[str, bytes]]:
    """(name, content) for each file, folder entry (*.json) or '-' (stdin)."""
    for path in paths:
        if path == "-":
            yield "<stdin>", sys.stdin.buffer.read()
            continue
        target = Path(path)
        files = sorted(target.glob("*.json")) if target.is_dir() else [target]
        for file in files:
            yield str(file), file.read_bytes()


def post_events(url: str, content: bytes, *, key: str | None = None) -> list[tuple[str, int, str]]:
    """Post one file's events, grouped by the function that takes their type."""
    from handlers.runtime.routing import function_for

    payload = json.loads(content)
    events = payload if isinstance(payload, list) else [payload]
    groups: dict[str, list[Any]] = {}
    for event in events:
        kind = str(event.get("eventType") or event.get("type") or "") if isinstance(
            event, dict) else ""
        groups.setdefault(function_for(kind), []).append(event)
    results = []
    for function, batch in groups.items():
        status, text = _post(f"{url.rstrip('/')}/runtime/webhooks/EventGrid?functionName="
                             f"{function}", batch, key)
        results.append((function, status, text))
    return results


def _post(url: str, batch: list[Any], key: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "aeg-event-type": "Notification"}
    if key:
        headers["x-functions-key"] = key
    request = urllib.request.Request(url, data=json.dumps(batch).encode("utf-8"),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def cmd_send(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Send event files to a host; non-zero exit if any delivery was not accepted."""
    ok = True
    for name, content in iter_event_files(args.paths):
        try:
            results = post_events(args.url, content, key=env.get(HOST_KEY) or None)
        except ValueError as exc:
            print(f"{name}: not valid JSON: {exc}", file=sys.stderr)
            ok = False
            continue
        except urllib.error.URLError as exc:
            print(f"{name}: cannot reach {args.url}: {exc.reason} (is `amlevents serve` "
                  "running?)", file=sys.stderr)
            return 2
        for function, status, text in results:
            print(f"{name} -> {function}: HTTP {status}{(' ' + text) if text else ''}")
            ok = ok and status < 300
    return 0 if ok else 1


def cmd_publish(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Publish event files to a topic with the real azure-eventgrid client."""
    from amlevents.simulator.service import TOPIC_KEY

    key = args.key or env.get(TOPIC_KEY, "")
    if not key:
        print(f"amlevents: publish needs a topic key: --key or {TOPIC_KEY}", file=sys.stderr)
        return 2
    try:
        from azure.core.credentials import AzureKeyCredential
        from azure.core.exceptions import AzureError
        from azure.eventgrid import EventGridPublisherClient
    except ImportError:
        print("amlevents: publish needs azure-eventgrid (pip install -r requirements-dev.txt)",
              file=sys.stderr)
        return 2
    client = EventGridPublisherClient(args.url, AzureKeyCredential(key))
    ok = True
    for name, content in iter_event_files(args.paths):
        try:
            payload = json.loads(content)
            events = payload if isinstance(payload, list) else [payload]
            client.send(events)
            print(f"{name}: published {len(events)} event(s)")
        except (ValueError, AzureError) as exc:
            print(f"{name}: not published: {str(exc).splitlines()[0]}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


def open_ledger(env: dict[str, str]) -> Ledger:
    """The ledger the settings point at (readable even while other settings are invalid)."""
    from handlers.ledger.ledger import Ledger
    from handlers.ledger.store import open_store

    return Ledger(open_store(env))


def with_ledger_file(env: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    """The settings, with `--ledger-file PATH` choosing that SQLite file if given."""
    path = getattr(args, "ledger_file", None)
    return {**env, LEDGER_BACKEND: "sqlite", LEDGER_PATH: path} if path else env


def query_from(args: argparse.Namespace) -> LedgerQuery:
    """The ledger query of the filter options (`--outcome`, `--type`, `--since`...)."""
    from handlers.ledger.ledger import LedgerQuery
    from handlers.outcome import Outcome

    outcomes = set()
    for name in _items(getattr(args, "outcome", None)):
        try:
            outcomes.add(Outcome(name.lower()))
        except ValueError:
            known = ", ".join(o.value for o in Outcome)
            raise UsageError(f"--outcome {name!r}: one of {known}") from None
    return LedgerQuery(
        outcomes=frozenset(outcomes), types=tuple(_items(getattr(args, "type", None))),
        since=parse_when(args.since) if getattr(args, "since", None) else "",
        until=parse_when(args.until) if getattr(args, "until", None) else "",
        subject=getattr(args, "subject", None) or "", limit=getattr(args, "limit", None))


def _items(values: Sequence[str] | None) -> list[str]:
    """`--outcome retry,failed --outcome invalid` → ['retry', 'failed', 'invalid']."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def print_entries(entries: Sequence[LedgerEntry], *, as_json: bool, out: Any = None) -> None:
    """A table, or one JSON object per line."""
    out = out or sys.stdout
    if as_json:
        for entry in entries:
            print(json.dumps(entry.as_json()), file=out)
        return
    rows = [("received", "type", "outcome", "att", "action / detail")]
    for entry in entries:
        kind = entry.event_type.rsplit(".", 1)[-1] or "?"
        text = entry.action + (f" — {entry.detail}" if entry.detail and not
                               entry.detail.startswith("{") else "")
        rows.append((entry.received_at[11:23], printable(kind[:22]), entry.outcome.value,
                     str(entry.attempts), printable(text[:110])))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4],
              file=out)
    print(f"{len(entries)} row(s)", file=out)


def print_ledger(env: dict[str, str], *, as_json: bool, out: Any = None,
                 query: LedgerQuery | None = None) -> None:
    """The ledger's rows (those the query asks for), as a table or JSON lines."""
    ledger = open_ledger(env)
    try:
        entries = ledger.query(query) if query is not None else ledger.entries()
    finally:
        ledger.close()
    print_entries(entries, as_json=as_json, out=out)


def cmd_ledger(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Print the ledger, filtered; or prune or quarantine."""
    env = with_ledger_file(env, args)
    if args.ledger_command == "prune":
        return cmd_prune(args, env)
    if args.ledger_command == "quarantine":
        return cmd_quarantine(args, env)
    print_ledger(env, as_json=args.json, query=query_from(args))
    return 0


def cmd_prune(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Delete rows not updated for longer than the retention."""
    from handlers.ledger.ledger import utc_iso
    from handlers.ledger.settings import (
        LEDGER_RETENTION_DAYS,
        MIN_RETENTION_DAYS,
        retention_days,
    )
    from handlers.outcome import Outcome

    if args.older_than:
        older_than_s = parse_duration(args.older_than)
        if older_than_s < MIN_RETENTION_DAYS * 86400:
            print(f"amlevents: --older-than must be at least {MIN_RETENTION_DAYS}d: Event Grid "
                  "redelivers an event for up to 24 hours, and a pruned row would let that "
                  "delivery act again", file=sys.stderr)
            return 2
        source = f"--older-than {args.older_than}"
    else:
        older_than_s = retention_days(env) * 86400.0
        source = f"{LEDGER_RETENTION_DAYS}={retention_days(env)}"
    ledger = open_ledger(env)
    try:
        now = time.time()
        cutoff = utc_iso(now - older_than_s)
        if args.dry_run:
            count = sum(1 for e in ledger.entries() if e.updated_at < cutoff and not (
                e.outcome is Outcome.IN_PROGRESS and e.claim_expires_at_s > now))
            print(f"would prune {count} row(s) last updated before {cutoff} ({source})")
            return 0
        count = ledger.prune(older_than_s=older_than_s)
    finally:
        ledger.close()
    print(f"pruned {count} row(s) last updated before {cutoff} ({source})")
    return 0


def cmd_quarantine(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Settle poison events for good: never acted on, redelivered or replayed again."""
    from amlevents.replay import operator

    ledger = open_ledger(env)
    status = 0
    try:
        for ref in args.ids:
            rows = ledger.find(ref)
            if not rows:
                print(f"{printable(ref)}: no such event in the ledger", file=sys.stderr)
                status = 1
            for row in rows:
                done = ledger.quarantine(row, by=args.by or operator(), reason=args.reason)
                what = ("quarantined" if done is not None
                        else "not quarantined: a delivery holds it now, or it changed; try again")
                status = status or (0 if done is not None else 1)
                print(f"{printable(row.event_id)} {printable(row.event_type.rsplit('.', 1)[-1])}"
                      f" (was {row.outcome.value}): {what}")
    finally:
        ledger.close()
    return status


def cmd_show(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Print one event whole: the row, every attempt and replay, the source event."""
    from handlers.ledger.stored_event import StoredEventError

    env = with_ledger_file(env, args)
    ledger = open_ledger(env)
    try:
        rows = ledger.find(args.id)
        if not rows:
            print(f"amlevents: {printable(args.id)}: no such event in the ledger (give an event "
                  "id, a ledger key or a key prefix)", file=sys.stderr)
            return 1
        shown = []
        for row in rows:
            try:
                stored, problem = ledger.stored_event(row.key), ""
            except StoredEventError as exc:
                stored, problem = None, str(exc)
            shown.append((row, stored, problem))
    finally:
        ledger.close()
    for index, (row, stored, problem) in enumerate(shown):
        if args.json:
            print(json.dumps(_show_json(row, stored, problem)))
            continue
        if index:
            print()
        _print_show(row, stored, problem)
    return 0


def _show_json(row: LedgerEntry, stored: Any, problem: str) -> dict[str, Any]:
    body: dict[str, Any] = {**row.as_json(), "history": row.events()}
    if stored is not None:
        body["event"] = stored.event
        body["stored"] = {"schema": stored.schema, "bytes": stored.stored_bytes,
                          "compressed": stored.compressed, "masked": stored.masked,
                          "truncated": dict(stored.truncated)}
    elif problem:
        body["stored"] = {"error": problem}
    return body


def _print_show(row: LedgerEntry, stored: Any, problem: str) -> None:
    fields = [("event", row.event_id), ("type", row.event_type), ("subject", row.subject),
              ("topic", row.topic), ("key", row.key), ("function", row.function),
              ("received", row.received_at), ("updated", row.updated_at),
              ("outcome", f"{row.outcome.value}  (attempts {row.attempts})"),
              ("action", row.action)]
    for name, value in fields:
        print(f"{name:<9} {printable(value)}")
    print("detail")
    for line in _pretty(row.detail):
        print(f"  {printable(line)}")
    print("history")
    for item in row.events():
        print(f"  {printable(_history_line(item))}")
    if stored is None:
        print(f"source event: {problem or 'not stored'}")
        return
    notes = [stored.schema, f"{stored.stored_bytes} bytes stored",
             "compressed" if stored.compressed else "", f"{stored.masked} string(s) masked"
             if stored.masked else "", "TRUNCATED: envelope only" if stored.truncated else ""]
    print(f"source event ({', '.join(n for n in notes if n)})")
    for line in json.dumps(stored.event, indent=2, ensure_ascii=False).splitlines():
        print(f"  {printable(line)}")


def _pretty(detail: str) -> list[str]:
    if detail.startswith(("{", "[")):
        try:
            return json.dumps(json.loads(detail), indent=2, ensure_ascii=False).splitlines()
        except ValueError:
            pass
    return detail.splitlines() or [""]


def _history_line(item: dict[str, Any]) -> str:
    at = str(item.get("at", ""))
    if "omitted" in item:
        return f"… {item['omitted']} earlier item(s) not kept"
    if "replay" in item:
        replay = item["replay"] if isinstance(item["replay"], dict) else {}
        forced = " FORCED" if replay.get("force") else ""
        reason = f": {replay['reason']}" if replay.get("reason") else ""
        return (f"{at}  replay{forced} by {replay.get('by', '?')} via {replay.get('via', '?')} "
                f"(was {replay.get('was', '?')}){reason}")
    if "quarantined" in item:
        info = item["quarantined"] if isinstance(item["quarantined"], dict) else {}
        return (f"{at}  quarantined by {info.get('by', '?')} (was {info.get('was', '?')}): "
                f"{info.get('reason', '')}")
    after = f" after {item['after']}" if item.get("after") else ""
    action = f"  {item['action']}" if item.get("action") else ""
    function = f"  {item['function']}" if item.get("function") else ""
    return f"#{item.get('n', '?')}  {at}{function}{after}  {item.get('outcome', '?')}{action}"


def cmd_replay(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Replay recorded events (by id, or the rows a filter selects) through the same dispatch."""
    from amlevents.replay import Replayer

    env = with_ledger_file(env, args)
    if not args.ids and not args.outcome:
        print("amlevents: replay needs event ids, or --outcome (e.g. --outcome retry,failed) to "
              "select rows", file=sys.stderr)
        return 2
    ledger = open_ledger(env)
    deliverer, via = _deliverer(args, env)
    try:
        rows: list[LedgerEntry] = []
        for ref in args.ids:
            found = ledger.find(ref)
            if not found:
                print(f"{printable(ref)}: no such event in the ledger", file=sys.stderr)
            rows += found
        if args.outcome or not args.ids:
            rows += ledger.query(query_from(args))
        rows = list({row.key: row for row in rows}.values())
        replayer = Replayer(ledger, deliverer, _options(args, via))
        results = replayer.replay_rows(rows)
    finally:
        _close(deliverer)
        ledger.close()
    _warn_dry_run(results, env, via)
    return _report(results, bool(args.ids) and not rows)


def _options(args: argparse.Namespace, via: str) -> Any:
    from amlevents.replay import ReplayOptions, operator

    return ReplayOptions(by=args.by or operator(), reason=args.reason or "", force=args.force,
                         dry_run=args.dry_run, via=via)


def _deliverer(args: argparse.Namespace, env: dict[str, str]) -> tuple[Any, str]:
    from amlevents.replay import HttpDeliverer, LocalDeliverer

    if args.url:
        return HttpDeliverer(args.url, args.key or env.get(HOST_KEY) or None), args.url
    return LocalDeliverer(env), "local"


def _warn_dry_run(results: Sequence[Any], env: dict[str, str], via: str) -> None:
    """Replayed in this process with dry run on: say so (the plan is recorded, not carried out)."""
    from handlers.runtime.settings import DRY_RUN

    if via.endswith("local") and any(r.status == "replayed" for r in results) and str(
            env.get(DRY_RUN, "true")).strip().lower() in ("true", "yes", "1", "on"):
        print(f"note: {DRY_RUN} is on in these settings: the events replayed here were planned, "
              "not acted on (replay through the deployed app with --url to act)",
              file=sys.stderr)


def _close(deliverer: Any) -> None:
    close = getattr(deliverer, "close", None)
    if callable(close):
        close()


def _report(results: Sequence[Any], missing: bool) -> int:
    for result in results:
        change = (f"{result.before or 'new'} -> {result.after}" if result.after
                  else (result.before or "new"))
        print(f"{result.status}: {printable(result.event_id)} "
              f"{printable(result.event_type.rsplit('.', 1)[-1])} -> {result.function}: "
              f"{change}" + (f" ({printable(result.note)})" if result.note else ""))
    print(f"{len(results)} event(s): " + ", ".join(
        f"{sum(1 for r in results if r.status == s)} {s}"
        for s in ("replayed", "would replay", "skipped", "error")
        if any(r.status == s for r in results)) if results else "no event to replay")
    return 1 if missing or any(r.unsettled for r in results) else 0


def cmd_deadletter(args: argparse.Namespace, env: dict[str, str]) -> int:
    """List Event Grid's dead letters, or replay them."""
    from amlevents.deadletter import DeadLetterStore, replay_blobs, subscription_functions
    from amlevents.replay import Replayer
    from amlevents.simulator.service import SIMULATOR_DEADLETTER_CONNECTION, SUBSCRIPTIONS_FILE

    env = with_ledger_file(env, args)
    connection = args.connection or env.get(SIMULATOR_DEADLETTER_CONNECTION, "")
    if not (connection or args.account_url):
        print("amlevents: dead letters need --connection (a storage connection string, or "
              f"UseDevelopmentStorage=true), --account-url (az login), or "
              f"{SIMULATOR_DEADLETTER_CONNECTION}", file=sys.stderr)
        return 2
    subscriptions = env.get(SUBSCRIPTIONS_FILE)
    functions, containers = subscription_functions(Path(subscriptions) if subscriptions else None)
    try:
        store = (DeadLetterStore.from_account_url(args.account_url) if args.account_url
                 else DeadLetterStore.from_connection_string(connection))
    except ImportError:
        print("amlevents: dead letters need azure-storage-blob (pip install -r "
              "requirements-dev.txt)", file=sys.stderr)
        return 2
    except ValueError:  # never echo the value: it holds the account key
        print("amlevents: the dead-letter connection string is not valid", file=sys.stderr)
        return 2
    from azure.core.exceptions import AzureError

    try:
        blobs = [blob for container in (args.container or containers)
                 for blob in store.blobs(container, prefix=args.prefix,
                                         names=getattr(args, "blobs", ()) or ())]
        if args.deadletter_command == "list":
            return _list_dead_letters(blobs, as_json=args.json)
        ledger = open_ledger(env)
        deliverer, via = _deliverer(args, env)
        try:
            replayer = Replayer(ledger, deliverer, _options(args, f"deadletter {via}"))
            done = replay_blobs(store, blobs, replayer, ledger, functions, again=args.again,
                                named=bool(args.blobs))
        finally:
            _close(deliverer)
            ledger.close()
    except AzureError as exc:  # unreachable, or access denied (the role: docs/operating.md)
        from handlers.runtime.redaction import redact, secret_values

        status = getattr(exc, "status_code", None)
        first = redact((str(exc).splitlines() or [""])[0][:300], secret_values(env))
        print(f"amlevents: dead-letter storage: {type(exc).__name__}"
              f"{f' {status}' if status else ''}: {printable(first)}", file=sys.stderr)
        return 1
    finally:
        store.close()
    results = []
    for blob, replayed in done:
        if blob.error:
            print(f"{printable(blob.name)}: not replayed: {printable(blob.error)}",
                  file=sys.stderr)
        elif not replayed:
            print(f"{printable(blob.name)}: replayed before "
                  f"({printable(blob.mark.get('amlevents_replayed_at', ''))}), left out "
                  "(--again, or name the blob)")
        results += replayed
    _warn_dry_run(results, env, "deadletter local" if not args.url else args.url)
    return _report(results, False)


def _list_dead_letters(blobs: Sequence[Any], *, as_json: bool) -> int:
    count = 0
    for blob in blobs:
        if blob.error and not as_json:
            print(f"{printable(blob.name)}: {printable(blob.error)}")
        for record in blob.records:
            count += 1
            if as_json:
                print(json.dumps({
                    "container": blob.container, "blob": blob.name, "index": record.index,
                    "id": record.event_id, "type": record.event_type, "subject": record.subject,
                    "deadLetterReason": record.reason, "deliveryAttempts": record.delivery_attempts,
                    "lastDeliveryOutcome": record.last_delivery_outcome,
                    "lastHttpStatusCode": record.last_http_status_code,
                    "publishTime": record.publish_time,
                    "lastDeliveryAttemptTime": record.last_delivery_attempt_time,
                    "replayed": dict(blob.mark) if blob.replayed else None}))
                continue
            replayed = (f"  replayed {blob.mark.get('amlevents_replayed_at', '')}"
                        if blob.replayed else "")
            print(f"{printable(record.publish_time)}  {printable(record.reason)}  "
                  f"attempts {record.delivery_attempts}  "
                  f"{printable(record.last_delivery_outcome)}"
                  f"{'/' + str(record.last_http_status_code) if record.last_http_status_code else ''}"
                  f"  {printable(record.event_type.rsplit('.', 1)[-1])}  "
                  f"{printable(record.event_id)}  {printable(record.subject)}{replayed}\n"
                  f"    {printable(blob.container)}/{printable(blob.name)}")
    if not as_json:
        print(f"{count} dead letter(s) in {len(blobs)} blob(s)")
    return 0


def cmd_demo(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Start the host on a free port with a fresh SQLite ledger, send the samples, print it."""
    from handlers.adapters.notify.outbox import local_only, summarize

    workdir = Path(tempfile.mkdtemp(prefix="amlevents-demo-"))
    ledger_path, outbox = workdir / "ledger.sqlite3", workdir / "outbox"
    # Always a fresh embedded ledger, whatever the settings choose (the Table ledger, a path):
    # the demo shows first deliveries. Notifications really go out, to a local folder outbox:
    # never to channels named in settings.
    env = local_only({**env, LEDGER_BACKEND: "sqlite", LEDGER_PATH: str(ledger_path)},
                     str(outbox))
    server = build_host(env, bind="127.0.0.1", port=0)
    server.server.start()
    try:
        print(f"demo: local host on {server.url}, ledger {ledger_path}")
        for name, content in iter_event_files([str(SAMPLES)]):
            for function, status, _ in post_events(server.url, content,
                                                   key=env.get(HOST_KEY) or None):
                print(f"  sent {Path(name).name} -> {function}: HTTP {status}")
        print()
        print_ledger(env, as_json=False)
        print()
        _print_planned_deployment(env, ledger_path)
        print()
        print(f"notifications (folder outbox {outbox}: one .json and one .eml each):")
        for line in summarize(str(outbox)) or ["(none)"]:
            print(f"  {line}")
    finally:
        server.stop()
    return 0


def _print_planned_deployment(env: dict[str, str], ledger_path: Path) -> None:
    """The deploy=true sample's row: what the deployment would be, and how to see it again."""
    event_id = str(json.loads(DEPLOY_SAMPLE.read_text(encoding="utf-8"))[0]["id"])
    ledger = open_ledger(env)
    try:
        rows = ledger.find(event_id)
    finally:
        ledger.close()
    print(f"the model registered with deploy=true ({DEPLOY_SAMPLE.name}):")
    for row in rows:
        print(f"  {row.outcome.value}: {printable(row.action)}")
        plan = _plan_summary(row.detail)
        if plan:
            print(f"  plan: {printable(plan)}")
    if not rows:
        print("  (not in the ledger: was it sent?)")
    print(f"see it again, whole: {_program()} show {event_id} --ledger-file {ledger_path}")


def _plan_summary(detail: str) -> str:
    """The short, set fields of a plan's JSON detail on one line (`endpoint=…, traffic=100`)."""
    try:
        plan = json.loads(detail)
    except ValueError:
        return ""
    if not isinstance(plan, dict):
        return ""
    return ", ".join(f"{k}={v}" for k, v in plan.items()
                     if v not in ("", 0, 0.0, None) and not isinstance(v, (dict, list))
                     and len(str(v)) <= 60)


def _program() -> str:
    """How this command was started, for commands printed to be run next."""
    invoked = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("amlevents")
    return str(invoked) if invoked.name == "amlevents" else "amlevents"


def _add_filters(command: argparse.ArgumentParser, *, what: str) -> None:
    command.add_argument("--outcome", action="append", metavar="O[,O...]",
                         help=f"{what} with these outcomes (done, planned, skipped, refused, "
                              "invalid, failed, retry, in_progress)")
    command.add_argument("--type", action="append", metavar="T[,T...]",
                         help="event types, whole or short (ModelRegistered), any case")
    command.add_argument("--since", help="received at or after: 2h, 7d, or an ISO time (UTC)")
    command.add_argument("--until", help="received before: 2h, 7d, or an ISO time (UTC)")
    command.add_argument("--subject", help="subject glob, e.g. 'models/churn*'")
    command.add_argument("--limit", type=int, help="only the N most recently received")


def _add_ledger_file(command: argparse.ArgumentParser) -> None:
    command.add_argument("--ledger-file", metavar="PATH",
                         help="read this SQLite ledger file instead of the one the settings "
                              "choose (e.g. the demo's)")


def _add_replay_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--dry-run", action="store_true",
                         help="say what would be replayed; record and deliver nothing")
    command.add_argument("--force", action="store_true",
                         help="replay events that settled (done, planned, skipped) or were "
                              "quarantined too; recorded in their history")
    command.add_argument("--url", help="deliver through this Functions host (the deployed app, "
                                       "or `amlevents serve`) instead of in this process")
    command.add_argument("--key", help="the host's key for --url (the deployed app's "
                                       "eventgrid_extension system key; default "
                                       "AMLEVENTS_HOST_KEY)")
    command.add_argument("--by", help="who replays (default: user@host)")
    command.add_argument("--reason", help="why (kept in each row's history)")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="amlevents", description=(__doc__ or "").split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the local Functions host")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    serve.add_argument("--port", type=int, default=7071)
    serve.set_defaults(run=cmd_serve)
    send = sub.add_parser("send", help="post event files (or a folder, or - for stdin)")
    send.add_argument("paths", nargs="+")
    send.add_argument("--url", default=DEFAULT_URL)
    send.set_defaults(run=cmd_send)
    publish = sub.add_parser("publish", help="publish event files to an Event Grid topic "
                                               "(the simulator in `serve`, or a real one)")
    publish.add_argument("paths", nargs="+")
    publish.add_argument("--url", default=f"{DEFAULT_URL}/api/events")
    publish.add_argument("--key", default="", help="topic access key (default: "
                                                   "AMLEVENTS_TOPIC_KEY)")
    publish.set_defaults(run=cmd_publish)
    serve.add_argument("--quiet", action="store_true", help="no line per event")
    serve.add_argument("--verbose", action="store_true",
                       help="each event's id, time taken, action and detail too")
    ledger = sub.add_parser("ledger", help="print the ledger (filtered); prune; quarantine")
    ledger.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_filters(ledger, what="rows")
    _add_ledger_file(ledger)
    ledger.set_defaults(run=cmd_ledger)
    ledger_sub = ledger.add_subparsers(dest="ledger_command")
    prune = ledger_sub.add_parser("prune", help="delete rows not updated for a while")
    prune.add_argument("--older-than", metavar="AGE",
                       help="e.g. 90d (default: AMLEVENTS_LEDGER_RETENTION_DAYS, 90 days)")
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    quarantine = ledger_sub.add_parser(
        "quarantine", help="settle poison events for good: never acted on or replayed again")
    quarantine.add_argument("ids", nargs="+", metavar="ID")
    quarantine.add_argument("--reason", default="", help="why (kept in the row)")
    quarantine.add_argument("--by", help="who (default: user@host)")
    show = sub.add_parser("show", help="one event whole: every attempt, the action, the "
                                       "detail, the source event")
    show.add_argument("id", help="an event id, a ledger key, or a key prefix")
    show.add_argument("--json", action="store_true", help="one JSON object per row")
    _add_ledger_file(show)
    show.set_defaults(run=cmd_show)
    replay = sub.add_parser("replay", help="run recorded events through the dispatch again, "
                                           "exactly once")
    replay.add_argument("ids", nargs="*", metavar="ID",
                        help="event ids, ledger keys or key prefixes")
    _add_filters(replay, what="replay the rows")
    _add_replay_options(replay)
    _add_ledger_file(replay)
    replay.set_defaults(run=cmd_replay)
    deadletter = sub.add_parser("deadletter", help="Event Grid's dead letters in Blob Storage: "
                                                   "list, replay")
    dead_sub = deadletter.add_subparsers(dest="deadletter_command", required=True)
    for name, text in (("list", "list the dead-lettered events"),
                       ("replay", "replay them through the dispatch (exactly once), then mark "
                                  "each blob")):
        command = dead_sub.add_parser(name, help=text)
        if name == "replay":
            command.add_argument("blobs", nargs="*", metavar="BLOB",
                                 help="blob names (default: every blob not replayed before)")
            command.add_argument("--again", action="store_true",
                                 help="include blobs a replay marked before")
            _add_replay_options(command)
            _add_ledger_file(command)
        else:
            command.add_argument("--json", action="store_true", help="one JSON object per event")
        command.add_argument("--container", action="append",
                             help="dead-letter container (default: those infra/"
                                  "subscriptions.json names)")
        command.add_argument("--prefix", default="", help="blob name prefix, e.g. TOPIC/SUB/2024/6/")
        command.add_argument("--connection", help="storage connection string (default "
                                                  "AMLEVENTS_SIMULATOR_DEADLETTER_CONNECTION)")
        command.add_argument("--account-url", help="https://ACCOUNT.blob.core.windows.net, "
                                                   "signed in with az login")
        command.set_defaults(run=cmd_deadletter)
    demo = sub.add_parser("demo", help="start the host, send the samples, print the ledger")
    demo.set_defaults(run=cmd_demo)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `amlevents` console script."""
    args = parser().parse_args(argv)
    try:
        env = local_env()
    except LocalSettingsError as exc:
        print(f"amlevents: {exc}", file=sys.stderr)
        return 2
    from amlevents.logging_setup import install_log_redaction
    from handlers.errors import PermanentError, RetryableError, SettingError

    install_log_redaction(env)  # every command's log lines masked, one line each
    try:
        result: int = args.run(args, env)
    except (SettingError, UsageError) as exc:
        print(f"amlevents: {printable(exc)}", file=sys.stderr)
        return 2
    except (RetryableError, PermanentError) as exc:  # the ledger unreachable, access denied
        print(f"amlevents: {printable(exc)}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
