"""Local receivers for notification tests: HTTP webhooks (Teams/Slack/generic) and SMTP."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as MailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.fakes.server import serve_in_thread

# A path shaped like a real webhook's secret part, so tests can check it never leaks.
SECRET_PATH = "/workflows/abc/triggers/manual/paths/invoke?sig=TOPSECRETsig123456"


@dataclass(frozen=True)
class Received:
    """One request a receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Records POSTs; answers with queued statuses first, then 200 (or `default_status`).

    Behaviours of real receivers, each off by default: `echo_path` (an error body repeating the
    path and query it was called with, as many servers do), `location` (the Location header of
    a 3xx answer), `delay_s` (accept the message, then answer only after that long, so a client
    timeout makes the sender believe it failed), and `dedupe` (drop a request whose
    Idempotency-Key was seen before, as the IETF draft suggests receivers do: `dropped` counts).
    """

    port: int = 0
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default_status: int = 200
    attempts: int = 0
    echo_path: bool = False
    location: str = ""
    delay_s: float = 0.0
    dedupe: bool = False
    dropped: int = 0
    keys: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """The webhook URL (with a secret-looking path)."""
        return f"http://127.0.0.1:{self.port}{SECRET_PATH}"

    def payloads(self) -> list[Any]:
        """The JSON bodies of the accepted requests."""
        return [r.json() for r in self.received]


def _http_handler(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.headers.get("Idempotency-Key", "")
            with receiver.lock:
                receiver.attempts += 1
                receiver.keys.append(key)
                status = receiver.statuses.pop(0) if receiver.statuses else \
                    receiver.default_status
                repeat = receiver.dedupe and bool(key) and receiver.keys.count(key) > 1
                if status < 300 and repeat:
                    receiver.dropped += 1
                elif status < 300:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
            if status < 300:
                reply = b"ok"
            elif receiver.echo_path:
                reply = json.dumps({"error": f"no such hook: POST {self.path}"}).encode()
            else:
                reply = b"injected failure"
            if receiver.delay_s:
                time.sleep(receiver.delay_s)
            self.send_response(status)
            if receiver.location:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    return Handler


@contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    """A webhook receiver on 127.0.0.1."""
    receiver = HttpReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(receiver))
    receiver.port = server.server_address[1]
    with serve_in_thread(server):
        yield receiver


@dataclass
class SmtpSink:
    """Messages an aiosmtpd server accepted, and the logins it saw."""

    port: int = 0
    ca_path: str = ""
    messages: list[MailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    tls_seen: list[bool] = field(default_factory=list)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sink.messages.append(message_from_bytes(envelope.original_content))
        self.sink.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.sink.tls_seen.append(session.ssl is not None)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_sink(tmp_dir: Path | None = None, *, user: str = "", password: str = "") -> \
        Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd); STARTTLS required when tmp_dir (for the CA) is given."""
    sink = SmtpSink(port=_free_port())
    kwargs: dict[str, Any] = {}
    if tmp_dir is not None:
        ca = trustme.CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        sink.ca_path = str(tmp_dir / "smtp-ca.pem")
        ca.cert_pem.write_to_path(sink.ca_path)
        kwargs.update(tls_context=context, require_starttls=True)
    if user:
        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                         auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and \
                auth_data.login.decode() == user and auth_data.password.decode() == password
            if ok:
                sink.logins.append((user, password))
            return AuthResult(success=ok, handled=False)

        kwargs.update(authenticator=authenticate, auth_require_tls=tmp_dir is not None)
    controller = Controller(_Handler(sink), hostname="127.0.0.1", port=sink.port, **kwargs)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def live_channels_env(smtp: SmtpSink, acs: Any, teams: HttpReceiver, slack: HttpReceiver,
                      webhook: HttpReceiver, *, webhook_secret: str) -> dict[str, str]:
    """Settings that send notifications live on every channel: SMTP and the ACS fake
    (`tests.fakes.acs.FakeAcs`), Teams, Slack and the webhook to these receivers."""
    return {"AMLEVENTS_DRY_RUN_NOTIFY": "false",
            "AMLEVENTS_NOTIFY_SMTP_HOST": "127.0.0.1",
            "AMLEVENTS_NOTIFY_SMTP_PORT": str(smtp.port),
            "AMLEVENTS_NOTIFY_SMTP_STARTTLS": "false",
            "AMLEVENTS_NOTIFY_SMTP_FROM": "amlevents@contoso.com",
            "AMLEVENTS_NOTIFY_SMTP_TO": "ml-team@contoso.com",
            "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING": acs.connection_string,
            "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@contoso.azurecomm.net",
            "AMLEVENTS_NOTIFY_ACS_TO": "ml-team@contoso.com",
            "AMLEVENTS_NOTIFY_ACS_POLL_INTERVAL_S": "0.01",
            "AMLEVENTS_NOTIFY_CA_FILE": acs.ca_path,
            "AMLEVENTS_NOTIFY_TEAMS_URL": teams.url,
            "AMLEVENTS_NOTIFY_SLACK_URL": slack.url,
            "AMLEVENTS_NOTIFY_WEBHOOK_URL": webhook.url,
            "AMLEVENTS_NOTIFY_WEBHOOK_SECRET": webhook_secret}
