"""open_store: the store the ledger's own settings choose, opened with those settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.errors import SettingError
from handlers.ledger.sqlite import SqliteLedgerStore
from handlers.ledger.store import open_store


@pytest.mark.parametrize(("chosen", "sync"), [({}, "normal"), ({"AMLEVENTS_LEDGER": "sqlite"},
                                                               "normal"),
                                              ({"AMLEVENTS_LEDGER_SYNC": "full"}, "full")])
def test_sqlite_is_the_default_opened_at_the_path_with_the_sync_asked(
        tmp_path: Path, chosen: dict[str, str], sync: str) -> None:
    path = str(tmp_path / "ledger.sqlite3")
    store = open_store({"AMLEVENTS_LEDGER_PATH": path, **chosen})
    assert isinstance(store, SqliteLedgerStore)
    assert (store.path, store.sync, store.busy_timeout_ms) == (path, sync, 10_000)
    assert Path(path).is_file()
    store.close()


def test_the_table_store_is_opened_when_chosen() -> None:
    # Without its connection the Table store refuses to open, naming its own setting: proof that
    # it, and not SQLite, was chosen (no network is needed to see it)
    with pytest.raises(SettingError) as caught:
        open_store({"AMLEVENTS_LEDGER": "table", "AMLEVENTS_LEDGER_PATH": "/nonexistent/x"})
    assert str(caught.value) == (
        "setting AMLEVENTS_LEDGER_TABLE_CONNECTION: AMLEVENTS_LEDGER=table needs a connection "
        "string (AMLEVENTS_LEDGER_TABLE_CONNECTION or AzureWebJobsStorage) or a table endpoint "
        "for managed identity (AMLEVENTS_LEDGER_TABLE_ENDPOINT)")


def test_other_settings_are_not_read_and_the_ledgers_own_are_checked(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite3")
    # another concern's broken setting does not stop the ledger opening
    open_store({"AMLEVENTS_LEDGER_PATH": path, "AMLEVENTS_RETRAIN_COOLDOWN_S": "abc"}).close()
    with pytest.raises(SettingError) as caught:
        open_store({"AMLEVENTS_LEDGER_PATH": path, "AMLEVENTS_LEDGER": "bogus"})
    assert str(caught.value) == "setting AMLEVENTS_LEDGER: must be one of sqlite, table, got 'bogus'"
