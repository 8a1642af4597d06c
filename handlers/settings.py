"""App settings: a reader that validates them all at once, and a once-per-process cache.

Every knob is an app setting (an environment variable in Azure, `Values` in local.settings.json).
Each concern's settings class owns its setting names (handlers/*/settings.py); runtime/settings.py
validates them all for the health check.
Settings are read lazily from a mapping (tests pass a dict), never at import: an import error
would stop every function of the app.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from handlers.errors import SettingError

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsReader:
    """Reads typed values from a mapping, collecting every problem before raising once."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[tuple[str, str]] = []

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or str(value).strip() == "":
            return None
        return str(value).strip()

    def problem(self, name: str, message: str) -> None:
        """Record a problem found by a caller's own check."""
        self.problems.append((name, message))

    def text(self, name: str, default: str = "") -> str:
        """A string setting."""
        raw = self._raw(name)
        return default if raw is None else raw

    def required_text(self, name: str) -> str:
        """A string setting that must be set."""
        raw = self._raw(name)
        if raw is None:
            self.problem(name, "is required but not set")
            return ""
        return raw

    def flag(self, name: str, default: bool) -> bool:
        """A boolean setting: true/false, yes/no, 1/0, on/off."""
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        self.problem(name, f"must be true or false, got {raw!r}")
        return default

    def number(self, name: str, default: float, *, minimum: float | None = None,
               maximum: float | None = None) -> float:
        """A finite number within optional bounds."""
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problem(name, f"must be a number, got {raw!r}")
            return default
        if not math.isfinite(value):
            self.problem(name, f"must be a finite number, got {raw!r}")
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.problem(name, f"must be between {minimum} and {maximum}, got {raw}")
            return default
        return value

    def integer(self, name: str, default: int, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        """A whole number within optional bounds."""
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problem(name, f"must be a whole number, got {raw!r}")
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.problem(name, f"must be between {minimum} and {maximum}, got {raw}")
            return default
        return value

    def items(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A list setting: values separated by commas, semicolons or newlines."""
        raw = self._raw(name)
        if raw is None:
            return default
        return tuple(part.strip() for part in re.split(r"[,;\n]", raw) if part.strip())

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        """One of a fixed set of values (case-insensitive)."""
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() not in allowed:
            self.problem(name, f"must be one of {', '.join(allowed)}, got {raw!r}")
            return default
        return raw.lower()

    def pattern(self, name: str, default: str) -> re.Pattern[str]:
        """A regular expression, matched against the whole value by callers (`fullmatch`)."""
        raw = self._raw(name) or default
        try:
            return re.compile(raw)
        except re.error as exc:
            self.problem(name, f"is not a valid regular expression: {exc}")
            return re.compile(re.escape(default))

    def json_objects(self, name: str, what: str = "objects") -> list[dict[str, Any]]:
        """A JSON array of objects (rules, say); [] when unset or invalid (the problem recorded)."""
        raw = self._raw(name)
        if raw is None:
            return []
        try:
            items = json.loads(raw)
        except ValueError as exc:
            self.problem(name, f"is not valid JSON: {exc}")
            return []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            self.problem(name, f"must be a JSON array of {what}")
            return []
        return items

    def raise_if_invalid(self) -> None:
        """Raise one SettingError naming every setting at fault."""
        if self.problems:
            setting, message = self.problems[0]
            raise SettingError(setting, message, problems=tuple(self.problems))


class SettingsCache:
    """Each concern's settings, built from one mapping once per process (not once per event).

    A SettingError is not cached: every use meets it until the setting is fixed.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._built: dict[Any, Any] = {}

    def of(self, build: Callable[[Mapping[str, str]], T]) -> T:
        """The settings `build(env)` returns, built on first use."""
        if build not in self._built:  # a race builds twice; both results are equal
            self._built[build] = build(self.env)
        value: T = self._built[build]
        return value


def normalize_topic(topic: str) -> str:
    """Topic resource ids compare case-insensitively (ARM ids are case-insensitive)."""
    return topic.strip().rstrip("/").lower()
