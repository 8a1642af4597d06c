"""Dead-letter replay: the topic simulator dead-letters an event to Azurite's Blob service, as Event
Grid does; `amlevents deadletter` lists it, replays it once through the dispatch, marks the blob."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from amlevents.cli import RunningHost, build_host
from amlevents.deadletter import (
    MARK_AT,
    DeadLetterStore,
    parse_records,
    replay_blobs,
    subscription_functions,
)
from amlevents.replay import LocalDeliverer, Replayer, ReplayOptions
from handlers.ledger.ledger import Ledger
from handlers.ledger.store import open_store
from handlers.outcome import Outcome

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CLI = [sys.executable, "-m", "amlevents.cli"]
KEY = "local-topic-key-0123456789"
Sample = Callable[[str], dict[str, Any]]


def subscriptions_file(tmp_path: Path, container: str) -> Path:
    """The shipped drift subscription, giving up after 2 attempts, dead-lettering to `container`."""
    shipped = json.loads((INFRA / "subscriptions.json").read_text(encoding="utf-8"))
    (sub,) = [s for s in shipped["subscriptions"] if s.get("function") == "on_drift_detected"]
    sub["retryPolicy"]["maxDeliveryAttempts"] = 2
    sub["deadLetter"]["blobContainerName"] = container
    path = tmp_path / "subscriptions.json"
    path.write_text(json.dumps({"subscriptions": [sub]}), encoding="utf-8")
    shutil.copy(INFRA / "subscriptions.schema.json", tmp_path)
    return path


@pytest.fixture
def dead_lettered(base_env: dict[str, str], tmp_path: Path, azurite_blob: str,
                  sample: Sample) -> Iterator[tuple[dict[str, str], str, dict[str, Any]]]:
    """A drift event the simulator dead-lettered to Azurite: the function kept failing (an invalid
    setting: `retry`, HTTP 500) until the subscription's last attempt."""
    container = f"deadletter-{uuid.uuid4().hex[:12]}"
    env = {**base_env, "AMLEVENTS_TOPIC_KEY": KEY,
           "AMLEVENTS_SUBSCRIPTIONS_FILE": str(subscriptions_file(tmp_path, container)),
           "AMLEVENTS_SIMULATOR_DIR": str(tmp_path / "sim"),
           "AMLEVENTS_SIMULATOR_TIME_SCALE": "0.001",
           "AMLEVENTS_SIMULATOR_DEADLETTER_CONNECTION": azurite_blob}
    host: RunningHost = build_host({**env, "AMLEVENTS_CLAIM_TIMEOUT_S": "0"}, bind="127.0.0.1",
                                   port=0)
    host.server.start()
    event = sample("dataset_drift_detected")
    event["eventTime"] = datetime.now(UTC).isoformat()
    try:
        request = urllib.request.Request(
            f"{host.url}/api/events?api-version=2018-01-01", data=json.dumps([event]).encode(),
            headers={"aeg-sas-key": KEY, "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        assert host.simulator.drain(30)
        (outcome,) = host.simulator.outcomes()
        assert outcome["outcome"] == "dead_lettered", outcome
    finally:
        host.stop()
    env.pop("AMLEVENTS_CLAIM_TIMEOUT_S", None)  # the setting is fixed
    yield env, container, event


def test_a_dead_lettered_event_is_replayed_once_and_its_blob_marked(
        dead_lettered: tuple[dict[str, str], str, dict[str, Any]], azurite_blob: str) -> None:
    env, container, event = dead_lettered
    store = DeadLetterStore.from_connection_string(azurite_blob)
    ledger = Ledger(open_store(env))
    # GIVEN the dead letter, as Event Grid documents it, and the ledger's `retry` row
    (blob,) = store.blobs(container)
    (record,) = blob.records
    assert (record.reason, record.delivery_attempts, record.last_http_status_code) == (
        "MaxDeliveryAttemptsExceeded", 2, 500)
    assert record.event_id == event["id"] and "deadLetterReason" not in record.event
    assert blob.subscription == "DATASET-DRIFT-RETRAIN" and not blob.replayed
    (row,) = ledger.find(event["id"])
    assert (row.outcome, row.attempts) == (Outcome.RETRY, 2)
    functions, _ = subscription_functions(Path(env["AMLEVENTS_SUBSCRIPTIONS_FILE"]))
    deliverer = LocalDeliverer(env)
    replayer = Replayer(ledger, deliverer, ReplayOptions(by="ops@test", via="deadletter local"))
    try:
        # WHEN it is replayed
        ((_, results),) = replay_blobs(store, [blob], replayer, ledger, functions)
        # THEN it was acted on once, and the blob is marked, not deleted
        (result,) = results
        assert (result.status, result.function, result.after) == ("replayed",
                                                                  "on_drift_detected",
                                                                  "planned")
        (row,) = ledger.find(event["id"])
        assert (row.outcome, row.attempts) == (Outcome.PLANNED, 3)
        (marked,) = store.blobs(container)
        assert marked.replayed and marked.mark["amlevents_replayed_by"] == "ops@test"
        assert "planned" in marked.mark["amlevents_replay_result"]
        # AND a second replay leaves the marked blob out; named, it finds the event settled
        ((_, skipped),) = replay_blobs(store, [marked], replayer, ledger, functions)
        assert skipped == []
        ((_, named),) = replay_blobs(store, [marked], replayer, ledger, functions, named=True)
        assert named[0].status == "skipped" and "already planned" in named[0].note
        (row,) = ledger.find(event["id"])
        assert (row.outcome, row.attempts) == (Outcome.PLANNED, 3)
    finally:
        deliverer.close()
        ledger.close()
        store.close()
    raw = BlobServiceClient.from_connection_string(azurite_blob).get_container_client(
        container).download_blob(blob.name).readall()
    assert json.loads(raw)[0]["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"  # untouched


def test_the_cli_lists_and_replays_dead_letters(
        dead_lettered: tuple[dict[str, str], str, dict[str, Any]], tmp_path: Path) -> None:
    env, container, event = dead_lettered
    cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("AMLEVENTS_")}, **env}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "deadletter", *args, "--container", container], cwd=tmp_path,
                              env=cli_env, capture_output=True, text=True, timeout=120)

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "MaxDeliveryAttemptsExceeded  attempts 2  " in listed.stdout
    assert f"DatasetDriftDetected  {event['id']}" in listed.stdout
    assert "1 dead letter(s) in 1 blob(s)" in listed.stdout
    replayed = cli("replay")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed: " in replayed.stdout and "retry -> planned" in replayed.stdout
    again = cli("replay")
    assert again.returncode == 0 and "replayed before" in again.stdout
    as_json = [json.loads(line) for line in cli("list", "--json").stdout.splitlines()]
    assert as_json[0]["replayed"][MARK_AT] and as_json[0]["deadLetterReason"] == \
        "MaxDeliveryAttemptsExceeded"


def test_records_are_read_in_either_schema_and_broken_blobs_reported() -> None:
    cloud = [{"specversion": "1.0", "id": "c-1", "type": "T", "source": "/s",
              "deadletterreason": "TimeToLiveExceeded", "deliveryattempts": 3,
              "lastdeliveryoutcome": "TimedOut", "publishtime": "2024-01-01T00:00:00Z"}]
    (record,), error = parse_records("A/B/2024/1/1/0/x.json", json.dumps(cloud).encode())
    assert error == "" and record.reason == "TimeToLiveExceeded"
    assert record.delivery_attempts == 3 and record.event == {
        "specversion": "1.0", "id": "c-1", "type": "T", "source": "/s"}
    assert record.event_type == "T"
    assert parse_records("x", b"{oops")[1].startswith("not JSON")
    assert parse_records("x", b"3")[1] == "not a JSON array of events but int"
