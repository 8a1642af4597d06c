"""The ledger's default path is writable wherever the app runs, or the failure names the setting."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from handlers.errors import SettingError
from handlers.ledger.settings import LOCAL_LEDGER_PATH, LedgerSettings
from handlers.ledger.sqlite import SqliteLedgerStore


def test_local_default_is_under_the_working_folder() -> None:
    assert LedgerSettings.from_mapping({}).path == LOCAL_LEDGER_PATH


def test_in_azure_the_default_is_the_instance_temp_folder() -> None:
    # Run from a package, the app folder is read-only; WEBSITE_INSTANCE_ID marks an Azure instance.
    path = LedgerSettings.from_mapping({"WEBSITE_INSTANCE_ID": "abc123"}).path
    assert path == os.path.join(tempfile.gettempdir(), "amlevents", "ledger.sqlite3")


def test_an_explicit_path_wins() -> None:
    env = {"WEBSITE_INSTANCE_ID": "abc123", "AMLEVENTS_LEDGER_PATH": "/data/l.sqlite3"}
    assert LedgerSettings.from_mapping(env).path == "/data/l.sqlite3"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_names_the_setting(tmp_path: Path) -> None:
    app = tmp_path / "wwwroot"
    app.mkdir()
    app.chmod(0o555)
    with pytest.raises(SettingError) as caught:
        SqliteLedgerStore(str(app / ".amlevents" / "ledger.sqlite3"))
    assert caught.value.setting == "AMLEVENTS_LEDGER_PATH"


def test_a_path_under_a_file_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingError) as caught:
        SqliteLedgerStore(str(tmp_path / "file" / "ledger.sqlite3"))
    assert caught.value.setting == "AMLEVENTS_LEDGER_PATH"


# --- AMLEVENTS_LEDGER_SYNC: how often SQLite syncs to disk --------------------------------------

def _synchronous(store: SqliteLedgerStore) -> int:
    return int(store._conn().execute("PRAGMA synchronous").fetchone()[0])


def test_sqlite_syncs_at_checkpoints_by_default_and_every_commit_when_full(tmp_path: Path) -> None:
    from handlers.ledger.store import open_store

    path = str(tmp_path / "ledger.sqlite3")
    normal = open_store({"AMLEVENTS_LEDGER_PATH": path})
    full = open_store({"AMLEVENTS_LEDGER_PATH": path, "AMLEVENTS_LEDGER_SYNC": "FULL"})
    assert isinstance(normal, SqliteLedgerStore) and isinstance(full, SqliteLedgerStore)
    # PRAGMA synchronous: 1 is NORMAL, 2 is FULL; WAL either way.
    assert (_synchronous(normal), _synchronous(full)) == (1, 2)
    assert full._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    normal.close()
    full.close()


def test_an_unknown_sync_mode_names_the_setting() -> None:
    with pytest.raises(SettingError) as caught:
        LedgerSettings.from_mapping({"AMLEVENTS_LEDGER_SYNC": "off"})
    assert caught.value.setting == "AMLEVENTS_LEDGER_SYNC"
    assert "normal, full" in str(caught.value)


@pytest.mark.parametrize(("given", "days"), [("", 90), ("2", 2), ("36500", 36_500)])
def test_retention_is_read_within_its_range(given: str, days: int) -> None:
    from handlers.ledger.settings import LEDGER_RETENTION_DAYS, retention_days

    assert retention_days({LEDGER_RETENTION_DAYS: given} if given else {}) == days


@pytest.mark.parametrize("given", ["1", "36501", "-5", "ten"])
def test_retention_outside_its_range_names_the_setting(given: str) -> None:
    from handlers.ledger.settings import LEDGER_RETENTION_DAYS, retention_days

    with pytest.raises(SettingError, match=LEDGER_RETENTION_DAYS):
        retention_days({LEDGER_RETENTION_DAYS: given})
