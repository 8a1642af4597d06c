"""Adapters: each concern's port built once, a dry-run twin in dry run, and ports plugged in."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from handlers.adapters.cicd.dry_run import DryRunCicdDispatcher
from handlers.adapters.dry_run import DryRunDeployer, DryRunNotifier, DryRunRetrainRunner
from handlers.errors import SettingError
from handlers.retrain.settings import RetrainSettings
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


def test_every_port_is_built_once_and_is_its_twin_in_dry_run(
        make_dispatcher: Callable[..., Dispatcher]) -> None:
    adapters = make_dispatcher().context().adapters
    ports = {"deploy": adapters.deployer, "retrain": adapters.retrain_runner,
             "notify": adapters.notifier, "cicd": adapters.cicd_dispatcher}
    twins = {"deploy": DryRunDeployer, "retrain": DryRunRetrainRunner,
             "notify": DryRunNotifier, "cicd": DryRunCicdDispatcher}
    for concern, port in ports.items():
        assert adapters.is_dry_run(concern)
        assert type(port()) is twins[concern] and port() is port(), concern
    # each concern has its own port: none is handed another's
    assert len({id(port()) for port in ports.values()}) == 4


def test_each_plugged_port_is_the_one_given_and_live(
        make_dispatcher: Callable[..., Dispatcher]) -> None:
    adapters = make_dispatcher().context().adapters
    runner = DryRunRetrainRunner(adapters.ledger, RetrainSettings.from_mapping({}))
    notifier = DryRunNotifier()
    plugged = adapters.with_ports(retrain_runner=runner, notifier=notifier)
    assert plugged.retrain_runner() is runner and plugged.notifier() is notifier
    assert plugged.is_dry_run("retrain") is False and plugged.is_dry_run("notify") is False
    # the ones not given keep the settings' word, and the original is untouched
    assert plugged.is_dry_run("deploy") and plugged.is_dry_run("cicd")
    assert isinstance(plugged.deployer(), DryRunDeployer) and plugged.core is not adapters.core
    assert adapters.is_dry_run("retrain") and adapters.retrain_runner() is not runner
    assert plugged.env is adapters.env and dict(plugged.env) == dict(adapters.settings.env)


def test_a_github_rule_without_a_credential_fails_the_cicd_port_even_in_dry_run(
        make_dispatcher: Callable[..., Dispatcher]) -> None:
    rules = json.dumps([{"name": "r", "when": {"types": ["ModelRegistered"]},
                         "github": {"repository": "contoso/ops", "workflow": "w.yml",
                                    "ref": "main"}}])
    adapters = make_dispatcher(AMLEVENTS_CICD_RULES=rules).context().adapters
    with pytest.raises(SettingError) as caught:
        adapters.cicd_dispatcher()
    assert caught.value.problems == (("AMLEVENTS_GITHUB_TOKEN",
                                      "rule 'r' targets GitHub: set AMLEVENTS_GITHUB_TOKEN (a "
                                      "fine-grained token), or AMLEVENTS_GITHUB_APP_ID and "
                                      "AMLEVENTS_GITHUB_APP_PRIVATE_KEY (a GitHub App)"),)
    assert caught.value.setting == "AMLEVENTS_GITHUB_TOKEN"
