"""Ledger fixtures: each LedgerStore in turn (the backends come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from handlers.ledger.ledger import LedgerStore
from handlers.ledger.sqlite import SqliteLedgerStore
from handlers.ledger.table import TableLedgerStore


@pytest.fixture
def ledger_store(backend_env: dict[str, str]) -> Iterator[LedgerStore]:
    """Each LedgerStore in turn, empty."""
    store: LedgerStore
    if backend_env["AMLEVENTS_LEDGER"] == "table":
        store = TableLedgerStore.from_settings(backend_env)
    else:
        store = SqliteLedgerStore(backend_env["AMLEVENTS_LEDGER_PATH"])
    yield store
    store.close()
