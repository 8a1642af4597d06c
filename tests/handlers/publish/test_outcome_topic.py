"""The outcome topic adapter (the real EventGridPublisherClient): timeouts and error kinds."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from handlers.adapters.outcome_topic import OutcomeTopicPublisher
from handlers.errors import PermanentError, RetryableError
from handlers.publish.catalogue import OutcomeEvent
from handlers.publish.settings import OutcomeTopicSettings
from tests.fakes.server import serve_in_thread

EVENT = OutcomeEvent(id="7f1c0f5e-6a3b-5b7e-9a55-8d7f1c2b4e10", type="amlevents.DeploymentFailed",
                     source="/amlevents/test", subject="models/m:1",
                     time="2024-05-01T10:00:05.250+00:00", data={"concern": "deploy"})


@pytest.fixture
def silent_topic() -> Iterator[str]:
    """A topic that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/events"
    stop.set()
    thread.join(2)
    for connection in held:
        connection.close()
    listener.close()


def test_a_topic_that_does_not_answer_times_out_as_retryable(silent_topic: str) -> None:
    publisher = OutcomeTopicPublisher(OutcomeTopicSettings(endpoint=silent_topic, key="k" * 16,
                                                           timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(RetryableError, match="unreachable"):
        publisher.send(EVENT)
    # The setting bounds each attempt (one SDK retry): a delivery is never held for minutes.
    assert time.monotonic() - started < 5
    publisher.close()


def test_an_unreachable_topic_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    publisher = OutcomeTopicPublisher(OutcomeTopicSettings(
        endpoint=f"http://127.0.0.1:{port}/api/events", key="k" * 16, timeout_s=1))
    with pytest.raises(RetryableError, match="unreachable"):
        publisher.send(EVENT)


class _Topic(BaseHTTPRequestHandler):
    """A topic that records each request and gives the answer the test set."""

    def do_POST(self) -> None:
        server: Any = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.seen.append((self.headers.get("aeg-sas-key"), body))
        status, headers, error = server.answer
        data = json.dumps({"error": error} if error else {}).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def topic() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Topic)
    server.seen, server.answer = [], (200, {}, None)
    with serve_in_thread(server):
        yield server


def publisher_for(topic: Any) -> OutcomeTopicPublisher:
    return OutcomeTopicPublisher(OutcomeTopicSettings(
        endpoint=f"http://127.0.0.1:{topic.server_address[1]}/api/events", key="k" * 16,
        timeout_s=2))


def test_the_event_is_sent_as_one_cloud_event_with_the_key(topic: Any) -> None:
    publisher = publisher_for(topic)
    publisher.send(EVENT)
    publisher.close()
    assert topic.seen == [("k" * 16, [{
        "specversion": "1.0", "id": EVENT.id, "source": "/amlevents/test",
        "type": "amlevents.DeploymentFailed", "subject": "models/m:1",
        "time": "2024-05-01T10:00:05.250Z", "datacontenttype": "application/json",
        "data": {"concern": "deploy"}}])]


@pytest.mark.parametrize(("status", "headers", "error", "kind", "says", "tries"), [
    (400, {}, {"code": "InputJsonInvalid", "message": "bad"}, PermanentError,
     "outcome topic refused the event: HTTP 400 InputJsonInvalid", 1),
    # azure-eventgrid re-raises a 404 as a ResourceNotFoundError without its status
    (404, {}, None, PermanentError, "outcome topic refused the event: HTTP 404", 1),
    (413, {}, None, PermanentError, "outcome topic refused the event: HTTP 413", 1),
    (401, {}, None, RetryableError, "outcome topic answered HTTP 401: check "
     "AMLEVENTS_OUTCOME_TOPIC_KEY", 1),
    (403, {}, None, RetryableError, "outcome topic answered HTTP 403: check "
     "AMLEVENTS_OUTCOME_TOPIC_KEY", 1),
    # the SDK retries a 5xx or 429 once, then we hand it back to Event Grid with the wait asked
    (500, {"Retry-After": "0"}, {"code": "Internal", "message": "x"}, RetryableError,
     "outcome topic unavailable: HTTP 500 Internal", 2),
    (429, {"Retry-After": "0"}, None, RetryableError, "outcome topic unavailable: HTTP 429", 2),
])
def test_each_answer_is_classified(topic: Any, status: int, headers: dict[str, str],
                                   error: dict[str, str] | None, kind: type[Exception],
                                   says: str, tries: int) -> None:
    topic.answer = (status, headers, error)
    publisher = publisher_for(topic)
    with pytest.raises(kind) as caught:
        publisher.send(EVENT)
    publisher.close()
    assert str(caught.value).startswith(says), str(caught.value)
    assert len(topic.seen) == tries
    if headers:
        assert caught.value.retry_after_s == 0.0  # type: ignore[attr-defined]


_SERIALIZATION = "azure.eventgrid._legacy._generated._serialization"


def test_the_sdk_is_kept_quiet_about_our_per_call_options(
        topic: Any, caplog: pytest.LogCaptureFixture) -> None:
    from handlers.adapters.outcome_topic import _CallOptionsFilter

    caplog.set_level(logging.DEBUG)
    publisher = publisher_for(topic)
    publisher.send(EVENT)
    publisher.send(EVENT)
    publisher.close()
    # THEN the SDK model's logger carries one filter (not one per client or send) and no record
    # calls our retry and timeout options unknown attributes
    quiet = logging.getLogger(_SERIALIZATION)
    assert sum(isinstance(f, _CallOptionsFilter) for f in quiet.filters) == 1
    assert not any(isinstance(f, _CallOptionsFilter) for f in logging.getLogger().filters)
    assert [r.getMessage() for r in caplog.records if "not a known attribute" in r.getMessage()
            ] == []
    assert len(topic.seen) == 2


@pytest.mark.parametrize(("msg", "args", "kept"), [
    ("%s is not a known attribute of class %s and will be ignored", ("retry_total", "X"), False),
    ("%s is not a known attribute of class %s and will be ignored",
     ("retry_backoff_factor", "X"), False),
    ("%s is not a known attribute of class %s and will be ignored",
     ("connection_timeout", "X"), False),
    ("%s is not a known attribute of class %s and will be ignored", ("read_timeout", "X"), False),
    # anything else the SDK says is kept
    ("%s is not a known attribute of class %s and will be ignored", ("colour", "X"), True),
    ("%s was refused", ("retry_total",), True),
    ("retry_total is not a known attribute", (), True),
    ("%(a)s is not a known attribute", ({"a": "retry_total"},), True),
])
def test_the_filter_drops_only_unknown_attribute_warnings_about_our_options(
        msg: str, args: Any, kept: bool) -> None:
    from handlers.adapters.outcome_topic import _CallOptionsFilter

    record = logging.LogRecord(_SERIALIZATION, logging.WARNING, __file__, 1, msg, args, None)
    assert _CallOptionsFilter().filter(record) is kept
    assert _CallOptionsFilter.OPTIONS == ("retry_total", "retry_backoff_factor",
                                          "connection_timeout", "read_timeout")
