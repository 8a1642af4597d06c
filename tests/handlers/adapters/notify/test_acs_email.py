"""ACS Email: the REAL EmailClient against a local HTTPS fake of /emails:send.

Connection string (HMAC) and managed identity (DefaultAzureCredential via the fake ARM's App
Service identity endpoint, tests/fakes/arm.py).
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from handlers.adapters.notify.acs_email import AcsEmailChannel, operation_id, repeatability_headers
from handlers.adapters.notify.acs_email import _classify as acs_classify
from handlers.errors import PermanentError, RetryableError
from handlers.events.parse import RunStatusChanged, parse_event
from handlers.notify.decide import build_notice
from handlers.notify.message import (
    Digest,
    DigestGroup,
    Message,
    as_html,
    as_text,
    digest_message,
    notice_message,
)
from tests.fakes.acs import FakeAcs, start_fake_acs
from tests.fakes.arm import FakeArm, fake_arm_fixture


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


# -- managed identity: DefaultAzureCredential through the App Service identity endpoint -------

fake_arm = fake_arm_fixture(name="fake_arm")
ACS_SCOPE_RESOURCE = "https://communication.azure.com/"  # scope https://communication.azure.com//.default


def _issued_by(arm: FakeArm) -> Callable[[str], bool]:
    # The fake ARM keeps the tokens its identity endpoint issued; ACS accepts exactly those.
    return arm.issued


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _mi_channel(fake: FakeAcs) -> AcsEmailChannel:
    return _channel(fake, endpoint=fake.endpoint, connection_string="")


def test_managed_identity_sends_with_a_bearer_token_from_the_identity_endpoint(
        tmp_path: Path, sample: Callable[[str], dict[str, Any]], fake_arm: FakeArm) -> None:
    # GIVEN the App Service identity endpoint (IDENTITY_ENDPOINT/HEADER) and an ACS endpoint only
    with start_fake_acs(tmp_path) as fake:
        fake.accept_token = _issued_by(fake_arm)
        # WHEN the channel sends through the real EmailClient with DefaultAzureCredential
        receipt = _mi_channel(fake).send(_message(sample))
    # THEN every ACS call carried the token the identity endpoint issued for the ACS scope
    assert "Succeeded" in receipt
    assert len(fake.sent) == 1 and fake.polls >= 2
    assert fake.bad_tokens == 0 and fake.bad_signatures == 0
    assert fake.bearer_tokens and len(set(fake.bearer_tokens)) == 1  # one token, cached by the SDK
    (token_request,) = fake_arm.token_requests
    assert token_request.query["resource"] == ACS_SCOPE_RESOURCE
    assert token_request.headers["x-identity-header"] == fake_arm.identity_header
    assert _jwt_claims(fake.bearer_tokens[0])["aud"] == ACS_SCOPE_RESOURCE


def test_managed_identity_token_refused_by_acs_is_permanent(
        tmp_path: Path, sample: Callable[[str], dict[str, Any]], fake_arm: FakeArm) -> None:
    # GIVEN an ACS that accepts no token (e.g. the identity lacks the role on the resource)
    with start_fake_acs(tmp_path) as fake:
        fake.accept_token = lambda token: False
        # WHEN the channel sends THEN the 401 is a permanent failure and nothing was sent
        with pytest.raises(PermanentError, match="acs: HTTP 401"):
            _mi_channel(fake).send(_message(sample))
    assert fake.sent == [] and fake.bad_tokens == 1
    assert fake_arm.token_requests


def test_managed_identity_without_the_identity_endpoint_is_retryable(
        tmp_path: Path, sample: Callable[[str], dict[str, Any]], fake_arm: FakeArm,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an identity endpoint that refuses connections (the platform's sidecar is down)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{closed_port}/msi/token")
    # A developer's logged-in az/azd/pwsh must not stand in for the missing identity.
    monkeypatch.setenv("PATH", str(tmp_path))
    with start_fake_acs(tmp_path) as fake:
        fake.accept_token = _issued_by(fake_arm)
        # WHEN the channel sends THEN no token means retry later; ACS saw no request
        started = time.monotonic()
        with pytest.raises(RetryableError, match="acs"):
            _mi_channel(fake).send(_message(sample))
    assert fake.sent == [] and fake.bearer_tokens == []
    # One quick retry, as for ACS itself (the credential's default retries take ~5 s).
    assert time.monotonic() - started < 3.0


# --- stable ids and repeatable requests (issue 12, row 15) --------------------------------------

def test_an_answer_lost_after_acceptance_does_not_send_a_second_email(
        tmp_path: Path, sample: Callable[[str], dict[str, Any]]) -> None:
    # GIVEN ACS takes the email, but its 202 never reaches us (the connection drops)
    message = replace(_message(sample), first_sent_s=time.time())
    with start_fake_acs(tmp_path) as fake:
        fake.drop_responses = 1
        # WHEN the channel sends: we cannot know it went out, so the event will be redelivered
        with pytest.raises(RetryableError, match="acs: ServiceResponseError"):
            _channel(fake).send(message)
        # AND the redelivery sends the message again (the notifier kept its first-sent time)
        receipt = _channel(fake).send(message)
    # THEN ACS recognized the repeat and answered as the first time, without a second email
    assert "Succeeded" in receipt
    assert len(fake.sent) == 1 and fake.repeats_answered == 1


def test_every_send_of_a_message_carries_the_same_operation_and_request_ids(
        tmp_path: Path, sample: Callable[[str], dict[str, Any]]) -> None:
    first_sent = time.time() - 30  # when the notifier first tried this message on ACS
    message = replace(_message(sample), first_sent_s=first_sent)
    with start_fake_acs(tmp_path) as fake:
        # WHEN the same message is sent again (a redelivery, a second instance)
        _channel(fake).send(message)
        _channel(fake).send(message)
    # THEN ACS saw one email: one Operation-Id and Repeatability-Request-Id, from the message id
    assert len(fake.sent) == 1 and fake.repeats_answered == 1
    (request_id,) = fake.repeatable
    assert fake.operation_ids == [request_id] and uuid.UUID(request_id).version == 5
    assert fake.repeatable[request_id]["first_sent"] == formatdate(first_sent, usegmt=True)


def test_a_repeat_after_the_tracked_window_is_sent_again(
        tmp_path: Path, sample: Callable[[str], dict[str, Any]]) -> None:
    # GIVEN a first attempt longer ago than ACS tracks repeats (5 minutes): ACS answers 412
    message = replace(_message(sample), first_sent_s=time.time() - 600)
    with start_fake_acs(tmp_path) as fake:
        receipt = _channel(fake).send(message)
    # THEN it is sent (at least once: nobody can tell whether the first attempt went out)
    assert "Succeeded" in receipt and "resent" in receipt
    assert len(fake.sent) == 1


def test_a_digest_sent_again_is_recognized_as_a_repeat(tmp_path: Path) -> None:
    # A digest kept for later after a lost answer is sent again by the next flush.
    now = time.time()
    digest = digest_message(Digest("digest-acs-1", "acs", now - 70, now - 10,
                                   (DigestGroup("failed runs in experiment X", 3),)))
    with start_fake_acs(tmp_path) as fake:
        fake.drop_responses = 1
        with pytest.raises(RetryableError):
            _channel(fake).send(digest)
        assert "Succeeded" in _channel(fake).send(digest)
    assert len(fake.sent) == 1 and fake.repeats_answered == 1


def test_a_429_is_throttling_and_retryable(tmp_path: Path,
                                           sample: Callable[[str], dict[str, Any]]) -> None:
    # GIVEN ACS throttling every attempt (429 Too Many Requests)
    with start_fake_acs(tmp_path) as fake:
        fake.fail_next_send = [429, 429, 429, 429]
        # THEN the send is retryable (Event Grid redelivers later), never a permanent failure
        with pytest.raises(RetryableError, match="acs: HTTP 429"):
            _channel(fake).send(_message(sample))
    assert fake.sent == []


def test_a_500_is_retryable_and_a_499_permanent(tmp_path: Path,
                                               sample: Callable[[str], dict[str, Any]]) -> None:
    # The boundary of "server error": 500 itself is transient, the highest 4xx is not
    with start_fake_acs(tmp_path) as fake:
        fake.fail_next_send = [500, 500, 500, 500]
        with pytest.raises(RetryableError, match="acs: HTTP 500"):
            _channel(fake).send(_message(sample))
        fake.fail_next_send = [499]
        with pytest.raises(PermanentError, match="acs: HTTP 499"):
            _channel(fake).send(_message(sample))


# --- exact ids, bodies, receipts and errors (helper A2) ------------------------------------------

_PLAIN = Message(id="k.acs", kind="notification", title="Run failed: r1", facts=(("Run", "r1"),),
                 lines=(), link="https://l/r1", payload={})
_PLAIN_OP = "c38aa5c8-e367-5936-a275-4edb93fde7ff"  # uuid5(MESSAGE_NAMESPACE, "k.acs")


def test_the_operation_id_and_repeatability_headers_whole() -> None:
    # The namespace is fixed: every instance, every release names a message's operation alike.
    assert operation_id(_PLAIN) == _PLAIN_OP
    assert repeatability_headers(_PLAIN, 0.0) == {
        "Repeatability-Request-Id": _PLAIN_OP,
        "Repeatability-First-Sent": "Thu, 01 Jan 1970 00:00:00 GMT"}
    assert repeatability_headers(_PLAIN, 1_700_000_000.9)["Repeatability-First-Sent"] == (
        "Tue, 14 Nov 2023 22:13:20 GMT")


def test_the_email_body_and_receipt_whole(tmp_path: Path) -> None:
    message = replace(_PLAIN, first_sent_s=time.time() - 5)
    with start_fake_acs(tmp_path) as fake:
        receipt = _channel(fake).send(message)
    assert receipt == f"operation {_PLAIN_OP} Succeeded"
    assert fake.sent == [{
        "senderAddress": "DoNotReply@contoso.azurecomm.net",
        "recipients": {"to": [{"address": "ml-team@contoso.com"},
                               {"address": "oncall@contoso.com"}]},
        "content": {"subject": "[amlevents] Run failed: r1", "plainText": as_text(_PLAIN),
                    "html": as_html(_PLAIN)}}]
    assert fake.operation_ids == [_PLAIN_OP]
    assert fake.repeatable[_PLAIN_OP]["first_sent"] == formatdate(message.first_sent_s,
                                                                  usegmt=True)


def test_a_message_never_tried_before_is_first_sent_now(tmp_path: Path) -> None:
    before = time.time()
    with start_fake_acs(tmp_path) as fake:
        _channel(fake).send(_PLAIN)  # first_sent_s None: this is the first attempt
    first_sent = parsedate_to_datetime(fake.repeatable[_PLAIN_OP]["first_sent"]).timestamp()
    assert before - 1 <= first_sent <= time.time()


def test_a_resend_after_the_tracked_window_says_so_whole(tmp_path: Path) -> None:
    with start_fake_acs(tmp_path) as fake:
        receipt = _channel(fake).send(replace(_PLAIN, first_sent_s=time.time() - 600))
    assert receipt == (f"operation {_PLAIN_OP} Succeeded "
                       "(resent: the first attempt was older than ACS tracks repeats)")


@pytest.mark.parametrize(("status", "kind"), [(503, RetryableError), (500, RetryableError),
                                              (429, RetryableError), (499, PermanentError),
                                              (400, PermanentError)])
def test_an_error_answer_is_named_whole(tmp_path: Path, status: int,
                                        kind: type[Exception]) -> None:
    with start_fake_acs(tmp_path) as fake:
        fake.fail_next_send = [status] * 4
        with pytest.raises(kind) as info:
            _channel(fake).send(_PLAIN)
    assert type(info.value) is kind
    assert str(info.value) == f"acs: HTTP {status} (Fault) injected"


def test_a_failed_operation_is_named_whole(tmp_path: Path) -> None:
    with start_fake_acs(tmp_path) as fake:
        fake.final_status = "Failed"
        with pytest.raises(PermanentError) as info:
            _channel(fake).send(_PLAIN)
    assert str(info.value) == (
        "acs: HTTP 200 (EmailDroppedAllRecipientsSuppressed) all recipients suppressed")


def test_an_operation_still_running_at_the_timeout_is_accepted_not_resent(
        tmp_path: Path) -> None:
    with start_fake_acs(tmp_path) as fake:
        fake.polls_before_success = 10**6
        receipt = _channel(fake, timeout_s=0.4).send(_PLAIN)
    assert receipt == "accepted, status still Running after 0.4s"
    assert len(fake.sent) == 1


def test_a_connection_failure_is_retryable_and_named_whole(tmp_path: Path) -> None:
    with start_fake_acs(tmp_path) as fake:
        with pytest.raises(RetryableError) as info:
            _channel(fake, ca_file="").send(_PLAIN)  # the fake's certificate is not trusted
    assert str(info.value) == "acs: ServiceRequestError" and info.value.retry_after_s is None
    assert fake.sent == []


def test_a_lost_answer_is_named_whole(tmp_path: Path) -> None:
    with start_fake_acs(tmp_path) as fake:
        fake.drop_responses = 1
        with pytest.raises(RetryableError) as info:
            _channel(fake).send(replace(_PLAIN, first_sent_s=time.time()))
    assert str(info.value) == "acs: ServiceResponseError"


class _SdkError(Exception):
    """What _classify reads of an azure-core error: its status code and message."""

    def __init__(self, status_code: int | None, message: str) -> None:
        super().__init__(message)
        self.status_code, self.message = status_code, message


@pytest.mark.parametrize(("status", "message", "kind", "detail"), [
    (None, "token request failed\nmore", RetryableError, "acs: token request failed"),
    (None, "", RetryableError, "acs: _SdkError"),  # no message: the error's kind
    (401, "denied", PermanentError, "acs: HTTP 401 denied"),
    (499, "x", PermanentError, "acs: HTTP 499 x"), (500, "x", RetryableError, "acs: HTTP 500 x"),
    (429, "slow down", RetryableError, "acs: HTTP 429 slow down"),
    (400, "m" * 400, PermanentError, "acs: HTTP 400 " + "m" * 300)])
def test_classify_names_status_and_first_line_and_picks_retry(
        status: int | None, message: str, kind: type[Exception], detail: str) -> None:
    error = acs_classify(_SdkError(status, message))
    assert type(error) is kind and str(error) == detail


def test_classify_an_error_without_status_or_message_by_its_kind() -> None:
    # e.g. a credential's own error: no HTTP status (so retryable), no `message` attribute
    error = acs_classify(RuntimeError("boom"))
    assert type(error) is RetryableError and str(error) == "acs: RuntimeError"
