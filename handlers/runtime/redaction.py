"""Keep secrets (keys, passwords, connection strings, webhook URLs) out of logs and the ledger.

Two nets: the values of secret settings (and their URL parts, percent-encoded too), and secrets
recognized by their SHAPE wherever they come from (a server echoing the URL it was called with,
an exception repeating a URL): credential query parameters, user-info in URLs, the secret path
segments of known webhook URLs, bearer tokens and JWTs, connection-string keys.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
import weakref
from collections.abc import Iterable, Mapping

# A setting whose name matches is secret; so is any value that looks like a connection string.
_SECRET_NAME = re.compile(
    r"(KEY|SECRET|PASSWORD|PASSWD|TOKEN|CONNECTION|CONN_STR|WEBHOOK|_URL$|SAS|SIGNATURE)",
    re.IGNORECASE)
_SECRET_EXACT = frozenset({"AzureWebJobsStorage", "APPLICATIONINSIGHTS_CONNECTION_STRING"})
# Service base URLs (no credential in them): shown, so run links in the ledger stay readable.
_PUBLIC_URLS = frozenset({"AMLEVENTS_GITHUB_API_URL", "AMLEVENTS_AZURE_DEVOPS_URL"})
_CONNECTION_STRING_PART = re.compile(
    r"(AccountKey|SharedAccessKey|SharedAccessSignature|accesskey|Password)=[^;\s\"']+",
    re.IGNORECASE)
_CONNECTION_STRING_HINTS = ("accountkey=", "sharedaccess", "accesskey=", "password=")
MASK = "***"
_MIN_SECRET_LENGTH = 6  # shorter values ("1", "true") would mask ordinary text
_MIN_PATH_LENGTH = 8  # a webhook URL's path is masked too (a receiver may echo it), unless "/x"

# Query parameters whose value is a credential, in a URL or echoed without it, maybe
# percent-encoded: `sig` (Logic Apps / Teams Workflows / storage SAS signature; `sp`, `sv`, `se`
# are its permissions, version and expiry, not secret), `code` (Azure Functions keys), `key` and
# `token` (Google Chat, many webhooks), API keys, OAuth tokens, passwords. The separators are
# spelled as literals, not [?&;]: the regex engine then skips to them instead of trying each place.
_QUERY_SECRET = re.compile(
    r"((?:\?|&|;|%3F|%26)(?:sig|signature|code|key|apikey|api-key|api_key|x-api-key|"
    r"subscription-key|x-functions-key|token|access_token|accesstoken|auth|auth_token|"
    r"id_token|refresh_token|private_token|sas|sastoken|secret|client_secret|password|"
    r"passwd|pwd)(?:=|%3D))[^&\s\"'<>#;]+", re.IGNORECASE)
# A scheme starts at a word boundary and is short: no quadratic scan of a long word.
_USER_INFO = re.compile(r"\b([a-z][a-z0-9+.-]{0,30}://)[^\s/@'\"<>]+@", re.IGNORECASE)
# http.client's InvalidURL for "https://user:pass@host" shows "pass@host" as the port.
_BAD_PORT = re.compile(r"(nonnumeric port: ')[^']*'")
# Webhook URLs whose path is the credential (with or without the host, as servers echo paths).
_SECRET_PATHS = re.compile(
    r"((?:hooks\.slack(?:-gov)?\.com/[a-z]+/"  # Slack incoming webhooks, workflow triggers
    r"|/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/"  # a Slack webhook path, echoed without the host
    r"|/webhookb2/|office\.com/webhook/|/IncomingWebhook/"  # Microsoft 365 connectors
    r"|/api/webhooks/\d+/))"  # Discord
    r"[^\s\"'<>?#]+", re.IGNORECASE)
# SAS parameters that are not the secret (permissions, version, expiry...) and api-version:
# masking their values ("2016-06-01") would mask ordinary dates and versions everywhere.
_PUBLIC_QUERY_KEYS = frozenset({"api-version", "sp", "sv", "se", "st", "sr", "spr", "srt", "ss",
                                "sip"})
# The literal text (lower-cased) _SECRET_PATHS needs to match; checked on ASCII text only, where
# str.lower and re.IGNORECASE agree. Every literal any shape needs, for `may_need_masking`.
_PATH_WORDS = ("hooks.slack", "/services/", "webhook")
_SHAPE_WORDS = (*_PATH_WORDS, "bearer")  # the connection-string hints all need "=" too
_BEARER = re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def is_secret_setting(name: str) -> bool:
    """True for settings whose values must never be shown."""
    if name in _PUBLIC_URLS:
        return False
    return name in _SECRET_EXACT or bool(_SECRET_NAME.search(name))


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of the secret settings in `env` (and their URL parts), longest first."""
    values: set[str] = set()
    for name, value in env.items():
        if is_secret_setting(name) and value and len(str(value)) >= _MIN_SECRET_LENGTH:
            values.update(_forms(str(value).strip()))
    return _longest_first(values)


def secret_forms(value: str) -> tuple[str, ...]:
    """One secret (e.g. a webhook URL) in every form `redact` should mask, longest first."""
    return _longest_first(_forms(value))


def _longest_first(values: set[str]) -> tuple[str, ...]:
    return tuple(sorted((v for v in values if len(v) >= _MIN_SECRET_LENGTH), key=len,
                        reverse=True))


def _forms(value: str) -> set[str]:
    """A secret as it may show up: whole, percent-encoded, and for a URL its path and query
    values (a receiver echoes the path it was called with; http.client the host and port)."""
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote(value, safe="/:")}
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return forms
    if parts.scheme in ("http", "https") and parts.netloc:
        if len(parts.path) >= _MIN_PATH_LENGTH:
            forms.update({parts.path, urllib.parse.unquote(parts.path),
                          urllib.parse.quote(parts.path, safe="")})
        forms.update(v for k, v in urllib.parse.parse_qsl(parts.query)
                     if k.lower() not in _PUBLIC_QUERY_KEYS)
        forms.update(v for v in (parts.password, parts.username) if v)
    return forms


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask every known secret value, and every secret recognized by its shape, in `text`.

    Each shape's regex runs only when the literal text it needs is there (the common case, a
    line with no secret in it, is a few substring checks: no regex pass over long details).
    """
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "=" in text or "%3" in text:
        text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    if "@" in text and "://" in text:
        text = _USER_INFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    if "nonnumeric port" in text:
        text = _BAD_PORT.sub(lambda m: f"{m.group(1)}{MASK}'", text)
    ascii_only = text.isascii()
    lowered = text.lower()
    if "/" in text and (not ascii_only or any(word in lowered for word in _PATH_WORDS)):
        text = _SECRET_PATHS.sub(lambda m: m.group(1) + MASK, text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if "bearer" in lowered or not ascii_only:
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    if ascii_only and not any(hint in lowered for hint in _CONNECTION_STRING_HINTS):
        return text  # the common case, without a regex pass over long details
    return _CONNECTION_STRING_PART.sub(lambda m: f"{m.group(1)}={MASK}", text)


def may_need_masking(text: str, secrets: Iterable[str]) -> bool:
    """False only when `redact` would leave `text`, and every string quoted in it, as it is.

    For a JSON document (the stored event): a string in it that holds a secret makes the document
    hold it too, so one check of the document spares masking its strings one by one. `secrets`
    must include the JSON-escaped forms (`json_forms`). Substring checks only: a secret's shape
    needs text (`=`, `@` and `://`, `/services/`...) that escaping never changes; non-ASCII text
    answers True (re.IGNORECASE matches `ſ` as `s`, str.lower does not).
    """
    if not text.isascii() or any(secret in text for secret in secrets):
        return True
    # One-character checks first (memchr): each guards a longer literal its shape needs.
    if "=" in text or ("%" in text and "%3" in text) or ("J" in text and "eyJ" in text) or (
            "'" in text and "nonnumeric port" in text) or ("@" in text and "://" in text):
        return True
    lowered = text.lower()
    return any(word in lowered for word in _SHAPE_WORDS)


def json_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """The secrets and, where JSON escapes them differently (quotes, backslashes, controls),
    their escaped forms, as a JSON document holds them (see `may_need_masking`)."""
    forms = dict.fromkeys(secrets)
    for secret in list(forms):
        forms.setdefault(json.dumps(secret, ensure_ascii=False)[1:-1])
    return tuple(forms)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record's message."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)
        self._last: weakref.ref[logging.LogRecord] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        # The same filter sits on every handler, which log one record after the other: it is
        # masked once, not once per handler (a weak reference: no attribute added to the record).
        last = self._last
        if last is not None and last() is record:
            return True
        self._last = weakref.ref(record)
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            # Tracebacks carry exception messages (URLs, connection strings): mask them too.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = redact(text, self.secrets), None
        return True


def install_redaction(secrets: Iterable[str]) -> None:
    """Put one RedactingFilter on every root handler (filters on handlers see every logger)."""
    fresh = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(fresh)
