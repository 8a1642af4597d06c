"""Secrets never reach logs or the ledger."""

from __future__ import annotations

import logging

import pytest

from handlers.runtime.redaction import MASK, RedactingFilter, is_secret_setting, redact, secret_values


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
