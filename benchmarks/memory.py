"""Memory: peak RSS of one app process, in dry run and live with every SDK loaded.

Each figure is a fresh interpreter's peak resident set (getrusage ru_maxrss) after it handled
events through the Dispatcher, as a Functions worker process would:

- dry run: 2,000 sample events (failed runs and drift), SQLite ledger; no Azure SDK is imported
  (they load on a live adapter's first call);
- live: every SDK an adapter may load imported (azure-ai-ml, Data Factory, identity, Tables, ACS
  Email, Event Grid), then ten model versions deployed and ten Data Factory runs started against
  the fake ARM, which runs in this (parent) process so that its memory is not counted.

Baseline, same run: an interpreter that does nothing (`pass`). Needs the dev requirements
(tests/fakes). Run: .venv/bin/python benchmarks/memory.py [--events N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SDKS = ("azure.ai.ml", "azure.mgmt.datafactory", "azure.identity", "azure.data.tables",
        "azure.communication.email", "azure.eventgrid")


def peak_rss_mib() -> float:
    """This process's peak resident set size, MiB.

    Linux: VmHWM, the high-water mark of this program's own memory (ru_maxrss would also count
    the parent's memory at the fork that started this interpreter).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_dry_run(events: int, workdir: str) -> None:
    """Dispatch `events` dry-run sample events; print the peak RSS."""
    from throughput import make_events

    from handlers.runtime.dispatch import Dispatcher

    batch = make_events(events)
    dispatcher = Dispatcher({"AMLEVENTS_ALLOWED_TOPICS": batch[0]["topic"],
                             "AMLEVENTS_LEDGER_PATH": f"{workdir}/dry.sqlite3",
                             "AMLEVENTS_NOTIFY_OUTBOX_DIR": f"{workdir}/outbox"})
    for event in batch:
        dispatcher.dispatch(event, function="on_ml_event")
    loaded = [name for name in SDKS if name in sys.modules]
    print(json.dumps({"rss": peak_rss_mib(), "sdks": loaded}))


def child_live(topic: str, settings: dict[str, str]) -> None:
    """Import every SDK, deploy and retrain live against the parent's fake ARM; print the RSS."""
    import importlib

    from warm_path import EVENTS, drifted, registered, send_quietly

    from handlers.runtime.dispatch import Dispatcher
    from handlers.runtime.routing import ON_DRIFT_DETECTED, ON_MODEL_REGISTERED

    for name in SDKS:
        importlib.import_module(name)
    dispatcher = Dispatcher(settings)
    for i in range(EVENTS):
        send_quietly("deploy", dispatcher.dispatch, registered(topic, i),
                     function=ON_MODEL_REGISTERED)
        send_quietly("retrain", dispatcher.dispatch, drifted(topic, i), function=ON_DRIFT_DETECTED)
    print(json.dumps({"rss": peak_rss_mib(), "sdks": [n for n in SDKS if n in sys.modules]}))


def run_child(mode: str, payload: dict[str, object], env: dict[str, str]) -> dict[str, object]:
    """Run this script as a child in `mode`; its JSON answer."""
    result = subprocess.run([sys.executable, __file__, "--child", mode, json.dumps(payload)],
                            env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{result.stderr[-3000:]}")
    answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def main() -> None:
    """Start the fake ARM, run the children, print their peak RSS."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PAYLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, payload = args.child[0], json.loads(args.child[1])
        if mode == "empty":
            print(json.dumps({"rss": peak_rss_mib(), "sdks": []}))
        elif mode == "dry":
            child_dry_run(int(payload["events"]), str(payload["workdir"]))
        else:
            import logging

            logging.disable(logging.INFO)
            child_live(str(payload["topic"]), dict(payload["settings"]))
        return
    from warm_path import live_settings, seed

    from tests.fakes.arm import start_fake_arm

    baseline = run_child("empty", {}, dict(os.environ))
    with tempfile.TemporaryDirectory(prefix="amlevents-memory-") as tmp, \
            start_fake_arm(lro_retry_after_ms=1) as arm:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "benchmarks")))}
        dry = run_child("dry", {"events": args.events, "workdir": tmp}, env)
        seed(arm)
        topic, settings = live_settings(arm, tmp)
        live_env = {name: value for name, value in env.items() if name not in arm.environ()}
        live_env.update({k: v for k, v in arm.environ().items() if v is not None})
        live = run_child("live", {"topic": topic, "settings": settings}, live_env)
    print(f"peak RSS, empty interpreter    : {float(str(baseline['rss'])):7.1f} MiB")
    print(f"peak RSS, dry run ({args.events} events) : {float(str(dry['rss'])):7.1f} MiB "
          f"(SDKs loaded: {', '.join(map(str, dry['sdks'])) or 'none'})")  # type: ignore[call-overload]
    print(f"peak RSS, live, all SDKs loaded: {float(str(live['rss'])):7.1f} MiB "
          f"({len(live['sdks'])} SDKs; 10 deployments, 10 Data Factory runs)")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
