"""What a handler gets besides its event: settings, the ledger, its ports and a clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from handlers.adapters import Adapters
from handlers.ledger.ledger import Ledger
from handlers.runtime.settings import CoreSettings
from handlers.settings import SettingsCache

T = TypeVar("T")


@dataclass(frozen=True)
class HandlerContext:
    """Everything a handler may use; built once per process by the dispatcher."""

    cache: SettingsCache
    settings: CoreSettings
    ledger: Ledger
    adapters: Adapters
    clock: Callable[[], float]

    @property
    def env(self) -> Mapping[str, str]:
        """The app settings as given (os.environ when deployed)."""
        return self.cache.env

    def settings_of(self, build: Callable[[Mapping[str, str]], T]) -> T:
        """A concern's settings, built once per process (a SettingError is not cached)."""
        return self.cache.of(build)
