"""Teams Workflows, Slack and generic webhooks against local http.server receivers."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from handlers.adapters.notify import http as notify_http
from handlers.errors import PermanentError, RetryableError
from handlers.events.parse import RunStatusChanged, parse_event
from handlers.notify.decide import build_notice
from handlers.notify.message import Message, as_slack, as_teams, as_webhook, notice_message
from tests.fakes.notify import SECRET_PATH, http_receiver
from tests.fakes.server import serve_in_thread


def _message(sample: Callable[[str], dict[str, Any]]) -> Message:
    event = parse_event(sample("run_status_changed"))
    assert isinstance(event, RunStatusChanged)
    return notice_message(build_notice(event, "https://ml.azure.com"), "key1.x")


def test_teams_gets_a_message_with_one_adaptive_card(
        sample: Callable[[str], dict[str, Any]]) -> None:
    with http_receiver() as receiver:
        receipt = notify_http.teams(receiver.url, timeout_s=5).send(_message(sample))
    assert receipt == "HTTP 200"
    (request,) = receiver.received
    assert request.path == SECRET_PATH
    assert request.headers["Content-Type"] == "application/json"
    body = request.json()
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["type"] == "RichTextBlock"
    facts = {b["inlines"][0]["text"]: b["inlines"][1]["text"] for b in card["body"][1:]}
    assert facts["Experiment: "] == "automl-local-regression"
    assert facts["Status: "] == "failed"
    (action,) = card["actions"]
    assert action["type"] == "Action.OpenUrl"
    assert action["url"].startswith("https://ml.azure.com/runs/AutoML_ad912b2d")


def test_slack_gets_text_and_blocks(sample: Callable[[str], dict[str, Any]]) -> None:
    with http_receiver() as receiver:
        notify_http.slack(receiver.url, timeout_s=5).send(_message(sample))
    body = receiver.payloads()[0]
    assert body["text"].startswith("Run failed: AutoML_ad912b2d")
    kinds = [block["type"] for block in body["blocks"]]
    assert kinds == ["header", "section", "actions"]
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "Experiment\nautoml-local-regression" in fields
    assert len(fields) <= 10
    assert body["blocks"][2]["elements"][0]["url"].startswith("https://ml.azure.com/runs/")


def test_webhook_gets_summary_and_event_signed_with_hmac(
        sample: Callable[[str], dict[str, Any]]) -> None:
    with http_receiver() as receiver:
        channel = notify_http.webhook(receiver.url, secret="hook-secret-123", timeout_s=5)
        channel.send(_message(sample))
    (request,) = receiver.received
    expected = "sha256=" + hmac.new(b"hook-secret-123", request.body, hashlib.sha256).hexdigest()
    assert request.headers[notify_http.SIGNATURE_HEADER] == expected
    assert request.headers[notify_http.MESSAGE_ID_HEADER] == "key1.x"
    body = json.loads(request.body)
    assert body["kind"] == "notification" and body["source"] == "amlevents"
    assert body["summary"]["status"] == "failed"
    assert body["summary"]["facts"]["Run"] == "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
    assert body["event"]["data"]["experimentName"] == "automl-local-regression"


def test_webhook_without_secret_is_unsigned(sample: Callable[[str], dict[str, Any]]) -> None:
    with http_receiver() as receiver:
        notify_http.webhook(receiver.url, secret="", timeout_s=5).send(_message(sample))
    assert notify_http.SIGNATURE_HEADER not in receiver.received[0].headers


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_server_errors_and_throttling_are_retryable(
        status: int, sample: Callable[[str], dict[str, Any]]) -> None:
    with http_receiver() as receiver:
        receiver.statuses = [status]
        with pytest.raises(RetryableError, match=f"teams: HTTP {status}") as info:
            notify_http.teams(receiver.url, timeout_s=5).send(_message(sample))
    assert "sig=" not in str(info.value)


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_are_permanent(status: int,
                                     sample: Callable[[str], dict[str, Any]]) -> None:
    with http_receiver() as receiver:
        receiver.statuses = [status]
        with pytest.raises(PermanentError, match=f"slack: HTTP {status}") as info:
            notify_http.slack(receiver.url, timeout_s=5).send(_message(sample))
    assert "TOPSECRET" not in str(info.value)


def test_unreachable_is_retryable_and_does_not_show_the_url(
        sample: Callable[[str], dict[str, Any]]) -> None:
    with http_receiver() as receiver:
        url = receiver.url
    with pytest.raises(RetryableError, match="webhook: cannot connect") as info:
        notify_http.webhook(url, secret="", timeout_s=2).send(_message(sample))
    assert "TOPSECRET" not in str(info.value) and "127.0.0.1" not in str(info.value)


# --- secrets echoed back, redirects, stable ids (issue 12, rows 5 and 15) -----------------------

def test_an_error_body_echoing_the_url_does_not_carry_the_token_into_the_error(
        sample: Callable[[str], dict[str, Any]]) -> None:
    # GIVEN a receiver whose 400 body repeats the path and query it was called with
    with http_receiver() as receiver:
        receiver.statuses, receiver.echo_path = [400], True
        with pytest.raises(PermanentError, match="webhook: HTTP 400") as info:
            notify_http.webhook(receiver.url, secret="", timeout_s=5).send(_message(sample))
    # THEN the error keeps what helps (the status, the server's words) but not the token
    assert "TOPSECRET" not in str(info.value) and "no such hook" in str(info.value)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed(status: int, sample: Callable[[str], dict[str, Any]]) -> None:
    # urllib follows a 301/302/303 to a POST as a GET, without the body, wherever it points.
    with http_receiver() as elsewhere, http_receiver() as receiver:
        receiver.statuses, receiver.location = [status], elsewhere.url
        with pytest.raises(PermanentError, match=f"teams: HTTP {status}"):
            notify_http.teams(receiver.url, timeout_s=5).send(_message(sample))
    assert elsewhere.attempts == 0


@pytest.mark.parametrize("make", [
    lambda url: notify_http.webhook(url, secret="s3cret-key", timeout_s=5),
    lambda url: notify_http.teams(url, timeout_s=5), lambda url: notify_http.slack(url, timeout_s=5)],
    ids=["webhook", "teams", "slack"])
def test_every_post_carries_the_messages_stable_idempotency_key(
        make: Callable[[str], notify_http.HttpChannel],
        sample: Callable[[str], dict[str, Any]]) -> None:
    # GIVEN a receiver that drops a request whose Idempotency-Key it has seen
    with http_receiver() as receiver:
        receiver.dedupe = True
        channel = make(receiver.url)
        # WHEN the same message is sent twice (a redelivery after a crash)
        channel.send(_message(sample))
        channel.send(_message(sample))
    # THEN both carried the same key (an RFC 8941 string, as the IETF draft defines it) ...
    assert receiver.keys == ['"key1.x"', '"key1.x"']
    assert receiver.dropped == 1 and len(receiver.received) == 1  # ... so the repeat was dropped
    assert receiver.received[0].headers[notify_http.MESSAGE_ID_HEADER] == "key1.x"


def test_the_webhook_body_carries_the_same_id(sample: Callable[[str], dict[str, Any]]) -> None:
    with http_receiver() as receiver:
        notify_http.webhook(receiver.url, secret="", timeout_s=5).send(_message(sample))
    (request,) = receiver.received
    assert request.json()["id"] == "key1.x" and request.headers["Idempotency-Key"] == '"key1.x"'


def test_an_untrusted_certificate_is_permanent_and_nothing_is_sent(
        tmp_path: Any, sample: Callable[[str], dict[str, Any]]) -> None:
    from tests.fakes.server import serve_in_thread

    # GIVEN an HTTPS receiver whose certificate comes from a CA the system does not trust
    server, url, received = _https_receiver(tmp_path)
    url += "?sig=TOPSECRET"
    with serve_in_thread(server):
        # WHEN the webhook is sent without the CA THEN it fails for good, sending nothing
        with pytest.raises(PermanentError, match="webhook: server certificate not trusted"):
            notify_http.webhook(url, secret="", timeout_s=5).send(_message(sample))
        assert received == []
        # AND with AMLEVENTS_NOTIFY_CA_FILE naming the CA it goes out
        assert notify_http.webhook(url, secret="", timeout_s=5,
                                   ca_file=str(tmp_path / "ca.pem")).send(
            _message(sample)) == "HTTP 202"
    assert len(received) == 1


class _Answer(BaseHTTPRequestHandler):
    """A receiver giving one fixed answer: status, headers, raw body bytes."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _send_against(answer: tuple[int, dict[str, str], bytes],
                  sample: Callable[[str], dict[str, Any]]) -> Exception:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.answer = answer
    with serve_in_thread(server), pytest.raises(Exception) as caught:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        notify_http.webhook(url, secret="", timeout_s=5).send(_message(sample))
    return caught.value


@pytest.mark.parametrize(("status", "retry_after", "expected"), [
    (429, "17", 17.0), (503, "2.5", 2.5), (503, "soon", None), (500, None, None)])
def test_a_retryable_answer_carries_its_retry_after(
        status: int, retry_after: str | None, expected: float | None,
        sample: Callable[[str], dict[str, Any]]) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    error = _send_against((status, headers, b"busy"), sample)
    assert isinstance(error, RetryableError) and error.retry_after_s == expected
    assert str(error) == f"webhook: HTTP {status} 'busy'"


def test_an_error_body_that_is_not_utf8_is_shown_not_crashed_on(
        sample: Callable[[str], dict[str, Any]]) -> None:
    error = _send_against((400, {}, b"bad \xff\xfe body"), sample)
    assert isinstance(error, PermanentError)
    assert str(error) == "webhook: HTTP 400 'bad \ufffd\ufffd body'"


# --- exact requests and exact errors (helper A2): what each receiver is sent, header by header,
# byte by byte, and every failure's whole message --------------------------------------------

_LINKED = Message(id="k.hook", kind="notification", title="Run failed: r1",
                  facts=(("Run", "r1"),), lines=(), link="https://l/r1",
                  payload={"source": "amlevents", "kind": "notification", "id": "k.hook"})


def _sent_headers(receiver: Any, **extra: str) -> dict[str, str]:
    """The headers urllib sends with our POST (Host, length and the fixed ones), plus `extra`."""
    (request,) = receiver.received
    return {"Accept-Encoding": "identity", "Host": f"127.0.0.1:{receiver.port}",
            "User-Agent": "amlevents", "Content-Type": "application/json",
            "Content-Length": str(len(request.body)), "Connection": "close",
            "X-Amlevents-Message-Id": "k.hook", "Idempotency-Key": '"k.hook"', **extra}


@pytest.mark.parametrize(("make", "render"), [
    (lambda url: notify_http.teams(url, timeout_s=5), as_teams),
    (lambda url: notify_http.slack(url, timeout_s=5), as_slack),
    (lambda url: notify_http.webhook(url, secret="", timeout_s=5), as_webhook)],
    ids=["teams", "slack", "webhook"])
def test_each_channel_posts_its_rendering_as_compact_json_with_exactly_these_headers(
        make: Callable[[str], notify_http.HttpChannel],
        render: Callable[[Message], Any]) -> None:
    with http_receiver() as receiver:
        assert make(receiver.url).send(_LINKED) == "HTTP 200"
    (request,) = receiver.received
    assert (request.method, request.path) == ("POST", SECRET_PATH)
    assert request.body == json.dumps(render(_LINKED), separators=(",", ":")).encode("utf-8")
    assert request.headers == _sent_headers(receiver)


def test_a_signed_webhook_carries_the_hmac_of_the_exact_body() -> None:
    with http_receiver() as receiver:
        notify_http.webhook(receiver.url, secret="hook-secret-123", timeout_s=5).send(_LINKED)
    (request,) = receiver.received
    assert request.body == b'{"source":"amlevents","kind":"notification","id":"k.hook"}'
    assert request.headers == _sent_headers(receiver, **{
        "X-Amlevents-Signature-256": notify_http.sign("hook-secret-123", request.body)})


def test_the_signature_is_sha256_hmac_hex_and_the_key_an_rfc_8941_string() -> None:
    assert notify_http.sign("k", b"body") == (
        "sha256=c6d811ef3aeb02437cd423f1abe13209041864630bdc4e2c04def5c7b0031a23")
    odd = Message(id='a"b\\c', kind="notification", title="t", facts=(), lines=(), link="",
                  payload={})
    assert notify_http.idempotency_key(odd) == '"a\\"b\\\\c"'


def _https_receiver(tmp_path: Any) -> tuple[ThreadingHTTPServer, str, list[bytes]]:
    """An HTTPS receiver whose certificate comes from a fresh test CA (written to ca.pem)."""
    import ssl

    import trustme

    received: list[bytes] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    authority = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return server, f"https://127.0.0.1:{server.server_address[1]}/hook", received


@pytest.mark.parametrize("name", ["teams", "slack", "webhook"])
def test_every_channel_trusts_the_ca_file_it_is_given(name: str, tmp_path: Any) -> None:
    server, url, received = _https_receiver(tmp_path)
    kwargs: dict[str, Any] = {"secret": ""} if name == "webhook" else {}
    make = getattr(notify_http, name)
    with serve_in_thread(server):
        # without the CA: refused for good, with the setting to fix it named
        with pytest.raises(PermanentError) as info:
            make(url, timeout_s=5, **kwargs).send(_LINKED)
        assert str(info.value) == (
            f"{name}: server certificate not trusted (see AMLEVENTS_NOTIFY_CA_FILE)")
        # with AMLEVENTS_NOTIFY_CA_FILE naming the CA: it goes out
        assert make(url, timeout_s=5, ca_file=str(tmp_path / "ca.pem"), **kwargs).send(
            _LINKED) == "HTTP 202"
    assert len(received) == 1


@pytest.mark.parametrize(("status", "kind"), [(500, RetryableError), (499, PermanentError),
                                              (429, RetryableError), (400, PermanentError)])
def test_an_error_answer_is_named_whole_with_the_receivers_words(
        status: int, kind: type[Exception]) -> None:
    with http_receiver() as receiver:
        receiver.statuses = [status]
        with pytest.raises(kind) as info:
            notify_http.teams(receiver.url, timeout_s=5).send(_LINKED)
    assert str(info.value) == f"teams: HTTP {status} 'injected failure'"


def _error_for(answer: tuple[int, dict[str, str], bytes]) -> Exception:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.answer = answer
    with serve_in_thread(server), pytest.raises(Exception) as caught:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        notify_http.webhook(url, secret="", timeout_s=5).send(_LINKED)
    return caught.value


def test_an_empty_error_body_is_left_out_and_a_long_one_cut() -> None:
    empty = _error_for((404, {}, b"  \n"))
    assert type(empty) is PermanentError and str(empty) == "webhook: HTTP 404"
    long = _error_for((400, {}, b"e" * 400))
    assert str(long) == f"webhook: HTTP 400 {'e' * 300!r}"  # the first 300 characters only
    # a 499 is the client's to fix even with a Retry-After; a 500 with none retries at will
    assert type(_error_for((499, {"Retry-After": "5"}, b"x"))) is PermanentError
    server_error = _error_for((500, {}, b""))
    assert isinstance(server_error, RetryableError) and server_error.retry_after_s is None
    assert str(server_error) == "webhook: HTTP 500"


def test_an_echoed_token_is_masked_and_a_retryable_error_keeps_its_retry_after() -> None:
    token = "TOPSECRETsig123456"

    class Echo(_Answer):
        def do_POST(self) -> None:
            self.server.answer = (503, {"Retry-After": "7"},  # type: ignore[attr-defined]
                                  f"no hook at {self.path}".encode())
            super().do_POST()

    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    with serve_in_thread(server), pytest.raises(RetryableError) as info:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook/abc?sig={token}"
        notify_http.webhook(url, secret="", timeout_s=5).send(_LINKED)
    assert str(info.value) == "webhook: HTTP 503 'no hook at ***?sig=***'"
    assert info.value.retry_after_s == 7.0


def test_connection_failures_are_retryable_and_named_whole() -> None:
    with http_receiver() as receiver:
        closed = receiver.url
    with pytest.raises(RetryableError) as refused:
        notify_http.webhook(closed, secret="", timeout_s=2).send(_LINKED)
    assert str(refused.value) == (
        "webhook: cannot connect (ConnectionRefusedError: Connection refused)")
    with pytest.raises(RetryableError) as unknown:
        notify_http.slack("foo://x/y", timeout_s=2).send(_LINKED)
    assert str(unknown.value) == "slack: cannot connect (unknown url type: foo)"


def test_a_url_http_client_refuses_is_permanent_and_not_repeated() -> None:
    with pytest.raises(PermanentError) as info:
        notify_http.teams("http://127.0.0.1:1/a b?sig=TOPSECRET", timeout_s=2).send(_LINKED)
    assert str(info.value) == "teams: the webhook URL is not valid"


@pytest.mark.parametrize("name", ["teams", "slack", "webhook"])
def test_a_slow_receiver_times_out_retryably(name: str) -> None:
    kwargs: dict[str, Any] = {"secret": ""} if name == "webhook" else {}
    with http_receiver() as receiver:
        receiver.delay_s = 0.5
        with pytest.raises(RetryableError) as info:
            getattr(notify_http, name)(receiver.url, timeout_s=0.1, **kwargs).send(_LINKED)
    assert str(info.value) == f"{name}: TimeoutError"


def test_a_malformed_answer_is_retryable_and_named_by_its_kind() -> None:
    import socketserver

    class Garbage(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Garbage)
    with serve_in_thread(server), pytest.raises(RetryableError) as info:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        notify_http.webhook(url, secret="", timeout_s=5).send(_LINKED)
    assert str(info.value) == "webhook: BadStatusLine"
