"""SMTP: a real aiosmtpd server started by the test, STARTTLS and login included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from handlers.adapters.notify.smtp import SmtpChannel
from handlers.errors import PermanentError, RetryableError
from handlers.events.parse import RunStatusChanged, parse_event
from handlers.notify.decide import build_notice
from handlers.notify.message import Message, notice_message
from tests.fakes.notify import smtp_sink


def _message(sample: Callable[[str], dict[str, Any]]) -> Message:
    event = parse_event(sample("run_status_changed"))
    assert isinstance(event, RunStatusChanged)
    return notice_message(build_notice(event, "https://ml.azure.com"), "key1.smtp")


def _channel(port: int, **overrides: Any) -> SmtpChannel:
    kwargs: dict[str, Any] = dict(host="127.0.0.1", port=port, starttls=False, username="",
                                  password="", sender="amlevents@contoso.com",
                                  to=("ml-team@contoso.com",), timeout_s=5.0)
    kwargs.update(overrides)
    return SmtpChannel(**kwargs)


def test_starttls_and_login_then_one_multipart_email(
        tmp_path: Path, sample: Callable[[str], dict[str, Any]]) -> None:
    # GIVEN a server that requires STARTTLS and a login
    with smtp_sink(tmp_path, user="mailer", password="s3cret-pass") as sink:
        channel = _channel(sink.port, starttls=True, username="mailer", password="s3cret-pass",
                           ca_file=sink.ca_path, to=("a@contoso.com", "b@contoso.com"))
        # WHEN one message is sent
        receipt = channel.send(_message(sample))
    # THEN it arrived over TLS, after the login, as text + HTML
    assert receipt == "accepted for 2 of 2 recipient(s)"
    assert sink.tls_seen == [True] and sink.logins == [("mailer", "s3cret-pass")]
    assert sink.envelopes == [("amlevents@contoso.com", ["a@contoso.com", "b@contoso.com"])]
    (mail,) = sink.messages
    assert mail["Subject"].startswith("[amlevents] Run failed: AutoML_ad912b2d")
    assert mail["Message-ID"] == "<key1.smtp@amlevents>"
    parts = {part.get_content_type(): part.get_payload(decode=True).decode()
             for part in mail.walk() if not part.is_multipart()}
    assert "Experiment: automl-local-regression" in parts["text/plain"]
    assert "href=\"https://ml.azure.com/runs/" in parts["text/html"]


def test_plain_smtp_without_login(sample: Callable[[str], dict[str, Any]]) -> None:
    with smtp_sink() as sink:
        _channel(sink.port).send(_message(sample))
    assert len(sink.messages) == 1 and sink.tls_seen == [False] and sink.logins == []


def test_wrong_password_is_permanent(tmp_path: Path,
                                     sample: Callable[[str], dict[str, Any]]) -> None:
    with smtp_sink(tmp_path, user="mailer", password="right-pass") as sink:
        channel = _channel(sink.port, starttls=True, username="mailer", password="wrong-pass",
                           ca_file=sink.ca_path)
        with pytest.raises(PermanentError, match="login refused") as info:
            channel.send(_message(sample))
    assert "wrong-pass" not in str(info.value) and sink.messages == []


def test_untrusted_certificate_is_permanent(tmp_path: Path,
                                            sample: Callable[[str], dict[str, Any]]) -> None:
    with smtp_sink(tmp_path) as sink:
        with pytest.raises(PermanentError, match="certificate not trusted"):
            _channel(sink.port, starttls=True).send(_message(sample))


def test_no_server_is_retryable(sample: Callable[[str], dict[str, Any]]) -> None:
    with smtp_sink() as sink:
        port = sink.port
    with pytest.raises(RetryableError, match="smtp: ConnectionRefusedError"):
        _channel(port).send(_message(sample))


class _Refusing:
    """An SMTP server's handler answering DATA (or RCPT) with a given reply."""

    def __init__(self, data: str = "250 OK", rcpt: str = "250 OK") -> None:
        self.data, self.rcpt = data, rcpt

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.rcpt.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return self.data


@pytest.mark.parametrize(("data", "rcpt", "error", "match"), [
    ("554 5.7.1 Message rejected as spam", "250 OK", PermanentError, "smtp: 554 5.7.1"),
    ("552 5.3.4 Message too big", "250 OK", PermanentError, "smtp: 552"),
    ("451 4.3.0 Try again later", "250 OK", RetryableError, "smtp: 451"),
    ("250 OK", "550 5.1.1 No such user", PermanentError, "every recipient refused"),
    # a long reply is kept to its first 200 characters
    ("554 5.7.1 " + "x" * 300, "250 OK", PermanentError, r"^smtp: 554 5\.7\.1 x{194}$"),
])
def test_smtp_replies_5xx_are_permanent_and_4xx_retryable(
        sample: Callable[[str], dict[str, Any]], data: str, rcpt: str,
        error: type[Exception], match: str) -> None:
    from aiosmtpd.controller import Controller

    from tests.fakes.azurite import free_port

    controller = Controller(_Refusing(data, rcpt), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with pytest.raises(error, match=match):
            _channel(controller.port).send(_message(sample))
    finally:
        controller.stop()
