"""Security: foreign topics are never acted on, the host key, and no secret in logs or the ledger."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import function_app
from amlevents.cli import build_host
from amlevents.host.server import FunctionsHost, LocalServer, load_functions
from handlers.outcome import Outcome
from handlers.runtime.dispatch import default_dispatcher
from handlers.runtime.routing import ON_ML_EVENT, ON_MODEL_REGISTERED, ON_RUN_STATUS
from tests.fakes.acs import ACCESS_KEY, start_fake_acs
from tests.fakes.arm import FakeArm
from tests.fakes.notify import SECRET_PATH, http_receiver, smtp_sink
from tests.reliability.conftest import (
    CREATE_RUN,
    DEPLOYMENT_PUT,
    Figures,
    FlakySmtp,
    Host,
    drift_event,
    failed_run_event,
    ledger_rows,
    live_env,
    model_event,
    smtp_env,
    workspace_id,
)
from tests.reliability.workers import post

HOST_KEY = "host-key-SECRET-4d5e6f7a8b"
TOPIC_KEY = "topic-key-SECRET-1a2b3c4d5e"


def test_foreign_topics_are_never_acted_on(arm: FakeArm, smtp: FlakySmtp,
                                           start_host: Callable[..., Host], tmp_path: Path,
                                           figures: Figures) -> None:
    # GIVEN every adapter live (deploy, retrain, notify) and only the fake workspace allowed
    with http_receiver() as webhook:
        env = live_env(arm, **smtp_env(smtp), AMLEVENTS_ALLOWED_TOPICS=workspace_id(arm),
                       AMLEVENTS_DRY_RUN_NOTIFY="false", AMLEVENTS_NOTIFY_WEBHOOK_URL=webhook.url,
                       AMLEVENTS_LEDGER_PATH=str(tmp_path / "l.sqlite3"))
        host = start_host(env)
        mine = workspace_id(arm)
        foreign_topics = [mine.replace(arm.subscription_id, "99999999-0000-0000-0000-0000000000ff"),
                          mine + "-evil", mine + "/../other", "", "/subscriptions"]
        events = []
        for n, topic in enumerate(foreign_topics):
            for raw in (model_event(arm, 20, f"foreign-model-{n}"), drift_event(f"foreign-drift-{n}"),
                        failed_run_event(n)):
                raw["topic"] = topic
                events.append(raw)
        # WHEN they arrive (through the catch-all function, as one batch)
        status, _ = host.post(ON_ML_EVENT, events)
        rows = ledger_rows(env)
    # THEN nothing was asked of Azure or sent, and each one is recorded as refused or invalid
    assert status == 202
    assert arm.requests == [] and arm.adf.runs() == [] and arm.ml.endpoints() == []
    assert smtp.messages == [] and webhook.attempts == 0
    assert len(rows) == len(events)
    assert {r.outcome for r in rows} <= {Outcome.REFUSED, Outcome.INVALID}
    refused = [r for r in rows if r.outcome is Outcome.REFUSED]
    assert all("AMLEVENTS_ALLOWED_TOPICS" in r.detail for r in refused)
    figures.record("security [foreign topic]",
                   f"{len(events)} events from {len(foreign_topics)} foreign topics, all "
                   f"adapters live -> {len(refused)} refused, {len(rows) - len(refused)} invalid "
                   "(empty topic); 0 ARM requests, 0 messages sent")


def test_host_key_is_required_beyond_loopback_and_checked_when_set(
        start_host: Callable[..., Host], base_env: dict[str, str], sample: Any,
        figures: Figures) -> None:
    functions = load_functions(function_app.app)
    with pytest.raises(ValueError, match="AMLEVENTS_HOST_KEY"):
        LocalServer(FunctionsHost(functions), bind="0.0.0.0", port=0)
    host = start_host(base_env, key=HOST_KEY)
    body = json.dumps([sample("run_status_changed")]).encode()
    answers = {
        "no key": post(host.port, ON_RUN_STATUS, body)[0],
        "wrong header": post(host.port, ON_RUN_STATUS, body, headers={"x-functions-key": "x"})[0],
        "wrong code": post(host.port, ON_RUN_STATUS, body, query="&code=nope")[0],
        "x-functions-key": post(host.port, ON_RUN_STATUS, body,
                                headers={"x-functions-key": HOST_KEY})[0],
        "code query": post(host.port, ON_RUN_STATUS, body, query=f"&code={HOST_KEY}")[0],
    }
    _status, reply = post(host.port, ON_RUN_STATUS, body)
    assert answers == {"no key": 401, "wrong header": 401, "wrong code": 401,
                       "x-functions-key": 202, "code query": 202}
    assert "x-functions-key" in json.loads(reply)["error"]
    figures.record("security [host key]",
                   "bind 0.0.0.0 without a key -> refused (ValueError); with a key: " +
                   ", ".join(f"{k} -> {v}" for k, v in answers.items()))


@pytest.fixture
def acs(tmp_path: Path) -> Iterator[Any]:
    with start_fake_acs(tmp_path) as fake:
        yield fake


def test_no_secret_in_logs_or_ledger(arm: FakeArm, table_env: dict[str, str], acs: Any,
                                     tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                     figures: Figures) -> None:
    from azure.core.credentials import AzureKeyCredential
    from azure.eventgrid import EventGridPublisherClient

    caplog.set_level(logging.DEBUG)  # every logger, azure SDKs included
    with smtp_sink(user="mailer", password="the-right-one") as smtp, \
            http_receiver() as teams, http_receiver() as webhook:
        teams.statuses, webhook.statuses = [500], [403]
        secrets = {
            "AMLEVENTS_HOST_KEY": HOST_KEY, "AMLEVENTS_TOPIC_KEY": TOPIC_KEY,
            "AMLEVENTS_NOTIFY_SMTP_PASSWORD": "smtp-pass-SECRET-789xyz",
            "AMLEVENTS_NOTIFY_WEBHOOK_SECRET": "hmac-SECRET-abcdef0123",
            "AMLEVENTS_NOTIFY_TEAMS_URL": teams.url, "AMLEVENTS_NOTIFY_WEBHOOK_URL": webhook.url,
            "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING": acs.connection_string,
            "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=w;"
                                   "AccountKey=V0VCSk9CUy1TRUNSRVQta2V5;",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=APPINSIGHTS-SECRET-00",
        }
        env = live_env(arm, **table_env, **secrets, AMLEVENTS_DRY_RUN_NOTIFY="false",
                       AMLEVENTS_NOTIFY_SMTP_HOST="127.0.0.1",
                       AMLEVENTS_NOTIFY_SMTP_PORT=str(smtp.port),
                       AMLEVENTS_NOTIFY_SMTP_STARTTLS="false",
                       AMLEVENTS_NOTIFY_SMTP_USERNAME="mailer",
                       AMLEVENTS_NOTIFY_SMTP_FROM="amlevents@contoso.com",
                       AMLEVENTS_NOTIFY_SMTP_TO="ml-team@contoso.com",
                       AMLEVENTS_NOTIFY_ACS_SENDER="DoNotReply@contoso.azurecomm.net",
                       AMLEVENTS_NOTIFY_ACS_TO="ml-team@contoso.com",
                       AMLEVENTS_NOTIFY_ACS_POLL_INTERVAL_S="0.01",
                       AMLEVENTS_NOTIFY_CA_FILE=acs.ca_path,
                       AMLEVENTS_SIMULATOR_DIR=str(tmp_path / "sim"),
                       AMLEVENTS_SIMULATOR_TIME_SCALE="0.001")
        arm.fail_next("POST", CREATE_RUN, 400, body={"error": {
            "code": "BadRequest", "message": f"bad parameter near {HOST_KEY[:4]}"}})
        arm.fail_next("PUT", DEPLOYMENT_PUT, 429, headers={"Retry-After": "0"})
        running = build_host(env, bind="127.0.0.1", port=0)
        running.server.start()
        try:
            # Events through the topic simulator, published with the topic key ...
            EventGridPublisherClient(f"{running.url}/api/events",
                                     AzureKeyCredential(TOPIC_KEY)).send(
                [failed_run_event(1), drift_event("secret-drift")])
            assert running.simulator.drain(30)
            # ... and straight to the host with the key in the `code` query
            port, code = running.server.port, f"&code={HOST_KEY}"
            direct = [model_event(arm, 20, "secret-model"), failed_run_event(2),
                      {**drift_event("foreign"), "topic": "/subscriptions/other"},
                      {"id": "broken", "eventType": 7}]
            statuses = [post(port, ON_MODEL_REGISTERED, json.dumps(direct[:1]).encode(),
                             query=code)[0] for _ in range(2)]
            statuses.append(post(port, ON_ML_EVENT, json.dumps(direct[1:]).encode(),
                                 query=code)[0])
        finally:
            running.stop()
    rows = ledger_rows(env)
    stored = json.dumps([r.as_json() for r in rows]) + json.dumps(
        [dict(e) for e in table_entities(table_env)], default=str)
    outcomes = sorted(r.outcome.value for r in rows)
    # The batch did go through the failure paths (and was logged) ...
    assert statuses[:2] == [500, 202] and "failed" in outcomes and "refused" in outcomes
    assert smtp.logins == [] and len(acs.sent) >= 1 and teams.attempts >= 2
    assert any(r.name.startswith("azure") for r in caplog.records)
    # ... and no secret value is in any log line, traceback, or ledger row / state item
    values = [*secrets.values(), SECRET_PATH.split("sig=")[1], ACCESS_KEY, "V0VCSk9CUy1TRUNSRVQta2V5",
              table_env["AMLEVENTS_LEDGER_TABLE_CONNECTION"]]
    logged = "\n".join(_text(r) for r in caplog.records)
    leaks = [v for v in values if v in logged or v in stored]
    assert leaks == [], [(v, [(r.name, _text(r)[:300]) for r in caplog.records if v in _text(r)],
                          v in stored) for v in leaks]
    default_dispatcher.cache_clear()
    figures.record("security [secrets]",
                   f"{len(values)} secret values set; {len(caplog.records)} log records at DEBUG "
                   f"(azure SDKs included) and {len(rows)} ledger rows ({', '.join(outcomes)}) "
                   f"-> {len(leaks)} leaks")


def test_host_key_in_first_access_log_line(start_host: Callable[..., Host],
                                           base_env: dict[str, str],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = f"first-{uuid.uuid4().hex}"  # unknown to filters other tests left on pytest's handlers
    host = start_host({**base_env, "AMLEVENTS_HOST_KEY": key}, key=key)
    validation = [{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                   "subject": "", "data": {"validationCode": "abc"}, "eventTime": "",
                   "dataVersion": "1", "topic": ""}]
    status, _ = post(host.port, ON_ML_EVENT, json.dumps(validation).encode(),
                     headers={"aeg-event-type": "SubscriptionValidation"}, query=f"&code={key}")
    assert status == 200
    assert key not in caplog.text


def _text(record: logging.LogRecord) -> str:
    return f"{record.getMessage()}\n{record.exc_text or ''}"


def table_entities(ledger_env: dict[str, str]) -> list[Any]:
    """Every entity of the ledger table (events, order index and handler state)."""
    from azure.data.tables import TableClient

    with TableClient.from_connection_string(ledger_env["AMLEVENTS_LEDGER_TABLE_CONNECTION"],
                                            ledger_env["AMLEVENTS_LEDGER_TABLE_NAME"]) as client:
        return list(client.list_entities())
