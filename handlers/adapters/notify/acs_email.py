"""Email through Azure Communication Services (azure-communication-email `EmailClient`).

Managed identity (`DefaultAzureCredential`, an endpoint setting) or a connection string
(HMAC-signed requests). `begin_send` POSTs `/emails:send` (202 + `Operation-Location`) and
polls the operation until it Succeeds:
https://learn.microsoft.com/rest/api/communication/dataplane/email/send
The SDK is imported on first send, never at import (cold start).

Repeats: every send of one message carries the same `Operation-Id` and
`Repeatability-Request-Id` (a UUID derived from the message id) and, as
`Repeatability-First-Sent`, when the notifier first tried it (kept in the ledger across
redeliveries). ACS answers a repeat within 5 minutes of that time as it answered the first
request, without sending a second email; after that it answers 412, and the message is sent
again with a fresh time (at least once: whether the first attempt went out is unknowable):
https://learn.microsoft.com/rest/api/communication/repeatable-requests
"""

from __future__ import annotations

import threading
import time
import uuid
from email.utils import formatdate
from typing import Any

from handlers.errors import PermanentError, RetryableError
from handlers.notify.message import Message, as_html, as_text, email_subject

# Names the UUIDs of amlevents' messages (uuid5 of the message id): stable across instances.
MESSAGE_NAMESPACE = uuid.UUID("4f0d8a52-6b0e-5c3e-9a5e-61ac0e7d2c11")
_PRECONDITION_FAILED = 412  # Repeatability-First-Sent is outside ACS's tracked window


def repeatability_headers(message: Message, first_sent_s: float) -> dict[str, str]:
    """The ACS repeatable-request headers of one send of `message`."""
    return {"Repeatability-Request-Id": operation_id(message),
            "Repeatability-First-Sent": formatdate(first_sent_s, usegmt=True)}


def operation_id(message: Message) -> str:
    """The message's ACS operation id (and repeatability request id): a UUID, always the same."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, message.id))


class AcsEmailChannel:
    """Sends each message as one ACS email to the configured recipients."""

    name = "acs"
    needs_first_sent = True  # the notifier keeps the first attempt's time (see above)

    def __init__(self, *, endpoint: str, connection_string: str, sender: str,
                 to: tuple[str, ...], timeout_s: float, poll_interval_s: float,
                 ca_file: str = "") -> None:
        self._endpoint = endpoint
        self._connection_string = connection_string
        self._sender = sender
        self._to = to
        self._timeout_s = timeout_s
        self._poll_interval_s = poll_interval_s
        self._ca_file = ca_file
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from azure.communication.email import EmailClient

                # Event Grid redelivers on failure: one quick SDK retry is enough here.
                retry: dict[str, Any] = {"retry_total": 1, "retry_backoff_factor": 0.2}
                kwargs: dict[str, Any] = {**retry, "connection_timeout": self._timeout_s,
                                          "read_timeout": self._timeout_s}
                if self._ca_file:
                    kwargs["connection_verify"] = self._ca_file
                if self._connection_string:
                    self._client = EmailClient.from_connection_string(self._connection_string,
                                                                      **kwargs)
                else:
                    from handlers.adapters.credential import shared_credential

                    # The process's credential: one quick retry for the token request too (the
                    # identity endpoint's default retries would hold this invocation ~5 s).
                    self._client = EmailClient(self._endpoint, shared_credential(), **kwargs)
            return self._client

    def send(self, message: Message) -> str:
        """Send and wait (up to the timeout) for the operation; a short receipt."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        body = {"senderAddress": self._sender,
                "recipients": {"to": [{"address": address} for address in self._to]},
                "content": {"subject": email_subject(message), "plainText": as_text(message),
                            "html": as_html(message)}}
        first_sent = message.first_sent_s if message.first_sent_s is not None else time.time()
        try:
            try:
                poller = self._begin(body, message, first_sent)
                note = ""
            except HttpResponseError as exc:
                if getattr(exc, "status_code", None) != _PRECONDITION_FAILED:
                    raise
                # ACS no longer tracks the first attempt: it may or may not have gone out.
                poller = self._begin(body, message, time.time())
                note = " (resent: the first attempt was older than ACS tracks repeats)"
            result = poller.result(timeout=self._timeout_s)
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise RetryableError(f"acs: {type(exc).__name__}") from None
        except (ClientAuthenticationError, HttpResponseError) as exc:
            raise _classify(exc) from None
        if not poller.done():
            # Accepted (202) but not final yet: ACS will deliver it; sending again would duplicate.
            return f"accepted, status still {poller.status()} after {self._timeout_s:g}s{note}"
        status = (result or {}).get("status", poller.status())
        return f"operation {(result or {}).get('id', '?')} {status}{note}"

    def _begin(self, body: dict[str, Any], message: Message, first_sent_s: float) -> Any:
        return self._get_client().begin_send(
            body, operation_id=operation_id(message),
            headers=repeatability_headers(message, first_sent_s),
            polling_interval=self._poll_interval_s)


def _classify(exc: Any) -> RetryableError | PermanentError:
    status = getattr(exc, "status_code", None)
    text = str(getattr(exc, "message", "") or type(exc).__name__).splitlines()[0][:300]
    detail = f"acs: HTTP {status} {text}" if status else f"acs: {text}"
    if status is None or status == 429 or status >= 500:
        return RetryableError(detail)
    return PermanentError(detail)
