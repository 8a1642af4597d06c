"""Language-worker processes for the local host, as the Functions host runs them.

The Functions host honours FUNCTIONS_WORKER_PROCESS_COUNT (1-10, default 1): one host process takes
the HTTP deliveries, splits an Event Grid batch into one invocation per event and hands the
invocations to N worker processes, each with the app loaded; the answer to the batch waits for all
of them (https://learn.microsoft.com/azure/azure-functions/functions-app-settings#functions_worker_process_count).
`WorkerPool` does that for `amlevents serve`: N spawned processes (a fresh interpreter each, as the
real worker is) import function_app, load its Event Grid functions (functions.load_functions) and
invoke each event as the worker decodes it (functions.invoke_event_grid). A batch is cut into one
contiguous chunk per worker (a message per worker and batch, plus one per failed event: on 2 cores,
a message per event was about a third slower, and every-other-event chunks were no faster); a
front thread per worker feeds it chunks from one queue, so a worker that finishes early takes
the next chunk of any request.

A worker that dies mid-chunk never holds up the request: the events it had not finished are
reported failed (the host answers 500, Event Grid redelivers; the ledger keeps the redelivery
exactly-once) and a fresh worker replaces it. Exceptions: `WorkerError` (a ValueError, so `serve`
reports it as a setting problem) for an invalid setting, a worker that cannot load the app, a
closed pool.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.context import SpawnContext, SpawnProcess

    from handlers.runtime.telemetry import EventSeen

log = logging.getLogger("amlevents.host")

WORKER_PROCESS_COUNT = "FUNCTIONS_WORKER_PROCESS_COUNT"
MAX_WORKER_PROCESSES = 10  # the Functions host's own bound for the setting
START_TIMEOUT_S = 120.0  # a spawned worker imports the app: seconds on a loaded machine
STOP_TIMEOUT_S = 5.0
_COUNT = re.compile(r"[0-9]{1,2}")  # int() would take "+5", "5_0" and "٥" too


class WorkerError(ValueError):
    """The worker processes cannot do what was asked; the message says why (and which setting)."""


@dataclass(frozen=True)
class EventFailure:
    """One event of a batch whose invocation failed: its index in the batch, `Type: message`."""

    index: int
    error: str


@dataclass(frozen=True)
class _ChunkDone:
    """What a worker reports for one chunk: its failures (chunk positions), pid, telemetry."""

    failures: tuple[tuple[int, str], ...]
    pid: int
    seen: tuple[EventSeen, ...] = ()


@dataclass(frozen=True)
class _Chunk:
    """Consecutive events of one batch for one worker, and where the answer goes."""

    function: str
    events: tuple[Mapping[str, Any], ...]
    start: int  # the first event's index in the batch
    answer: Future[_ChunkDone]


def failure_text(exc: BaseException) -> str:
    """How the host reports a failed invocation: the exception's type and (bounded) message."""
    return f"{type(exc).__name__}: {str(exc)[:500]}"


def worker_process_count(env: Mapping[str, str]) -> int:
    """FUNCTIONS_WORKER_PROCESS_COUNT of `env` (1 when unset or blank); WorkerError unless 1-10."""
    text = env.get(WORKER_PROCESS_COUNT, "").strip()
    if not text:
        return 1
    if not _COUNT.fullmatch(text) or not 1 <= int(text) <= MAX_WORKER_PROCESSES:
        raise WorkerError(f"{WORKER_PROCESS_COUNT} must be a whole number from 1 to "
                          f"{MAX_WORKER_PROCESSES} (the Functions host's range), not {text[:20]!r}")
    return int(text)


class WorkerPool:
    """N worker processes with the app loaded; `invoke` runs a batch over them and waits."""

    def __init__(self, processes: int, *, env: Mapping[str, str] | None = None,
                 on_event: Callable[[EventSeen], None] | None = None) -> None:
        if not 1 <= processes <= MAX_WORKER_PROCESSES:
            raise WorkerError(f"{WORKER_PROCESS_COUNT} must be from 1 to {MAX_WORKER_PROCESSES}, "
                              f"not {processes}")
        context = multiprocessing.get_context("spawn")
        # Every worker, replacements too, gets the environment the pool was made with.
        settings = dict(os.environ if env is None else env)
        self._on_event = on_event
        self._workers = [_Worker(context, settings, report_events=on_event is not None)
                         for _ in range(processes)]
        self._chunks: queue.SimpleQueue[_Chunk | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._events_by_pid: Counter[int] = Counter()
        try:
            for worker in self._workers:  # all start at once: each imports the app
                worker.spawn()
            for worker in self._workers:
                worker.await_ready()
        except BaseException:
            for worker in self._workers:
                worker.stop()
            raise
        self._feeders = [threading.Thread(target=self._feed, args=(worker,), daemon=True,
                                          name=f"amlevents-worker-feeder-{n}")
                         for n, worker in enumerate(self._workers)]
        for feeder in self._feeders:
            feeder.start()

    @property
    def pids(self) -> tuple[int, ...]:
        """The worker processes' ids (a replaced worker's new id; 0 while one is not running)."""
        return tuple(worker.pid for worker in self._workers)

    def events_by_process(self) -> dict[int, int]:
        """How many events each worker process (by the pid it reported) has handled."""
        with self._lock:
            return dict(self._events_by_pid)

    def invoke(self, function: str, events: Sequence[Mapping[str, Any]]) -> tuple[EventFailure, ...]:
        """Invoke `function` once per event across the workers; the failed events, in order."""
        if not events:
            return ()
        size = -(-len(events) // len(self._workers))  # ceil: one contiguous chunk per worker
        chunks = [_Chunk(function, tuple(events[start:start + size]), start, Future())
                  for start in range(0, len(events), size)]
        with self._lock:
            if self._closed:
                raise WorkerError("the worker pool is stopped")
            for chunk in chunks:
                self._chunks.put(chunk)
        failures: list[EventFailure] = []
        for chunk in chunks:
            done = chunk.answer.result()  # every chunk taken is answered, even by a dead worker
            failures += [EventFailure(chunk.start + position, text)
                         for position, text in done.failures]
        return tuple(failures)

    def close(self) -> None:
        """Let the workers finish the chunks already queued, then stop them (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._feeders:
                self._chunks.put(None)
        for feeder in self._feeders:
            feeder.join(timeout=START_TIMEOUT_S)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _feed(self, worker: _Worker) -> None:
        while (chunk := self._chunks.get()) is not None:
            try:
                done = worker.run(chunk.function, chunk.events)
            except BaseException as exc:  # a request must never wait for ever
                log.exception("worker process failed on a chunk")
                done = _ChunkDone(tuple((p, failure_text(exc)) for p in range(len(chunk.events))),
                                  worker.pid)
            with self._lock:
                self._events_by_pid[done.pid] += len(chunk.events) - len(done.failures)
            chunk.answer.set_result(done)
            self._tell(done.seen)
        worker.stop()

    def _tell(self, seen: tuple[EventSeen, ...]) -> None:
        listener = self._on_event
        if listener is None:  # the workers collect nothing then
            return
        for event in seen:
            try:
                listener(event)
            except Exception:  # a listener must never fail a delivery
                log.exception("event listener %r failed", listener)


class _Worker:
    """One worker process and its pipe; replaced by a fresh one when it dies."""

    def __init__(self, context: SpawnContext, env: Mapping[str, str], *,
                 report_events: bool) -> None:
        self._context = context
        self._env = env
        self._report_events = report_events
        # How many events of the current chunk the worker has finished: read when it dies.
        self._progress = context.RawValue(ctypes.c_int, 0)
        self._process: SpawnProcess | None = None
        self._conn: Connection | None = None
        self.pid = 0

    def spawn(self) -> None:
        """Start a fresh worker process (await_ready waits for it to load the app)."""
        here, there = self._context.Pipe()
        process = self._context.Process(
            target=serve_invocations, daemon=True, name="amlevents-worker",
            args=(there, self._progress, self._env, self._report_events,
                  logging.getLogger().level))
        try:
            process.start()
        except BaseException:
            here.close()
            raise
        finally:
            there.close()  # only the worker holds its end: its death is our end-of-file
        self._process, self._conn = process, here

    def await_ready(self) -> None:
        """Wait until the worker has loaded the app; WorkerError if it cannot."""
        assert self._conn is not None and self._process is not None
        try:
            if not self._conn.poll(START_TIMEOUT_S):
                raise WorkerError(f"a worker process did not load the app within "
                                  f"{START_TIMEOUT_S:g} s")
            kind, detail = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(STOP_TIMEOUT_S)
            kind, detail = "error", f"it exited with code {self._process.exitcode}"
        if kind != "ready":
            self.stop()
            raise WorkerError(f"a worker process could not load function_app: {detail}")
        self.pid = int(detail)

    def run(self, function: str, events: tuple[Mapping[str, Any], ...]) -> _ChunkDone:
        """Invoke `function` on each event in the worker; a death fails what it had not done."""
        if self._conn is None:  # its replacement failed to start last time: try again
            self.spawn()
            self.await_ready()
        assert self._conn is not None
        self._progress.value = 0
        failures: list[tuple[int, str]] = []
        try:
            self._conn.send((function, events))
            while True:
                message = self._conn.recv()
                if message[0] == "done":  # with the pid the worker itself reports
                    return _ChunkDone(tuple(failures), message[1], message[2])
                failures.append((message[1], message[2]))
        except (EOFError, OSError):
            pass
        # The worker died: what it finished stands (and its failures, sent as they happened);
        # the rest is failed, so Event Grid redelivers the batch.
        pid, finished = self.pid, self._progress.value
        code = self._replace()
        text = failure_text(WorkerError(f"worker process {pid} exited ({code}) before this "
                                        "event finished; Event Grid redelivers it"))
        failed = {position for position, _ in failures}
        unfinished = [(p, text) for p in range(finished, len(events)) if p not in failed]
        return _ChunkDone((*failures, *unfinished), pid)

    def _replace(self) -> str:
        """Reap the dead worker and start another; how the dead one ended."""
        dead, pid = self._process, self.pid
        self.stop()
        code = f"exit code {dead.exitcode}" if dead is not None else "not running"
        log.warning("worker process %s died (%s); starting a new one", pid, code)
        try:
            self.spawn()
            self.await_ready()
        except WorkerError:
            log.exception("the new worker process did not start; trying again on the next chunk")
            self.stop()
        return code

    def stop(self) -> None:
        """Ask the worker to exit (after the chunk it holds), then make sure it has."""
        conn, process = self._conn, self._process
        self._conn, self._process, self.pid = None, None, 0
        if conn is not None:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        if process is not None:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(STOP_TIMEOUT_S)


def _open_ledger() -> None:
    """Open the dispatcher (and its ledger) before the first event, as part of starting up."""
    from handlers.runtime.dispatch import default_dispatcher

    try:
        default_dispatcher().context()
    except Exception:  # noqa: BLE001 - a setting problem: the first event reports it, as it would
        pass


def serve_invocations(conn: Connection, progress: ctypes.c_int, env: Mapping[str, str],
                      report_events: bool, log_level: int) -> None:
    """A worker process's life: load the app, then invoke each chunk's events until told to stop."""
    # Ctrl-C reaches the whole process group: the host stops its workers after their chunk,
    # rather than each being interrupted mid-event (which would leave an in_progress claim).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.environ.clear()
        os.environ.update(env)
        from amlevents.logging_setup import install_log_redaction

        logging.getLogger().setLevel(log_level)
        install_log_redaction(env)  # a worker's log lines are masked like the host's
        import function_app
        from amlevents.host.functions import invoke_event_grid, load_functions
        from handlers.runtime import telemetry

        functions = load_functions(function_app.app).event_grid
        seen: list[EventSeen] = []
        if report_events:
            telemetry.add_listener(seen.append)
        _open_ledger()
    except Exception as exc:  # noqa: BLE001 - told to the host, which refuses to start
        conn.send(("error", failure_text(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the host is gone
            return
        if task is None:
            return
        name, events = task
        function = functions.get(name)
        for position, event in enumerate(events):
            try:
                if function is None:
                    raise WorkerError(f"{name!r} is not an Event Grid function of this app")
                invoke_event_grid(function, event)
            except Exception as exc:  # noqa: BLE001 - reported: the host answers 500
                conn.send(("failed", position, failure_text(exc)))
            progress.value = position + 1
        conn.send(("done", os.getpid(), tuple(seen)))
        seen.clear()
