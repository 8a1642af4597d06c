#!/usr/bin/env python3
"""Deploy the Event Grid subscriptions of infra/subscriptions.json, and only those (the CI/CD step).

1. Wait until the Function App lists every function the file targets: right after a first publish
   the functions are not indexed yet, and Event Grid refuses an AzureFunction destination it
   cannot find ("Destination endpoint not found").
2. Run the template with deployEventSubscriptions=true, retrying a failed run: a new identity's
   role assignments (dead-letter writer, destination senders) take minutes to propagate.
3. Delete the subscriptions labelled `amlevents` on the workspace's system topic and on the
   outcome topic that this deployment did not create: ARM's incremental mode leaves a
   subscription removed from the file running, and a renamed one would deliver twice.

Only the Azure CLI (`az`, signed in) and the standard library. Exit status 0 on success.
Usage: python infra/deploy_subscriptions.py -g RG --app-name APP --parameters FILE
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

INFRA = Path(__file__).resolve().parent
LABEL = "amlevents"


class AzError(RuntimeError):
    """An `az` command failed; the message has its stderr."""


def az(*args: str) -> Any:
    """Run `az ARGS --output json` and parse what it prints."""
    done = subprocess.run(["az", *args, "--only-show-errors", "--output", "json"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AzError(f"az {' '.join(args[:3])}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout) if done.stdout.strip() else None


def target_functions(subscriptions_file: Path) -> set[str]:
    """The function names the subscriptions file delivers to."""
    document = json.loads(subscriptions_file.read_text(encoding="utf-8"))
    return {str(s["function"]) for s in document.get("subscriptions", []) if s.get("function")}


def listed_functions(group: str, app: str) -> set[str]:
    """The functions the app lists (names come as `APP/NAME`)."""
    names = az("functionapp", "function", "list", "--resource-group", group, "--name", app,
               "--query", "[].name") or []
    return {str(name).rsplit("/", 1)[-1] for name in names}


def wait_for_functions(group: str, app: str, wanted: set[str], *, timeout_s: float,
                       interval_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once the app lists every wanted function; AzError when the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            missing = wanted - listed_functions(group, app)
        except AzError as exc:  # the app restarting after a publish answers errors for a while
            missing, error = wanted, str(exc)
        else:
            error = ""
        if not missing:
            print(f"functions listed: {', '.join(sorted(wanted)) or '(none needed)'}")
            return
        if time.monotonic() >= deadline:
            raise AzError(f"the app {app} does not list {', '.join(sorted(missing))} after "
                          f"{timeout_s:.0f}s{': ' + error if error else ''}")
        print(f"waiting for the app to list {', '.join(sorted(missing))}...")
        sleep(interval_s)


def deploy(group: str, name: str, parameters: str, *, attempts: int, interval_s: float,
           sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Run the template with the subscriptions on; its outputs. Retries a failed run."""
    for attempt in range(1, attempts + 1):
        try:
            result = az("deployment", "group", "create", "--resource-group", group,
                        "--name", f"{name}-{attempt}" if attempt > 1 else name,
                        "--template-file", str(INFRA / "main.bicep"),
                        "--parameters", f"@{parameters}",
                        "--parameters", "deployEventSubscriptions=true")
        except AzError as exc:
            if attempt == attempts:
                raise
            print(f"deployment attempt {attempt} failed, retrying in {interval_s:.0f}s: "
                  f"{str(exc)[:500]}")
            sleep(interval_s)
            continue
        outputs = (result or {}).get("properties", {}).get("outputs", {}) or {}
        return {key: value.get("value") for key, value in outputs.items()}
    raise AssertionError("unreachable")


def stale(subscriptions: Sequence[dict[str, Any]], keep: set[str]) -> list[dict[str, Any]]:
    """The amlevents-labelled subscriptions that are not to be kept (ARM's list items)."""
    keep_lower = {name.lower() for name in keep}  # ARM names compare case-insensitively
    return sorted((s for s in subscriptions if LABEL in (s.get("labels") or [])
                   and str(s["name"]).lower() not in keep_lower), key=lambda s: str(s["name"]))


def prune(group: str, outputs: dict[str, Any]) -> list[str]:
    """Delete the labelled subscriptions of both topics that the deployment did not create."""
    topics = [(str(outputs.get("systemTopicName") or ""), "system-topic", "--system-topic-name",
               set(outputs.get("eventSubscriptionNames") or [])),
              (str(outputs.get("outcomeTopicName") or ""), "topic", "--topic-name",
               set(outputs.get("outcomeSubscriptionNames") or []))]
    deleted: list[str] = []
    for topic, kind, flag, keep in topics:
        if not topic:
            continue
        found = az("eventgrid", kind, "event-subscription", "list", "--resource-group", group,
                   flag, topic) or []
        for subscription in stale(found, keep):
            az("resource", "delete", "--ids", str(subscription["id"]))  # no prompt, any topic
            deleted.append(f"{topic}/{subscription['name']}")
    return deleted


def main(argv: Sequence[str] | None = None, *,
         sleep: Callable[[float], None] = time.sleep) -> int:
    """The CI/CD step: wait, deploy with retries, prune."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resource-group", "-g", required=True)
    parser.add_argument("--app-name", required=True)
    parser.add_argument("--parameters", required=True, help="the parameters file")
    parser.add_argument("--deployment-name", default="amlevents-events")
    parser.add_argument("--subscriptions", default=str(INFRA / "subscriptions.json"))
    parser.add_argument("--wait-s", type=float, default=900.0)
    parser.add_argument("--interval-s", type=float, default=30.0)
    parser.add_argument("--attempts", type=int, default=6)
    args = parser.parse_args(argv)
    try:
        wait_for_functions(args.resource_group, args.app_name,
                           target_functions(Path(args.subscriptions)), timeout_s=args.wait_s,
                           interval_s=args.interval_s, sleep=sleep)
        outputs = deploy(args.resource_group, args.deployment_name, args.parameters,
                         attempts=args.attempts, interval_s=args.interval_s, sleep=sleep)
        for name in outputs.get("skippedSubscriptionNames") or []:
            print(f"not deployed (a placeholder has no value in subscriptionValues): {name}")
        deleted = prune(args.resource_group, outputs)
    except AzError as exc:
        print(f"deploy_subscriptions: {exc}", file=sys.stderr)
        return 1
    print(f"subscriptions deployed: {', '.join(outputs.get('eventSubscriptionNames') or [])}")
    if outputs.get("outcomeSubscriptionNames"):
        print(f"outcome topic subscriptions: {', '.join(outputs['outcomeSubscriptionNames'])}")
    print(f"deleted (no longer in the file): {', '.join(deleted) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
