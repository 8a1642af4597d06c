"""The delivery engine: workers that deliver batches to the Functions host, retry, dead-letter.

Follows https://learn.microsoft.com/azure/event-grid/delivery-and-retry:

- Target by destination: an AzureFunction `{host}/runtime/webhooks/EventGrid?functionName={function}`
  (`&code=` when keyed); a WebHook its `endpointUrl`; a StorageQueue one message per event
  (queue_delivery.py, through `queues`). The body and headers are built by delivery_format.py.
- EventHub, ServiceBusQueue and ServiceBusTopic destinations have no local emulator: `submit`
  records what they would have received (through `recorder`, in the subscription's schema) and
  journals `not_delivered`; so does a StorageQueue when no queue service is configured.
- Subscriptions are created first (`create_subscriptions`): a WebHook endpoint is validated then,
  once (handshake.py); a failed validation means no subscription. AzureFunction destinations
  are not validated (unless the engine's `endpoint_type` is WebHook: the host's function URLs
  then stand in for webhooks), nor are Azure resources. Deliveries never repeat the handshake.
- Success is 200-204 only; which answers are retried, and after how long, is delivery_policy.py.
  An answer that is never retried is dead-lettered at once as
  UndeliverableDueToProbationCausedByClientError (journal.py).
- maxDeliveryAttempts ends retries; the time-to-live is checked only at the next scheduled
  attempt, as documented. `time_scale` (e.g. 0.001) compresses every wait; the dead-letter
  record's times are simulated times (publish time + scaled-up elapsed time).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

from amlevents.simulator import journal as jr
from amlevents.simulator.delivery_format import notification, to_delivery_schema
from amlevents.simulator.delivery_policy import (
    NON_RETRIABLE,
    Attempt,
    outcome_for,
    retry_delay_s,
)
from amlevents.simulator.handshake import options_handshake, validation_handshake
from amlevents.simulator.journal import DeadLetterInfo, DeadLetterWriter, Journal, JournalEntry
from amlevents.simulator.subscription_model import (
    AZURE_FUNCTION,
    CLOUD_EVENT_SCHEMA,
    EVENT_HUB,
    SERVICE_BUS_QUEUE,
    SERVICE_BUS_TOPIC,
    STORAGE_QUEUE,
    WEBHOOK,
    Subscription,
    SubscriptionValidationError,
)
from amlevents.simulator.transport import DeliveryNetworkError, HttpClientTransport, Transport

# Re-exported: imported from here by the package, the topic and the tests.
__all__ = ["LOCAL_TOPIC_ID", "DeliveryEngine", "outcome_for", "retry_delay_s",
           "to_delivery_schema"]

log = logging.getLogger("amlevents.simulator")

LOCAL_TOPIC_ID = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local"
                  "/providers/Microsoft.EventGrid/topics/amlevents-local")
NO_EMULATOR = frozenset({EVENT_HUB, SERVICE_BUS_QUEUE, SERVICE_BUS_TOPIC})


class QueueDeliverer(Protocol):
    """Puts a batch's events on a StorageQueue destination's queue (QueueSender does)."""

    def send(self, subscription: Subscription, events: Sequence[Mapping[str, Any]]) -> Attempt:
        """One attempt: every event enqueued, or the first refusal."""
        ...


@dataclass
class _Job:
    """Mutable delivery state of one batch for one subscription (internal)."""

    subscription: Subscription
    events: tuple[dict[str, Any], ...]
    publish_time: datetime
    publish_mono: float
    attempts: int = 0
    last_status: int | None = None
    last_outcome: str = ""
    last_attempt_mono: float | None = None


class DeliveryEngine:
    """Background workers delivering batches with retries; see the module docstring."""

    def __init__(self, host_base_url: str, *, journal: Journal, dead_letters: DeadLetterWriter,
                 function_key: str | None = None, time_scale: float = 1.0, workers: int = 4,
                 response_timeout_s: float = 30.0, endpoint_type: str = "WebHook",
                 topic_id: str = LOCAL_TOPIC_ID, transport: Transport | None = None,
                 queues: QueueDeliverer | None = None, recorder: DeadLetterWriter | None = None,
                 now: Callable[[], datetime] = jr.utc_now) -> None:
        if time_scale <= 0 or workers < 1 or endpoint_type not in NON_RETRIABLE:
            raise ValueError("time_scale must be > 0, workers >= 1, endpoint_type WebHook or "
                             f"AzureFunction (got {time_scale}, {workers}, {endpoint_type!r})")
        self.host_base_url = host_base_url.rstrip("/")
        self.journal, self.dead_letters = journal, dead_letters
        self.function_key, self.time_scale = function_key, time_scale
        self.response_timeout_s, self.endpoint_type = response_timeout_s, endpoint_type
        self.topic_id = topic_id
        self._transport = transport or HttpClientTransport()
        self._queues, self._recorder = queues, recorder
        self._now = now
        self._worker_count = workers
        self._heap: list[tuple[float, int, _Job]] = []
        self._sequence = itertools.count()
        self._inflight = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._created: dict[str, Subscription] = {}  # by lower-case name, as ARM names compare
        self._created_lock = threading.Lock()

    def endpoint_url(self, subscription: Subscription) -> str:
        """A WebHook destination's URL, or the function's Event Grid webhook URL on the host."""
        if subscription.destination is not None:
            return subscription.destination.endpoint_url
        url = (f"{self.host_base_url}/runtime/webhooks/EventGrid"
               f"?functionName={quote(subscription.function)}")
        return url + (f"&code={quote(self.function_key)}" if self.function_key else "")

    def start(self) -> DeliveryEngine:
        """Start the worker threads."""
        with self._cond:
            self._stopping = False
        for index in range(self._worker_count - len(self._threads)):
            thread = threading.Thread(target=self._work, name=f"amlevents-delivery-{index}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def create_subscriptions(self, subscriptions: Sequence[Subscription]) -> None:
        """Create the subscriptions, validating each WebHook endpoint once, as Event Grid does.

        AzureFunction destinations are not validated. A subscription whose validation fails is not
        created (the others are); SubscriptionValidationError lists each failure. Creating the
        same subscription again is a no-op; a changed one is validated again (an update).
        """
        failures: list[str] = []
        for subscription in subscriptions:
            key = subscription.name.lower()
            with self._created_lock:
                if self._created.get(key) == subscription:
                    continue
            problem = self._validation_problem(subscription)
            if problem:
                failures.append(f"subscription {subscription.name!r}: the attempt to validate "
                                f"the endpoint failed: {problem}")
                continue
            with self._created_lock:
                self._created[key] = subscription
        if failures:
            raise SubscriptionValidationError("event subscription creation", failures)

    def delivered_locally(self, subscription: Subscription) -> bool:
        """False for destinations only recorded here (no emulator, or no queue service)."""
        kind = subscription.endpoint_type
        return kind not in NO_EMULATOR and not (kind == STORAGE_QUEUE and self._queues is None)

    def _policy(self, subscription: Subscription) -> str:
        """The retry-policy row: WebHook, or Azure resources (AzureFunction's row)."""
        if subscription.destination is None:
            return self.endpoint_type
        return WEBHOOK if subscription.endpoint_type == WEBHOOK else AZURE_FUNCTION

    def _validation_problem(self, subscription: Subscription) -> str:
        if self._policy(subscription) != WEBHOOK:
            return ""  # Azure Functions with an Event Grid trigger, Azure resources: by Azure
        url = self.endpoint_url(subscription)
        if subscription.event_delivery_schema == CLOUD_EVENT_SCHEMA:
            problem = options_handshake(self._transport, url, self.response_timeout_s)
        else:
            problem = validation_handshake(self._transport, subscription, url,
                                           topic_id=self.topic_id, now=self._now,
                                           timeout_s=self.response_timeout_s)
        if problem:
            log.warning("validation of %s failed: %s", subscription.name, problem)
        return problem

    def submit(self, subscription: Subscription, events: Sequence[Mapping[str, Any]]) -> None:
        """Queue one batch (events already in the delivery schema) for immediate delivery.

        ValueError for a subscription that was not created (or failed its validation).
        """
        with self._created_lock:
            created = self._created.get(subscription.name.lower()) == subscription
        if not created:
            raise ValueError(f"subscription {subscription.name!r} was not created: "
                             "create_subscriptions() first (a WebHook must pass validation)")
        job = _Job(subscription, tuple(dict(e) for e in events), self._now(), time.monotonic())
        if not self.delivered_locally(subscription):
            self._record_undelivered(job)
            return
        with self._cond:
            stopped = self._stopping
        if stopped:  # after stop(): nothing would deliver it
            self._dead_letter(job, jr.SIMULATOR_STOPPED)
            return
        self._schedule(job, time.monotonic())

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False if `timeout` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._heap and not self._inflight, timeout)

    def pending(self) -> int:
        """Batches queued (waiting for their attempt) or in flight."""
        with self._cond:
            return len(self._heap) + self._inflight

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; batches still waiting are dead-lettered as SimulatorStopped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]
        with self._cond:
            leftovers, self._heap = [job for _, _, job in self._heap], []
        for job in leftovers:
            self._dead_letter(job, jr.SIMULATOR_STOPPED)

    def __enter__(self) -> DeliveryEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _schedule(self, job: _Job, due_mono: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due_mono, next(self._sequence), job))
            self._cond.notify_all()

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                self._process(job)
            except Exception:  # a bug must not lose the event: logged, dead-lettered
                log.exception("delivery failed unexpectedly for %s", job.subscription.name)
                self._dead_letter(job, jr.SIMULATOR_ERROR)
            finally:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._stopping:
                if self._heap and self._heap[0][0] <= time.monotonic():
                    self._inflight += 1
                    return heapq.heappop(self._heap)[2]
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                self._cond.wait(wait)
            return None

    def _process(self, job: _Job) -> None:
        ttl_s = job.subscription.retry_policy.event_time_to_live_in_minutes * 60
        if self._simulated_elapsed_s(job, time.monotonic()) >= ttl_s:
            self._dead_letter(job, jr.TIME_TO_LIVE_EXCEEDED)
            return
        job.attempts += 1
        job.last_attempt_mono = time.monotonic()
        attempt = self._attempt(job)
        job.last_status, job.last_outcome = attempt.status, attempt.outcome
        if attempt.delivered:
            self._journal(job, jr.DELIVERED, f"HTTP {attempt.status}")
        elif attempt.status in NON_RETRIABLE[self._policy(job.subscription)]:
            self._dead_letter(job, jr.UNDELIVERABLE_DUE_TO_CLIENT_ERROR)
        elif job.attempts >= job.subscription.retry_policy.max_delivery_attempts:
            self._dead_letter(job, jr.MAX_DELIVERY_ATTEMPTS_EXCEEDED)
        else:
            delay_s = retry_delay_s(job.attempts, attempt.status, self._policy(job.subscription))
            self._schedule(job, time.monotonic() + delay_s * self.time_scale)

    def _simulated_elapsed_s(self, job: _Job, mono: float) -> float:
        return (mono - job.publish_mono) / self.time_scale

    def _attempt(self, job: _Job) -> Attempt:
        if job.subscription.endpoint_type == STORAGE_QUEUE and self._queues is not None:
            return self._queues.send(job.subscription, job.events)
        url = self.endpoint_url(job.subscription)
        try:
            headers, body = notification(job.subscription, job.events, job.attempts)
            result = self._transport.request("POST", url, headers, body, self.response_timeout_s)
        except DeliveryNetworkError as exc:
            log.info("delivery to %s failed: %s", url, exc)
            return Attempt(False, None, exc.outcome)
        delivered = 200 <= result.status <= 204
        return Attempt(delivered, result.status, "Delivered" if delivered
                       else outcome_for(result.status))

    def _dead_letter(self, job: _Job, reason: str) -> None:
        subscription = job.subscription
        if subscription.dead_letter is None:
            self._journal(job, jr.DROPPED, f"{reason} (no deadLetter configured: dropped, "
                                           "as Event Grid does)")
            return
        attempted = job.last_attempt_mono
        info = DeadLetterInfo(
            reason=reason, delivery_attempts=job.attempts,
            last_delivery_outcome=job.last_outcome or "Probation",
            last_http_status_code=job.last_status, publish_time=job.publish_time,
            last_delivery_attempt_time=None if attempted is None else job.publish_time
            + timedelta(seconds=self._simulated_elapsed_s(job, attempted)))
        cloud = subscription.event_delivery_schema == CLOUD_EVENT_SCHEMA
        records = [jr.dead_letter_record(e, info, cloud) for e in job.events]
        name = jr.blob_name(self.topic_id.rsplit("/", 1)[-1], subscription.name, self._now())
        try:
            location = self.dead_letters.write(subscription.dead_letter.blob_container_name,
                                               name, records)
        except OSError as exc:
            log.error("dead-letter write failed for %s: %s", subscription.name, exc)
            self._journal(job, jr.DROPPED, f"{reason}; dead-letter write failed: {exc}")
            return
        self._journal(job, jr.DEAD_LETTERED, reason, location)

    def _record_undelivered(self, job: _Job) -> None:
        """What a destination without a local emulator would have received, kept and journaled."""
        subscription = job.subscription
        kind = subscription.endpoint_type
        why = (f"{kind} destinations are not delivered locally (no emulator here)"
               if kind in NO_EMULATOR else
               f"{kind} destination not delivered: no queue service configured")
        location = ""
        if self._recorder is not None:
            name = jr.blob_name(self.topic_id.rsplit("/", 1)[-1], subscription.name, self._now())
            try:
                location = self._recorder.write(kind.lower(), name, list(job.events))
            except OSError as exc:
                why += f"; recording failed: {exc}"
        self._journal(job, jr.NOT_DELIVERED, why, location)

    def _journal(self, job: _Job, outcome: str, reason: str, location: str = "") -> None:
        for event in job.events:
            self.journal.record(JournalEntry(
                time=jr.iso(self._now()), outcome=outcome, event_id=str(event.get("id", "")),
                event_type=str(event.get("eventType") or event.get("type") or ""),
                subscription=job.subscription.name, function=job.subscription.target,
                reason=reason, delivery_attempts=job.attempts,
                last_http_status_code=job.last_status, location=location))

