"""Secrets never reach logs or the ledger."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.runtime.redaction import (
    MASK,
    RedactingFilter,
    is_secret_setting,
    json_forms,
    may_need_masking,
    redact,
    secret_values,
)


@pytest.mark.parametrize("name", ["AMLEVENTS_TOPIC_KEY", "AMLEVENTS_SMTP_PASSWORD",
                                  "AMLEVENTS_TEAMS_WEBHOOK_URL", "AzureWebJobsStorage",
                                  "AMLEVENTS_ACS_CONNECTION_STRING", "AMLEVENTS_WEBHOOK_SECRET"])
def test_secret_setting_names(name: str) -> None:
    assert is_secret_setting(name)


@pytest.mark.parametrize("name", ["AMLEVENTS_DRY_RUN", "AMLEVENTS_DRIFT_THRESHOLD",
                                  "AMLEVENTS_ALLOWED_TOPICS"])
def test_ordinary_setting_names(name: str) -> None:
    assert not is_secret_setting(name)


def test_secret_values_and_connection_strings_are_masked() -> None:
    env = {"AMLEVENTS_SLACK_WEBHOOK_URL": "https://hooks.slack.example/T000/B000/XXXX",
           "AMLEVENTS_DRY_RUN": "true"}
    text = ("posting to https://hooks.slack.example/T000/B000/XXXX failed; "
            "conn DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc123==;x=y")
    cleaned = redact(text, secret_values(env))
    assert "hooks.slack.example" not in cleaned and "abc123" not in cleaned
    assert cleaned.count(MASK) == 2 and "AccountName=a" in cleaned


def test_logging_filter_masks_formatted_messages(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("amlevents.test.redaction")
    logger.addFilter(RedactingFilter(["p@ssw0rd-123"]))
    with caplog.at_level(logging.INFO, logger="amlevents.test.redaction"):
        logger.info("login with %s", "p@ssw0rd-123")
    assert "p@ssw0rd-123" not in caplog.text and MASK in caplog.text


def test_installed_filter_masks_tracebacks_on_every_logger(caplog: pytest.LogCaptureFixture) -> None:
    from handlers.runtime.redaction import install_redaction

    install_redaction(["Password=hunter2-secret"])
    with caplog.at_level(logging.ERROR):
        try:
            raise ValueError("connect failed with Password=hunter2-secret")
        except ValueError:
            logging.getLogger("some.adapter").exception("adapter failed")
    assert "hunter2-secret" not in caplog.text
    assert "adapter failed" in caplog.text


# --- by shape, not only by value (issue 12, row 5) ----------------------------------------------

@pytest.mark.parametrize(("text", "secret"), [
    # Query keys that carry credentials: Logic Apps / Teams Workflows SAS `sig`, Functions `code`,
    # API keys and tokens (Google Chat `key`/`token`), storage SAS `sig` - bare or in a full URL.
    ("HTTP 400 'invalid path /workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01"
     "&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGsecret123abc'", "SIGsecret123abc"),
    ("https://f.azurewebsites.net/api/hook?code=FUNCkey_abc123==&clientId=default", "FUNCkey_abc123"),
    ("POST https://chat.googleapis.com/v1/spaces/A/messages?key=APIkeyABC123&token=TOKxyz987",
     "APIkeyABC123"),
    ("POST https://chat.googleapis.com/v1/spaces/A/messages?key=APIkeyABC123&token=TOKxyz987",
     "TOKxyz987"),
    ("blob https://a.blob.core.windows.net/c/b?sv=2022-11-02&se=2030-01-01&sr=b&sp=r"
     "&sig=abc%2Bdef%3D", "abc%2Bdef%3D"),
    ("url: https://x.example/hook?access_token=ya29.TOKEN123&x=1", "ya29.TOKEN123"),
    ("https://x.example/hook?api-key=APIKEY12345", "APIKEY12345"),
    ("https://x.example/hook?Signature=SIGNATUREabc", "SIGNATUREabc"),
    ("echoed: /hook%3Fsig%3DENCODEDsecret99", "ENCODEDsecret99"),
    ("json {\"url\": \"https://h/x?token=JSONtok123\"}", "JSONtok123"),
    # User-info
    ("cannot connect to https://admin:PASSword123@relay.example:8443/x", "PASSword123"),
    ("nonnumeric port: 'PASSword123@relay.example'", "PASSword123"),
    # Path secrets of known webhook shapes (with or without the host)
    ("https://hooks.slack.com/services/T0001AAAA/B0002BBBB/SLACKsecretXYZ123abc",
     "SLACKsecretXYZ123abc"),
    ("404 for /services/T0001AAAA/B0002BBBB/SLACKsecretXYZ123abc", "SLACKsecretXYZ123abc"),
    ("https://hooks.slack.com/triggers/T0001AAAA/12345/TRIGGERsecret0abc", "TRIGGERsecret0abc"),
    ("https://contoso.webhook.office.com/webhookb2/1111-22@3333-44/IncomingWebhook/"
     "OFFICEsecret0abc/5555-66", "OFFICEsecret0abc"),
    ("https://discord.com/api/webhooks/123456789/DISCORDsecret-abc_123", "DISCORDsecret-abc_123"),
    # Bearer tokens and JWTs, SAS tokens in connection strings
    ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.SIGpart_abc", "eyJzdWIiOiJ4In0"),
    ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.SIGpart_abc expired", "SIGpart_abc"),
    ("Endpoint=sb://x/;SharedAccessSignature=sv=1&sig=SBsig123abc", "SBsig123abc"),
    ("endpoint=https://acs/;accesskey=ACSkey0123==", "ACSkey0123"),
])
def test_secrets_are_masked_by_shape(text: str, secret: str) -> None:
    cleaned = redact(text, ())
    assert secret not in cleaned, cleaned
    assert MASK in cleaned


@pytest.mark.parametrize("text", [
    "https://ml.azure.com/runs/HD_1?wsid=/subscriptions/s/resourcegroups/rg/workspaces/w",
    "tag deploy_traffic: must be a whole number from 0 to 100, got 'x'",
    "POST /emails:send?api-version=2025-09-01 answered 202",
    "https://hooks.slack.com/services (no ids)",
    "sent: HTTP 200; digest of 3 sent first",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text, ()) == text


def test_url_encoded_secret_values_are_masked_too() -> None:
    # A receiver may echo the URL it was called with percent-encoded (or decoded).
    url = "https://h.example/hook/path-SECRET-123?sp=/triggers/manual/run&sv=1.0"
    env = {"AMLEVENTS_NOTIFY_WEBHOOK_URL": url}
    quoted = "https%3A%2F%2Fh.example%2Fhook%2Fpath-SECRET-123%3Fsp%3D%2Ftriggers"
    assert "path-SECRET-123" not in redact(f"echo {quoted}", secret_values(env))
    assert "path-SECRET-123" not in redact("echo /hook/path-SECRET-123?sp=", secret_values(env))


def test_a_webhook_urls_parts_are_secret_but_not_its_sas_version_or_api_version() -> None:
    url = ("https://prod-1.westeurope.logic.azure.com:443/workflows/wf1/triggers/manual/paths/"
           "invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGvalue12")
    values = secret_values({"AMLEVENTS_NOTIFY_TEAMS_URL": url})
    assert "SIGvalue12" in values and "/workflows/wf1/triggers/manual/paths/invoke" in values
    assert "2016-06-01" not in values and "/triggers/manual/run" not in values


def test_redaction_stays_linear_on_long_hostile_text() -> None:
    import time

    hostile = ["a" * 200_000 + "://x" + "@", "&sig=" * 40_000, "/" * 200_000 + "@",
               "eyJ" + "a" * 200_000, ("https://" + "b" * 50) * 4000 + "@"]
    started = time.perf_counter()
    for text in hostile:
        redact(text, ())
    assert time.perf_counter() - started < 2.0


def test_service_base_urls_are_not_secrets() -> None:
    from handlers.runtime.redaction import is_secret_setting

    assert not is_secret_setting("AMLEVENTS_GITHUB_API_URL")
    assert not is_secret_setting("AMLEVENTS_AZURE_DEVOPS_URL")
    assert is_secret_setting("AMLEVENTS_NOTIFY_TEAMS_URL")


@pytest.mark.parametrize(("name", "secret"), [
    ("AMLEVENTS_DEADLETTER_SAS", True), ("STORAGE_SAS", True), ("AMLEVENTS_SIGNATURE", True),
    ("AMLEVENTS_NOTIFY_TEAMS_URL", True), ("AzureWebJobsStorage", True),
    ("AMLEVENTS_DRY_RUN", False), ("AMLEVENTS_ALLOWED_TOPICS", False),
    ("AMLEVENTS_DRIFT_THRESHOLD", False)])
def test_secret_settings_are_recognized_by_name(name: str, secret: bool) -> None:
    # A SAS token is a credential even when the name says nothing else (no KEY, no TOKEN)
    assert is_secret_setting(name) is secret
    env = {name: "https://account.blob.core.windows.net/c?sv=2022-11-02&sp=rw&sig=c2VjcmV0"}
    assert (secret_values(env) != ()) is secret


# --- cheap when nothing is secret (issue 17) ------------------------------------------------------

_PIECES = ["https://", "user:pw@", "@", "/", "?sig=", "&code=", ";key=", "%3Fsig%3D", "%26token%3D",
           "=", "abc", "XYZ123", " ", "\t", "\n", '"', "\\", "hooks.slack.com/services/",
           "/services/T0ABCDEFG/B0ABCDEFG/", "/webhookb2/", "office.com/webhook/",
           "/api/webhooks/123/", "Bearer ", "bearer\t", "eyJhbGciOi.eyJzdWIiOi.sig",
           "AccountKey=", "Password=", "nonnumeric port: 'x@y'", "\u017f", "\u212a", "é",
           "hook\u017f.slack.com/a/", "api-version=2020-01-01", "token", "SECRET-VALUE-1",
           'q"uote-secret']


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(_PIECES), max_size=6).map("".join), max_size=4))
def test_a_document_said_to_need_no_masking_has_no_string_that_does(strings: list[str]) -> None:
    secrets = secret_values({"AMLEVENTS_X_KEY": "SECRET-VALUE-1",
                             "AMLEVENTS_Y_PASSWORD": 'q"uote-secret'})
    document = json.dumps({"event": {f"k{i}": s for i, s in enumerate(strings)}, "n": 1},
                          ensure_ascii=False)
    if not may_need_masking(document, json_forms(secrets)):
        assert all(redact(s, secrets) == s for s in strings)


def test_an_ordinary_event_needs_no_masking(sample: Callable[[str], dict[str, Any]]) -> None:
    for name in ("run_status_changed", "dataset_drift_detected", "model_registered"):
        assert not may_need_masking(json.dumps(sample(name), ensure_ascii=False), ())


class _Counted:
    """A log argument that counts how often the message is formatted."""

    def __init__(self) -> None:
        self.formatted = 0

    def __str__(self) -> str:
        self.formatted += 1
        return "value"


def test_a_record_is_masked_once_however_many_handlers_log_it() -> None:
    logger = logging.getLogger("amlevents.test.redaction.once")
    logger.propagate = False
    shared = RedactingFilter(["p@ssw0rd-123"])
    streams = [io.StringIO(), io.StringIO()]
    handlers = [logging.StreamHandler(stream) for stream in streams]
    for handler in handlers:
        handler.addFilter(shared)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        argument = _Counted()
        logger.info("a %s", argument)
        logger.info("login with %s", "p@ssw0rd-123")
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
    # The filter formats the first message once, each handler once: three, not four.
    assert argument.formatted == 3
    assert all(s.getvalue().splitlines() == ["a value", f"login with {MASK}"] for s in streams)


def test_installing_again_replaces_the_filter_rather_than_stacking_them() -> None:
    from handlers.runtime.redaction import RedactingFilter, install_redaction

    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        install_redaction(["first-secret-123"])
        install_redaction(["second-secret-456"])
        # One filter per handler, the latest: a settings reload must not leave stale copies.
        (only,) = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", (
            "first-secret-123", "second-secret-456"), None)
        only.filter(record)
        assert record.getMessage() == f"first-secret-123 {MASK}"
    finally:
        root.removeHandler(handler)
