"""Open the ledger store the settings choose: SQLite (embedded default) or Azure Table Storage."""

from __future__ import annotations

from collections.abc import Mapping

from handlers.ledger import LedgerStore
from handlers.settings import CoreSettings


def open_store(env: Mapping[str, str], settings: CoreSettings) -> LedgerStore:
    """The configured store; the Table store (and its SDK) is imported only when chosen."""
    if settings.ledger_backend == "table":
        from handlers.ledger_table import TableLedgerStore

        return TableLedgerStore.from_settings(env)
    from handlers.ledger_sqlite import SqliteLedgerStore

    return SqliteLedgerStore(settings.ledger_path)
