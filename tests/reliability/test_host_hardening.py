"""The local host as an attacker, a misconfigured operator and a burst of deliveries find it
(issue 12, rows 6 and 8-14): every input below goes to `amlevents serve`'s own server over raw
sockets or the real clients, and each row says what must come back.

- 6: every log line `serve` and the CLI print is redacted (a fresh process: nothing of pytest's).
- 8: control characters from events are shown escaped by every CLI output.
- 9: blank or spaced host keys are refused; keys are compared in constant time, on bytes.
- 10: bodies framed by one valid Content-Length or read chunked; conflicts, smuggling shapes and
  stalls get 400/408/411/413/501, never a wait for ever or a desynchronised connection.
- 11: 64 concurrent deliveries, 0 connection resets; idle or trickling clients cannot exhaust
  the worker threads.
- 12: a topic-simulator SAS token signed for another topic's URL is refused.
- 13: `WebHook-Request-Origin` echoed only when it is a bounded host name.
- 14: a ledger file read-only, corrupt or a folder: health 503, errors naming the path and setting.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection, RemoteDisconnected
from pathlib import Path
from typing import Any

import pytest

import function_app
from amlevents.host.server import FunctionsHost, LocalServer, load_functions
from handlers.ledger.sqlite import SqliteLedgerStore
from handlers.runtime.dispatch import default_dispatcher
from tests.conftest import ROOT, load_sample
from tests.reliability.conftest import Figures

READ_TIMEOUT_S = 1.0  # the host's read deadline in these tests (30 s by default)
WORKERS = 8
KEY = "hardening-host-key-0f1e2d3c"
RUN = "/runtime/webhooks/EventGrid?functionName=on_run_status"


# -- a host and a raw HTTP client ------------------------------------------------------------

@pytest.fixture
def serve(base_env: dict[str, str]) -> Iterator[Callable[..., LocalServer]]:
    """Start the app's functions on a LocalServer with a short read deadline."""
    servers: list[LocalServer] = []

    def start(*, key: str | None = None, env: dict[str, str] | None = None,
              **options: Any) -> LocalServer:
        os.environ.update(env or base_env)
        default_dispatcher.cache_clear()
        options = {"workers": WORKERS, "read_timeout_s": READ_TIMEOUT_S, **options}
        server = LocalServer(FunctionsHost(load_functions(function_app.app), key=key), port=0,
                             **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass(frozen=True)
class Answer:
    """What came back on one connection: the first response, and whether it was then closed."""

    status: int | None  # None: closed without an answer
    body: str
    headers: dict[str, str]
    closed: bool
    elapsed_s: float
    second: int | None = None  # the status of a follow-up request on the same connection


def exchange(port: int, data: bytes, *, pause_s: float = 0.0, then: bytes = b"",
             half_close: bool = False, timeout_s: float = 10.0, closes: bool = False) -> Answer:
    """Send raw bytes (then optionally a follow-up request) and read what the host answers;
    with `closes`, also whether the host then closed the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        if pause_s:
            time.sleep(pause_s)
        reader = sock.makefile("rb")
        status, headers, body = _response(reader)
        elapsed = time.monotonic() - started
        second = None
        if then and status is not None and headers.get("connection") != "close":
            sock.sendall(then)
            second = _response(reader)[0]
        closed = False
        if closes:
            try:
                closed = headers.get("connection") == "close" or reader.read(1) == b""
            except (TimeoutError, ConnectionError):
                pass
    return Answer(status, body, headers, closed, elapsed, second)


def _response(reader: Any) -> tuple[int | None, dict[str, str], str]:
    try:
        line = reader.readline()
    except ConnectionResetError:
        return None, {}, ""
    if not line:
        return None, {}, ""
    headers: dict[str, str] = {}
    while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return int(line.split()[1]), headers, body.decode("utf-8", "replace")


def request(method: str, target: str, headers: list[tuple[str, str]] | None = None,
            body: bytes = b"", *, length: bool = True) -> bytes:
    """A raw HTTP/1.1 request (a Content-Length of the body unless `length` is False)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def delivery(event_id: str) -> bytes:
    raw = load_sample("run_status_changed")
    raw["id"] = event_id
    return json.dumps([raw]).encode()


NOTIFY = [("aeg-event-type", "Notification"), ("Content-Type", "application/json")]
HEALTH = request("GET", "/api/health")


def chunked(body: bytes, *sizes: int) -> bytes:
    """`body` in chunks of `sizes` (the rest in one), with an extension and a trailer."""
    out, rest = b"", body
    for size in (*sizes, len(body)):
        piece, rest = rest[:size], rest[size:]
        if piece:
            out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\nX-Trailer: ignored\r\n\r\n"


# -- row 10 (and 9, 13): the wire ------------------------------------------------------------

@dataclass(frozen=True)
class Wire:
    """One raw input and what must come back."""

    row: str
    name: str
    data: bytes
    status: int | None  # None: the connection is cut without an answer
    closes: bool = False
    then: bytes = b""  # a follow-up on the same connection, which must get `second`
    second: int | None = None
    pause_s: float = 0.0
    half_close: bool = False
    within_s: float = 10.0
    ledger: int = 0  # deliveries this input adds to the ledger
    echo: str = ""  # a WebHook-Allowed-Origin that must be echoed ("" = must not be present)


BODY = delivery("wire-chunked")
ORIGIN = "/runtime/webhooks/EventGrid?functionName=on_run_status"
WIRES = [
    # Row 10: a Content-Length that promises more than is sent: 408 at the deadline, not a hang
    Wire("10", "Content-Length promises 1000 bytes, 10 sent", request(
        "POST", RUN, [*NOTIFY, ("Content-Length", "1000")], b"[{\"id\":1}", length=False),
         408, closes=True, within_s=READ_TIMEOUT_S + 2),
    Wire("10", "Content-Length promises more, then the client hangs up", request(
        "POST", RUN, [*NOTIFY, ("Content-Length", "1000")], b"[", length=False),
         400, closes=True, half_close=True),
    # Row 10: chunked bodies are read as chunks, and the connection stays in step
    Wire("10", "chunked delivery (3 chunks, extension, trailer), then health on the same "
         "connection", request("POST", RUN, [*NOTIFY, ("Transfer-Encoding", "chunked")],
                               chunked(BODY, 7, 100), length=False),
         202, then=HEALTH, second=200, ledger=1),
    Wire("10", "chunked with upper-case hex and Transfer-Encoding in capitals", request(
        "POST", RUN, [*NOTIFY, ("TRANSFER-ENCODING", "Chunked")],
        f"{len(delivery('wire-hex')):X}\r\n".encode() + delivery("wire-hex") + b"\r\n0\r\n\r\n",
        length=False), 202, ledger=1),
    Wire("10", "chunk size not hex", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "chunked")], b"zz\r\n{}\r\n0\r\n\r\n", length=False),
         400, closes=True),
    Wire("10", "chunk size 0x-prefixed", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "chunked")], b"0x2\r\n{}\r\n0\r\n\r\n", length=False),
         400, closes=True),
    Wire("10", "chunk size negative", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "chunked")], b"-2\r\n{}\r\n0\r\n\r\n", length=False),
         400, closes=True),
    Wire("10", "chunk without its CRLF", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "chunked")], b"2\r\n{}XX0\r\n\r\n", length=False),
         400, closes=True),
    Wire("10", "chunk size beyond the body limit", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "chunked")], b"A00001\r\n{", length=False), 413, closes=True),
    Wire("10", "chunk size of 17 hex digits", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "chunked")], b"1" * 17 + b"\r\n{", length=False), 400,
         closes=True),
    Wire("10", "chunked body that stalls mid-chunk", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "chunked")], b"10\r\n[{", length=False),
         408, closes=True, within_s=READ_TIMEOUT_S + 2),
    Wire("10", "chunked body cut short (client hangs up)", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "chunked")], b"10\r\n[{", length=False), 400, closes=True,
         half_close=True),
    Wire("10", "1000 trailer fields", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "chunked")], b"0\r\n" + b"X-T: 1\r\n" * 1000 + b"\r\n",
        length=False), 400, closes=True),
    Wire("10", "Transfer-Encoding gzip, chunked", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "gzip, chunked")], b"0\r\n\r\n", length=False), 501, closes=True),
    Wire("10", "Transfer-Encoding identity", request("POST", RUN, [*NOTIFY, (
        "Transfer-Encoding", "identity")], b"", length=False), 501, closes=True),
    Wire("10", "Transfer-Encoding chunked and a Content-Length (smuggling)", request(
        "POST", RUN, [*NOTIFY, ("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
        b"0\r\n\r\nGET /api/health HTTP/1.1\r\n\r\n", length=False), 400, closes=True),
    Wire("10", "two different Content-Length headers", request(
        "POST", RUN, [*NOTIFY, ("Content-Length", "2"), ("Content-Length", "40")],
        b"[]" + b" " * 38, length=False), 400, closes=True),
    Wire("10", "Content-Length: 2, 40 in one header", request(
        "POST", RUN, [*NOTIFY, ("Content-Length", "2, 40")], b"[]" + b" " * 38,
        length=False), 400, closes=True),
    Wire("10", "the same Content-Length twice (RFC 9110 allows it)", request(
        "POST", RUN, [*NOTIFY, ("Content-Length", str(len(delivery("wire-twice"))))] * 2,
        delivery("wire-twice"), length=False), 202, ledger=1),
    *(Wire("10", f"Content-Length {value!r}", request(
        "POST", RUN, [*NOTIFY, ("Content-Length", value)], b"[]", length=False), 400,
        closes=True)
      for value in ("+2", "2_0", "-1", "1e3", "0x2", " ", "9" * 30, "\u0662".encode().decode(
          "latin-1"))),
    Wire("10", "a body larger than the limit, announced", request(
        "POST", RUN, [*NOTIFY, ("Content-Length", str(11 * 1024 * 1024))], b"",
        length=False), 413, closes=True, half_close=True),
    # Row 10: a request line or headers that never end: cut at the deadline
    Wire("10", "request line never finished", b"POST /runtime/webhooks/Ev", 408, closes=True,
         within_s=READ_TIMEOUT_S + 2),
    Wire("10", "headers never finished", b"POST " + RUN.encode() + b" HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 2\r\n", 408, closes=True, within_s=READ_TIMEOUT_S + 2),
    # Row 13: the origin echoed in a response header must be a host name
    Wire("13", "a valid origin is echoed", request(
        "OPTIONS", ORIGIN, [("WebHook-Request-Origin", "eventgrid.azure.net")]), 200,
         echo="eventgrid.azure.net"),
    Wire("13", "a 10 KB origin", request("OPTIONS", ORIGIN, [(
        "WebHook-Request-Origin", "a" * 10_000)]), 400),
    Wire("13", "a 254-character host name", request("OPTIONS", ORIGIN, [(
        "WebHook-Request-Origin", ".".join(["a" * 63] * 4)[:254])]), 400),
    Wire("13", "a label of 64 characters", request("OPTIONS", ORIGIN, [(
        "WebHook-Request-Origin", "a" * 64 + ".example")]), 400),
    Wire("13", "a folded origin (obs-fold)", b"OPTIONS " + ORIGIN.encode() + b" HTTP/1.1\r\n"
         b"Host: x\r\nWebHook-Request-Origin: eventgrid.azure.net\r\n Set-Cookie: a=b\r\n"
         b"Content-Length: 0\r\n\r\n", 400),
    Wire("13", "markup in the origin", request("OPTIONS", ORIGIN, [(
        "WebHook-Request-Origin", "<script>x</script>")]), 400),
    Wire("13", "a URL as the origin", request("OPTIONS", ORIGIN, [(
        "WebHook-Request-Origin", "https://eventgrid.azure.net/")]), 400),
    Wire("13", "a label starting with a hyphen", request("OPTIONS", ORIGIN, [(
        "WebHook-Request-Origin", "-evil.example")]), 400),
    Wire("13", "no origin at all", request("OPTIONS", ORIGIN), 400),
]


@pytest.mark.parametrize("wire", WIRES, ids=[f"row{w.row}-{w.name}" for w in WIRES])
def test_the_wire(serve: Callable[..., LocalServer], wire: Wire) -> None:
    # GIVEN the host with a 1 s read deadline
    server = serve()
    # WHEN the raw input is sent
    answer = exchange(server.port, wire.data, pause_s=wire.pause_s, then=wire.then,
                      half_close=wire.half_close, closes=wire.closes)
    # THEN the answer, the connection's fate and the time taken are as the row says
    assert answer.status == wire.status, answer
    assert answer.elapsed_s < wire.within_s, answer
    if wire.closes:
        assert answer.closed, answer
    if wire.then:
        assert answer.second == wire.second, answer
    assert answer.headers.get("webhook-allowed-origin", "") == wire.echo
    assert len(default_dispatcher().ledger.entries()) == wire.ledger
    # AND the host still serves
    assert exchange(server.port, HEALTH).status == 200


def test_a_chunked_delivery_is_acted_on_like_any_other(serve: Callable[..., LocalServer]) -> None:
    server = serve()
    body = delivery("chunked-1")
    conn = HTTPConnection("127.0.0.1", server.port, timeout=10)
    # http.client sends an iterable body chunked (Transfer-Encoding: chunked)
    conn.request("POST", RUN, body=iter([body[:10], body[10:]]), headers=dict(NOTIFY),
                 encode_chunked=True)
    assert conn.getresponse().status == 202
    (entry,) = default_dispatcher().ledger.entries()
    assert entry.event_id == "chunked-1" and entry.outcome.value == "planned"


# -- row 9: host keys ------------------------------------------------------------------------

BLANK_KEYS = [" ", "\t", "  \n ", "\u3000", "key with spaces", "key\x01ctl", "\u200bkey"]


@pytest.mark.parametrize("key", BLANK_KEYS, ids=repr)
def test_blank_or_spaced_host_keys_are_refused(key: str, base_env: dict[str, str],
                                               tmp_path: Path) -> None:
    from amlevents.cli import build_host

    functions = load_functions(function_app.app)
    with pytest.raises(ValueError, match="AMLEVENTS_HOST_KEY") as caught:
        FunctionsHost(functions, key=key)
    assert key.strip() == "" or key not in str(caught.value)
    # AND `serve` beyond loopback with it refuses to start (it did, with `?code=+` passing)
    with pytest.raises(ValueError, match="AMLEVENTS_HOST_KEY"):
        build_host({**base_env, "AMLEVENTS_HOST_KEY": key}, bind="0.0.0.0", port=0)


def test_keys_are_compared_in_constant_time_on_bytes(serve: Callable[..., LocalServer],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    server = serve(key=KEY)
    body = delivery("keyed")
    attempts = {
        "none": [],
        "blank header": [("x-functions-key", " ")],
        "plus as code": "&code=+",
        "prefix": [("x-functions-key", KEY[:-1])],
        "longer": [("x-functions-key", KEY + "x")],
        "non-ASCII": [("x-functions-key", "clé-é")],
        "right key": [("x-functions-key", KEY)],
        "right code": f"&code={KEY}",
    }
    statuses = {}
    for name, given in attempts.items():
        target = RUN + (given if isinstance(given, str) else "")
        headers = given if isinstance(given, list) else []
        statuses[name] = exchange(server.port, request("POST", target, [*NOTIFY, *headers],
                                                       body)).status
    assert statuses == {**dict.fromkeys(attempts, 401), "right key": 202, "right code": 202}
    assert compared and all(isinstance(a, bytes) and b == KEY.encode() for a, b in compared)


# -- row 11: bursts, idle and trickling clients --------------------------------------------

def burst(port: int, count: int, prefix: str) -> tuple[list[int], list[str]]:
    """`count` deliveries at the same instant, each on its own new connection."""
    gate = threading.Barrier(count)
    statuses: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        gate.wait(30)
        conn = HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", RUN, delivery(f"{prefix}-{n}"), dict(NOTIFY))
            status = conn.getresponse().status
            with lock:
                statuses.append(status)
        except (ConnectionError, RemoteDisconnected, OSError) as exc:
            with lock:
                failures.append(type(exc).__name__)
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return statuses, failures


def test_64_concurrent_deliveries_no_connection_resets(serve: Callable[..., LocalServer],
                                                       figures: Figures) -> None:
    # GIVEN the host as `serve` builds it (default pool and backlog)
    server = serve(read_timeout_s=30.0, workers=32)
    rounds, resets = 3, []
    for round_ in range(rounds):
        # WHEN 64 deliveries arrive at the same instant, each on a new connection
        statuses, failures = burst(server.port, 64, f"burst{round_}")
        resets += failures
        assert failures == [] and statuses == [202] * 64, (failures, sorted(set(statuses)))
    # THEN every one was acted on once
    assert len(default_dispatcher().ledger.entries()) == 64 * rounds
    figures.record("host [burst]", f"{rounds} x 64 concurrent deliveries -> {len(resets)} "
                                   f"connection resets, {64 * rounds} events recorded")


def _threads() -> int:
    return threading.active_count()


def test_idle_and_trickling_clients_cannot_exhaust_threads(serve: Callable[..., LocalServer],
                                                           figures: Figures) -> None:
    server = serve()
    before = _threads()
    # GIVEN fewer idle connections than workers: a delivery is still served at once
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(WORKERS - 2)]
    started = time.monotonic()
    assert exchange(server.port, request("POST", RUN, NOTIFY, delivery("beside-idle"))).status \
        == 202
    assert time.monotonic() - started < READ_TIMEOUT_S
    # WHEN 200 clients connect and send nothing, and 20 trickle a header byte at a time
    idle += [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    stop = threading.Event()

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            for byte in b"POST " + RUN.encode() + b" HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
                if stop.is_set():
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return  # cut by the host
                time.sleep(0.1)

    tricklers = [threading.Thread(target=trickle) for _ in range(20)]
    for thread in tricklers:
        thread.start()
    time.sleep(0.5)
    peak = _threads() - before - len(tricklers)
    # THEN the host's threads stay bounded by its pool, and once the deadline cut the idle
    # and trickling connections a delivery is served again
    started = time.monotonic()
    answer = exchange(server.port, request("POST", RUN, NOTIFY, delivery("after-idle")),
                      timeout_s=30)
    waited = time.monotonic() - started
    stop.set()
    for thread in tricklers:
        thread.join(10)
    for sock in idle:
        sock.close()
    assert peak <= 0, f"{peak} threads more than the pool's {WORKERS}"
    assert answer.status == 202 and waited < 5 * READ_TIMEOUT_S, (answer, waited)
    figures.record("host [slow clients]", f"{len(idle)} idle + {len(tricklers)} trickling "
                                          f"connections -> {max(peak, 0)} threads beyond the "
                                          f"pool of {WORKERS}; next delivery answered "
                                          f"{answer.status} after {waited:.1f} s")


def test_when_even_the_queue_is_full_new_connections_get_503(
        serve: Callable[..., LocalServer]) -> None:
    # GIVEN one worker and room for two waiting connections, and six silent clients: one is
    # with the worker, two wait, three were answered 503 at once (whenever the worker started)
    server = serve(workers=1, max_pending=2, read_timeout_s=5.0)
    held = []
    for _ in range(6):  # one at a time, so the worker has taken the first before the rest come
        held.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.1)
    refused = [sock for sock in held if select.select([sock], [], [], 0)[0]]
    # WHEN another request comes
    answer = exchange(server.port, HEALTH)
    for sock in held:
        sock.close()
    # THEN it is told to come back (Event Grid retries a 503), at once
    assert len(refused) == 3
    assert answer.status == 503 and answer.headers.get("retry-after") == "1"
    assert answer.elapsed_s < 1


# -- row 12: SAS tokens for another topic ----------------------------------------------------

def test_a_sas_token_for_another_topic_is_refused(base_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    from azure.core.credentials import AzureSasCredential
    from azure.core.exceptions import ClientAuthenticationError
    from azure.eventgrid import EventGridPublisherClient, generate_sas

    from amlevents.cli import build_host

    topic_key = base64.b64encode(b"hardening-topic-key").decode()  # SAS keys are base64
    running = build_host({**base_env, "AMLEVENTS_TOPIC_KEY": topic_key,
                          "AMLEVENTS_SIMULATOR_DIR": str(tmp_path / "sim"),
                          "AMLEVENTS_SIMULATOR_TIME_SCALE": "0.001"}, bind="127.0.0.1", port=0)
    running.server.start()
    try:
        url = f"{running.url}/api/events"
        later = datetime.now(UTC) + timedelta(minutes=5)
        for other in (url.replace("/api/events", "/api/other"),
                      "https://other.westus2-1.eventgrid.azure.net/api/events"):
            client = EventGridPublisherClient(url, AzureSasCredential(
                generate_sas(other, topic_key, later)))
            with pytest.raises(ClientAuthenticationError) as caught:
                client.send([load_sample("run_status_changed")])
            assert caught.value.status_code == 401
        EventGridPublisherClient(url, AzureSasCredential(generate_sas(url, topic_key, later))
                                 ).send([load_sample("run_status_changed")])
    finally:
        running.stop()


# -- row 14: the ledger file -----------------------------------------------------------------

def _read_only(path: Path) -> Callable[[], None]:
    """Make a file read-only even for root (immutable); returns the undo."""
    path.chmod(0o444)
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip("root cannot make a file read-only here (chattr +i refused)")
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=False)
    return lambda: None


@pytest.mark.parametrize("case", ["read-only", "corrupt", "a folder"])
def test_an_unusable_ledger_file_is_named_by_health_and_every_delivery(
        serve: Callable[..., LocalServer], base_env: dict[str, str], tmp_path: Path,
        case: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bad" / "ledger.sqlite3"
    path.parent.mkdir()
    undo = lambda: None  # noqa: E731
    if case == "read-only":  # a real ledger (it opens and reads), then made read-only
        SqliteLedgerStore(str(path)).close()
        undo = _read_only(path)
    elif case == "corrupt":
        path.write_bytes(b"SQLite format 2\x00" + os.urandom(4096))
    else:
        path.mkdir()
    try:
        server = serve(env={**base_env, "AMLEVENTS_LEDGER_PATH": str(path)})
        # WHEN health is asked and an event delivered
        health = exchange(server.port, HEALTH)
        answer = exchange(server.port, request("POST", RUN, NOTIFY, delivery(f"ledger-{case}")))
    finally:
        undo()
    # THEN health is 503 and the delivery 500 (Event Grid retries), both naming path and setting
    for text in (health.body, answer.body):
        assert "AMLEVENTS_LEDGER_PATH" in text and str(path) in text, text
    assert health.status == 503 and answer.status == 500
    assert any("AMLEVENTS_LEDGER_PATH" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records if r.levelname == "ERROR")


# -- rows 6 and 8: what the CLI prints -------------------------------------------------------

SECRET_URL = "https://hooks.example/run?sig=HARDENING-SECRET-SIG&sv=1"
SECRET_KEY = "HARDENING-SECRET-HOST-KEY"


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**{k: v for k, v in os.environ.items()
                                  if not k.startswith("AMLEVENTS_")}, **env})


LOG_LINES = f"""
import logging
try:
    raise ValueError("cannot post to {SECRET_URL}")
except ValueError as exc:
    logging.getLogger("handlers.adapters.notify").error("notify failed: %s", exc, exc_info=True)
logging.getLogger("amlevents.host").warning("key %s, event says %s", {SECRET_KEY!r},
                                            "line1\\r\\nFORGED LINE \\x1b[2J")
"""


@pytest.mark.parametrize("entry", ["serve", "cli"])
def test_every_log_line_serve_and_the_cli_print_is_redacted(
        entry: str, base_env: dict[str, str]) -> None:
    # GIVEN a fresh process that starts what `serve` starts (its host, on a free port), or
    # runs a CLI command; both with a secret setting
    env = {**base_env, "AMLEVENTS_HOST_KEY": SECRET_KEY}
    start = ("from amlevents.cli import build_host\n"
             "import os\nbuild_host(dict(os.environ), bind='127.0.0.1', port=0)\n"
             if entry == "serve" else
             "from amlevents.cli import main\nassert main(['ledger']) == 0\n")
    # WHEN a handler logs an error whose message and traceback carry a token, and event data
    done = _python(start + LOG_LINES, env)
    # THEN stderr has both lines, masked, each on one line
    assert done.returncode == 0, done.stderr
    assert "notify failed" in done.stderr and "Traceback" in done.stderr
    assert "HARDENING-SECRET" not in done.stderr, done.stderr
    assert "FORGED LINE" in done.stderr and "\nFORGED LINE" not in done.stderr
    assert "\x1b" not in done.stderr


def test_control_characters_from_events_are_shown_escaped_by_the_cli(
        make_dispatcher: Callable[..., Any], base_env: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    from amlevents.cli import main

    # GIVEN a refused event whose topic carries ANSI escapes and a BEL (the window title)
    raw = load_sample("run_status_changed")
    raw["id"], raw["topic"] = "esc-1", "/subscriptions/\x1b[2J\x1b]0;pwned\x07/x\u202e"
    dispatcher = make_dispatcher()
    assert dispatcher.dispatch(raw, function="on_run_status").outcome.value == "refused"
    os.environ.update(base_env)
    # WHEN the ledger is printed, as a table and as JSON
    outputs = []
    for argv in (["ledger"], ["ledger", "--json"]):
        assert main(argv) == 0
        outputs.append(capsys.readouterr().out)
    # THEN no control character reaches the terminal; they show escaped
    for out in outputs:
        assert not any(char in out for char in "\x1b\x07\u202e"), repr(out)
    assert "\\x1b" in outputs[0] and "\\x07" in outputs[0]


def test_figures(figures: Figures) -> None:
    figures.record("host [inputs]", f"{len(WIRES)} raw inputs (framing, chunked, lengths, stalls, "
                                    f"origins), {len(BLANK_KEYS)} blank or spaced keys, 8 key "
                                    "attempts, 3 unusable ledgers, SAS for 2 other topics")
