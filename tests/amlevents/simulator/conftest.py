"""A real HTTP receiver standing in for the Functions host's Event Grid webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fakes.notify import Received
from tests.fakes.server import serve_in_thread


@dataclass
class Script:
    """What the receiver answers: notification statuses in order (then 200), handshake mode."""

    statuses: list[int] = field(default_factory=list)
    handshake_statuses: list[int] = field(default_factory=list)
    wrong_validation_code: bool = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _record(self) -> Received:
        length = int(self.headers.get("Content-Length") or 0)
        received = Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length) if length else b"", method=self.command)
        with self.server.lock:
            self.server.received.append(received)
        return received

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _next(self, statuses: list[int]) -> int:
        with self.server.lock:
            return statuses.pop(0) if statuses else 200

    def do_POST(self) -> None:
        received = self._record()
        script = self.server.script
        if received.headers.get("aeg-event-type") == "SubscriptionValidation":
            status = self._next(script.handshake_statuses)
            code = received.json()[0]["data"]["validationCode"]
            answer = {"validationResponse": "nope" if script.wrong_validation_code else code}
            self._answer(status, json.dumps(answer).encode() if status == 200 else b"")
            return
        self._answer(self._next(script.statuses))

    def do_OPTIONS(self) -> None:
        received = self._record()
        status = self._next(self.server.script.handshake_statuses)
        origin = received.headers.get("webhook-request-origin", "")
        self._answer(status, headers={"WebHook-Allowed-Origin": origin})

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.script = Script()
        self.lock = threading.Lock()


@dataclass
class Receiver:
    """Handle on the running receiver."""

    server: _Server

    @property
    def url(self) -> str:
        """Base URL, like the Functions host's."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def script(self) -> Script:
        """Edit to choose the answers."""
        return self.server.script

    def requests(self) -> list[Received]:
        """Everything received so far."""
        with self.server.lock:
            return list(self.server.received)

    def notifications(self) -> list[Received]:
        """Only the event deliveries (no handshakes)."""
        return [r for r in self.requests() if r.method == "POST"
                and r.headers.get("aeg-event-type") == "Notification"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver on a free port."""
    with serve_in_thread(_Server(), poll_interval=0.05) as server:
        yield Receiver(server)
