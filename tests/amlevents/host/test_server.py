"""The local Functions host over real HTTP: URLs, handshake, bad bodies, keys, health."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import function_app
from amlevents.host.server import MAX_BODY_BYTES, FunctionsHost, LocalServer, load_functions
from handlers.runtime.dispatch import default_dispatcher

Sample = Callable[[str], dict[str, Any]]
WEBHOOK = "/runtime/webhooks/EventGrid?functionName="


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, base_env: dict[str, str]) -> Iterator[LocalServer]:
    """The app's functions served on a free loopback port, with a fresh ledger."""
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    server = LocalServer(FunctionsHost(load_functions(function_app.app)), port=0).start()
    yield server
    server.stop()


def request(server: LocalServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; (status, parsed JSON or text, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return response.status, parsed, {k.lower(): v for k, v in response.getheaders()}


def notify(server: LocalServer, function: str, body: Any) -> tuple[int, Any, dict[str, str]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request(server, "POST", WEBHOOK + function, data, {"aeg-event-type": "Notification",
                                                              "Content-Type": "application/json"})


def ledger_outcomes() -> list[str]:
    return [e.outcome.value for e in default_dispatcher().ledger.entries()]


def test_functions_are_loaded_from_the_apps_own_metadata() -> None:
    loaded = load_functions(function_app.app)
    assert set(loaded.event_grid) == {"on_model_registered", "on_drift_detected",
                                      "on_run_status", "on_ml_event"}
    assert "health" in loaded.http_routes
    assert load_functions(function_app.app) is loaded  # cached: get_functions() runs once


def test_batch_is_accepted_and_each_event_invoked(host: LocalServer, sample: Sample) -> None:
    run, drift = sample("run_status_changed"), sample("dataset_drift_detected")
    status, _, _ = notify(host, "on_ml_event", [run, drift])
    assert status == 202
    assert ledger_outcomes() == ["planned", "planned"]


def test_path_is_matched_case_insensitively(host: LocalServer, sample: Sample) -> None:
    body = json.dumps([sample("run_status_changed")]).encode()
    status, _, _ = request(host, "POST", "/RUNTIME/webhooks/eventgrid?functionName=ON_RUN_STATUS",
                           body, {"aeg-event-type": "Notification"})
    assert status == 202


def test_subscription_validation_handshake(host: LocalServer) -> None:
    validation = [{"id": "v1", "topic": "t", "subject": "", "eventTime": "2024-01-01T00:00:00Z",
                   "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                   "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
                   "dataVersion": "1", "metadataVersion": "1"}]
    status, body, _ = request(host, "POST", WEBHOOK + "on_model_registered",
                              json.dumps(validation).encode(),
                              {"aeg-event-type": "SubscriptionValidation"})
    assert status == 200
    assert body == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert ledger_outcomes() == []


def test_cloud_events_webhook_validation_and_delivery(host: LocalServer, sample: Sample) -> None:
    status, _, headers = request(host, "OPTIONS", WEBHOOK + "on_run_status", None,
                                 {"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert status == 200 and headers["webhook-allowed-origin"] == "eventgrid.azure.net"
    raw = sample("run_status_changed")
    cloud = {"specversion": "1.0", "id": raw["id"], "source": raw["topic"],
             "type": raw["eventType"], "subject": raw["subject"], "time": raw["eventTime"],
             "data": raw["data"]}
    status, _, _ = request(host, "POST", WEBHOOK + "on_run_status", json.dumps(cloud).encode(),
                           {"Content-Type": "application/cloudevents+json"})
    assert status == 202 and ledger_outcomes() == ["planned"]


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"", 400, "empty"),
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe\x00garbage", 400, "not UTF-8"),
    (b"[]", 400, "empty array"),
    (b"[1, 2]", 400, "event [0] must be a JSON object"),
    (b'"just a string"', 400, "must be a JSON object"),
    (b"[" * 100_000, 400, "not valid JSON"),
])
def test_malformed_bodies_get_400_and_the_host_keeps_serving(
        host: LocalServer, sample: Sample, body: bytes, status: int, message: str) -> None:
    got, answer, _ = notify(host, "on_ml_event", body)
    assert got == status and message in answer["error"]
    assert notify(host, "on_ml_event", [sample("run_status_changed")])[0] == 202


def test_oversized_body_gets_413(host: LocalServer) -> None:
    got, answer, _ = notify(host, "on_ml_event", b"[" + b" " * MAX_BODY_BYTES + b"]")
    assert got == 413 and "limit" in answer["error"]
    assert request(host, "GET", "/api/health")[0] == 200


def test_events_missing_fields_are_accepted_and_recorded_invalid(host: LocalServer,
                                                                 sample: Sample) -> None:
    event = sample("model_registered")
    del event["data"]["ModelName"]
    assert notify(host, "on_model_registered", [event, {"hello": "world"}])[0] == 202
    assert ledger_outcomes() == ["invalid", "invalid"]


def test_unknown_function_and_wrong_header(host: LocalServer, sample: Sample) -> None:
    status, answer, _ = notify(host, "on_nothing", [sample("run_status_changed")])
    assert status == 404 and "on_nothing" in answer["error"]
    status, answer, _ = request(host, "POST", WEBHOOK + "on_run_status",
                                json.dumps([sample("run_status_changed")]).encode(),
                                {"aeg-event-type": "Bogus"})
    assert status == 400 and "aeg-event-type" in answer["error"]


def test_retryable_outcome_answers_500_so_event_grid_redelivers(
        host: LocalServer, sample: Sample, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLEVENTS_DRIFT_THRESHOLD", "not-a-number")
    status, answer, _ = notify(host, "on_drift_detected", [sample("dataset_drift_detected")])
    assert status == 500 and "AMLEVENTS_DRIFT_THRESHOLD" in answer["failed"][0]["error"]
    # GIVEN the setting fixed WHEN Event Grid redelivers THEN it is acted on
    monkeypatch.setenv("AMLEVENTS_DRIFT_THRESHOLD", "0.5")
    default_dispatcher.cache_clear()
    assert notify(host, "on_drift_detected", [sample("dataset_drift_detected")])[0] == 202
    assert ledger_outcomes() == ["planned"]


def test_health(host: LocalServer) -> None:
    status, body, _ = request(host, "GET", "/api/health")
    assert status == 200 and body["status"] == "ok" and body["dry_run"] is True
    assert request(host, "POST", "/api/health")[0] == 405
    assert request(host, "GET", "/api/nothing")[0] == 404


def test_binding_beyond_loopback_requires_a_key() -> None:
    with pytest.raises(ValueError, match="AMLEVENTS_HOST_KEY"):
        LocalServer(FunctionsHost(load_functions(function_app.app)), bind="0.0.0.0", port=0)


def test_function_key_by_header_or_code_query(monkeypatch: pytest.MonkeyPatch,
                                              base_env: dict[str, str], sample: Sample) -> None:
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    host = FunctionsHost(load_functions(function_app.app), key="s3cret-key")
    with LocalServer(host, port=0) as server:
        body = json.dumps([sample("run_status_changed")]).encode()
        headers = {"aeg-event-type": "Notification"}
        assert request(server, "POST", WEBHOOK + "on_run_status", body, headers)[0] == 401
        assert request(server, "POST", WEBHOOK + "on_run_status", body,
                       {**headers, "x-functions-key": "wrong"})[0] == 401
        assert request(server, "POST", WEBHOOK + "on_run_status", body,
                       {**headers, "x-functions-key": "s3cret-key"})[0] == 202
        assert request(server, "POST", WEBHOOK + "on_run_status&code=s3cret-key", body,
                       headers)[0] == 202


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                      children, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_fuzzed_bodies_never_crash_the_host(host: LocalServer, body: bytes) -> None:
    status, _, _ = notify(host, "on_ml_event", body)
    assert status in (202, 400)


@pytest.mark.parametrize("key", [" ", "\t\n", "two words", "ctl\x07", "\u00a0"])
def test_blank_or_spaced_function_keys_are_refused(key: str) -> None:
    from amlevents.host.server import check_host_key

    with pytest.raises(ValueError, match="AMLEVENTS_HOST_KEY"):
        check_host_key(key)
    with pytest.raises(ValueError, match="AMLEVENTS_HOST_KEY"):
        FunctionsHost(load_functions(function_app.app), key=key)


@pytest.mark.parametrize(("origin", "ok"), [
    ("eventgrid.azure.net", True), ("localhost", True), ("a-b.example.", True),
    ("10.0.0.1", True), ("", False), ("a" * 254, False), ("-a.example", False),
    ("a_b.example", False), ("a..example", False), ("eventgrid.azure.net\r\nX: y", False),
    ("https://eventgrid.azure.net", False), ("host:443", False)])
def test_only_host_names_are_echoed_as_the_allowed_origin(origin: str, ok: bool) -> None:
    from amlevents.host.server import origin_problem

    assert (origin_problem(origin) == "") is ok
