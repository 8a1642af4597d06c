"""Open the ledger store the settings choose: SQLite (embedded default) or Azure Table Storage."""

from __future__ import annotations

from collections.abc import Mapping

from handlers.ledger.ledger import LedgerStore
from handlers.settings import DEFAULT_LEDGER_PATH, LEDGER_BACKEND, LEDGER_PATH, SettingsReader


def open_store(env: Mapping[str, str]) -> LedgerStore:
    """The configured store; the Table store (and its SDK) is imported only when chosen.

    Reads only the ledger's own settings, so an event that arrives while another setting is
    invalid can still be recorded (as `retry`): the ledger shows every received event.
    """
    reader = SettingsReader(env)
    backend = reader.choice(LEDGER_BACKEND, ("sqlite", "table"), "sqlite")
    path = reader.text(LEDGER_PATH, DEFAULT_LEDGER_PATH)
    reader.raise_if_invalid()
    if backend == "table":
        from handlers.ledger.table import TableLedgerStore

        return TableLedgerStore.from_settings(env)
    from handlers.ledger.sqlite import SqliteLedgerStore

    return SqliteLedgerStore(path)
