"""A local HTTPS fake of Azure Communication Services Email, for the REAL `EmailClient`.

As the REST API documents (https://learn.microsoft.com/rest/api/communication/dataplane/email/send):
`POST /emails:send?api-version=...` answers 202 with `Operation-Location`, then
`GET /emails/operations/{id}?api-version=...` answers the operation status until `Succeeded`.
Requests must carry either the HMAC-SHA256 signature the SDK computes from a connection string's
access key (azure/communication/email/_shared/policy.py): the string to sign is
`VERB\\npath?query\\n{x-ms-date};{host};{x-ms-content-sha256}`; or, when the fake is told which
tokens to accept (`accept_token`, e.g. "issued by the fake ARM's managed-identity endpoint"),
`Authorization: Bearer <token>` as the SDK sends with a TokenCredential (scope
`https://communication.azure.com//.default`, azure/communication/email/_shared/auth_policy_utils.py).

Repeatable requests as ACS documents them (https://learn.microsoft.com/rest/api/communication/
repeatable-requests, OASIS Repeatable Requests 1.0): with `Repeatability-Request-Id` (a GUID) and
`Repeatability-First-Sent` (an IMF-fixdate), a request is tracked for 5 minutes. A malformed header
is a 400, a first-sent outside the window a 412, a repeat that does not match the first request a
400; a matching repeat gets the first answer again (2xx or 4xx) without a second email, or is
executed again if the first answer was a 5xx. A customer's `Operation-Id` names the operation.
Faults: `drop_responses` accepts a send, then closes the connection without answering (the answer
is lost: the client cannot know the email went out).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

from tests.fakes.server import serve_in_thread

ACCESS_KEY = base64.b64encode(b"fake-acs-access-key-for-tests-only").decode()


@dataclass
class FakeAcs:
    """State of the fake: sent messages, operations, and faults to inject."""

    port: int = 0
    ca_path: str = ""
    sent: list[dict[str, Any]] = field(default_factory=list)
    api_versions: list[str] = field(default_factory=list)
    polls: int = 0
    polls_before_success: int = 1
    fail_next_send: list[int] = field(default_factory=list)
    final_status: str = "Succeeded"
    operations: dict[str, int] = field(default_factory=dict)
    bad_signatures: int = 0
    accept_token: Callable[[str], bool] | None = None
    bearer_tokens: list[str] = field(default_factory=list)
    bad_tokens: int = 0
    drop_responses: int = 0
    repeatability_window_s: float = 300.0
    repeatable: dict[str, dict[str, Any]] = field(default_factory=dict)
    repeats_answered: int = 0
    operation_ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        """The resource endpoint, as in a connection string."""
        return f"https://127.0.0.1:{self.port}/"

    @property
    def connection_string(self) -> str:
        """A connection string the real SDK parses."""
        return f"endpoint={self.endpoint};accesskey={ACCESS_KEY}"


def _signature_ok(handler: BaseHTTPRequestHandler, body: bytes, port: int) -> bool:
    headers = handler.headers
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if headers.get("x-ms-content-sha256") != content_hash:
        return False
    to_sign = (f"{handler.command}\n{handler.path}\n{headers.get('x-ms-date')};"
               f"127.0.0.1:{port};{content_hash}")
    digest = hmac.new(base64.b64decode(ACCESS_KEY), to_sign.encode(), hashlib.sha256).digest()
    expected = ("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="
                + base64.b64encode(digest).decode())
    return hmac.compare_digest(headers.get("Authorization", ""), expected)


def _handler(fake: FakeAcs) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self, body: bytes) -> bool:
            value = self.headers.get("Authorization", "")
            if value.lower().startswith("bearer "):
                token = value[7:]
                with fake.lock:
                    fake.bearer_tokens.append(token)
                    if fake.accept_token is not None and fake.accept_token(token):
                        return True
                    fake.bad_tokens += 1
                self._reply(401, {"error": {"code": "Denied", "message": "invalid bearer token"}},
                            {"WWW-Authenticate": 'Bearer error="invalid_token"'})
                return False
            if _signature_ok(self, body, fake.port):
                return True
            fake.bad_signatures += 1
            self._reply(401, {"error": {"code": "Denied", "message": "bad HMAC signature"}})
            return False

        def _repeat(self, body: bytes) -> tuple[str, str] | None:
            """(request id, first-sent) of a repeatable request, None if it is not one, or
            answered here (400, 412, or the first answer again): then ("", "")."""
            request_id = self.headers.get("Repeatability-Request-Id")
            first_sent = self.headers.get("Repeatability-First-Sent")
            if request_id is None and first_sent is None:
                return None
            try:
                uuid.UUID(request_id or "")
                sent_at = parsedate_to_datetime(first_sent or "").timestamp()
            except (ValueError, TypeError):
                self._reply(400, {"error": {"code": "InvalidHeader",
                                            "message": "invalid repeatability headers"}})
                return "", ""
            if time.time() - sent_at > fake.repeatability_window_s:
                self._reply(412, {"error": {"code": "PreconditionFailed", "message":
                                            "Repeatability-First-Sent is not within the "
                                            "5 minute window"}})
                return "", ""
            with fake.lock:
                prior = fake.repeatable.get(str(request_id))
                if prior is not None and time.time() - prior["at"] > fake.repeatability_window_s:
                    prior = None  # no longer tracked
                if prior is None or prior["status"] >= 500:
                    return str(request_id), str(first_sent)
                if prior["first_sent"] != first_sent or prior["body"] != body:
                    answer: tuple[int, dict[str, Any], dict[str, str]] = (
                        400, {"error": {"code": "BadRequest", "message":
                                        "repeated request does not match the first"}}, {})
                else:
                    fake.repeats_answered += 1
                    answer = prior["answer"]
            self._reply(*answer)
            return "", ""

        def _remember(self, repeat: tuple[str, str] | None, body: bytes, status: int,
                      answer: tuple[int, dict[str, Any], dict[str, str]]) -> None:
            if repeat is not None:
                with fake.lock:
                    fake.repeatable[repeat[0]] = {"first_sent": repeat[1], "body": body,
                                                  "status": status, "answer": answer,
                                                  "at": time.time()}

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            if path != "/emails:send" or "api-version=" not in query:
                self._reply(404, {"error": {"code": "NotFound", "message": self.path}})
                return
            if not self._authorized(body):
                return
            repeat = self._repeat(body)
            if repeat == ("", ""):
                return
            with fake.lock:
                status = fake.fail_next_send.pop(0) if fake.fail_next_send else 0
            if status:
                failure: tuple[int, dict[str, Any], dict[str, str]] = (
                    status, {"error": {"code": "Fault", "message": "injected"}}, {})
                self._remember(repeat, body, status, failure)
                self._reply(*failure)
                return
            with fake.lock:
                fake.sent.append(json.loads(body))
                fake.api_versions.append(query.split("api-version=")[1].split("&")[0])
                op = self.headers.get("Operation-Id") or str(uuid.uuid4())
                fake.operation_ids.append(self.headers.get("Operation-Id", ""))
                fake.operations[op] = 0
                drop = fake.drop_responses > 0
                fake.drop_responses -= int(drop)
            location = f"{fake.endpoint}emails/operations/{op}?{query}"
            accepted = (202, {"id": op, "status": "Running"},
                        {"Operation-Location": location, "Retry-After": "0"})
            self._remember(repeat, body, 202, accepted)
            if drop:
                self.close_connection = True  # the email goes out; its answer never arrives
                return
            self._reply(*accepted)

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            op = path.rsplit("/", 1)[-1]
            if not path.startswith("/emails/operations/") or op not in fake.operations:
                self._reply(404, {"error": {"code": "NotFound", "message": path}})
                return
            if not self._authorized(b""):
                return
            with fake.lock:
                fake.polls += 1
                fake.operations[op] += 1
                done = fake.operations[op] > fake.polls_before_success
            status = fake.final_status if done else "Running"
            body: dict[str, Any] = {"id": op, "status": status}
            if status == "Failed":
                body["error"] = {"code": "EmailDroppedAllRecipientsSuppressed",
                                 "message": "all recipients suppressed"}
            self._reply(200, body, {"Retry-After": "0"})

    return Handler


@contextmanager
def start_fake_acs(tmp_dir: Path) -> Iterator[FakeAcs]:
    """Run the fake on 127.0.0.1 over HTTPS (trustme CA written to tmp_dir)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = tmp_dir / "acs-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    fake = FakeAcs(ca_path=str(ca_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.port = server.server_address[1]
    with serve_in_thread(server):
        yield fake
