"""What a handler gets besides its event: settings, the ledger, adapters and a clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from handlers.adapters import Adapters
from handlers.ledger import Ledger
from handlers.settings import CoreSettings


@dataclass(frozen=True)
class HandlerContext:
    """Everything a handler may use; built once per process by the dispatcher."""

    env: Mapping[str, str]
    settings: CoreSettings
    ledger: Ledger
    adapters: Adapters
    clock: Callable[[], float]
