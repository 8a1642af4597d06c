"""A topic endpoint on its own address, as each Event Grid topic has its own host name.

`TopicServer(endpoint, bind, port)` serves `PublishEndpoint.handle` over HTTP on a loopback
address (the outcome topic of `amlevents serve`: AMLEVENTS_OUTCOME_TOPIC_ENDPOINT names it).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from amlevents.simulator.topic import PublishEndpoint

_MAX_READ = 4 * 1024 * 1024  # beyond the topic's 1 MB limit: it answers 413 itself


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TopicServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, _MAX_READ)) if length else b""
        answer = self.server.endpoint.handle(self.command, self.path, dict(self.headers.items()),
                                             body)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    do_POST = do_GET = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return


class TopicServer(ThreadingHTTPServer):
    """An HTTP server for one topic endpoint, run on a thread."""

    daemon_threads = True

    def __init__(self, endpoint: PublishEndpoint, bind: str, port: int) -> None:
        super().__init__((bind, port), _Handler)
        self.endpoint = endpoint
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The topic endpoint's URL."""
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://{host}:{port}{self.endpoint.path}"

    def start(self) -> TopicServer:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="amlevents-outcome-topic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()
