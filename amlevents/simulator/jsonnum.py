"""JSON with exact numbers: what the simulator reads and writes where Event Grid is exact.

Event Grid compares advanced-filter numbers as decimals (.NET `decimal`), and delivers an event
with the numbers it was published with. A Python float cannot do either: `1.1000000000000001`
parses to the same float as `1.1`. So published bodies and the subscriptions file are read with
`decimal.Decimal` for every non-integer number, and written back digit for digit.

Strict where the service is: `NaN`, `Infinity` and `-Infinity` (which the stdlib accepts) are not
JSON and are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def loads(text: str | bytes) -> Any:
    """Parse JSON; non-integer numbers become Decimal. ValueError for invalid JSON."""
    return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Serialize like `json.dumps(value, indent=indent)`, Decimals written exactly."""
    parts: list[str] = []
    _encode(value, parts, indent, 0)
    return "".join(parts)


def _encode(value: Any, out: list[str], indent: int | None, level: int) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        out.append(str(value))  # Decimal's text (e.g. 1.10, 1E+2) is valid JSON number text
    elif isinstance(value, Mapping):
        _encode_items(list(value.items()), "{}", out, indent, level, keyed=True)
    elif isinstance(value, list | tuple):
        _encode_items(list(enumerate(value)), "[]", out, indent, level, keyed=False)
    else:
        out.append(json.dumps(value))


def _encode_items(items: list[tuple[Any, Any]], brackets: str, out: list[str],
                  indent: int | None, level: int, *, keyed: bool) -> None:
    if not items:
        out.append(brackets)
        return
    # json.dumps's layout: ", " between items on one line; with indent, one item per line.
    inner = "" if indent is None else "\n" + " " * (indent * (level + 1))
    outer = "" if indent is None else "\n" + " " * (indent * level)
    separator = ", " if indent is None else ","
    out.append(brackets[0])
    for index, (key, item) in enumerate(items):
        out.append((separator if index else "") + inner)
        if keyed:
            out.append(json.dumps(str(key)) + ": ")
        _encode(item, out, indent, level + 1)
    out.append(outer + brackets[1])
