"""ACS Email: the REAL EmailClient against a local HTTPS fake of /emails:send."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handlers.adapters.notify_acs_email import AcsEmailChannel
from handlers.errors import PermanentError, RetryableError
from handlers.events import RunStatusChanged, parse_event
from handlers.notify_message import Message, notice_message
from handlers.run_alerts import build_notice
from tests.fakes_acs import FakeAcs, start_fake_acs


def _message(sample: Callable[[str], dict[str, Any]]) -> Message:
    event = parse_event(sample("run_status_changed"))
    assert isinstance(event, RunStatusChanged)
    return notice_message(build_notice(event, "https://ml.azure.com"), "k1.acs")


def _channel(fake: FakeAcs, **overrides: Any) -> AcsEmailChannel:
    kwargs: dict[str, Any] = dict(
        endpoint="", connection_string=fake.connection_string,
        sender="DoNotReply@contoso.azurecomm.net", to=("ml-team@contoso.com", "oncall@contoso.com"),
        timeout_s=10.0, poll_interval_s=0.01, ca_file=fake.ca_path)
    kwargs.update(overrides)
    return AcsEmailChannel(**kwargs)


def test_sends_through_the_real_client_and_polls_to_succeeded(
        tmp_path: Path, sample: Callable[[str], dict[str, Any]]) -> None:
    # GIVEN the fake ACS over HTTPS and a connection string with its access key
    with start_fake_acs(tmp_path) as fake:
        # WHEN the channel sends a message
        receipt = _channel(fake).send(_message(sample))
    # THEN the signed POST arrived in the documented shape, and polling reached Succeeded
    assert "Succeeded" in receipt
    assert fake.bad_signatures == 0 and fake.polls >= 2
    assert fake.api_versions == ["2025-09-01"]
    (sent,) = fake.sent
    assert sent["senderAddress"] == "DoNotReply@contoso.azurecomm.net"
    assert [r["address"] for r in sent["recipients"]["to"]] == ["ml-team@contoso.com",
                                                               "oncall@contoso.com"]
    content = sent["content"]
    assert content["subject"].startswith("[amlevents] Run failed: AutoML_ad912b2d")
    assert "automl-local-regression" in content["plainText"]
    assert "https://ml.azure.com/runs/AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5?wsid=" \
        in content["plainText"]
    assert "<table>" in content["html"]


def test_a_5xx_is_retryable(tmp_path: Path, sample: Callable[[str], dict[str, Any]]) -> None:
    with start_fake_acs(tmp_path) as fake:
        fake.fail_next_send = [503, 503, 503]
        with pytest.raises(RetryableError, match="acs: HTTP 503"):
            _channel(fake).send(_message(sample))
    assert fake.sent == []


def test_a_4xx_is_permanent(tmp_path: Path, sample: Callable[[str], dict[str, Any]]) -> None:
    with start_fake_acs(tmp_path) as fake:
        fake.fail_next_send = [400]
        with pytest.raises(PermanentError, match="acs: HTTP 400"):
            _channel(fake).send(_message(sample))


def test_a_failed_operation_is_permanent(tmp_path: Path,
                                         sample: Callable[[str], dict[str, Any]]) -> None:
    with start_fake_acs(tmp_path) as fake:
        fake.final_status = "Failed"
        with pytest.raises(PermanentError, match="acs"):
            _channel(fake).send(_message(sample))
    assert len(fake.sent) == 1


def test_an_untrusted_certificate_is_not_sent(tmp_path: Path,
                                              sample: Callable[[str], dict[str, Any]]) -> None:
    # GIVEN no CA file: the fake's self-signed certificate is not trusted
    with start_fake_acs(tmp_path) as fake:
        with pytest.raises(RetryableError, match="acs"):
            _channel(fake, ca_file="").send(_message(sample))
    assert fake.sent == []
