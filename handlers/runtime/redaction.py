"""Keep secrets (keys, passwords, connection strings, webhook URLs) out of logs and the ledger."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

# A setting whose name matches is secret; so is any value that looks like a connection string.
_SECRET_NAME = re.compile(
    r"(KEY|SECRET|PASSWORD|PASSWD|TOKEN|CONNECTION|CONN_STR|WEBHOOK|_URL$|SAS|SIGNATURE)",
    re.IGNORECASE)
_SECRET_EXACT = frozenset({"AzureWebJobsStorage", "APPLICATIONINSIGHTS_CONNECTION_STRING"})
_CONNECTION_STRING_PART = re.compile(
    r"(AccountKey|SharedAccessKey|SharedAccessSignature|accesskey|Password)=[^;\s\"']+",
    re.IGNORECASE)
_CONNECTION_STRING_HINTS = ("accountkey=", "sharedaccess", "accesskey=", "password=")
MASK = "***"
_MIN_SECRET_LENGTH = 6  # shorter values ("1", "true") would mask ordinary text


def is_secret_setting(name: str) -> bool:
    """True for settings whose values must never be shown."""
    return name in _SECRET_EXACT or bool(_SECRET_NAME.search(name))


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of the secret settings in `env`, longest first."""
    values = {str(value) for name, value in env.items()
              if is_secret_setting(name) and value and len(str(value)) >= _MIN_SECRET_LENGTH}
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask every known secret value and every connection-string credential in `text`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    lowered = text.lower()
    if not any(hint in lowered for hint in _CONNECTION_STRING_HINTS):
        return text  # the common case, without a regex pass over long details
    return _CONNECTION_STRING_PART.sub(lambda m: f"{m.group(1)}={MASK}", text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in every record's message."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
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
