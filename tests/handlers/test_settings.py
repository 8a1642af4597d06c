"""Core settings: defaults, validation naming every setting at fault."""

from __future__ import annotations

import pytest

from handlers.errors import SettingError
from handlers.ledger.settings import LedgerSettings
from handlers.notify.settings import NotifySettings
from handlers.runtime.settings import CoreSettings
from handlers.settings import SettingsReader


def test_defaults_are_conservative() -> None:
    settings = CoreSettings.from_mapping({})
    assert settings.dry_run is True
    assert settings.allowed_topics == frozenset()
    assert LedgerSettings.from_mapping({}).backend == "sqlite"
    notify = NotifySettings.from_mapping({})
    assert notify.run_statuses == frozenset({"failed"})
    assert not notify.run_completed and not notify.model_deployed


def test_every_bad_setting_is_named_at_once() -> None:
    with pytest.raises(SettingError) as caught:
        CoreSettings.from_mapping({"AMLEVENTS_DRY_RUN": "maybe", "AMLEVENTS_DRY_RUN_NOTIFY": "x",
                                   "AMLEVENTS_CLAIM_TIMEOUT_S": "soon"})
    assert caught.value.setting == "AMLEVENTS_DRY_RUN"
    assert {name for name, _ in caught.value.problems} == {
        "AMLEVENTS_DRY_RUN", "AMLEVENTS_DRY_RUN_NOTIFY", "AMLEVENTS_CLAIM_TIMEOUT_S"}
    with pytest.raises(SettingError) as ledger:
        LedgerSettings.from_mapping({"AMLEVENTS_LEDGER": "mongo"})
    assert "mongo" in str(ledger.value)


def test_lists_split_on_commas_semicolons_newlines() -> None:
    reader = SettingsReader({"X": "a, b;c\n d ,,"})
    assert reader.items("X") == ("a", "b", "c", "d")


@pytest.mark.parametrize(("raw", "expected"), [("TRUE", True), ("no", False), ("1", True),
                                               ("off", False), ("", True)])
def test_flags(raw: str, expected: bool) -> None:
    assert SettingsReader({"F": raw}).flag("F", True) is expected


def test_numbers_reject_non_finite_and_out_of_range() -> None:
    reader = SettingsReader({"A": "nan", "B": "5", "C": "x", "D": "3.5"})
    reader.number("A", 0.0)
    reader.integer("B", 0, maximum=3)
    reader.integer("C", 0)
    reader.integer("D", 0)
    assert [name for name, _ in reader.problems] == ["A", "B", "C", "D"]


def test_pattern_must_compile() -> None:
    reader = SettingsReader({"P": "([a-z"})
    reader.pattern("P", ".*")
    assert reader.problems and reader.problems[0][0] == "P"


def test_topic_check_ignores_case_and_trailing_slash() -> None:
    settings = CoreSettings.from_mapping({"AMLEVENTS_ALLOWED_TOPICS": "/Subscriptions/S/X/"})
    assert settings.topic_allowed("/subscriptions/s/x")
    assert not settings.topic_allowed("/subscriptions/s/y")
