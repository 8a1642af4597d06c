"""Settings of the ledger: which store, and where the embedded SQLite file lives.

The default SQLite path must be writable wherever the app runs. Locally it is `.amlevents/` under
the working folder; in Azure (WEBSITE_INSTANCE_ID is set) the app folder is read-only when it
runs from a package, so the default is the instance's temp folder. That file is per instance:
a scaled-out app shares one ledger only with AMLEVENTS_LEDGER=table (docs/ledger.md).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from handlers.settings import SettingsReader

LEDGER_BACKEND = "AMLEVENTS_LEDGER"
LEDGER_PATH = "AMLEVENTS_LEDGER_PATH"
LEDGER_RETENTION_DAYS = "AMLEVENTS_LEDGER_RETENTION_DAYS"
# SQLite only: `normal` (WAL, synced at checkpoints: an app crash loses nothing, a power loss may
# lose the last commits) or `full` (every commit synced: for SQLite in production anyway).
LEDGER_SYNC = "AMLEVENTS_LEDGER_SYNC"
SYNC_CHOICES = ("normal", "full")
DEFAULT_RETENTION_DAYS = 90
# Longer than Event Grid retries one event (24 hours at most): a row pruned sooner could let a
# late redelivery act a second time.
MIN_RETENTION_DAYS = 2
MAX_RETENTION_DAYS = 36_500
LOCAL_LEDGER_PATH = ".amlevents/ledger.sqlite3"
AZURE_INSTANCE = "WEBSITE_INSTANCE_ID"  # set by App Service / Azure Functions on every instance


def default_ledger_path(env: Mapping[str, str]) -> str:
    """Where the SQLite ledger goes when AMLEVENTS_LEDGER_PATH is not set."""
    if env.get(AZURE_INSTANCE):
        return os.path.join(tempfile.gettempdir(), "amlevents", "ledger.sqlite3")
    return LOCAL_LEDGER_PATH


@dataclass(frozen=True)
class LedgerSettings:
    """The ledger's own settings, read apart from the others so a bad setting elsewhere still
    lets a received event be recorded (as `retry`)."""

    backend: str
    path: str
    sync: str = "normal"

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> LedgerSettings:
        """Build and validate from a mapping such as os.environ."""
        reader = SettingsReader(env)
        settings = cls(backend=reader.choice(LEDGER_BACKEND, ("sqlite", "table"), "sqlite"),
                       path=reader.text(LEDGER_PATH, default_ledger_path(env)),
                       sync=reader.choice(LEDGER_SYNC, SYNC_CHOICES, "normal"))
        reader.raise_if_invalid()
        return settings


def retention_days(env: Mapping[str, str]) -> int:
    """How many days a row is kept after its last update (what `amlevents ledger prune` uses).

    Read apart from LedgerSettings: a bad value must not stop events from being recorded.
    """
    reader = SettingsReader(env)
    days = reader.integer(LEDGER_RETENTION_DAYS, DEFAULT_RETENTION_DAYS,
                          minimum=MIN_RETENTION_DAYS, maximum=MAX_RETENTION_DAYS)
    reader.raise_if_invalid()
    return days
