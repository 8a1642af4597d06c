"""How long a service asks us to wait, from its Retry-After headers (shared by the adapters)."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds from Retry-After (seconds or HTTP date) or retry-after-ms / x-ms-retry-after-ms."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0),
                        ("retry-after", 1.0)):
        raw = lowered.get(name)
        if not raw:
            continue
        try:
            return max(0.0, float(raw) / scale)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - datetime.now(UTC).timestamp())
    return None


def retry_after_of(exc: BaseException) -> float | None:
    """The wait an azure-core HttpResponseError's response asks for, if it has one."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    return retry_after_s(headers) if headers else None
