"""Shared by the benchmarks: push events through a fresh local host from client processes."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import time
from typing import Any

BATCH = 100


def post_batches(port: int, function: str, bodies: list[bytes]) -> list[int]:
    """Post batches over one keep-alive connection; the statuses that were not 202."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    failures = []
    for body in bodies:
        conn.request("POST", f"/runtime/webhooks/EventGrid?functionName={function}", body,
                     {"aeg-event-type": "Notification", "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 202:
            failures.append(response.status)
    conn.close()
    return failures


def push_through_host(events: list[dict[str, Any]], function: str, clients: int,
                      worker_processes: int = 1) -> float:
    """Seconds to push `events` in Event Grid batches of 100 through a local host built from
    the current os.environ; clients are separate processes, as Event Grid is (not our GIL).
    With `worker_processes` above 1 the host hands the events to that many worker processes
    (FUNCTIONS_WORKER_PROCESS_COUNT), started before the timing."""
    import function_app
    from amlevents.host.server import FunctionsHost, LocalServer, load_functions
    from amlevents.host.workers import WorkerPool
    from handlers.runtime.dispatch import default_dispatcher

    default_dispatcher.cache_clear()
    bodies = [json.dumps(events[i:i + BATCH]).encode() for i in range(0, len(events), BATCH)]
    pool = WorkerPool(worker_processes) if worker_processes > 1 else None
    server = LocalServer(FunctionsHost(load_functions(function_app.app), pool=pool),
                         port=0).start()
    try:
        with multiprocessing.get_context("spawn").Pool(clients) as clients_pool:
            clients_pool.apply(post_batches, (server.port, function, []))  # start-up, untimed
            start = time.perf_counter()
            results = clients_pool.starmap(post_batches, [
                (server.port, function, bodies[i::clients]) for i in range(clients)])
            elapsed = time.perf_counter() - start
    finally:
        server.stop()
        if pool is not None:
            pool.close()
    failures = [status for share in results for status in share]
    if failures:
        raise SystemExit(f"{len(failures)} batches were not accepted: {failures[:5]}")
    return elapsed
