"""Adapters: each concern's port built once, a dry-run twin in dry run, and ports plugged in."""

from __future__ import annotations

from collections.abc import Callable

from handlers.adapters.dry_run import DryRunDeployer, DryRunRetrainRunner
from handlers.runtime.dispatch import Dispatcher


def test_ports_are_built_once_and_are_twins_in_dry_run(
        make_dispatcher: Callable[..., Dispatcher]) -> None:
    adapters = make_dispatcher().context().adapters
    assert isinstance(adapters.deployer(), DryRunDeployer)
    assert adapters.deployer() is adapters.deployer()
    assert isinstance(adapters.retrain_runner(), DryRunRetrainRunner)


def test_a_plugged_in_port_is_live_and_the_rest_keep_the_ledger_and_settings(
        make_dispatcher: Callable[..., Dispatcher]) -> None:
    # GIVEN the adapters of a dry-run dispatcher, and a deployer plugged in (as tests do)
    adapters = make_dispatcher().context().adapters
    mine = DryRunDeployer()
    plugged = adapters.with_ports(deployer=mine)
    # THEN that port is the one given, and live; the others stay as the settings say
    assert plugged.deployer() is mine and not plugged.is_dry_run("deploy")
    assert plugged.is_dry_run("retrain") and adapters.is_dry_run("deploy")
    # AND the copy shares the ledger and settings (a retrain runner built from it keeps its
    # cooldown in the same ledger)
    assert plugged.ledger is adapters.ledger and plugged.settings is adapters.settings
    runner = plugged.retrain_runner()
    assert isinstance(runner, DryRunRetrainRunner) and runner.ledger is adapters.ledger
