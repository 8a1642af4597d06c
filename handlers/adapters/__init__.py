"""Adapters do what handlers decide. Each concern has a real adapter and a dry-run twin.

Real adapters wrap Azure SDK clients and are imported lazily (cold start): a module path per
concern, loaded only when dry-run is off and the concern is first used.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from handlers.adapters.dry_run import DryRunAdapter
from handlers.errors import SettingError
from handlers.ledger.ledger import Ledger
from handlers.outcome import ActionResult, Plan
from handlers.settings import DRY_RUN, SettingsReader


class Adapter(Protocol):
    """Carries out a plan."""

    def apply(self, plan: Plan) -> ActionResult:
        """Do it, or raise RetryableError / PermanentError / PolicyRefused."""


# concern -> "module:factory"; factory(env, ledger) -> Adapter
REAL_ADAPTERS: dict[str, str] = {
    "deploy": "handlers.adapters.azure_ml:build_deployer",
    "retrain": "handlers.adapters.data_factory:build_runner",
    "notify": "handlers.adapters.notify.notifier:build_notifier",
}
CONCERNS = tuple(REAL_ADAPTERS)


def dry_run_setting(concern: str) -> str:
    """The per-concern override of AMLEVENTS_DRY_RUN, e.g. AMLEVENTS_DRY_RUN_NOTIFY."""
    return f"{DRY_RUN}_{concern.upper()}"


class Adapters:
    """Builds each concern's adapter once, lazily: dry-run twins while dry-run is on."""

    def __init__(self, env: Mapping[str, str], ledger: Ledger, *, dry_run: bool) -> None:
        self.env = env
        self.ledger = ledger
        self.dry_run = dry_run
        self._built: dict[str, Adapter] = {}
        self._lock = threading.Lock()
        reader = SettingsReader(env)
        self._dry_run_by_concern = {c: reader.flag(dry_run_setting(c), dry_run) for c in CONCERNS}
        reader.raise_if_invalid()

    def is_dry_run(self, concern: str) -> bool:
        """Dry-run for this concern: its own setting, else AMLEVENTS_DRY_RUN."""
        return self._dry_run_by_concern.get(concern, self.dry_run)

    def get(self, concern: str) -> Adapter:
        """The adapter for a concern: `deploy`, `retrain` or `notify`."""
        with self._lock:
            if concern not in self._built:
                self._built[concern] = self._build(concern)
            return self._built[concern]

    def _build(self, concern: str) -> Adapter:
        if self.is_dry_run(concern):
            return DryRunAdapter()
        target = REAL_ADAPTERS.get(concern)
        if target is None:
            raise SettingError(dry_run_setting(concern), f"unknown concern {concern!r}")
        module_name, factory_name = target.split(":")
        factory: Any = getattr(importlib.import_module(module_name), factory_name)
        adapter: Adapter = factory(self.env, self.ledger)
        return adapter
