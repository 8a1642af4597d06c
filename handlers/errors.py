"""The one exception tree of amlevents.

    AmlEventsError
    ├── InvalidEvent        bad event payload; names the field (permanent, recorded as `invalid`)
    ├── SettingError        bad or missing app setting; names the setting (permanent)
    ├── PolicyRefused       tags or topic ask for something the operator does not allow (`refused`)
    ├── PermanentError      the action failed and retrying will not help (`failed`)
    └── RetryableError      throttling, 5xx, timeouts (`retry`: the trigger raises, Event Grid redelivers)
        └── RetryLater      raised by a trigger so the Functions host reports failure and Event Grid retries

SDK exceptions are wrapped only inside adapters (`raise ... from exc`).
"""

from __future__ import annotations


class AmlEventsError(Exception):
    """Base class of every error amlevents raises on purpose."""


class InvalidEvent(AmlEventsError):
    """The event (envelope or data) is malformed; `field` names the first thing wrong, `problems` all."""

    def __init__(self, field: str, message: str, *, problems: tuple[tuple[str, str], ...] = ()) -> None:
        self.problems = problems or ((field, message),)
        super().__init__("; ".join(f"{name}: {text}" for name, text in self.problems))
        self.field = field
        self.message = message

    @classmethod
    def from_problems(cls, problems: list[tuple[str, str]]) -> InvalidEvent:
        """One error carrying every problem found, named by the first."""
        field, message = problems[0]
        return cls(field, message, problems=tuple(problems))


class SettingError(AmlEventsError):
    """An app setting is missing or invalid; `setting` names it (the first, when several are wrong)."""

    def __init__(self, setting: str, message: str, *, problems: tuple[tuple[str, str], ...] = ()) -> None:
        self.problems = problems or ((setting, message),)
        super().__init__("; ".join(f"setting {name}: {text}" for name, text in self.problems))
        self.setting = setting
        self.message = message


class PolicyRefused(AmlEventsError):
    """The request exceeds what the operator allows; `field` names the tag or attribute."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PermanentError(AmlEventsError):
    """The action failed for good (e.g. a 4xx from Azure); retrying will not help."""


class RetryableError(AmlEventsError):
    """The action failed transiently (429, 5xx, timeout); a later delivery may succeed."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RetryLater(RetryableError):
    """Raised by a trigger so the host reports failure and Event Grid redelivers the event."""
