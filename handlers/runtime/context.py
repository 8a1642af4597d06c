"""What a handler gets besides its event: settings, the ledger, adapters and a clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from handlers.adapters import Adapters
from handlers.ledger.ledger import Ledger
from handlers.settings import CoreSettings

T = TypeVar("T")


@dataclass(frozen=True)
class HandlerContext:
    """Everything a handler may use; built once per process by the dispatcher."""

    env: Mapping[str, str]
    settings: CoreSettings
    ledger: Ledger
    adapters: Adapters
    clock: Callable[[], float]
    _built: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def settings_of(self, build: Callable[[Mapping[str, str]], T]) -> T:
        """A concern's settings, built from `env` once per context (not once per event).

        A SettingError is not cached: every event meets it until the setting is fixed.
        """
        if build not in self._built:  # a race builds twice; both results are equal
            self._built[build] = build(self.env)
        value: T = self._built[build]
        return value
