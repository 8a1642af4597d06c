"""Email through Azure Communication Services (azure-communication-email `EmailClient`).

Managed identity (`DefaultAzureCredential`, an endpoint setting) or a connection string
(HMAC-signed requests). `begin_send` POSTs `/emails:send` (202 + `Operation-Location`) and
polls the operation until it Succeeds:
https://learn.microsoft.com/rest/api/communication/dataplane/email/send
The SDK is imported on first send, never at import (cold start).
"""

from __future__ import annotations

import threading
from typing import Any

from handlers.errors import PermanentError, RetryableError
from handlers.notify.message import Message, as_html, as_text, email_subject


class AcsEmailChannel:
    """Sends each message as one ACS email to the configured recipients."""

    name = "acs"

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
                    from azure.identity import DefaultAzureCredential

                    # The same policy for the token request: the identity endpoint's default
                    # retries would hold this invocation ~5 s when it is unreachable.
                    credential = DefaultAzureCredential(**retry)
                    self._client = EmailClient(self._endpoint, credential, **kwargs)
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
        try:
            poller = self._get_client().begin_send(body, polling_interval=self._poll_interval_s)
            result = poller.result(timeout=self._timeout_s)
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise RetryableError(f"acs: {type(exc).__name__}") from None
        except (ClientAuthenticationError, HttpResponseError) as exc:
            raise _classify(exc) from None
        if not poller.done():
            # Accepted (202) but not final yet: ACS will deliver it; sending again would duplicate.
            return f"accepted, status still {poller.status()} after {self._timeout_s:g}s"
        status = (result or {}).get("status", poller.status())
        return f"operation {(result or {}).get('id', '?')} {status}"


def _classify(exc: Any) -> RetryableError | PermanentError:
    status = getattr(exc, "status_code", None)
    text = str(getattr(exc, "message", "") or type(exc).__name__).splitlines()[0][:300]
    detail = f"acs: HTTP {status} {text}" if status else f"acs: {text}"
    if status is None or status == 429 or status >= 500:
        return RetryableError(detail)
    return PermanentError(detail)
