"""One way to run a local test server: serve in a daemon thread, shut down and close on exit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import BaseServer
from typing import TypeVar

S = TypeVar("S", bound=BaseServer)


@contextmanager
def serve_in_thread(server: S, *, poll_interval: float = 0.02) -> Iterator[S]:
    """Serve `server` until the block ends; the socket is closed even if the block fails."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
