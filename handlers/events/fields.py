"""Reading untrusted event values: every problem is collected, then one InvalidEvent names them all.

The same rules apply whether a value comes from a dict (the CLI, raw JSON) or from an attribute of
an azure.functions object (the worker), so both paths refuse and accept exactly the same events.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from handlers.errors import InvalidEvent
from handlers.events.types import EventEnvelope, canonical_type

Problems = list[tuple[str, str]]


def text(value: Any, name: str, problems: Problems, *, required: bool) -> str:
    """A string (ints are accepted: `ModelVersion` is documented both ways); blank counts as absent."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems.append((name, "is required"))
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.append((name, f"must be a string, got {type(value).__name__}"))
        return ""
    return str(value)


def number(value: Any, name: str, problems: Problems) -> float:
    """A finite number, given as a JSON number or a numeric string."""
    if value is None:
        problems.append((name, "is required"))
        return math.nan
    try:
        result = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        result = math.nan
    if not math.isfinite(result):
        problems.append((name, f"must be a finite number, got {value!r}"))
    return result


def string_map(value: Any, name: str, problems: Problems) -> dict[str, str]:
    """Tags and properties: an object of scalar values, each made a string (absent means empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append((name, f"must be an object, got {type(value).__name__}"))
        return {}
    result: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, (Mapping, list)):
            problems.append((f"{name}.{key}", "must be a string value"))
        elif isinstance(item, bool):
            result[str(key)] = "true" if item else "false"
        else:
            result[str(key)] = "" if item is None else str(item)
    return result


def data_object(value: Any, problems: Problems) -> Mapping[str, Any]:
    """The event's `data`: an object, or a JSON string holding one."""
    if isinstance(value, (str, bytes)) and value:
        try:
            value = json.loads(value)
        except ValueError:
            problems.append(("data", "must be a JSON object"))
            return {}
    if value is None:
        problems.append(("data", "is required"))
        return {}
    if not isinstance(value, Mapping):
        problems.append(("data", f"must be an object, got {type(value).__name__}"))
        return {}
    return value


def load_json(body: str | bytes | bytearray) -> Any:
    """A request body or CLI argument as JSON; anything else is an InvalidEvent naming `body`."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidEvent("body", f"is not valid JSON: {exc}") from exc


class Fields:
    """Case-insensitive reader over one mapping (`ModelName` and `modelName` are the same key).

    Callers ask for the documented spelling, which events use: it is looked up as it is first,
    and the lower-cased copy of the mapping is built only for an event that spells a key
    otherwise (one dict look-up per field in the common case).
    """

    def __init__(self, source: Mapping[str, Any], prefix: str, problems: Problems) -> None:
        self._source = source
        self._by_lower: dict[str, Any] | None = None
        self._prefix = prefix
        self.problems = problems

    def get(self, key: str) -> Any:
        """The value under `key` in any casing (the spelling given first), or None."""
        value = self._source.get(key)
        if value is not None:
            return value
        if self._by_lower is None:
            self._by_lower = {str(k).lower(): v for k, v in self._source.items()}
        return self._by_lower.get(key.lower())

    def text(self, key: str, *, required: bool) -> str:
        """See `text`; problems are named `prefix + key`."""
        value = self.get(key)
        if type(value) is str and value and not value.isspace():  # the common case, at once
            return value
        return text(value, self._prefix + key, self.problems, required=required)

    def number(self, key: str) -> float:
        """See `number`."""
        return number(self.get(key), self._prefix + key, self.problems)

    def string_map(self, key: str) -> dict[str, str]:
        """See `string_map`."""
        return string_map(self.get(key), self._prefix + key, self.problems)


def envelope(problems: Problems, *, id: str, event_type: str, topic: str, subject: str,
             event_time: str, data_version: str, schema: str, data: Mapping[str, Any],
             raw: Mapping[str, Any]) -> EventEnvelope:
    """The envelope of values read so far, or one InvalidEvent naming every problem found."""
    if problems:
        raise InvalidEvent.from_problems(problems)
    return EventEnvelope(id=id, event_type=canonical_type(event_type), subject=subject,
                         topic=topic, event_time=event_time, data_version=data_version,
                         schema=schema, data=data, raw=raw)
