"""The runtime's own settings (topic allow-list, dry run, claim timeout) and `validate_all`.

Each concern owns its settings class and names (handlers/*/settings.py, the adapters' live
settings); `validate_all` asks every one of them, so the health check sees what any event would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from handlers.errors import SettingError
from handlers.settings import SettingsCache, SettingsReader, normalize_topic

ALLOWED_TOPICS = "AMLEVENTS_ALLOWED_TOPICS"
DRY_RUN = "AMLEVENTS_DRY_RUN"
CLAIM_TIMEOUT_S = "AMLEVENTS_CLAIM_TIMEOUT_S"
CONCERNS = ("deploy", "retrain", "notify", "cicd")


def dry_run_setting(concern: str) -> str:
    """The per-concern override of AMLEVENTS_DRY_RUN, e.g. AMLEVENTS_DRY_RUN_NOTIFY."""
    return f"{DRY_RUN}_{concern.upper()}"


@dataclass(frozen=True)
class CoreSettings:
    """What every event needs before any concern: the allow-list, dry run, the claim timeout."""

    allowed_topics: frozenset[str]
    dry_run: bool
    dry_run_by_concern: Mapping[str, bool]
    claim_timeout_s: float

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> CoreSettings:
        """Build and validate from a mapping such as os.environ."""
        reader = SettingsReader(env)
        dry_run = reader.flag(DRY_RUN, True)
        settings = cls(
            allowed_topics=frozenset(normalize_topic(t) for t in reader.items(ALLOWED_TOPICS)),
            dry_run=dry_run,
            dry_run_by_concern={c: reader.flag(dry_run_setting(c), dry_run) for c in CONCERNS},
            claim_timeout_s=reader.number(CLAIM_TIMEOUT_S, 600.0, minimum=1.0, maximum=86400.0))
        reader.raise_if_invalid()
        return settings

    def topic_allowed(self, topic: str) -> bool:
        """True when events from this topic may be acted on."""
        return normalize_topic(topic) in self.allowed_topics

    def is_dry_run(self, concern: str) -> bool:
        """Dry run for this concern: its own setting, else AMLEVENTS_DRY_RUN."""
        return self.dry_run_by_concern.get(concern, self.dry_run)


def _builders() -> tuple[Callable[[Mapping[str, str]], Any], ...]:
    # Imported here: validate_all runs for health and on a concern's first use, not at import.
    from handlers.adapters.azure_ml import AzureMlSettings
    from handlers.deploy.policy import DeployPolicy
    from handlers.ledger.settings import LedgerSettings, retention_days
    from handlers.notify.settings import ChannelSettings, NotifySettings
    from handlers.publish.settings import OutcomeTopicSettings
    from handlers.retrain.settings import RetrainSettings

    return (CoreSettings.from_mapping, LedgerSettings.from_mapping, retention_days,
            DeployPolicy.from_mapping, AzureMlSettings.from_mapping, RetrainSettings.from_mapping,
            NotifySettings.from_mapping, ChannelSettings.from_mapping,
            OutcomeTopicSettings.from_mapping)


def validate_all(settings: SettingsCache) -> list[tuple[str, str]]:
    """Every problem of every concern's settings, as (setting, message); never a value."""
    from handlers.cicd.settings import CicdSettings, GitHubAuth, auth_problems
    from handlers.ledger.settings import LedgerSettings
    from handlers.ledger.table_settings import TableLedgerSettings
    from handlers.notify.settings import ChannelSettings, NotifySettings, channel_problems

    problems: list[tuple[str, str]] = []

    def check(build: Callable[[Mapping[str, str]], Any]) -> Any:
        try:
            return settings.of(build)
        except SettingError as exc:
            problems.extend(exc.problems)
            return None

    for build in _builders():
        check(build)
    ledger = check(LedgerSettings.from_mapping)
    if ledger is not None and ledger.backend == "table":
        check(TableLedgerSettings.from_mapping)
    notify, channels = check(NotifySettings.from_mapping), check(ChannelSettings.from_mapping)
    if notify is not None and channels is not None:
        problems.extend(channel_problems(channels, notify))
    # CI/CD: the rules and the GitHub credential, and whether GitHub rules have a credential.
    cicd, github = check(CicdSettings.from_mapping), check(GitHubAuth.from_mapping)
    if cicd is not None and github is not None:
        problems.extend(auth_problems(cicd, github))
    return list(dict.fromkeys(problems))  # a problem found twice is reported once
