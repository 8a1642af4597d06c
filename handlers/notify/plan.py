"""What notification decides: tell people about one event, on the channels a rule picked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers.notify.message import TITLE_MAX, Notice, printable


@dataclass(frozen=True)
class NotificationPlan:
    """Tell people about one event, on the channels a rule picked (None: every channel)."""

    event_key: str
    notice: Notice
    rule: str
    channels: tuple[str, ...] | None

    def summary(self) -> str:
        """One line for the ledger."""
        return f"notify: {printable(self.notice.title, TITLE_MAX)}"

    def as_dict(self) -> Mapping[str, Any]:
        """Details for the ledger (the notice without the raw event)."""
        return {"notice": self.notice.summary(), "rule": self.rule,
                "channels": "all" if self.channels is None else list(self.channels)}
