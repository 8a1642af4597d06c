"""App settings: names as constants, a reader that validates them all at once, the core settings.

Every knob is an app setting (an environment variable in Azure, `Values` in local.settings.json).
Settings are read lazily from a mapping (tests pass a dict), never at import: an import error
would stop every function of the app.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from handlers.errors import SettingError

ALLOWED_TOPICS = "AMLEVENTS_ALLOWED_TOPICS"
DRY_RUN = "AMLEVENTS_DRY_RUN"
LEDGER_BACKEND = "AMLEVENTS_LEDGER"
LEDGER_PATH = "AMLEVENTS_LEDGER_PATH"
CLAIM_TIMEOUT_S = "AMLEVENTS_CLAIM_TIMEOUT_S"
DRIFT_THRESHOLD = "AMLEVENTS_DRIFT_THRESHOLD"
NOTIFY_RUN_STATUSES = "AMLEVENTS_NOTIFY_RUN_STATUSES"
NOTIFY_RUN_COMPLETED = "AMLEVENTS_NOTIFY_RUN_COMPLETED"
NOTIFY_MODEL_DEPLOYED = "AMLEVENTS_NOTIFY_MODEL_DEPLOYED"

DEFAULT_LEDGER_PATH = ".amlevents/ledger.sqlite3"

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

    def raise_if_invalid(self) -> None:
        """Raise one SettingError naming every setting at fault."""
        if self.problems:
            setting, message = self.problems[0]
            raise SettingError(setting, message, problems=tuple(self.problems))


def normalize_topic(topic: str) -> str:
    """Topic resource ids compare case-insensitively (ARM ids are case-insensitive)."""
    return topic.strip().rstrip("/").lower()


@dataclass(frozen=True)
class CoreSettings:
    """Settings every function needs: the topic allow-list, dry-run, the ledger and thresholds."""

    allowed_topics: frozenset[str]
    dry_run: bool
    ledger_backend: str
    ledger_path: str
    claim_timeout_s: float
    drift_threshold: float
    notify_run_statuses: frozenset[str]
    notify_run_completed: bool
    notify_model_deployed: bool

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> CoreSettings:
        """Build and validate from a mapping such as os.environ."""
        reader = SettingsReader(env)
        settings = cls(
            allowed_topics=frozenset(normalize_topic(t) for t in reader.items(ALLOWED_TOPICS)),
            dry_run=reader.flag(DRY_RUN, True),
            ledger_backend=reader.choice(LEDGER_BACKEND, ("sqlite", "table"), "sqlite"),
            ledger_path=reader.text(LEDGER_PATH, DEFAULT_LEDGER_PATH),
            claim_timeout_s=reader.number(CLAIM_TIMEOUT_S, 600.0, minimum=1.0, maximum=86400.0),
            drift_threshold=reader.number(DRIFT_THRESHOLD, 0.3, minimum=0.0, maximum=1.0),
            notify_run_statuses=frozenset(
                s.lower() for s in reader.items(NOTIFY_RUN_STATUSES, ("failed",))),
            notify_run_completed=reader.flag(NOTIFY_RUN_COMPLETED, False),
            notify_model_deployed=reader.flag(NOTIFY_MODEL_DEPLOYED, False),
        )
        reader.raise_if_invalid()
        return settings

    def topic_allowed(self, topic: str) -> bool:
        """True when events from this topic may be acted on."""
        return normalize_topic(topic) in self.allowed_topics
