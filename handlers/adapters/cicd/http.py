"""JSON over HTTPS for the CI/CD services (stdlib urllib): one call, one answer, never a retry.

A POST that starts a run must never be re-sent on our own (a second run), so nothing here retries:
the dispatcher decides, with the ledger. What this module tells it:

- an `Answer` for every HTTP status (the service's error body included);
- `NotStarted` when the request never reached the service (no connection, DNS, TLS handshake):
  nothing can have started, so the intent may be dropped;
- `RetryableError` when it was sent and no answer came back (timeout, dropped connection): it may
  have taken effect, so the intent stays and a redelivery looks the run up.

Redirects are not followed (urllib would turn a POST into a GET, and carry the Authorization
header to wherever Location points): a 3xx comes back as an Answer. No URL here carries a secret
(credentials travel in the Authorization header), but errors name the host, never the header.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.errors import PermanentError, RetryableError

USER_AGENT = "amlevents"
MAX_ANSWER_BYTES = 32 * 1024 * 1024  # Azure Pipelines lists up to 10,000 runs in one answer
_TEXT_KEPT = 300


class NotStarted(RetryableError):
    """A transient failure after which nothing can have started (not sent, or refused for now)."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (names lower-cased), the JSON body (None if none or not
    JSON) and the start of a body that is not JSON."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    text: str = ""

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> None:
        return None


class JsonClient:
    """Sends JSON requests to one service; the caller adds its credential to the headers."""

    def __init__(self, service: str, *, timeout_s: float, ca_file: str = "",
                 ca_setting: str = "") -> None:
        self.service = service
        self.timeout_s = timeout_s
        self.ca_setting = ca_setting
        context = ssl.create_default_context(cafile=ca_file or None)
        self._opener = urllib.request.build_opener(_NoRedirects(),
                                                   urllib.request.HTTPSHandler(context=context))

    def call(self, method: str, url: str, *, headers: Mapping[str, str],
             body: Any = None) -> Answer:
        """Send one request; its Answer whatever the status, or NotStarted / RetryableError /
        PermanentError (a server certificate that is not trusted)."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        sent = {"Accept": "application/json", "User-Agent": USER_AGENT, **headers}
        if data is not None:
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=sent, method=method)
        host = urllib.parse.urlsplit(url).netloc
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return _answer(response.status, response.headers, response)
        except urllib.error.HTTPError as exc:
            with exc:
                return _answer(exc.code, exc.headers, exc)
        except urllib.error.URLError as exc:  # raised before the request was (wholly) sent
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                hint = f" (see {self.ca_setting})" if self.ca_setting else ""
                raise PermanentError(f"{self.service}: the certificate of {host} is not "
                                     f"trusted{hint}") from None
            raise NotStarted(f"{self.service}: cannot reach {host} ({_reason(reason)})") from None
        except (TimeoutError, http.client.HTTPException, OSError) as exc:
            # The request went out and no (whole) answer came back: it may have taken effect.
            raise RetryableError(f"{self.service}: no answer from {host} within "
                                 f"{self.timeout_s:g} s ({_reason(exc)})") from None


def _answer(status: int, headers: Any, stream: Any) -> Answer:
    raw = stream.read(MAX_ANSWER_BYTES + 1) if stream is not None else b""
    names = {k.lower(): v for k, v in (headers.items() if headers is not None else ())}
    if len(raw) > MAX_ANSWER_BYTES:
        raise RetryableError(f"an answer over {MAX_ANSWER_BYTES} bytes (HTTP {status})")
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        return Answer(status, names, None, " ".join(text.split())[:_TEXT_KEPT])
    return Answer(status, names, body, "")


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        detail = reason.strerror if isinstance(reason, OSError) and reason.strerror else ""
        return type(reason).__name__ + (f": {detail}" if detail else "")
    return str(reason)[:200]
