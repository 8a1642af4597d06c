"""What the reliability suite's child processes run (spawned: stdlib imports only at module top).

A child process inherits the test's environment (fake ARM identity endpoint, CA bundle, ledger
settings), so a second host instance or a doomed worker talks to the same fakes and ledger.
"""

from __future__ import annotations

import http.client
import json
import threading
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

EVENTGRID = "/runtime/webhooks/EventGrid?functionName="


def post(port: int, function: str, body: bytes, *, timeout_s: float = 60.0,
         headers: dict[str, str] | None = None, query: str = "") -> tuple[int, bytes]:
    """One Event Grid delivery to a local host; (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("POST", EVENTGRID + function + query, body,
                     {"aeg-event-type": "Notification", "Content-Type": "application/json",
                      **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post_concurrently(ports: list[int], function: str, body: bytes, count: int, threads: int,
                      gate: Event, results: Queue[list[int]]) -> None:
    """`count` deliveries of one body from `threads` threads, round-robin over the hosts."""
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(first: int) -> None:
        for n in range(first, count, threads):
            status, _ = post(ports[n % len(ports)], function, body)
            with lock:
                statuses.append(status)

    gate.wait(30)  # every poster process starts at the same moment
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    results.put(statuses)


def serve_instance(ready: Queue[int], stop: Event) -> None:
    """Another app instance: the local host over os.environ, until `stop` is set."""
    import function_app
    from amlevents.host.server import FunctionsHost, LocalServer, load_functions

    server = LocalServer(FunctionsHost(load_functions(function_app.app)), port=0).start()
    ready.put(server.port)
    stop.wait(120)
    server.stop()


def dispatch_once(env: dict[str, str], raw: dict[str, Any], function: str,
                  done: Queue[str]) -> None:
    """A worker handling one event (the test kills it before it finishes)."""
    # Import the SDKs before claiming, as a warm instance has them: on a loaded machine their
    # import alone can outlast the short claim timeout the crash tests use.
    import azure.ai.ml
    import azure.mgmt.datafactory  # noqa: F401

    from handlers.runtime.dispatch import Dispatcher

    result = Dispatcher(env).dispatch(raw, function=function)
    done.put(json.dumps({"outcome": result.outcome.value, "detail": result.detail}))
