"""Retry-After in its three spellings (seconds, HTTP date, milliseconds), read once for every adapter."""

from __future__ import annotations

import email.utils
import time
from types import SimpleNamespace

import pytest

from handlers.adapters.retry_after import retry_after_of, retry_after_s


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "12"}, 12.0),
    ({"retry-after-ms": "1500"}, 1.5),
    ({"X-MS-Retry-After-Ms": "250"}, 0.25),
    ({"Retry-After": "-3"}, 0.0),  # never a negative wait
    # the milliseconds headers are more precise: they win over Retry-After, in this order
    ({"Retry-After": "12", "retry-after-ms": "1500"}, 1.5),
    ({"x-ms-retry-after-ms": "250", "retry-after-ms": "1500"}, 1.5),
    # a header that is neither a number nor a date does not hide the next one
    ({"retry-after-ms": "soon", "Retry-After": "7"}, 7.0),
    ({"Retry-After": ""}, None),
    ({"Retry-After": "soon"}, None),
    ({}, None),
])
def test_the_forms_and_their_order(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(headers) == expected


def test_an_http_date_is_the_time_until_then() -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    wait = retry_after_s({"Retry-After": later})
    assert wait is not None and 110 < wait <= 120


def test_an_error_without_a_response_or_headers_asks_for_no_wait() -> None:
    assert retry_after_of(ValueError("no response")) is None
    assert retry_after_of(SimpleNamespace(response=SimpleNamespace(headers={}))) is None  # type: ignore[arg-type]
    error = SimpleNamespace(response=SimpleNamespace(headers={"Retry-After": "3"}))
    assert retry_after_of(error) == 3.0  # type: ignore[arg-type]
