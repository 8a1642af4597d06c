"""Open the ledger store the settings choose: SQLite (embedded default) or Azure Table Storage."""

from __future__ import annotations

from collections.abc import Mapping

from handlers.ledger.ledger import LedgerStore
from handlers.ledger.settings import LedgerSettings


def open_store(env: Mapping[str, str]) -> LedgerStore:
    """The configured store; the Table store (and its SDK) is imported only when chosen.

    Reads only the ledger's own settings, so an event that arrives while another setting is
    invalid can still be recorded (as `retry`): the ledger shows every received event.
    """
    settings = LedgerSettings.from_mapping(env)
    if settings.backend == "table":
        from handlers.ledger.table import TableLedgerStore

        return TableLedgerStore.from_settings(env)
    from handlers.ledger.sqlite import SqliteLedgerStore

    return SqliteLedgerStore(settings.path, sync=settings.sync)
