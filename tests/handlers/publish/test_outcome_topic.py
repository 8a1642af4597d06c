"""The outcome topic adapter (the real EventGridPublisherClient): timeouts and error kinds."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from handlers.adapters.outcome_topic import OutcomeTopicPublisher
from handlers.errors import RetryableError
from handlers.publish.catalogue import OutcomeEvent
from handlers.publish.settings import OutcomeTopicSettings

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
