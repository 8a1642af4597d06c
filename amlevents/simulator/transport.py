"""HTTP for delivery: a one-method transport interface and its stdlib http.client implementation.

Errors without an HTTP answer raise DeliveryNetworkError carrying Event Grid's outcome name
(SocketError, ResolutionError, TimedOut) for the dead-letter record's lastDeliveryOutcome.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True)
class HttpResult:
    """An HTTP answer: status, lower-case headers, body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class DeliveryNetworkError(Exception):
    """No HTTP answer; `outcome` is Event Grid's name for why (SocketError, TimedOut...)."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome


class Transport(Protocol):
    """Sends one HTTP request."""

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                timeout_s: float) -> HttpResult:
        """Answer or raise DeliveryNetworkError."""
        ...


class HttpClientTransport:
    """The stdlib http.client transport (https with an optional SSL context)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                timeout_s: float) -> HttpResult:
        """One request on a fresh connection."""
        parts = urlsplit(url)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                                     timeout=timeout_s, context=self.ssl_context)
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                    timeout=timeout_s)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(method, target or "/", body=body, headers=dict(headers))
            response = connection.getresponse()
            return HttpResult(response.status, {k.lower(): v for k, v in response.getheaders()},
                              response.read())
        except socket.gaierror as exc:
            raise DeliveryNetworkError("ResolutionError", str(exc)) from exc
        except TimeoutError as exc:
            raise DeliveryNetworkError("TimedOut", str(exc) or "no answer in time") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryNetworkError("SocketError", f"{type(exc).__name__}: {exc}") from exc
        finally:
            connection.close()
