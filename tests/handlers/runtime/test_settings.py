"""CoreSettings: the allow-list, dry run per concern, the claim timeout (defaults and limits)."""

from __future__ import annotations

import time

import pytest

from handlers.errors import SettingError
from handlers.ledger.ledger import EventFacts
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.settings import CLAIM_TIMEOUT_S, CoreSettings


def test_the_default_claim_timeout_is_ten_minutes() -> None:
    assert CoreSettings.from_mapping({}).claim_timeout_s == 600.0


def test_a_claim_held_by_a_dead_worker_is_taken_over_after_the_default_timeout(
        base_env: dict[str, str]) -> None:
    # GIVEN a delivery that claimed an event and never finished (its worker died)
    now = [time.time()]
    dispatcher = Dispatcher(base_env, clock=lambda: now[0])
    ledger = dispatcher.context().ledger
    facts = EventFacts(key="k", event_id="e", event_type="t", subject="s", topic="/t",
                       function="on_ml_event")
    assert ledger.claim(facts).status == "claimed"
    # THEN it is busy for 600 s, and taken over after
    now[0] += 599
    assert ledger.claim(facts).status == "busy"
    now[0] += 2
    assert ledger.claim(facts).status == "claimed"


@pytest.mark.parametrize("value", ["0", "0.5", "86401", "ten", "-5"])
def test_a_claim_timeout_out_of_range_is_named(value: str) -> None:
    with pytest.raises(SettingError) as caught:
        CoreSettings.from_mapping({CLAIM_TIMEOUT_S: value})
    assert caught.value.setting == CLAIM_TIMEOUT_S


def test_the_core_settings_whole() -> None:
    from handlers.runtime.settings import CONCERNS, dry_run_setting

    assert CoreSettings.from_mapping({}) == CoreSettings(
        allowed_topics=frozenset(), dry_run=True,
        dry_run_by_concern=dict.fromkeys(CONCERNS, True), claim_timeout_s=600.0)
    live = CoreSettings.from_mapping({
        "AMLEVENTS_ALLOWED_TOPICS": "/Subscriptions/S/T1/ ; /subscriptions/s/t2",
        "AMLEVENTS_DRY_RUN": "false", "AMLEVENTS_DRY_RUN_RETRAIN": "true",
        CLAIM_TIMEOUT_S: "1"})
    assert live == CoreSettings(
        allowed_topics=frozenset({"/subscriptions/s/t1", "/subscriptions/s/t2"}), dry_run=False,
        dry_run_by_concern={"deploy": False, "retrain": True, "notify": False, "cicd": False},
        claim_timeout_s=1.0)
    assert (live.is_dry_run("retrain"), live.is_dry_run("deploy"), live.is_dry_run("other")) == (
        True, False, False)
    assert dry_run_setting("cicd") == "AMLEVENTS_DRY_RUN_CICD"
    assert CoreSettings.from_mapping({CLAIM_TIMEOUT_S: "86400"}).claim_timeout_s == 86400.0


def test_validate_all_lists_each_problem_once_in_order() -> None:
    from handlers.runtime.settings import validate_all
    from handlers.settings import SettingsCache

    problems = validate_all(SettingsCache({
        "AMLEVENTS_DRY_RUN": "maybe", "AMLEVENTS_LEDGER": "table",
        "AMLEVENTS_LEDGER_TABLE_NAME": "x", "AMLEVENTS_NOTIFY_OUTBOX_DIR": "/tmp/outbox",
        "AMLEVENTS_CICD_RULES": "[1]"}))
    assert problems == [
        ("AMLEVENTS_DRY_RUN", "must be true or false, got 'maybe'"),
        ("AMLEVENTS_LEDGER_TABLE_NAME", "must be 3-63 letters or digits, starting with a "
                                        "letter, got 'x'"),
        ("AMLEVENTS_LEDGER_TABLE_CONNECTION", "AMLEVENTS_LEDGER=table needs a connection "
         "string (AMLEVENTS_LEDGER_TABLE_CONNECTION or AzureWebJobsStorage) or a table endpoint "
         "for managed identity (AMLEVENTS_LEDGER_TABLE_ENDPOINT)"),
        ("AMLEVENTS_CICD_RULES", "must be a JSON array of rule objects"),
    ]
