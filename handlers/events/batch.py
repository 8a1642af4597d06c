"""A delivery body holds one event or an array of them; each is handled on its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.errors import InvalidEvent
from handlers.events.fields import load_json


def split_batch(payload: Any) -> list[Any]:
    """The events of a body (JSON text/bytes, an object, or a list), in order."""
    if isinstance(payload, (bytes, bytearray, str)):
        payload = load_json(payload)
    if isinstance(payload, list):
        return payload
    if isinstance(payload, Mapping):
        return [payload]
    raise InvalidEvent("body", f"must be an event object or an array of events, got "
                               f"{type(payload).__name__}")
