"""`amlevents`: serve the app locally, send events to it, read the ledger, run the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlevents.local_settings import HOST_KEY, LocalSettingsError, local_env
from handlers.ledger.settings import LEDGER_PATH

DEFAULT_URL = "http://localhost:7071"
SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "events"


@dataclass
class RunningHost:
    """The local server and, when AMLEVENTS_TOPIC_KEY is set, the topic simulator in front."""

    server: Any
    simulator: Any = None
    timers: Any = None

    @property
    def url(self) -> str:
        """Base URL of the host."""
        return str(self.server.url)

    def stop(self) -> None:
        """Stop the simulator (dead-lettering what is pending), then the server."""
        if self.timers is not None:
            self.timers.stop()
        if self.simulator is not None:
            self.simulator.stop()
        self.server.stop()


def build_host(env: dict[str, str], *, bind: str, port: int) -> RunningHost:
    """Apply `env` to the process (as `func start` does), load function_app and wrap it."""
    os.environ.update(env)
    from amlevents.host.server import FunctionsHost, LocalServer, load_functions
    from amlevents.simulator.service import SimulatorSettings, TopicSimulator
    from handlers.runtime.dispatch import default_dispatcher
    from handlers.runtime.redaction import install_redaction, secret_values

    default_dispatcher.cache_clear()
    install_redaction(secret_values(env))  # before the first request, not the first event
    import function_app

    functions = load_functions(function_app.app)
    key = env.get(HOST_KEY) or None
    host = FunctionsHost(functions, key=key)
    server = LocalServer(host, bind=bind, port=port)
    simulator_settings = SimulatorSettings.from_mapping(env)
    if simulator_settings is None:
        return RunningHost(server)
    simulator = TopicSimulator(simulator_settings, server.url, functions.event_grid,
                               function_key=key)
    host.extra_routes[simulator.path] = simulator.route
    return RunningHost(server, simulator.start())


def cmd_serve(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Run the local Functions host until Ctrl-C."""
    try:
        running = build_host(env, bind=args.host, port=args.port)
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
    if running.simulator is not None:
        print(f"Event Grid topic simulator on {url}/api/events (key: AMLEVENTS_TOPIC_KEY; "
              "delivers through the subscriptions file)", flush=True)
    import function_app
    from amlevents.host.server import load_functions
    from amlevents.timers import TimerRunner

    running.timers = TimerRunner(list(load_functions(function_app.app).timers)).start()
    try:
        running.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        running.timers.stop()
        if running.simulator is not None:
            running.simulator.stop()
    return 0


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


def open_ledger(env: dict[str, str]) -> Any:
    """The ledger the settings point at (readable even while other settings are invalid)."""
    from handlers.ledger.ledger import Ledger
    from handlers.ledger.store import open_store

    return Ledger(open_store(env))


def print_ledger(env: dict[str, str], *, as_json: bool, out: Any = None) -> None:
    """A table, or one JSON object per line."""
    out = out or sys.stdout
    ledger = open_ledger(env)
    try:
        entries = ledger.entries()
    finally:
        ledger.close()
    if as_json:
        for entry in entries:
            print(json.dumps(entry.as_json()), file=out)
        return
    rows = [("received", "type", "outcome", "att", "action / detail")]
    for entry in entries:
        kind = entry.event_type.rsplit(".", 1)[-1] or "?"
        text = entry.action + (f" — {entry.detail}" if entry.detail and not
                               entry.detail.startswith("{") else "")
        rows.append((entry.received_at[11:23], kind[:22], entry.outcome.value,
                     str(entry.attempts), text[:110]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4],
              file=out)
    print(f"{len(entries)} event(s)", file=out)


def cmd_ledger(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Print the ledger."""
    print_ledger(env, as_json=args.json)
    return 0


def cmd_demo(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Start the host on a free port with a fresh SQLite ledger, send the samples, print it."""
    from handlers.adapters.notify.outbox import local_only, summarize
    from handlers.ledger.settings import LEDGER_BACKEND

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
        print(f"notifications (folder outbox {outbox}: one .json and one .eml each):")
        for line in summarize(str(outbox)) or ["(none)"]:
            print(f"  {line}")
    finally:
        server.stop()
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="amlevents", description=__doc__)
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
    ledger = sub.add_parser("ledger", help="print the ledger")
    ledger.add_argument("--json", action="store_true", help="one JSON object per line")
    ledger.set_defaults(run=cmd_ledger)
    demo = sub.add_parser("demo", help="start the host, send the five samples, print the ledger")
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
    from handlers.errors import SettingError

    try:
        result: int = args.run(args, env)
    except SettingError as exc:
        print(f"amlevents: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
