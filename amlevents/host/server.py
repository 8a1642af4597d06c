"""A Python-only stand-in for `func start`: serves function_app.py's functions on the host's URLs.

Azure Functions Core Tools cannot be installed here (its npm installer downloads a binary), so
this host does only what the Functions host and its Event Grid extension do (function keys, the
validation handshakes, splitting a delivery into events) and leaves the rest to functions.py,
which loads the app's functions and hands each event to them decoded as the Python worker
decodes it (azure-functions' own converter). It answers like the Functions host:

- `POST /runtime/webhooks/EventGrid?functionName=NAME` (path case-insensitive), header
  `aeg-event-type: Notification` (body: one event or an array, each invoked separately) or
  `SubscriptionValidation` (answered with `{"validationResponse": code}`); CloudEvents 1.0
  structured JSON too, with the `OPTIONS` abuse-protection handshake. 202 when every event
  was handled, 500 when one must be redelivered (so Event Grid retries), 400 for a body that
  is not events at all.
- `GET|POST /api/<route>`: the app's HTTP functions (e.g. `/api/health`).
- Timer functions run on their NCRONTAB schedules (amlevents/timers.py) while `serve` runs.
Optional extra routes (the Event Grid topic simulator) plug in through `extra_routes`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from amlevents.host.functions import (
    EventDecodeError,
    FunctionLoadError,
    LoadedFunctions,
    decode_event,
    invoke_event_grid,
    invoke_http,
    load_functions,
)

# Importers of the host (cli, simulator, tests, benchmarks) find these here, as before the split.
__all__ = ["EVENTGRID_PATH", "MAX_BODY_BYTES", "EventDecodeError", "ExtraRoute",
           "FunctionLoadError", "FunctionsHost", "LoadedFunctions", "LocalServer", "RawBody", "Reply",
           "decode_event", "error", "load_functions"]

log = logging.getLogger("amlevents.host")

EVENTGRID_PATH = "/runtime/webhooks/eventgrid"
MAX_BODY_BYTES = 10 * 1024 * 1024
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
_CODE_QUERY = re.compile(r"(?i)([?&]code=)[^&\s\"]+")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON-able body, extra headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


def error(status: int, message: str) -> Reply:
    """A JSON error answer with a clear message."""
    return Reply(status, {"error": message})


# An extra route, keyed by lower-case path: handler(method, target, headers, body) -> Reply
ExtraRoute = Callable[[str, str, Mapping[str, str], bytes], Reply]


class FunctionsHost:
    """The routing and invocation logic, free of sockets (the HTTP server wraps it)."""

    def __init__(self, functions: LoadedFunctions, *, key: str | None = None,
                 extra_routes: Mapping[str, ExtraRoute] | None = None) -> None:
        self.functions = functions
        self.key = key
        self.extra_routes = dict(extra_routes or {})

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one request."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/").lower() or "/"
        query = parse_qs(parts.query)
        extra = self.extra_routes.get(path)
        if extra is not None:  # e.g. the Event Grid topic simulator, which checks its own key
            return extra(method, target, headers, body)
        anonymous = path.startswith("/api/") and path[len("/api/"):] in \
            self.functions.anonymous_routes
        if self.key is not None and not anonymous and not self._authorized(headers, query):
            return error(401, "missing or wrong function key (x-functions-key header or code query)")
        if path == EVENTGRID_PATH:
            return self._event_grid(method, headers, query, body)
        if path.startswith("/api/"):
            return self._http_function(method, path[len("/api/"):], headers, body)
        return error(404, f"no route for {parts.path}")

    def _authorized(self, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> bool:
        given = headers.get("x-functions-key") or (query.get("code") or [""])[0]
        return given == self.key

    def _event_grid(self, method: str, headers: Mapping[str, str],
                    query: Mapping[str, list[str]], body: bytes) -> Reply:
        name = (query.get("functionName") or query.get("functionname") or [""])[0]
        function = self.functions.event_grid.get(name.lower())
        if function is None:
            known = ", ".join(sorted(self.functions.event_grid)) or "none"
            return error(404, f"functionName {name!r} is not an Event Grid function ({known})")
        if method == "OPTIONS":  # CloudEvents abuse protection (webhook validation)
            origin = headers.get("webhook-request-origin", "*")
            return Reply(200, None, {"WebHook-Allowed-Origin": origin,
                                     "WebHook-Allowed-Rate": "*"})
        if method != "POST":
            return error(405, "use POST for Event Grid deliveries")
        items = self._parse_body(body)
        if isinstance(items, Reply):
            return items
        kind = headers.get("aeg-event-type", "").strip().lower()
        if kind == "subscriptionvalidation":
            return self._validate(items)
        if kind not in ("notification", "") or (kind == "" and not _all_cloud_events(items)):
            return error(400, "header aeg-event-type must be Notification or "
                              "SubscriptionValidation (or send CloudEvents 1.0)")
        return self._invoke_all(function, items)

    @staticmethod
    def _parse_body(body: bytes) -> list[Mapping[str, Any]] | Reply:
        if len(body) > MAX_BODY_BYTES:
            return error(413, f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        if not body.strip():
            return error(400, "body is empty; expected an event or an array of events")
        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return error(400, f"body is not UTF-8: {exc.reason} at byte {exc.start}")
        except (ValueError, RecursionError) as exc:
            return error(400, f"body is not valid JSON: {str(exc)[:200]}")
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            return error(400, "body is an empty array; expected at least one event")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                return error(400, f"event [{index}] must be a JSON object, "
                                  f"got {type(item).__name__}")
        return items

    @staticmethod
    def _validate(items: list[Mapping[str, Any]]) -> Reply:
        data = items[0].get("data")
        code = data.get("validationCode") if isinstance(data, dict) else None
        if items[0].get("eventType") != VALIDATION_EVENT or not isinstance(code, str):
            return error(400, f"expected a {VALIDATION_EVENT} with data.validationCode")
        return Reply(200, {"validationResponse": code})

    @staticmethod
    def _invoke_all(function: Callable[..., Any], items: list[Mapping[str, Any]]) -> Reply:
        failures: list[dict[str, str]] = []
        for item in items:
            try:
                invoke_event_grid(function, item)
            except Exception as exc:  # noqa: BLE001 - the host reports, Event Grid retries
                failures.append({"id": str(item.get("id", ""))[:128],
                                 "error": f"{type(exc).__name__}: {str(exc)[:500]}"})
        if failures:
            return Reply(500, {"error": "some events must be redelivered", "failed": failures,
                               "accepted": len(items) - len(failures)})
        return Reply(202, None)

    def _http_function(self, method: str, route: str, headers: Mapping[str, str],
                       body: bytes) -> Reply:
        entry = self.functions.http_routes.get(route)
        if entry is None:
            return error(404, f"no HTTP function at /api/{route}")
        methods, function = entry
        if method not in methods:
            return error(405, f"/api/{route} accepts {', '.join(sorted(methods))}")
        answer = invoke_http(function, method, route, headers, body)
        return Reply(answer.status, RawBody(answer.content, answer.mimetype))


def _all_cloud_events(items: list[Mapping[str, Any]]) -> bool:
    return all(any(str(k).lower() == "specversion" for k in item) for item in items)


@dataclass(frozen=True)
class RawBody:
    """A body passed through as is (not JSON-encoded by the host)."""

    content: bytes
    mimetype: str


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            reply = error(400, "Content-Length is not a valid number")
        elif length > MAX_BODY_BYTES:
            reply = error(413, f"body is {length} bytes; the limit is {MAX_BODY_BYTES}")
            self._discard(length)
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                reply = self.server.host.handle(self.command, self.path, headers, body)
            except Exception:
                log.exception("local host failed on %s %s", self.command, self.path)
                reply = error(500, "internal error in the local host")
        self._write(reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _serve

    def _discard(self, length: int) -> None:
        # Read (bounded) what the client is sending so it sees our 413, not a broken pipe.
        remaining = min(length, 8 * MAX_BODY_BYTES)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    def _write(self, reply: Reply) -> None:
        if isinstance(reply.body, RawBody):
            content, mimetype = reply.body.content, reply.body.mimetype
        elif reply.body is None:
            content, mimetype = b"", "application/json"
        else:
            content, mimetype = json.dumps(reply.body).encode("utf-8"), "application/json"
        self.send_response(reply.status)
        self.send_header("Content-Type", mimetype)
        self.send_header("Content-Length", str(len(content)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line may carry the function key as ?code=...: never log it.
        log.debug("%s %s", self.address_string(), _CODE_QUERY.sub(r"\1***", format % args))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], host: FunctionsHost) -> None:
        self.host = host
        super().__init__(address, _RequestHandler)


class LocalServer:
    """The HTTP server around a FunctionsHost, run in a background thread."""

    def __init__(self, host: FunctionsHost, *, bind: str = "127.0.0.1", port: int = 7071) -> None:
        if bind not in LOOPBACK and host.key is None:
            raise ValueError(f"binding to {bind} (beyond loopback) requires a function key: "
                             "set AMLEVENTS_HOST_KEY")
        self._server = _Server((bind, port), host)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:7071."""
        host = str(self._server.server_address[0])
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    def start(self) -> LocalServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="amlevents-host")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
