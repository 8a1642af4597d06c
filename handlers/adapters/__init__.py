"""Adapters do what handlers decide: the only code that imports an Azure SDK or talks to the network.

`Adapters` hands each concern its port (handlers/ports.py), built once and lazily: the adapter
module is imported on the concern's first use, and its SDK on first call (cold start). The live
adapter's settings are validated in dry run too, so a rehearsal fails where the live run would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TypeVar

from handlers.ledger.ledger import Ledger
from handlers.ports import CicdDispatcher, Deployer, Notifier, RetrainRunner
from handlers.runtime.settings import CoreSettings
from handlers.settings import SettingsCache

P = TypeVar("P")


class Adapters:
    """Each concern's port, built on first use: a dry-run twin while that concern is in dry run."""

    def __init__(self, settings: SettingsCache, ledger: Ledger, core: CoreSettings) -> None:
        self.settings = settings
        self.ledger = ledger
        self.core = core
        self._built: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def env(self) -> Mapping[str, str]:
        """The settings mapping the adapters read."""
        return self.settings.env

    def is_dry_run(self, concern: str) -> bool:
        """Dry run for this concern: its own setting, else AMLEVENTS_DRY_RUN."""
        return self.core.is_dry_run(concern)

    def with_ports(self, *, deployer: Deployer | None = None,
                   retrain_runner: RetrainRunner | None = None,
                   notifier: Notifier | None = None) -> Adapters:
        """A copy whose given ports are fixed and live (tests and benchmarks plug theirs in here)."""
        given = {name: port for name, port in (("deploy", deployer), ("retrain", retrain_runner),
                                               ("notify", notifier)) if port is not None}
        core = replace(self.core, dry_run_by_concern={**self.core.dry_run_by_concern,
                                                      **dict.fromkeys(given, False)})
        copy = Adapters(self.settings, self.ledger, core)
        copy._built.update(given)
        return copy

    def _once(self, concern: str, build: Callable[[], P]) -> P:
        with self._lock:
            if concern not in self._built:
                self._built[concern] = build()
            port: P = self._built[concern]  # type: ignore[assignment]
            return port

    def deployer(self) -> Deployer:
        """The deploy port: azure-ai-ml (and the optional SDK v1 adapter), or its twin."""
        return self._once("deploy", self._build_deployer)

    def retrain_runner(self) -> RetrainRunner:
        """The retrain port: Data Factory runs, Azure ML pipeline or batch jobs, or its twin."""
        return self._once("retrain", self._build_retrain_runner)

    def notifier(self) -> Notifier:
        """The notify port: the configured channels with storm control, or its twin."""
        return self._once("notify", self._build_notifier)

    def cicd_dispatcher(self) -> CicdDispatcher:
        """The cicd port: GitHub Actions and Azure Pipelines over their REST APIs, or its twin."""
        return self._once("cicd", self._build_cicd_dispatcher)

    def _build_deployer(self) -> Deployer:
        from handlers.adapters.azure_ml import AzureMlSettings, build_deployer

        live = self.settings.of(AzureMlSettings.from_mapping)
        if self.is_dry_run("deploy"):
            from handlers.adapters.dry_run import DryRunDeployer

            return DryRunDeployer()
        return build_deployer(live, self.env, self.ledger)

    def _build_retrain_runner(self) -> RetrainRunner:
        from handlers.retrain.settings import RetrainSettings

        live = self.settings.of(RetrainSettings.from_mapping)
        if self.is_dry_run("retrain"):
            from handlers.adapters.dry_run import DryRunRetrainRunner

            return DryRunRetrainRunner(self.ledger, live)
        from handlers.adapters.azure_ml_jobs import build_retrain_runner

        return build_retrain_runner(live, self.ledger)  # by target kind: Data Factory, Azure ML

    def _build_notifier(self) -> Notifier:
        from handlers.errors import SettingError
        from handlers.notify.settings import ChannelSettings, NotifySettings, channel_problems

        channels = self.settings.of(ChannelSettings.from_mapping)
        problems = channel_problems(channels, self.settings.of(NotifySettings.from_mapping))
        if problems:
            raise SettingError(*problems[0], problems=tuple(problems))
        if self.is_dry_run("notify"):
            from handlers.adapters.dry_run import DryRunNotifier

            return DryRunNotifier()
        from handlers.adapters.notify.notifier import build_notifier

        return build_notifier(channels, self.env, self.ledger)

    def _build_cicd_dispatcher(self) -> CicdDispatcher:
        from handlers.cicd.settings import CicdSettings, GitHubAuth, auth_problems
        from handlers.errors import SettingError

        cicd = self.settings.of(CicdSettings.from_mapping)
        auth = self.settings.of(GitHubAuth.from_mapping)
        problems = auth_problems(cicd, auth)
        if problems:
            raise SettingError(*problems[0], problems=tuple(problems))
        if self.is_dry_run("cicd"):
            from handlers.adapters.cicd.dry_run import DryRunCicdDispatcher

            return DryRunCicdDispatcher()
        from handlers.adapters.cicd.dispatcher import build_dispatcher

        return build_dispatcher(cicd, auth, self.ledger)
