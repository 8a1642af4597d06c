"""Ledger fixtures: Azurite for the session, and one fixture that yields each ledger store in turn."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.ledger import LedgerStore
from handlers.ledger_sqlite import SqliteLedgerStore
from handlers.ledger_table import TableLedgerStore

BACKENDS = ("sqlite", "table")


@pytest.fixture
def table_env(azurite: str) -> Iterator[dict[str, str]]:
    """Settings choosing the Table ledger on Azurite, with a table of its own for this test."""
    env = {"AMLEVENTS_LEDGER": "table", "AMLEVENTS_LEDGER_TABLE_CONNECTION": azurite,
           "AMLEVENTS_LEDGER_TABLE_NAME": "t" + uuid.uuid4().hex[:20]}
    yield env
    store = TableLedgerStore.from_settings(env)
    store.delete_table()
    store.close()


@pytest.fixture(params=BACKENDS)
def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Ledger settings for each backend in turn: a fresh SQLite file, or a fresh Azurite table."""
    if request.param == "table":
        env: dict[str, str] = request.getfixturevalue("table_env")
        return env
    return {"AMLEVENTS_LEDGER": "sqlite", "AMLEVENTS_LEDGER_PATH": str(tmp_path / "ledger.db")}


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
