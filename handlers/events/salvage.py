"""What can still be read from an event too malformed to parse, for its ledger row only.

A refused event must be traceable (its id, type, topic and subject, as far as present) and must
get the same ledger key every time the same delivery arrives, so a redelivery is recognised as a
duplicate. The key comes from the event's content, never from an object's identity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers.events.binding import is_cloud_event_object, is_event_grid_event_object, wire_form

MAX_FIELD_CHARS = 512  # a row keeps what identifies the event, not whatever a sender put there
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass(frozen=True)
class Salvaged:
    """The stable content of a malformed event (its key) and the fields that could be read."""

    key_material: bytes
    event_id: str = ""
    event_type: str = ""
    topic: str = ""
    subject: str = ""


def salvage(event: Any) -> Salvaged:
    """Read what can be read from a dict, JSON text/bytes or a func object; never raises."""
    if isinstance(event, (bytes, bytearray, str)):
        material = bytes(event) if not isinstance(event, str) else \
            event.encode("utf-8", "surrogatepass")
        try:
            loaded = json.loads(event)
        except (ValueError, UnicodeDecodeError, RecursionError):
            loaded = None
        return _fields(material, loaded if isinstance(loaded, Mapping) else {})
    if isinstance(event, Mapping):
        return _fields(_canonical(event), event)
    if is_cloud_event_object(event) or is_event_grid_event_object(event):
        wire = wire_form(event)
        return _fields(_canonical(wire), wire)
    # Unknown object: its type and its repr without memory addresses is all there is.
    return Salvaged(f"{type(event).__module__}.{type(event).__qualname__}:{_stable_repr(event)}"
                    .encode("utf-8", "surrogatepass"))


def _fields(material: bytes, source: Mapping[str, Any]) -> Salvaged:
    lowered = {str(key).lower(): value for key, value in source.items()}
    return Salvaged(material, _first(lowered, "id"), _first(lowered, "eventtype", "type"),
                    _first(lowered, "topic", "source"), _first(lowered, "subject"))


def _first(lowered: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = lowered.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)[:MAX_FIELD_CHARS]
    return ""


def _canonical(content: Mapping[str, Any]) -> bytes:
    """The same content gives the same bytes: sorted keys, fixed separators."""
    try:
        return json.dumps(content, sort_keys=True, default=_stable_str).encode(
            "utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError):  # mixed key types, or nested too deep
        return _walk(content).encode("utf-8", "surrogatepass")


def _walk(content: Any) -> str:
    """Canonical text of content of any depth, built without recursion (JSON parsers allow more
    depth than repr and json.dumps can take back)."""
    parts: list[str] = []
    stack: list[Any] = [content]
    while stack:
        item = stack.pop()
        if isinstance(item, _Text):
            parts.append(item)
        elif isinstance(item, Mapping):
            parts.append("{")
            stack.append(_Text("}"))
            for key in sorted(item, key=_stable_repr, reverse=True):
                stack += [item[key], _Text(_stable_repr(key) + ":")]
        elif isinstance(item, (list, tuple)):
            parts.append("[")
            stack += [_Text("]"), *reversed(item)]
        else:
            parts.append(_stable_repr(item) + ",")
    return "".join(parts)


class _Text(str):
    """Punctuation pushed by _walk (told apart from string values by its type)."""


def _stable_repr(value: Any) -> str:
    try:
        return _ADDRESS.sub("", repr(value))
    except Exception:  # noqa: BLE001 - a key must come out of anything; the type is left
        return f"<{type(value).__qualname__}>"


def _stable_str(value: Any) -> str:
    try:
        return _ADDRESS.sub("", str(value))
    except Exception:  # noqa: BLE001 - as in _stable_repr
        return f"<{type(value).__qualname__}>"
