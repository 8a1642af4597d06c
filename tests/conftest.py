"""Shared fixtures: a clean environment per test, the documented sample events, a dispatcher."""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.runtime.dispatch import Dispatcher, default_dispatcher

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "events"
pytest_plugins = ["tests.fakes.azurite"]  # session fixtures `azurite`, `azurite_blob` for every tier
SAMPLE_TOPIC = ("/subscriptions/{subscription-id}/resourceGroups/{resource-group-name}"
                "/providers/Microsoft.MachineLearningServices/workspaces/{workspace-name}")


@pytest.fixture(autouse=True)
def clean_environment() -> Iterator[None]:
    """Each test starts from the environment it found and a fresh process-wide dispatcher."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("AMLEVENTS_")]:
        del os.environ[name]
    default_dispatcher.cache_clear()
    yield
    os.environ.clear()
    os.environ.update(saved)
    default_dispatcher.cache_clear()


# Fixtures that start Azurite; a test using one is marked `azurite` (`make mutate` leaves them out).
AZURITE_FIXTURES = frozenset({"azurite", "azurite_blob", "azurite_oauth", "table_env"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_table = callspec is not None and callspec.params.get("backend_env") == "table"
        if names & AZURITE_FIXTURES or on_table:
            item.add_marker(pytest.mark.azurite)


def load_sample(name: str) -> dict[str, Any]:
    """A fresh copy of one documented sample event (e.g. 'model_registered')."""
    events = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return copy.deepcopy(events[0])


@pytest.fixture
def sample() -> Callable[[str], dict[str, Any]]:
    """Load a documented sample event by file stem."""
    return load_sample


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """Settings for a dispatcher: the sample topic allowed, dry-run on, a fresh SQLite ledger,
    and a local outbox (a dry run validates the channels as the live run would)."""
    return {"AMLEVENTS_ALLOWED_TOPICS": SAMPLE_TOPIC, "AMLEVENTS_DRY_RUN": "true",
            "AMLEVENTS_LEDGER_PATH": str(tmp_path / "ledger.sqlite3"),
            "AMLEVENTS_NOTIFY_OUTBOX_DIR": str(tmp_path / "outbox")}


@pytest.fixture
def make_dispatcher(base_env: dict[str, str]) -> Callable[..., Dispatcher]:
    """Build a Dispatcher over base_env plus overrides."""
    def build(**overrides: str) -> Dispatcher:
        return Dispatcher({**base_env, **overrides})
    return build


# -- ledgers: each store in turn (Azurite via tests/azurite.py) ------------------------------

BACKENDS = ("sqlite", "table")


@pytest.fixture
def table_env(azurite: str) -> Iterator[dict[str, str]]:
    """Settings choosing the Table ledger on Azurite, with a table of its own for this test."""
    env = {"AMLEVENTS_LEDGER": "table", "AMLEVENTS_LEDGER_TABLE_CONNECTION": azurite,
           "AMLEVENTS_LEDGER_TABLE_NAME": "t" + uuid.uuid4().hex[:20]}
    yield env
    from handlers.ledger.table import TableLedgerStore

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
