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
- With a `WorkerPool` (FUNCTIONS_WORKER_PROCESS_COUNT above 1, workers.py) a delivery's events
  are invoked in worker processes, as the Functions host hands them to its language workers;
  the answer still waits for every event. HTTP functions and timers run in this process.
Optional extra routes (the Event Grid topic simulator) plug in through `extra_routes`.

Hardened as a server facing the network must be: a function key, when set, is never blank and is
compared in constant time; a request's body is framed by exactly one Content-Length (conflicting
or malformed lengths get 400) or read chunked, and must arrive within a deadline (408 after it, so a
client that promises more than it sends, or trickles, cannot hold a worker); connections wait in a
deep listen backlog for a bounded pool of workers (no resets under a burst; 503 when even the
queue is full); header values echoed back (the CloudEvents `WebHook-Request-Origin`) are
validated first.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import re
import select
import socket
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
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
from amlevents.host.workers import EventFailure, WorkerPool, failure_text

# Importers of the host (cli, simulator, tests, benchmarks) find these here, as before the split.
__all__ = ["EVENTGRID_PATH", "MAX_BODY_BYTES", "EventDecodeError", "ExtraRoute",
           "FunctionLoadError", "FunctionsHost", "LoadedFunctions", "LocalServer", "RawBody", "Reply",
           "check_host_key", "decode_event", "error", "load_functions", "origin_problem"]

log = logging.getLogger("amlevents.host")

EVENTGRID_PATH = "/runtime/webhooks/eventgrid"
MAX_BODY_BYTES = 10 * 1024 * 1024
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
HOST_KEY_SETTING = "AMLEVENTS_HOST_KEY"  # amlevents.local_settings.HOST_KEY (no import cycle)
# A request (line, headers, body) must arrive within this; so must the next one on a kept-alive
# connection. Event Grid sends a delivery at once: only a stalled or hostile client hits it.
READ_TIMEOUT_S = 30.0
WORKERS = 32  # requests handled at once; more wait for a worker (Event Grid's timeout is 30 s)
MAX_PENDING = 512  # accepted connections waiting for a worker; beyond, 503 (Event Grid retries)
BACKLOG = 1024  # the listen queue (the kernel caps it at net.core.somaxconn): a burst is not reset
MAX_ORIGIN_CHARS = 253  # a DNS name's longest text form
POLL_S = 0.1  # how often the accepting loop cuts late reads (and notices a stop)
_CODE_QUERY = re.compile(r"(?i)([?&]code=)[^&\s\"]+")
_DIGITS = re.compile(r"[0-9]{1,19}")  # int() would take "+5", "5_0" and "٥" too
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions
_MAX_TRAILERS = 100
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


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
                 extra_routes: Mapping[str, ExtraRoute] | None = None,
                 pool: WorkerPool | None = None) -> None:
        check_host_key(key)
        self.functions = functions
        self.key = key
        self.extra_routes = dict(extra_routes or {})
        # Event Grid invocations go to the pool's worker processes (FUNCTIONS_WORKER_PROCESS_COUNT
        # above 1); without one they run here. HTTP functions and timers always run here.
        self.pool = pool

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
        # Constant time (no timing oracle), on bytes: compare_digest refuses non-ASCII str.
        return self.key is not None and hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), self.key.encode("utf-8", "surrogatepass"))

    def _event_grid(self, method: str, headers: Mapping[str, str],
                    query: Mapping[str, list[str]], body: bytes) -> Reply:
        name = (query.get("functionName") or query.get("functionname") or [""])[0]
        function = self.functions.event_grid.get(name.lower())
        if function is None:
            known = ", ".join(sorted(self.functions.event_grid)) or "none"
            return error(404, f"functionName {name!r} is not an Event Grid function ({known})")
        if method == "OPTIONS":  # CloudEvents abuse protection (webhook validation)
            origin = headers.get("webhook-request-origin", "")
            problem = origin_problem(origin)
            if problem:  # echoed in a header: never anything but a bounded host name
                return error(400, f"WebHook-Request-Origin {problem}")
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
        if self.pool is not None:
            return _batch_reply(items, self.pool.invoke(name.lower(), items))
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
        failures: list[EventFailure] = []
        for index, item in enumerate(items):
            try:
                invoke_event_grid(function, item)
            except Exception as exc:  # noqa: BLE001 - the host reports, Event Grid retries
                failures.append(EventFailure(index, failure_text(exc)))
        return _batch_reply(items, failures)

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


def _batch_reply(items: list[Mapping[str, Any]], failures: Sequence[EventFailure]) -> Reply:
    """202 when every event was handled; else 500 naming each failed event (Event Grid retries)."""
    if not failures:
        return Reply(202, None)
    return Reply(500, {"error": "some events must be redelivered",
                       "failed": [{"id": str(items[f.index].get("id", ""))[:128], "error": f.error}
                                  for f in failures],
                       "accepted": len(items) - len(failures)})


def check_host_key(key: str | None) -> None:
    """A function key must be a usable secret: blank or with spaces, it is refused (ValueError
    naming the setting, never showing the value)."""
    if key is None:
        return
    if not key.strip():
        raise ValueError(f"{HOST_KEY_SETTING} is blank: set a real key (or unset it, to serve "
                         "on loopback only without one)")
    if any(char.isspace() or unicodedata.category(char).startswith("C") for char in key):
        raise ValueError(f"{HOST_KEY_SETTING} contains spaces or control characters, which a "
                         "header or a code query cannot carry as they are: use a plain key")


def origin_problem(origin: str) -> str:
    """Why a WebHook-Request-Origin cannot be echoed ("" when it is a bounded DNS host name)."""
    if not origin:
        return "is missing (the CloudEvents webhook handshake requires it)"
    if len(origin) > MAX_ORIGIN_CHARS:
        return f"is {len(origin)} characters; a host name has at most {MAX_ORIGIN_CHARS}"
    labels = origin[:-1].split(".") if origin.endswith(".") else origin.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return "must be a host name (letters, digits, hyphens and dots), such as " \
               "eventgrid.azure.net"
    return ""


def _all_cloud_events(items: list[Mapping[str, Any]]) -> bool:
    return all(any(str(k).lower() == "specversion" for k in item) for item in items)


@dataclass(frozen=True)
class RawBody:
    """A body passed through as is (not JSON-encoded by the host)."""

    content: bytes
    mimetype: str


class _Refused(Exception):
    """A request whose framing cannot be trusted: answered, then the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.reply = error(status, message)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Every read and write is bounded; a read is cut at the deadline first (service_actions).
        self.connection.settimeout(self.server.read_timeout_s + 1)

    def handle_one_request(self) -> None:
        # The deadline covers waiting for the request (kept-alive or new), its headers and body.
        self.server.watch(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.unwatch(self.connection)

    def parse_request(self) -> bool:
        """The request line is in; unless it was cut at the deadline, parse it and the headers."""
        if self.server.expired(self.connection):
            self.command, self.requestline, self.request_version = "", "", "HTTP/1.1"
            self.close_connection = True
            self._write(error(408, f"the request did not arrive within "
                                   f"{self.server.read_timeout_s:g} s"))
            return False
        return super().parse_request()

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _Refused as refused:
            self.close_connection = True  # the stream cannot be trusted to hold the next request
            self._write(refused.reply)
            return
        self.server.unwatch(self.connection)  # the body is in: acting on it may take a while
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = self.server.host.handle(self.command, self.path, headers, body)
        except Exception:
            log.exception("local host failed on %s %s", self.command,
                          _CODE_QUERY.sub(r"\1***", self.path))
            reply = error(500, "internal error in the local host")
        self._write(reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        """The body, framed as RFC 9112 says; _Refused when the framing is unusable."""
        if self.server.expired(self.connection):  # cut mid-headers: what came is not the request
            raise _Refused(408, f"the request did not arrive within "
                                f"{self.server.read_timeout_s:g} s")
        codings = [c.strip().lower() for value in self.headers.get_all("Transfer-Encoding", [])
                   for c in value.split(",") if c.strip()]
        lengths = {v.strip() for value in self.headers.get_all("Content-Length", [])
                   for v in value.split(",")}
        if codings and lengths:  # request smuggling's classic: refused, not guessed
            raise _Refused(400, "both Transfer-Encoding and Content-Length: send one")
        if codings:
            if codings != ["chunked"]:
                raise _Refused(501, f"Transfer-Encoding {', '.join(codings)} is not supported "
                                    "(send chunked or a Content-Length)")
            return self._read_chunked()
        if len(lengths) > 1:
            raise _Refused(400, "conflicting Content-Length headers")
        text = lengths.pop() if lengths else "0"
        if not _DIGITS.fullmatch(text):
            raise _Refused(400, "Content-Length is not a valid number")
        length = int(text)
        if length > MAX_BODY_BYTES:
            self._discard(length)
            raise _Refused(413, f"body is {length} bytes; the limit is {MAX_BODY_BYTES}")
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        try:
            data = self.rfile.read(length) if length else b""
        except TimeoutError:
            data = None
        if data is None or (len(data) < length and self.server.expired(self.connection)):
            raise _Refused(408, f"the body did not arrive within {self.server.read_timeout_s:g} "
                                "s (Content-Length promises more than was sent?)")
        if len(data) < length:
            raise _Refused(400, f"the connection closed after {len(data)} of the {length} "
                                "bytes Content-Length announced")
        return data

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = self._chunk_size()
            if size == 0:
                break
            if len(body) + size > MAX_BODY_BYTES:
                raise _Refused(413, f"chunked body exceeds the limit of {MAX_BODY_BYTES} bytes")
            body += self._read_exactly(size)
            if self._line(3) != b"\r\n":
                raise _Refused(400, "a chunk is not followed by CRLF")
        for _ in range(_MAX_TRAILERS):  # trailer fields are read and ignored
            if self._line(_MAX_CHUNK_LINE) == b"\r\n":
                return bytes(body)
        raise _Refused(400, f"more than {_MAX_TRAILERS} trailer fields")

    def _chunk_size(self) -> int:
        line = self._line(_MAX_CHUNK_LINE)
        size = line.split(b";", 1)[0].strip(b" \t\r\n")
        if not line.endswith(b"\r\n") or not _CHUNK_SIZE.fullmatch(size):
            raise _Refused(400, "malformed chunk size line")
        return int(size, 16)

    def _line(self, limit: int) -> bytes:
        try:
            line = self.rfile.readline(limit + 1)
        except TimeoutError:
            line = None
        if line is None or (not line.endswith(b"\n") and self.server.expired(self.connection)):
            raise _Refused(408, f"the chunked body did not arrive within "
                                f"{self.server.read_timeout_s:g} s")
        if not line.endswith(b"\n"):
            raise _Refused(400, "the chunked body ended early or has an overlong line")
        return line

    def _discard(self, length: int) -> None:
        # Read (bounded) what the client is sending so it sees our 413, not a broken pipe.
        remaining = min(length, 8 * MAX_BODY_BYTES)
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except TimeoutError:
            pass

    def _write(self, reply: Reply) -> None:
        if isinstance(reply.body, RawBody):
            content, mimetype = reply.body.content, reply.body.mimetype
        elif reply.body is None:
            content, mimetype = b"", "application/json"
        else:
            content, mimetype = json.dumps(reply.body).encode("utf-8"), "application/json"
        if self.server.crowded():  # others wait for a worker: do not keep this one idle
            self.close_connection = True
        self.send_response(reply.status)
        self.send_header("Content-Type", mimetype)
        self.send_header("Content-Length", str(len(content)))
        for name, value in reply.headers.items():
            if _header_safe(value):  # never a CR/LF from anywhere (response splitting)
                self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line may carry the function key as ?code=...: never log it.
        log.debug("%s %s", self.address_string(), _CODE_QUERY.sub(r"\1***", format % args))


def _readable(conn: socket.socket) -> bool:
    try:
        return bool(select.select([conn], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def _header_safe(value: str) -> bool:
    return not any(char in value for char in "\r\n\x00")


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 63\r\n\r\n"
         b'{"error": "the local host is busy: every worker has a request"}')


class _Server(HTTPServer):
    """An HTTP server with a bounded worker pool and a read deadline per request."""

    allow_reuse_address = True
    request_queue_size = BACKLOG  # listen(): socketserver's default of 5 resets a burst

    def __init__(self, address: tuple[str, int], host: FunctionsHost, *, workers: int,
                 read_timeout_s: float, max_pending: int) -> None:
        self.host = host
        self.read_timeout_s = read_timeout_s
        self._pending: queue.Queue[tuple[socket.socket, Any, float] | None] = \
            queue.Queue(max_pending)
        self._deadlines: dict[socket.socket, float] = {}
        self._expired: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []  # server_close runs if binding fails
        super().__init__(address, _RequestHandler)
        self._workers = [threading.Thread(target=self._work, daemon=True,
                                          name=f"amlevents-host-worker-{n}")
                         for n in range(workers)]
        for worker in self._workers:
            worker.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Queue the connection for a worker (the accepting thread never handles one)."""
        try:
            self._pending.put_nowait((request, client_address, time.monotonic()))
        except queue.Full:
            self._refuse_busy(request)

    def _refuse_busy(self, request: socket.socket) -> None:
        try:
            request.settimeout(0.5)
            request.sendall(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def _work(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            request, client_address, accepted = item
            try:
                if time.monotonic() - accepted > self.read_timeout_s and not _readable(request):
                    continue  # silent since it connected, longer than a request may take
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001 - one connection's failure never stops a worker
                self.handle_error(request, client_address)
            finally:
                with self._lock:
                    self._deadlines.pop(request, None)
                    self._expired.discard(request)
                self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (reset, timed out...): logged, never printed raw."""
        log.debug("connection from %s failed", client_address, exc_info=True)

    def crowded(self) -> bool:
        """Connections are waiting for a worker."""
        return not self._pending.empty()

    def watch(self, conn: socket.socket) -> None:
        """Start the read deadline of the next request on `conn`."""
        with self._lock:
            self._deadlines[conn] = time.monotonic() + self.read_timeout_s

    def unwatch(self, conn: socket.socket) -> None:
        """The request is read: no deadline while it is acted on."""
        with self._lock:
            self._deadlines.pop(conn, None)

    def expired(self, conn: socket.socket) -> bool:
        """The read deadline of the request on `conn` passed (its reads were cut)."""
        with self._lock:
            return conn in self._expired

    def service_actions(self) -> None:
        """Between accepts (at least every POLL_S): cut reads past their deadline. A
        per-read timeout alone lets a client trickle a byte at a time for ever."""
        now = time.monotonic()
        with self._lock:
            late = [conn for conn, deadline in self._deadlines.items() if deadline <= now]
            for conn in late:
                del self._deadlines[conn]
                self._expired.add(conn)
        for conn in late:
            try:
                conn.shutdown(socket.SHUT_RD)  # the blocked read returns: the worker answers 408
            except OSError:
                pass

    def server_close(self) -> None:
        """Close the socket, then let the workers finish what they hold and stop."""
        super().server_close()
        for _ in self._workers:
            try:
                self._pending.put(None, timeout=1)
            except queue.Full:
                break


class LocalServer:
    """The HTTP server around a FunctionsHost, run in a background thread."""

    def __init__(self, host: FunctionsHost, *, bind: str = "127.0.0.1", port: int = 7071,
                 workers: int = WORKERS, read_timeout_s: float = READ_TIMEOUT_S,
                 max_pending: int = MAX_PENDING) -> None:
        check_host_key(host.key)  # a key set on the host after it was built is checked too
        if bind not in LOOPBACK and host.key is None:
            raise ValueError(f"binding to {bind} (beyond loopback) requires a function key: "
                             f"set {HOST_KEY_SETTING}")
        self._server = _Server((bind, port), host, workers=workers,
                               read_timeout_s=read_timeout_s, max_pending=max_pending)
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
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_S,),
                                        daemon=True, name="amlevents-host")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever(POLL_S)

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
