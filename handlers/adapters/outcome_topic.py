"""The outcome topic publisher: azure-eventgrid's EventGridPublisherClient sending CloudEvents.

azure.eventgrid and azure.core.messaging are imported on the first send, never at import (cold
start). The client signs with the topic key (AzureKeyCredential, header `aeg-sas-key`) when
AMLEVENTS_OUTCOME_TOPIC_KEY is set, else with the app's managed identity (DefaultAzureCredential,
scope https://eventgrid.azure.net/.default; the identity needs *EventGrid Data Sender*).

SDK errors become ours: no answer, 408, 429, 5xx → RetryableError (the topic is unavailable: publish
later); 401/403 → RetryableError naming what to fix (a key or a role assignment that has not
propagated yet is fixed without touching the event); 400/404/413 → PermanentError (this event will
never be accepted: the topic refused it, or the URL is not a topic).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from handlers.adapters.retry_after import retry_after_of
from handlers.errors import PermanentError, RetryableError
from handlers.publish.catalogue import OutcomeEvent
from handlers.publish.settings import TOPIC_ENDPOINT, TOPIC_KEY, OutcomeTopicSettings

# One extra attempt inside a send for a blip (a retried POST whose first answer was lost repeats
# the same event id); longer outages are retried by the caller, not here.
_SDK_RETRIES = 1
# azure-eventgrid 4.22 drops a basic topic client's constructor options (retries, timeouts), so
# they go with each send; on the way its CloudEvent model logs them as unknown attributes.
_SERIALIZATION_LOGGER = "azure.eventgrid._legacy._generated._serialization"


class _CallOptionsFilter(logging.Filter):
    """Drops the SDK model's 'not a known attribute' warnings about our per-call options."""

    OPTIONS = ("retry_total", "retry_backoff_factor", "connection_timeout", "read_timeout")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and args[0] in self.OPTIONS and "not a known attribute" in record.msg)


class OutcomeTopicPublisher:
    """Publishes outcome events to one Event Grid topic (built once per process)."""

    def __init__(self, settings: OutcomeTopicSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from azure.eventgrid import EventGridPublisherClient

                credential: Any
                if self.settings.key:
                    from azure.core.credentials import AzureKeyCredential

                    credential = AzureKeyCredential(self.settings.key)
                else:
                    from handlers.adapters.credential import shared_credential

                    credential = shared_credential()
                quiet = logging.getLogger(_SERIALIZATION_LOGGER)
                if not any(isinstance(f, _CallOptionsFilter) for f in quiet.filters):
                    quiet.addFilter(_CallOptionsFilter())
                self._client = EventGridPublisherClient(self.settings.endpoint, credential)
            return self._client

    def send(self, event: OutcomeEvent) -> None:
        """Publish one event, or raise RetryableError / PermanentError."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )
        from azure.core.messaging import CloudEvent

        cloud = CloudEvent(source=event.source, type=event.type, data=dict(event.data),
                           subject=event.subject, id=event.id, time=_parse_time(event.time),
                           datacontenttype="application/json")
        try:
            # Per call: azure-eventgrid 4.22 drops a basic topic client's constructor options.
            self._get_client().send([cloud], retry_total=_SDK_RETRIES, retry_backoff_factor=0.5,
                                    connection_timeout=self.settings.timeout_s,
                                    read_timeout=self.settings.timeout_s)
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise RetryableError(f"outcome topic unreachable: {type(exc).__name__}") from exc
        except ClientAuthenticationError as exc:
            status = getattr(exc, "status_code", None)
            if status is None:  # no token: the identity endpoint failed
                raise RetryableError(f"outcome topic: no token for the managed identity "
                                     f"({type(exc).__name__})") from exc
            raise RetryableError(_auth_problem(status)) from exc
        except HttpResponseError as exc:
            status = _status_of(exc)
            code = _error_code(exc)
            if status in (401, 403):
                raise RetryableError(_auth_problem(status)) from exc
            if status in (400, 404, 413):
                raise PermanentError(f"outcome topic refused the event: HTTP {status} {code}"
                                     .rstrip()) from exc
            raise RetryableError(f"outcome topic unavailable: HTTP {status} {code}".rstrip(),
                                 retry_after_s=retry_after_of(exc)) from exc

    def close(self) -> None:
        """Release the HTTP session."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _status_of(exc: Any) -> int:
    """The answer's HTTP status. azure-eventgrid re-raises a 404 as a ResourceNotFoundError of its
    own, without a status: the original error (its cause) has it."""
    from azure.core.exceptions import ResourceNotFoundError

    for error in (exc, exc.__cause__):
        status = getattr(error, "status_code", None)
        if isinstance(status, int) and status:
            return status
    return 404 if isinstance(exc, ResourceNotFoundError) else 0


def _auth_problem(status: int) -> str:
    return (f"outcome topic answered HTTP {status}: check {TOPIC_KEY} (the topic's key) or, "
            f"without it, that the app's identity has EventGrid Data Sender on the topic of "
            f"{TOPIC_ENDPOINT} (role assignments take minutes to apply)")


def _error_code(exc: Any) -> str:
    error = getattr(exc, "error", None)
    return str(getattr(error, "code", "") or "")


def _parse_time(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
