"""`amlevents serve` with the topic simulator: outcome events, end to end.

Azure ML events are published to the simulator's workspace topic with the real
EventGridPublisherClient; the app acts on them and publishes its amlevents.* CloudEvents with the
same client to the simulated outcome topic (AMLEVENTS_OUTCOME_TOPIC_ENDPOINT, a loopback URL that
`serve` then hosts), whose subscription delivers them to a webhook (validated at creation).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("AZURE_FUNCTIONS_UNDER_TEST"):  # `make test-floor`: azure-functions alone
    pytest.skip("the floor venv has no azure-eventgrid; `make test` runs this tier",
                allow_module_level=True)

from azure.core.credentials import AzureKeyCredential
from azure.eventgrid import EventGridPublisherClient

from amlevents.cli import RunningHost, build_host
from handlers.runtime.dispatch import default_dispatcher
from tests.amlevents.simulator.conftest import Receiver, _Server
from tests.conftest import ROOT
from tests.fakes.azurite import free_port
from tests.fakes.server import serve_in_thread

Sample = Callable[[str], dict[str, Any]]
TOPIC_KEY = "workspace-topic-key-0123456789"
OUTCOME_KEY = "outcome-topic-key-0123456789"
WEBHOOK_SECRET = "whsec-0123456789abcdef"


@dataclass
class Served:
    """The running host, the webhook that subscribes to every outcome, the folder outbox."""

    host: RunningHost
    hook: Receiver
    outbox: Path

    def publish(self, *events: dict[str, Any]) -> None:
        """Publish Azure ML events to the workspace topic, then wait for every delivery."""
        EventGridPublisherClient(f"{self.host.url}/api/events",
                                 AzureKeyCredential(TOPIC_KEY)).send(list(events))
        assert self.host.simulator.drain(30)

    def outcomes(self) -> list[dict[str, Any]]:
        """The outcome events the webhook received (CloudEvents, one per delivery)."""
        return [r.json() for r in self.hook.notifications()]

    def types(self) -> list[str]:
        """Their types, sorted."""
        return sorted(e["type"] for e in self.outcomes())


@pytest.fixture
def served(base_env: dict[str, str], tmp_path: Path) -> Iterator[Served]:
    shipped = json.loads((ROOT / "infra" / "subscriptions.json").read_text("utf-8"))
    document = copy.deepcopy(shipped)
    document["subscriptions"].append({
        "name": "all-outcomes-to-webhook", "topic": "outcomes",
        "eventDeliverySchema": "CloudEventSchemaV1_0",
        "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "{allOutcomes}"}},
        "filter": {"includedEventTypes": None},
        "retryPolicy": {"maxDeliveryAttempts": 5, "eventTimeToLiveInMinutes": 60},
        "deadLetter": {"blobContainerName": "eventgrid-deadletter"}})
    (tmp_path / "subscriptions.json").write_text(json.dumps(document), encoding="utf-8")
    shutil.copy(ROOT / "infra" / "subscriptions.schema.json", tmp_path)
    with serve_in_thread(_Server(), poll_interval=0.05) as server:
        hook = Receiver(server)
        env = {**base_env, "AMLEVENTS_TOPIC_KEY": TOPIC_KEY,
               # A live notification channel with secrets: its URL (a key in the path) and key.
               "AMLEVENTS_NOTIFY_WEBHOOK_URL": f"{hook.url}/notify/k3y-in-the-path-0123",
               "AMLEVENTS_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
               "AMLEVENTS_SUBSCRIPTIONS_FILE": str(tmp_path / "subscriptions.json"),
               "AMLEVENTS_SIMULATOR_DIR": str(tmp_path / "sim"),
               "AMLEVENTS_SIMULATOR_TIME_SCALE": "0.0005",
               "AMLEVENTS_OUTCOME_TOPIC_ENDPOINT": f"http://127.0.0.1:{free_port()}/api/events",
               "AMLEVENTS_OUTCOME_TOPIC_KEY": OUTCOME_KEY,
               "AMLEVENTS_SIMULATOR_SUBSCRIPTION_VALUES": json.dumps({
                   "allOutcomes": f"{hook.url}/outcomes",
                   "outcomeWebhookUrl": f"{hook.url}/deployment-failed"}),
               # Notifications and deployment refusals are live; the rest rehearses.
               "AMLEVENTS_DRY_RUN_NOTIFY": "false"}
        host = build_host(env, bind="127.0.0.1", port=0)
        host.server.start()
        try:
            yield Served(host, hook, Path(base_env["AMLEVENTS_NOTIFY_OUTBOX_DIR"]))
        finally:
            host.stop()


def tagged(sample: Sample, **tags: str) -> dict[str, Any]:
    event = sample("model_registered")
    event["data"]["ModelTags"] = {"deploy": "true", **tags}
    return event


def test_outcome_events_arrive_once_per_outcome(served: Served, sample: Sample) -> None:
    deploy, drift, run = tagged(sample), sample("dataset_drift_detected"), \
        sample("run_status_changed")
    served.publish(deploy, drift, run)
    served.publish(deploy, drift, run)  # published again: acted on once, announced once
    assert served.types() == ["amlevents.DeploymentPlanned", "amlevents.NotificationSent",
                              "amlevents.RetrainingPlanned"]
    by_type = {e["type"]: e for e in served.outcomes()}
    assert by_type["amlevents.DeploymentPlanned"]["subject"] == deploy["subject"]
    assert by_type["amlevents.RetrainingPlanned"]["data"]["sourceEventId"] == drift["id"]
    sent = by_type["amlevents.NotificationSent"]
    assert sent["data"]["dryRun"] is False and sent["data"]["outcome"] == "done"
    assert sent["data"]["links"]["run"].startswith("https://ml.azure.com/runs/")
    # The first request each subscription got was its validation handshake, at creation.
    assert served.hook.requests()[0].method == "OPTIONS"


def test_a_refusal_reaches_subscribers_and_the_example_routes_only_failures(
        served: Served, sample: Sample) -> None:
    served.host.simulator.engine.drain(5)
    refused = tagged(sample, deploy_instance_count="50")  # over AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT
    refused["id"] = "refused-1"
    os.environ["AMLEVENTS_DRY_RUN_DEPLOY"] = "false"  # read by the dispatcher on first event
    default_dispatcher.cache_clear()
    served.publish(refused)
    (event,) = served.outcomes()
    assert event["type"] == "amlevents.DeploymentRefused" and event["data"]["dryRun"] is False
    assert "instance" in event["data"]["detail"]
    # The shipped example subscription (DeploymentFailed -> webhook) did not take it.
    assert all(r.path == "/outcomes" for r in served.hook.notifications())


def test_topic_down_the_action_is_not_redone_and_the_event_is_published_later(
        served: Served, sample: Sample) -> None:
    served.host.simulator.outcome_endpoint.available = False
    run = sample("run_status_changed")
    EventGridPublisherClient(f"{served.host.url}/api/events",
                             AzureKeyCredential(TOPIC_KEY)).send([run])
    ledger = default_dispatcher().ledger
    # Event Grid redelivers while the outcome is pending: the ledger counts the deliveries.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not [e for e in ledger.entries() if e.attempts >= 3]:
        time.sleep(0.05)
    (entry,) = ledger.entries()
    assert entry.outcome.value == "done" and entry.attempts >= 3
    assert served.outcomes() == []
    served.host.simulator.outcome_endpoint.available = True
    assert served.host.simulator.drain(30)
    (event,) = served.outcomes()
    assert event["type"] == "amlevents.NotificationSent"
    assert len(list(served.outbox.rglob("*.json"))) == 1  # one notification, not one per delivery
    journal = [j for j in served.host.simulator.outcomes() if j["event_id"] == run["id"]
               and j["outcome"] == "delivered"]
    assert len(journal) == 1 and journal[0]["delivery_attempts"] >= 3


def test_outcome_events_never_carry_a_secret(served: Served, sample: Sample) -> None:
    served.publish(tagged(sample), sample("run_status_changed"))
    bodies = "".join(r.body.decode("utf-8") for r in served.hook.notifications())
    assert bodies
    for value in ("k3y-in-the-path-0123", WEBHOOK_SECRET, TOPIC_KEY, OUTCOME_KEY):
        assert value not in bodies
