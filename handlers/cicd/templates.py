"""The templates of CI/CD rules: `{placeholder}`s filled from the event, checked when parsed (pure).

Placeholders: `{id}`, `{type}`, `{subject}`, `{topic}` (the event's envelope), `{requestId}` (what
amlevents passes the run, so it can name itself after it), `{data.KEY}` (the event's data; keys
ignore case, nested with dots, a list item by its index: `{data.ModelIds.0}`), `{tags.NAME}` (the
model's, run's or service's tags, the ones rules match on; names ignore case). `{{` and `}}` are
literal braces. Any other placeholder is refused when the settings are read, naming it.

Every value becomes a string (GitHub's workflow inputs are strings): text as it is, true/false,
numbers as JSON writes them, objects and lists as compact JSON, a missing value as "" (the plan
names the placeholders that came out empty).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROOTS = ("id", "type", "subject", "topic", "requestId", "data", "tags")
_SIMPLE = {name.lower(): name for name in ROOTS if name not in ("data", "tags")}
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
KNOWN = "{id}, {type}, {subject}, {topic}, {requestId}, {data.KEY}, {tags.NAME}"


class TemplateError(ValueError):
    """A template that cannot be used; the message says why (and names the placeholder)."""


@dataclass(frozen=True)
class Placeholder:
    """One `{...}`: its root (one of ROOTS) and, for data and tags, the path below it."""

    root: str
    path: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """As a person would write it (for messages and the plan)."""
        return ".".join((self.root, *self.path))


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and placeholders, in order."""

    source: str
    parts: tuple[str | Placeholder, ...] = field(repr=False)

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        """Its placeholders, in order."""
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    @property
    def literal(self) -> str | None:
        """The text when the template has no placeholder, else None."""
        return None if self.placeholders else "".join(str(p) for p in self.parts)


def parse(source: str) -> Template:
    """Parse a template, or raise TemplateError naming what is wrong."""
    parts: list[str | Placeholder] = []
    text: list[str] = []
    position = 0
    for match in _TOKEN.finditer(source):
        text.append(source[position:match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            text.append(token[0])
        elif token in ("{", "}"):
            raise TemplateError(f"a lone {token!r} in {source!r}: write {token * 2} for a brace")
        else:
            if text:
                parts.append("".join(text))
                text = []
            parts.append(_placeholder(match.group(1)))
    text.append(source[position:])
    if "".join(text):
        parts.append("".join(text))
    return Template(source, tuple(parts))


def _placeholder(inner: str) -> Placeholder:
    root, dot, rest = inner.partition(".")
    lowered = root.lower()
    if lowered in _SIMPLE and not dot:
        return Placeholder(_SIMPLE[lowered])
    if lowered in ("data", "tags") and rest and all(rest.split(".")):
        path = (rest,) if lowered == "tags" else tuple(rest.split("."))  # tag names may hold dots
        return Placeholder(lowered, path)
    raise TemplateError(f"unknown placeholder {{{inner}}} (known: {KNOWN}; write {{{{ and }}}} "
                        "for literal braces)")


@dataclass(frozen=True)
class Values:
    """What placeholders are filled from: one event (and the request id of one rule)."""

    fields: Mapping[str, str]  # id, type, subject, topic, requestId
    data: Mapping[str, Any]
    tags: Mapping[str, str]


def as_text(value: Any) -> str:
    """A value as a template writes it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def lookup(placeholder: Placeholder, values: Values) -> Any:
    """The value a placeholder stands for, or None when the event has none."""
    if placeholder.root == "tags":
        wanted = placeholder.path[0].lower()
        return next((v for k, v in values.tags.items() if k.lower() == wanted), None)
    if placeholder.root != "data":
        return values.fields.get(placeholder.root)
    current: Any = values.data
    for key in placeholder.path:
        if isinstance(current, Mapping):
            wanted = key.lower()
            current = next((v for k, v in current.items() if str(k).lower() == wanted), None)
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return None
    return current


def render(template: Template, values: Values) -> tuple[str, tuple[str, ...]]:
    """The template filled in, and the placeholders that came out empty."""
    out: list[str] = []
    empty: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        text = as_text(lookup(part, values))
        if not text:
            empty.append(part.text)
        out.append(text)
    return "".join(out), tuple(empty)
