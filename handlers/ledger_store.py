"""Open the ledger store the settings choose: SQLite (embedded default) or Azure Table Storage."""

from __future__ import annotations

from collections.abc import Mapping

from handlers.ledger import LedgerStore
from handlers.settings import (
    DEFAULT_LEDGER_PATH,
    LEDGER_BACKEND,
    LEDGER_PATH,
    CoreSettings,
    SettingsReader,
)


def open_store(env: Mapping[str, str], settings: CoreSettings) -> LedgerStore:
    """The configured store; the Table store (and its SDK) is imported only when chosen."""
    if settings.ledger_backend == "table":
        from handlers.ledger_table import TableLedgerStore

        return TableLedgerStore.from_settings(env)
    from handlers.ledger_sqlite import SqliteLedgerStore

    return SqliteLedgerStore(settings.ledger_path)


def open_store_despite(env: Mapping[str, str]) -> LedgerStore:
    """The configured store even when other settings are invalid (SettingError if its own are).

    An event that arrives while, say, a threshold setting is broken is still recorded (as
    `retry`), so the ledger shows every received event.
    """
    reader = SettingsReader(env)
    backend = reader.choice(LEDGER_BACKEND, ("sqlite", "table"), "sqlite")
    path = reader.text(LEDGER_PATH, DEFAULT_LEDGER_PATH)
    reader.raise_if_invalid()
    if backend == "table":
        from handlers.ledger_table import TableLedgerStore

        return TableLedgerStore.from_settings(env)
    from handlers.ledger_sqlite import SqliteLedgerStore

    return SqliteLedgerStore(path)
