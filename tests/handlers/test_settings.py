"""Core settings: defaults, validation naming every setting at fault."""

from __future__ import annotations

from collections.abc import Mapping

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


def test_each_reader_names_the_setting_and_says_what_is_wrong_with_the_value() -> None:
    reader = SettingsReader({"FLAG": "maybe", "NUM": "x", "INF": "inf", "LOW": "0.5",
                             "INT": "3.5", "BIG": "11", "CHOICE": "Mongo", "JSON": "[",
                             "OBJ": '[{"a": 1}, 2]'})
    # Each returns its default after a problem, so the rest can still be checked.
    assert reader.flag("FLAG", True) is True
    assert reader.number("NUM", 2.0) == 2.0
    assert reader.number("INF", 2.0) == 2.0
    assert reader.number("LOW", 2.0, minimum=1.0, maximum=9.0) == 2.0
    assert reader.integer("INT", 4) == 4
    assert reader.integer("BIG", 4, minimum=1, maximum=10) == 4
    assert reader.choice("CHOICE", ("sqlite", "table"), "sqlite") == "sqlite"
    assert reader.json_objects("JSON") == []
    assert reader.json_objects("OBJ", "rules") == []
    assert reader.required_text("MISSING") == ""
    assert reader.problems == [
        ("FLAG", "must be true or false, got 'maybe'"),
        ("NUM", "must be a number, got 'x'"),
        ("INF", "must be a finite number, got 'inf'"),
        ("LOW", "must be between 1.0 and 9.0, got 0.5"),
        ("INT", "must be a whole number, got '3.5'"),
        ("BIG", "must be between 1 and 10, got 11"),
        ("CHOICE", "must be one of sqlite, table, got 'Mongo'"),
        ("JSON", "is not valid JSON: Expecting value: line 1 column 2 (char 1)"),
        ("OBJ", "must be a JSON array of rules"),
        ("MISSING", "is required but not set"),
    ]
    with pytest.raises(SettingError) as caught:
        reader.raise_if_invalid()
    assert (caught.value.setting, caught.value.message) == (
        "FLAG", "must be true or false, got 'maybe'")
    assert caught.value.problems == tuple(reader.problems)
    assert str(caught.value).startswith(
        "setting FLAG: must be true or false, got 'maybe'; setting NUM: must be a number")


def test_values_are_trimmed_bounds_are_inclusive_and_blank_means_unset() -> None:
    reader = SettingsReader({"T": "  a b  ", "BLANK": "   ", "N": " 1.0 ", "M": "9",
                             "I": " -3 ", "J": "10", "C": " TABLE ", "P": "a+",
                             "J2": ' [{"a": 1}] ', "E": "0"})
    assert reader.text("T") == "a b" and reader.text("BLANK", "d") == "d"
    assert reader.text("UNSET") == "" and reader.required_text("T") == "a b"
    assert reader.number("N", 5.0, minimum=1.0, maximum=9.0) == 1.0
    assert reader.number("M", 5.0, minimum=1.0, maximum=9.0) == 9.0
    assert reader.number("BLANK", 5.0) == 5.0
    assert reader.integer("I", 0, minimum=-3) == -3
    assert reader.integer("J", 0, maximum=10) == 10
    assert reader.integer("BLANK", 7) == 7
    assert reader.choice("C", ("sqlite", "table"), "sqlite") == "table"
    assert reader.choice("BLANK", ("sqlite", "table"), "sqlite") == "sqlite"
    assert reader.pattern("P", ".*").fullmatch("aaa")
    assert reader.pattern("BLANK", "x|y").pattern == "x|y"
    assert reader.json_objects("J2") == [{"a": 1}] and reader.json_objects("BLANK") == []
    assert reader.items("BLANK", ("d",)) == ("d",)
    assert reader.flag("E", True) is False and reader.flag("BLANK", False) is False
    assert reader.problems == []
    reader.raise_if_invalid()  # nothing to raise


@pytest.mark.parametrize("raw", ["1", "true", "YES", "On"])
def test_every_true_spelling(raw: str) -> None:
    assert SettingsReader({"F": raw}).flag("F", False) is True


@pytest.mark.parametrize("raw", ["0", "False", "no", "OFF"])
def test_every_false_spelling(raw: str) -> None:
    assert SettingsReader({"F": raw}).flag("F", True) is False


def test_a_pattern_that_does_not_compile_falls_back_to_the_default_taken_literally() -> None:
    reader = SettingsReader({"P": "([a-z"})
    fallback = reader.pattern("P", "a.b")
    assert fallback.fullmatch("a.b") and not fallback.fullmatch("axb")
    assert reader.problems == [
        ("P", "is not a valid regular expression: unterminated character set at position 1")]


def test_the_cache_builds_each_concern_once_and_does_not_keep_a_failure() -> None:
    from handlers.settings import SettingsCache

    calls: list[str] = []

    def build(env: Mapping[str, str]) -> str:
        calls.append(env["X"])
        if env["X"] == "bad":
            raise SettingError("X", "is bad")
        return env["X"].upper()

    cache = SettingsCache({"X": "ok"})
    assert cache.of(build) == "OK" and cache.of(build) == "OK"
    assert calls == ["ok"]
    failing = SettingsCache({"X": "bad"})
    for _ in range(2):
        with pytest.raises(SettingError):
            failing.of(build)
    assert calls == ["ok", "bad", "bad"]


def test_normalize_topic() -> None:
    from handlers.settings import normalize_topic

    assert normalize_topic("  /Subscriptions/S/Topics/T// ") == "/subscriptions/s/topics/t"
