"""local.settings.sample.json lists every setting, and its values are all valid."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from amlevents.simulator.service import TOPIC_KEY, SimulatorSettings
from handlers.adapters.azure_ml import AzureMlSettings
from handlers.cicd.settings import CicdSettings, GitHubAuth
from handlers.deploy.policy import DeployPolicy
from handlers.ledger.settings import LedgerSettings, retention_days
from handlers.ledger.table import TableLedgerSettings
from handlers.notify.settings import ChannelSettings, NotifySettings
from handlers.publish.settings import OutcomeTopicSettings
from handlers.retrain.settings import RetrainSettings
from handlers.runtime.settings import CoreSettings, validate_all
from handlers.settings import SettingsCache

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]


def simulator(env: Mapping[str, str]) -> SimulatorSettings | None:
    """The simulator's settings, which exist only with a topic key (the sample leaves it empty)."""
    return SimulatorSettings.from_mapping({**env, TOPIC_KEY: env.get(TOPIC_KEY) or "key"})


# Everything that reads settings, so that each sample value is compared with a real default.
BUILDERS: list[Callable[[Mapping[str, str]], object]] = [
    CoreSettings.from_mapping, DeployPolicy.from_mapping, AzureMlSettings.from_mapping,
    RetrainSettings.from_mapping, ChannelSettings.from_mapping, NotifySettings.from_mapping,
    LedgerSettings.from_mapping, retention_days, TableLedgerSettings.from_mapping,
    OutcomeTopicSettings.from_mapping, CicdSettings.from_mapping, GitHubAuth.from_mapping,
    simulator]
# Read by the Functions host, or by the CLI as it is (an empty host key is no key).
NOT_BUILT = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsFeatureFlags", "AMLEVENTS_HOST_KEY"}


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__qualname__.split(".")[0])
def test_every_settings_object_accepts_the_sample(build: Callable[[Mapping[str, str]], object],
                                                  ) -> None:
    build(SAMPLE)


def test_the_sample_passes_validate_all() -> None:
    assert validate_all(SettingsCache(SAMPLE)) == []


def test_every_setting_the_code_reads_is_in_the_sample() -> None:
    # Setting names are module constants "AMLEVENTS_..."; the per-concern dry-run switches are
    # built from AMLEVENTS_DRY_RUN and the concern's name.
    names = {"AMLEVENTS_DRY_RUN_DEPLOY", "AMLEVENTS_DRY_RUN_RETRAIN", "AMLEVENTS_DRY_RUN_NOTIFY"}
    for path in [*ROOT.glob("handlers/**/*.py"), *ROOT.glob("amlevents/**/*.py")]:
        names |= set(re.findall(r'"(AMLEVENTS_[A-Z0-9_]+)"', path.read_text(encoding="utf-8")))
    assert sorted(names - set(SAMPLE)) == []


def test_every_sample_setting_is_read_by_a_builder() -> None:
    # A setting no builder reads would pass the defaults test below whatever its value.
    def read(name: str) -> bool:
        for other in ("7", "0.5", "x", "true", ""):
            changed = {**SAMPLE, name: other}
            for build in BUILDERS:
                try:
                    if build(changed) != build(SAMPLE):
                        return True
                except Exception:  # noqa: BLE001 - refused: read, and validated
                    return True
        return False

    assert sorted(name for name in SAMPLE if not read(name)) == sorted(NOT_BUILT)


# The settings whose sample value is an example, not the default (everything else in the sample
# is the value the code uses when the setting is absent).
EXAMPLES = {"AMLEVENTS_ALLOWED_TOPICS", "AMLEVENTS_NOTIFY_OUTBOX_DIR", "AzureWebJobsStorage"}


def test_the_samples_values_are_the_codes_defaults() -> None:
    # Each setting left out of the sample builds the same settings as the sample: so the sample
    # documents the real defaults, and a changed default (a drift threshold of 0.5, a claim
    # timeout of 60 s) shows up here.
    differ = set()
    for name in SAMPLE:
        without = {k: v for k, v in SAMPLE.items() if k != name}
        for build in BUILDERS:
            try:
                same = build(without) == build(SAMPLE)
            except Exception:  # noqa: BLE001 - required without a default
                same = False
            if not same:
                differ.add(name)
    assert differ == EXAMPLES, ("these sample values are not the defaults; correct the sample, "
                                "or list a deliberate example in EXAMPLES", differ ^ EXAMPLES)
