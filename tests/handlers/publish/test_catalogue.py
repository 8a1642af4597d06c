"""The outcome event catalogue: which CloudEvent a finished ledger row becomes, and what it holds."""

from __future__ import annotations

import json
import uuid

import pytest

from handlers.ledger.ledger import LedgerEntry
from handlers.outcome import Outcome
from handlers.publish.catalogue import EVENT_TYPES, MASK, TYPES, build_event, event_id, event_type

WORKSPACE = ("/subscriptions/sub-1/resourceGroups/rg-1/providers/"
             "Microsoft.MachineLearningServices/workspaces/ws-1")
ML = "Microsoft.MachineLearningServices."


def entry(outcome: Outcome, *, event_type: str = f"{ML}ModelRegistered",
          subject: str = "models/m:3", action: str = "deploy m:3", detail: str = "") -> LedgerEntry:
    """A finished ledger row."""
    return LedgerEntry(key="k" * 40, event_id="evt-1", event_type=event_type, subject=subject,
                       topic=WORKSPACE, function="on_model_registered",
                       received_at="2024-05-01T10:00:00.000+00:00",
                       updated_at="2024-05-01T10:00:05.250+00:00", outcome=outcome,
                       action=action, detail=detail, attempts=2)


@pytest.mark.parametrize(("concern", "outcome", "expected"), [
    ("deploy", Outcome.DONE, "amlevents.DeploymentSucceeded"),
    ("deploy", Outcome.FAILED, "amlevents.DeploymentFailed"),
    ("deploy", Outcome.REFUSED, "amlevents.DeploymentRefused"),
    ("deploy", Outcome.INVALID, "amlevents.DeploymentRefused"),  # bad tags: refused, named
    ("deploy", Outcome.SKIPPED, "amlevents.DeploymentSkipped"),
    ("deploy", Outcome.PLANNED, "amlevents.DeploymentPlanned"),
    ("retrain", Outcome.DONE, "amlevents.RetrainingStarted"),
    ("retrain", Outcome.SKIPPED, "amlevents.RetrainingSkipped"),
    ("retrain", Outcome.FAILED, "amlevents.RetrainingFailed"),
    ("notify", Outcome.DONE, "amlevents.NotificationSent"),
    ("notify", Outcome.FAILED, "amlevents.NotificationFailed"),
    ("notify", Outcome.SKIPPED, None),  # no rule matched: the common case, not news
    ("cicd", Outcome.DONE, "amlevents.CicdDispatched"),
    ("deploy", Outcome.RETRY, None),  # not an outcome yet
    ("deploy", Outcome.IN_PROGRESS, None),
    ("unknown", Outcome.DONE, None),
])
def test_types_by_concern_and_outcome(concern: str, outcome: Outcome,
                                      expected: str | None) -> None:
    assert event_type(concern, outcome) == expected
    event = build_event(entry(outcome), concern, source="/amlevents/app", dry_run=False)
    assert (event.type if event else None) == expected


def test_every_type_is_listed_once_with_the_prefix() -> None:
    kinds = {kind for table in TYPES.values() for kind in table.values()}
    assert EVENT_TYPES == tuple(sorted(f"amlevents.{k}" for k in kinds))


def test_the_event_carries_the_ledger_facts() -> None:
    plan = {"endpoint": "ep", "deployment": "v3", "model_name": "m", "model_version": "3",
            "deployment_state": "Failed"}
    event = build_event(entry(Outcome.DONE, detail=json.dumps(plan)), "deploy",
                        source="/subscriptions/s/resourceGroups/r/providers/Microsoft.Web/sites/a",
                        dry_run=False)
    assert event is not None
    cloud = event.as_cloud_event()
    assert cloud["specversion"] == "1.0" and cloud["datacontenttype"] == "application/json"
    assert cloud["subject"] == "models/m:3"  # the model, as the Azure ML event named it
    assert cloud["time"] == "2024-05-01T10:00:05.250+00:00"  # when the ledger recorded it
    data = cloud["data"]
    assert data["plan"] == plan and data["detail"] == ""
    assert data["sourceEventId"] == "evt-1" and data["sourceEventType"] == f"{ML}ModelRegistered"
    assert data["workspace"] == WORKSPACE and data["ledgerKey"] == "k" * 40
    assert data["attempts"] == 2 and data["dryRun"] is False and data["concern"] == "deploy"
    assert data["links"]["endpoints"].startswith("https://ml.azure.com/endpoints?wsid=")


def test_a_failure_keeps_its_reason_as_detail() -> None:
    event = build_event(entry(Outcome.FAILED, detail="PermanentError: quota exceeded"), "deploy",
                        source="s", dry_run=False)
    assert event is not None
    assert event.data["detail"] == "PermanentError: quota exceeded" and event.data["plan"] is None


def test_a_retraining_run_has_its_run_id_and_data_factory_link() -> None:
    plan = {"monitor": "mon", "run_id": "run-42", "target": {
        "subscription": "sub-1", "resourceGroup": "rg-2", "factory": "adf", "pipeline": "p"}}
    event = build_event(entry(Outcome.DONE, event_type=f"{ML}DatasetDriftDetected",
                              subject="datadrift/mon/run/r1", detail=json.dumps(plan)),
                        "retrain", source="s", dry_run=False)
    assert event is not None and event.type == "amlevents.RetrainingStarted"
    assert event.data["runIds"] == ["run-42"]
    assert event.data["links"]["dataFactoryRun"] == (
        "https://adf.azure.com/en/monitoring/pipelineruns/run-42?factory=/subscriptions/sub-1/"
        "resourceGroups/rg-2/providers/Microsoft.DataFactory/factories/adf")


def test_a_notification_links_the_run() -> None:
    event = build_event(entry(Outcome.DONE, event_type=f"{ML}RunStatusChanged",
                              subject="experiments/e1/runs/AutoML_1", detail="{}"),
                        "notify", source="s", dry_run=False, studio="https://studio.example")
    assert event is not None and event.type == "amlevents.NotificationSent"
    assert event.data["links"]["run"].startswith("https://studio.example/runs/AutoML_1?wsid=")


def test_the_id_is_the_same_on_every_attempt_and_differs_by_outcome() -> None:
    first = build_event(entry(Outcome.PLANNED), "deploy", source="s", dry_run=True)
    again = build_event(entry(Outcome.PLANNED), "deploy", source="s", dry_run=True)
    assert first is not None and again is not None and first.id == again.id
    assert uuid.UUID(first.id).version == 5
    assert event_id("k" * 40, Outcome.DONE) != event_id("k" * 40, Outcome.FAILED)
    assert event_id("k" * 40, Outcome.DONE) != event_id("j" * 40, Outcome.DONE)


def test_no_secret_reaches_the_event() -> None:
    secret = "https://hooks.slack.example/services/T0/B0/xyzSECRET123"
    detail = json.dumps({"channels": {"slack": f"failed: POST {secret} answered 500"},
                         "parameters": {"apiKey": "k-123456", "password": "p-123456",
                                        "connectionString": "AccountKey=abc;"},
                         "tags": {"deploy": "true"}})
    event = build_event(entry(Outcome.DONE, event_type=f"{ML}RunStatusChanged", detail=detail),
                        "notify", source="s", dry_run=False, secrets=(secret,))
    assert event is not None
    text = json.dumps(event.as_cloud_event())
    for leaked in (secret, "k-123456", "p-123456", "AccountKey=abc"):
        assert leaked not in text
    params = event.data["plan"]["parameters"]
    assert params == {"apiKey": MASK, "password": MASK, "connectionString": MASK}
    assert event.data["plan"]["tags"] == {"deploy": "true"}  # ordinary facts stay
    assert MASK in event.data["plan"]["channels"]["slack"]
    # A connection string in a failure's text is masked even when no setting named it.
    failed = build_event(entry(Outcome.FAILED, detail="bad: DefaultEndpointsProtocol=https;"
                               "AccountName=a;AccountKey=c2VjcmV0;"), "deploy", source="s",
                         dry_run=False)
    assert failed is not None and "c2VjcmV0" not in failed.data["detail"]


def test_the_cloud_event_has_exactly_the_cloudevents_attributes() -> None:
    event = build_event(entry(Outcome.DONE, detail="{}"), "deploy", source="src", dry_run=False)
    assert event is not None
    cloud = event.as_cloud_event()
    assert set(cloud) == {"specversion", "id", "source", "type", "subject", "time",
                          "datacontenttype", "data"}
    assert (cloud["id"], cloud["source"], cloud["type"]) == (
        event_id("k" * 40, Outcome.DONE), "src", "amlevents.DeploymentSucceeded")


@pytest.mark.parametrize(("concern", "links"), [
    ("deploy", {"endpoints"}), ("notify", {"run"}), ("retrain", set()), ("cicd", set())])
def test_each_concern_links_only_its_own_pages(concern: str, links: set[str]) -> None:
    # GIVEN a done row of a run in a workspace (no Data Factory run in its plan)
    row = entry(Outcome.DONE, event_type=f"{ML}RunStatusChanged",
                subject="experiments/e1/runs/AutoML_1", detail="{}")
    event = build_event(row, concern, source="s", dry_run=False)
    assert event is not None
    assert set(event.data["links"]) == links


@pytest.mark.parametrize("detail", ["{not json", '{"plan": "cut short', "{" * 5000 + "}" * 5000],
                         ids=["not-json", "cut-short", "nested-too-deep"])
def test_a_detail_that_only_looks_like_json_is_kept_as_text(detail: str) -> None:
    event = build_event(entry(Outcome.FAILED, detail=detail), "deploy", source="s", dry_run=False)
    assert event.data["plan"] is None
    assert event.data["detail"] == detail
