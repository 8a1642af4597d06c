"""Shared access signatures for the topic endpoint (`aeg-sas-token`), checked as Event Grid does.

https://learn.microsoft.com/azure/event-grid/authenticate-with-access-keys-shared-access-signatures:
the token is `r={resource}&e={expiration}&s={signature}`, each part URL-encoded, the signature an
HMAC-SHA256 (keyed with the base64-decoded topic key) of the text `r=...&e=...` as sent. The
resource is the topic's URL (`https://<topic>.<region>.eventgrid.azure.net/api/events`); it is
compared without its query (azure-eventgrid's `generate_sas` signs `...?apiVersion=2018-01-01`)
and case-insensitively, escapes in either case (C#'s HttpUtility.UrlEncode writes `%3a`).

The expiry is accepted in each form a documented client writes:
- the docs' C# sample: `DateTime.ToString` in en-US, `6/15/2017 6:20:15 PM` (UTC);
- the docs' Python sample: `datetime.isoformat()` of a naive UTC time;
- azure-eventgrid's `generate_sas`: `str(datetime)`, `2017-06-15 18:20:15.123456+00:00`;
- any ISO 8601 / RFC 3339 time (seven fraction digits, `Z`). A time without an offset is UTC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import unquote, unquote_plus, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# .NET's en-US general date/time pattern ("G"): M/d/yyyy h:mm:ss tt (strptime takes unpadded).
_DOTNET_EN_US = "%m/%d/%Y %I:%M:%S %p"


def sas_problem(token: str, keys: Sequence[str], now: datetime, topic_url: str) -> str:
    """Why the token does not let its bearer publish to `topic_url` now ("" when it does)."""
    parts = dict(p.split("=", 1) for p in token.strip().split("&") if "=" in p)
    resource, expiry, signature = parts.get("r"), parts.get("e"), parts.get("s")
    if not (resource and expiry and signature):
        return "the aeg-sas-token is malformed; expected r=...&e=...&s=..."
    unsigned = f"r={resource}&e={expiry}".encode()
    sent = unquote(signature).encode()  # bytes: compare_digest refuses non-ASCII str
    if not any(hmac.compare_digest(_sign(key, unsigned).encode(), sent) for key in keys):
        return "the aeg-sas-token signature does not match the topic's keys"
    if not same_resource(unquote_plus(resource), topic_url):
        return (f"the aeg-sas-token's resource {unquote_plus(resource)!r} is not this topic "
                f"({topic_url!r})")
    expires = parse_expiry(unquote_plus(expiry))
    if expires is None:
        return (f"the aeg-sas-token expiry {unquote_plus(expiry)!r} is not a date-time "
                "(ISO 8601, or M/d/yyyy h:mm:ss AM|PM)")
    return "" if expires > now else f"the aeg-sas-token expired at {unquote_plus(expiry)}"


def same_resource(resource: str, topic_url: str) -> bool:
    """Scheme, host, port and path equal, ignoring case, the query and a trailing slash."""
    return _normalized(resource) == _normalized(topic_url)


def _normalized(url: str) -> tuple[str, str, int | None, str] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # a malformed port
        return None
    return (parts.scheme.lower(), (parts.hostname or "").lower(), port,
            parts.path.rstrip("/").lower())


def parse_expiry(text: str) -> datetime | None:
    """The expiry in any documented client's form, as an aware UTC datetime (None if none fits)."""
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.strptime(text, _DOTNET_EN_US)
        except ValueError:
            return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _sign(key: str, message: bytes) -> str:
    try:
        secret = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return ""  # keys that are not base64 cannot sign SAS tokens
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()
