"""Dispatch: topic allow-list, type routing, idempotency (also racing), outcomes recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handlers.errors import RetryLater
from handlers.outcome import Outcome
from handlers.runtime.dispatch import Dispatcher, handle_trigger
from handlers.runtime.routing import function_for

Sample = Callable[[str], dict[str, Any]]
MakeDispatcher = Callable[..., Dispatcher]
FOREIGN_TOPIC = ("/subscriptions/0000/resourceGroups/other/providers/"
                 "Microsoft.MachineLearningServices/workspaces/someone-else")


def deliver(dispatcher: Dispatcher, event: dict[str, Any]):
    return dispatcher.dispatch(event, function=function_for(event["eventType"]))


def test_the_five_samples_get_their_outcomes(make_dispatcher: MakeDispatcher,
                                             sample: Sample) -> None:
    dispatcher = make_dispatcher()
    outcomes = {name: deliver(dispatcher, sample(name)).outcome for name in
                ("model_registered", "model_deployed", "run_completed", "run_status_changed",
                 "dataset_drift_detected")}
    assert outcomes == {"model_registered": Outcome.SKIPPED, "model_deployed": Outcome.SKIPPED,
                        "run_completed": Outcome.SKIPPED,
                        "run_status_changed": Outcome.PLANNED,
                        "dataset_drift_detected": Outcome.PLANNED}
    assert len(dispatcher.ledger.entries()) == 5


def test_duplicate_delivery_acts_once_and_counts_attempts(make_dispatcher: MakeDispatcher,
                                                          sample: Sample) -> None:
    dispatcher = make_dispatcher()
    event = sample("run_status_changed")
    first, second, third = (deliver(dispatcher, event) for _ in range(3))
    assert (first.outcome, first.duplicate) == (Outcome.PLANNED, False)
    assert (second.outcome, second.duplicate) == (Outcome.PLANNED, True)
    # a duplicate answers with the first delivery's row: the same event, type and verdict
    for result in (first, second):
        assert (result.event_id, result.event_type) == (event["id"], event["eventType"])
    assert (second.key, second.action, second.detail) == (first.key, first.action, first.detail)
    assert third.duplicate
    [entry] = dispatcher.ledger.entries()
    assert entry.attempts == 3


def test_concurrent_duplicates_act_exactly_once(make_dispatcher: MakeDispatcher,
                                                sample: Sample) -> None:
    # GIVEN 8 dispatchers (separate SQLite connections) WHEN the same event races through them
    dispatchers = [make_dispatcher() for _ in range(8)]
    event = sample("dataset_drift_detected")
    barrier = threading.Barrier(len(dispatchers))
    results = []

    def run(dispatcher: Dispatcher) -> None:
        barrier.wait()
        for _ in range(10):
            results.append(deliver(dispatcher, event))

    threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN exactly one delivery acted; the others saw a duplicate or a busy claim
    acted = [r for r in results if not r.duplicate]
    assert len(acted) == 1 and acted[0].outcome is Outcome.PLANNED
    assert all(r.outcome in (Outcome.PLANNED, Outcome.IN_PROGRESS) for r in results)
    [entry] = dispatchers[0].ledger.entries()
    assert entry.outcome is Outcome.PLANNED


def test_foreign_topic_is_refused_recorded_and_never_acted_on(make_dispatcher: MakeDispatcher,
                                                              sample: Sample) -> None:
    dispatcher = make_dispatcher()
    event = sample("dataset_drift_detected")
    event["topic"] = FOREIGN_TOPIC
    result = deliver(dispatcher, event)
    assert result.outcome is Outcome.REFUSED
    assert FOREIGN_TOPIC in result.detail and "AMLEVENTS_ALLOWED_TOPICS" in result.detail
    [entry] = dispatcher.ledger.entries()
    assert entry.outcome is Outcome.REFUSED and entry.topic == FOREIGN_TOPIC


def test_topic_allow_list_is_case_insensitive_and_trims(make_dispatcher: MakeDispatcher,
                                                        sample: Sample) -> None:
    event = sample("dataset_drift_detected")
    dispatcher = make_dispatcher(AMLEVENTS_ALLOWED_TOPICS=f" {FOREIGN_TOPIC}/ ; "
                                                          f"{event['topic'].upper()}")
    assert deliver(dispatcher, event).outcome is Outcome.PLANNED


def test_no_allowed_topics_refuses_everything(make_dispatcher: MakeDispatcher,
                                              sample: Sample) -> None:
    dispatcher = make_dispatcher(AMLEVENTS_ALLOWED_TOPICS="")
    result = deliver(dispatcher, sample("dataset_drift_detected"))
    assert result.outcome is Outcome.REFUSED
    assert "set AMLEVENTS_ALLOWED_TOPICS" in result.detail


def test_invalid_event_is_recorded_with_the_field(make_dispatcher: MakeDispatcher,
                                                  sample: Sample) -> None:
    dispatcher = make_dispatcher()
    event = sample("model_registered")
    del event["data"]["ModelName"]
    result = deliver(dispatcher, event)
    assert result.outcome is Outcome.INVALID
    assert "data.ModelName" in result.detail
    [entry] = dispatcher.ledger.entries()
    assert entry.event_id == event["id"] and entry.outcome is Outcome.INVALID


def test_malformed_envelope_without_id_is_still_recorded(make_dispatcher: MakeDispatcher) -> None:
    dispatcher = make_dispatcher()
    first = dispatcher.dispatch({"subject": "x"}, function="on_ml_event")
    again = dispatcher.dispatch({"subject": "x"}, function="on_ml_event")
    other = dispatcher.dispatch({"subject": "y"}, function="on_ml_event")
    assert first.outcome is Outcome.INVALID and "id: is required" in first.detail
    assert again.duplicate and again.key == first.key
    assert other.key != first.key
    assert [e.attempts for e in dispatcher.ledger.entries()] == [2, 1]


def test_event_of_another_type_sent_to_a_dedicated_function_is_skipped(
        make_dispatcher: MakeDispatcher, sample: Sample) -> None:
    result = make_dispatcher().dispatch(sample("run_status_changed"),
                                        function="on_model_registered")
    assert result.outcome is Outcome.SKIPPED
    assert "does not handle" in result.detail


def test_non_ml_event_type_is_skipped(make_dispatcher: MakeDispatcher, sample: Sample) -> None:
    event = sample("model_registered")
    event["eventType"] = "Microsoft.Storage.BlobCreated"
    result = make_dispatcher().dispatch(event, function="on_ml_event")
    assert result.outcome is Outcome.SKIPPED and "not handled" in result.detail


def test_same_id_different_types_are_different_events(make_dispatcher: MakeDispatcher,
                                                      sample: Sample) -> None:
    # The documented samples share one id across types; each is its own event.
    dispatcher = make_dispatcher()
    a = deliver(dispatcher, sample("run_status_changed"))
    b = deliver(dispatcher, sample("dataset_drift_detected"))
    assert a.key != b.key and not a.duplicate and not b.duplicate


def test_invalid_settings_mean_retry_not_loss(make_dispatcher: MakeDispatcher,
                                              sample: Sample) -> None:
    # GIVEN a misconfigured app WHEN an event arrives THEN it is retried (Event Grid keeps it)
    broken = make_dispatcher(AMLEVENTS_DRIFT_THRESHOLD="lots")
    result = deliver(broken, sample("dataset_drift_detected"))
    assert result.outcome is Outcome.RETRY and result.should_retry
    assert "AMLEVENTS_DRIFT_THRESHOLD" in result.detail
    # AND the event is in the ledger all the same (its ledger settings are sound)
    [entry] = make_dispatcher().ledger.entries()
    assert entry.outcome is Outcome.RETRY and "AMLEVENTS_DRIFT_THRESHOLD" in entry.detail
    # WHEN the operator fixes the setting THEN the redelivery is acted on
    fixed = make_dispatcher()
    assert deliver(fixed, sample("dataset_drift_detected")).outcome is Outcome.PLANNED
    [entry] = fixed.ledger.entries()
    assert entry.outcome is Outcome.PLANNED and entry.attempts == 2


def test_invalid_ledger_settings_mean_retry_unrecorded(make_dispatcher: MakeDispatcher,
                                                       sample: Sample) -> None:
    result = deliver(make_dispatcher(AMLEVENTS_LEDGER="mongo"), sample("run_status_changed"))
    assert result.outcome is Outcome.RETRY and "AMLEVENTS_LEDGER" in result.detail


def test_handle_trigger_raises_for_retry(monkeypatch: pytest.MonkeyPatch,
                                         base_env: dict[str, str], sample: Sample) -> None:
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AMLEVENTS_CLAIM_TIMEOUT_S", "zero")
    with pytest.raises(RetryLater, match="AMLEVENTS_CLAIM_TIMEOUT_S"):
        handle_trigger(sample("run_status_changed"), "on_run_status")


def test_handle_trigger_returns_for_final_outcomes(monkeypatch: pytest.MonkeyPatch,
                                                   base_env: dict[str, str],
                                                   sample: Sample) -> None:
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    assert handle_trigger(sample("run_status_changed"), "on_run_status").outcome is \
        Outcome.PLANNED
    event = sample("run_status_changed")
    event["topic"] = FOREIGN_TOPIC
    assert handle_trigger(event, "on_run_status").outcome is Outcome.REFUSED


def test_lone_surrogates_are_stored_not_crashed_on(make_dispatcher: MakeDispatcher,
                                                   sample: Sample) -> None:
    # JSON allows "\ud800"; UTF-8 (and SQLite) do not.
    event = sample("run_status_changed")
    event["subject"] = "experiments/x/runs/\ud800"
    event["id"] = "id-\udfff"
    dispatcher = make_dispatcher()
    result = deliver(dispatcher, event)
    assert result.outcome is Outcome.PLANNED
    [entry] = dispatcher.ledger.entries()
    assert entry.subject == "experiments/x/runs/\ufffd\ufffd\ufffd"
    assert deliver(dispatcher, event).duplicate


def test_an_unreachable_ledger_means_retry(make_dispatcher: MakeDispatcher, sample: Sample,
                                           tmp_path: Path) -> None:
    # GIVEN a Table ledger whose endpoint nothing listens on
    dispatcher = make_dispatcher(
        AMLEVENTS_LEDGER="table",
        AMLEVENTS_LEDGER_TABLE_CONNECTION=(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
            "TableEndpoint=http://127.0.0.1:9/devstoreaccount1"))
    result = deliver(dispatcher, sample("run_status_changed"))
    assert result.outcome is Outcome.RETRY and result.should_retry
    assert "Eby8vdM02xNOcqFlq" not in result.detail


def test_a_busy_claim_makes_event_grid_retry(monkeypatch: pytest.MonkeyPatch,
                                             base_env: dict[str, str], sample: Sample) -> None:
    from handlers.ledger.ledger import EventFacts, event_key
    from handlers.runtime.dispatch import default_dispatcher

    # GIVEN another delivery of the event holds a live claim (its worker is still acting on it)
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    raw = sample("run_status_changed")
    key = event_key(raw["topic"], raw["eventType"], raw["id"])
    ledger = default_dispatcher().context().ledger
    claim = ledger.claim(EventFacts(key=key, event_id=raw["id"], event_type=raw["eventType"],
                                    subject=raw["subject"], topic=raw["topic"],
                                    function="on_run_status"))
    assert claim.status == "claimed"
    # WHEN Event Grid delivers it again THEN the trigger fails, so Event Grid redelivers later
    # (answering 2xx would drop the event if the other worker then dies)
    with pytest.raises(RetryLater, match="in_progress"):
        handle_trigger(raw, "on_run_status")
    busy = default_dispatcher().dispatch(raw, function="on_run_status")
    assert (busy.key, busy.event_id, busy.event_type, busy.outcome, busy.duplicate) == (
        key, raw["id"], raw["eventType"], Outcome.IN_PROGRESS, True)
    # AND once the holder finished, a redelivery is a duplicate that succeeds
    ledger.finish(claim.entry, Outcome.PLANNED, "planned", "")
    assert handle_trigger(raw, "on_run_status").duplicate


def test_a_handler_raising_an_unexpected_exception_is_failed_once_not_retried(
        make_dispatcher: MakeDispatcher, sample: Sample, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from handlers.runtime import routing

    # GIVEN the notify concern's handler raising something nobody classified
    calls = []

    def broken(event: Any, ctx: Any) -> Any:
        calls.append(event)
        raise KeyError("a bug in a handler")

    home = routing.HOME_CONCERN["Microsoft.MachineLearningServices.RunStatusChanged"]
    monkeypatch.setitem(routing.CONCERN_HANDLERS, home, broken)
    dispatcher = make_dispatcher()
    # WHEN the event is delivered, then delivered again
    first = deliver(dispatcher, sample("run_status_changed"))
    again = deliver(dispatcher, sample("run_status_changed"))
    # THEN it is `failed` with the exception named, final: not retried, the handler run once
    assert first.outcome is Outcome.FAILED and not first.should_retry
    assert "KeyError" in first.detail and "a bug in a handler" in first.detail
    assert again.duplicate and again.outcome is Outcome.FAILED and len(calls) == 1
    assert [r.getMessage() for r in caplog.records if "unexpectedly" in r.getMessage()] == [
        "handler for Microsoft.MachineLearningServices.RunStatusChanged failed unexpectedly: "
        "KeyError: 'a bug in a handler'"]


def _whole(result: Any) -> tuple[Any, ...]:
    return (result.outcome, result.action, result.detail, result.duplicate)


def test_each_precheck_verdict_whole(make_dispatcher: MakeDispatcher, sample: Sample) -> None:
    event = sample("dataset_drift_detected")
    nobody = make_dispatcher(AMLEVENTS_ALLOWED_TOPICS="")
    assert _whole(deliver(nobody, event)) == (
        Outcome.REFUSED, "refused", "no topic is allowed: set AMLEVENTS_ALLOWED_TOPICS", False)
    dispatcher = make_dispatcher()
    foreign = {**event, "topic": FOREIGN_TOPIC}
    assert _whole(deliver(dispatcher, foreign)) == (
        Outcome.REFUSED, "refused", f"topic {FOREIGN_TOPIC} is not in AMLEVENTS_ALLOWED_TOPICS",
        False)
    blob = {**event, "eventType": "Microsoft.Storage.BlobCreated"}
    assert _whole(dispatcher.dispatch(blob, function="on_ml_event")) == (
        Outcome.SKIPPED, "nothing to do",
        "event type Microsoft.Storage.BlobCreated is not handled", False)
    elsewhere = {**event, "id": "sent-to-another-function"}  # a new event, not a redelivery
    assert _whole(dispatcher.dispatch(elsewhere, function="on_model_registered")) == (
        Outcome.SKIPPED, "nothing to do", "function on_model_registered does not handle "
        "Microsoft.MachineLearningServices.DatasetDriftDetected", False)
    # A second delivery of a refusal answers with the recorded verdict, marked a duplicate.
    assert _whole(deliver(dispatcher, foreign))[3] is True


def test_bad_data_and_a_bad_envelope_are_rejected_naming_the_field(
        make_dispatcher: MakeDispatcher, sample: Sample) -> None:
    dispatcher = make_dispatcher()
    event = sample("model_registered")
    del event["data"]["ModelName"]
    assert _whole(deliver(dispatcher, event)) == (
        Outcome.INVALID, "rejected", "data.ModelName: is required", False)
    no_id = dispatcher.dispatch({"subject": "x"}, function="on_ml_event")
    assert (no_id.outcome, no_id.action) == (Outcome.INVALID, "rejected")
    assert no_id.detail.startswith("id: is required")


def test_the_retry_a_trigger_raises_names_the_event_and_why(
        monkeypatch: pytest.MonkeyPatch, base_env: dict[str, str], sample: Sample) -> None:
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AMLEVENTS_CLAIM_TIMEOUT_S", "zero")
    raw = sample("run_status_changed")
    with pytest.raises(RetryLater) as caught:
        handle_trigger(raw, "on_run_status")
    assert str(caught.value) == (
        f"event {raw['id']} (retry): setting AMLEVENTS_CLAIM_TIMEOUT_S: must be a number, "
        "got 'zero'")


def test_an_unreachable_ledger_is_a_retry_named_for_the_ledger(
        make_dispatcher: MakeDispatcher, sample: Sample,
        caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = make_dispatcher(
        AMLEVENTS_LEDGER="table",
        AMLEVENTS_LEDGER_TABLE_CONNECTION=(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "TableEndpoint=http://127.0.0.1:9/devstoreaccount1"))
    raw = sample("run_status_changed")
    result = deliver(dispatcher, raw)
    # No ledger row, so no key; what could be read of the event is kept in the answer.
    assert (result.key, result.event_id, result.event_type, result.outcome, result.action) == (
        "", raw["id"], raw["eventType"], Outcome.RETRY, "ledger unavailable")
    assert result.detail.startswith("RetryableError: ")
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.levelname == "ERROR"] == [
        "ledger unavailable, event will be retried"]


def test_each_acted_event_is_logged_once_with_its_verdict(
        make_dispatcher: MakeDispatcher, sample: Sample,
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    dispatcher = make_dispatcher()
    raw = sample("dataset_drift_detected")
    with caplog.at_level(logging.INFO, logger="amlevents"):
        first = deliver(dispatcher, raw)
        deliver(dispatcher, raw)  # a duplicate is not logged again
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event ")]
    assert lines == [f"event {raw['id']} {raw['eventType']} -> planned: {first.action}"]
