"""Teams Workflows, Slack and generic webhooks: one JSON POST each (stdlib urllib).

Teams: a Workflows "When a Teams webhook request is received" URL (Office 365 connectors are
retired) taking a `message` with an Adaptive Card. Slack: an incoming webhook. Generic: any
HTTPS endpoint (e.g. a Logic App HTTP trigger), optionally signed like GitHub webhooks:
`X-Amlevents-Signature-256: sha256=<hex HMAC-SHA256 of the body with the shared secret>`.
Every POST carries the message's stable id as `Idempotency-Key` (an RFC 8941 string, as
draft-ietf-httpapi-idempotency-key-header defines it) and `X-Amlevents-Message-Id`, so a
receiver can drop the repeat a redelivery may cause.
No retries here: a transient failure raises RetryableError and Event Grid redelivers.
Redirects are not followed (urllib would turn the POST into a bodiless GET to wherever the
Location points). Errors never include the URL (it carries the webhook's credential), nor the
URL's parts a server may echo in its answer.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from handlers.errors import PermanentError, RetryableError
from handlers.notify.message import Message, as_slack, as_teams, as_webhook
from handlers.notify.settings import CA_FILE
from handlers.runtime.redaction import redact, secret_forms

SIGNATURE_HEADER = "X-Amlevents-Signature-256"
MESSAGE_ID_HEADER = "X-Amlevents-Message-Id"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_RETRYABLE_STATUS = frozenset({408, 425, 429})
_ECHO_MAX = 300  # characters of a receiver's error body kept in the error


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Every 3xx surfaces as an HTTPError: a webhook that moved is for the operator to fix."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> None:
        return None


def idempotency_key(message: Message) -> str:
    """The Idempotency-Key header value: the message id as an RFC 8941 sf-string."""
    return '"' + message.id.replace("\\", "\\\\").replace('"', '\\"') + '"'

Render = Callable[[Message], Mapping[str, Any]]


def sign(secret: str, body: bytes) -> str:
    """The signature header value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class HttpChannel:
    """POSTs each message as JSON to one URL."""

    def __init__(self, name: str, url: str, render: Render, *, timeout_s: float,
                 ca_file: str = "", secret: str = "") -> None:
        self.name = name
        self._url = url
        self._render = render
        self._timeout_s = timeout_s
        self._secret = secret
        self._opener = urllib.request.build_opener(
            _NoRedirects(),
            urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file or None)))
        self._url_secrets = secret_forms(url)

    def send(self, message: Message) -> str:
        """Post the message; a short receipt, or RetryableError / PermanentError."""
        body = json.dumps(self._render(message), separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "amlevents",
                   MESSAGE_ID_HEADER: message.id, IDEMPOTENCY_KEY_HEADER: idempotency_key(message)}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                return f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            raise self._classify(exc) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise PermanentError(
                    f"{self.name}: server certificate not trusted (see {CA_FILE})") from None
            raise RetryableError(f"{self.name}: cannot connect ({_reason(exc.reason)})") from None
        except http.client.InvalidURL:
            # Its message repeats the URL; settings validation refuses such URLs first.
            raise PermanentError(f"{self.name}: the webhook URL is not valid") from None
        except http.client.HTTPException as exc:  # e.g. a malformed or truncated answer
            raise RetryableError(f"{self.name}: {type(exc).__name__}") from None
        except (TimeoutError, OSError) as exc:
            raise RetryableError(f"{self.name}: {_reason(exc)}") from None

    def _classify(self, exc: urllib.error.HTTPError) -> RetryableError | PermanentError:
        error = _classify(self.name, exc)
        # A server may echo the URL it was called with: never let its token into the error.
        cleaned = redact(str(error), self._url_secrets)
        if cleaned == str(error):
            return error
        if isinstance(error, RetryableError):
            return RetryableError(cleaned, retry_after_s=error.retry_after_s)
        return PermanentError(cleaned)


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        return type(reason).__name__ + (f": {reason.strerror}" if isinstance(reason, OSError)
                                        and reason.strerror else "")
    return str(reason)[:200]


def _classify(name: str, exc: urllib.error.HTTPError) -> RetryableError | PermanentError:
    status = exc.code
    try:
        text = exc.read(_ECHO_MAX).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    detail = f"{name}: HTTP {status}" + (f" {text!r}" if text else "")
    if status >= 500 or status in _RETRYABLE_STATUS:
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        try:
            seconds = float(retry_after) if retry_after else None
        except ValueError:
            seconds = None
        return RetryableError(detail, retry_after_s=seconds)
    return PermanentError(detail)


def teams(url: str, *, timeout_s: float, ca_file: str = "") -> HttpChannel:
    """A Teams Workflows channel (Adaptive Card)."""
    return HttpChannel("teams", url, as_teams, timeout_s=timeout_s, ca_file=ca_file)


def slack(url: str, *, timeout_s: float, ca_file: str = "") -> HttpChannel:
    """A Slack incoming-webhook channel (blocks)."""
    return HttpChannel("slack", url, as_slack, timeout_s=timeout_s, ca_file=ca_file)


def webhook(url: str, *, secret: str, timeout_s: float, ca_file: str = "") -> HttpChannel:
    """A generic JSON webhook, signed when a secret is set."""
    return HttpChannel("webhook", url, as_webhook, timeout_s=timeout_s, ca_file=ca_file,
                       secret=secret)
