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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            if path != "/emails:send" or "api-version=" not in query:
                self._reply(404, {"error": {"code": "NotFound", "message": self.path}})
                return
            if not self._authorized(body):
                return
            with fake.lock:
                if fake.fail_next_send:
                    status = fake.fail_next_send.pop(0)
                    self._reply(status, {"error": {"code": "Fault", "message": "injected"}})
                    return
                fake.sent.append(json.loads(body))
                fake.api_versions.append(query.split("api-version=")[1].split("&")[0])
                op = str(uuid.uuid4())
                fake.operations[op] = 0
            location = f"{fake.endpoint}emails/operations/{op}?{query}"
            self._reply(202, {"id": op, "status": "Running"},
                        {"Operation-Location": location, "Retry-After": "0"})

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
