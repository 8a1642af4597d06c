"""/api/health: 503 naming each invalid setting of every concern (never its value), else 200.

Driven through the Functions `health` function itself (function_app.health), as the host calls it.
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

import function_app
from handlers.runtime.settings import CONCERNS

SECRET = "sig=TOPSECRET-9f8e7d"

# One broken setting per concern, as an operator might write it.
BROKEN = [
    ("AMLEVENTS_ALLOWED_TOPICS", None, "AMLEVENTS_DRY_RUN", "maybe"),
    ("ledger", None, "AMLEVENTS_LEDGER", "mongo"),
    ("deploy policy", None, "AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT", "many"),
    ("deploy adapter", None, "AMLEVENTS_DEPLOY_WAIT_S", "abc"),
    ("retrain", None, "AMLEVENTS_RETRAIN_ROUTES", "{not json"),
    ("drift threshold", None, "AMLEVENTS_DRIFT_THRESHOLD", "2"),
    ("notify decide", None, "AMLEVENTS_NOTIFY_RULES", "[1]"),
    ("notify channel", None, "AMLEVENTS_NOTIFY_SMTP_PORT", "abc"),
    ("notify storm", None, "AMLEVENTS_NOTIFY_STORM_MAX", "0"),
    ("notify url", None, "AMLEVENTS_NOTIFY_TEAMS_URL", f"http://example.com/hook?{SECRET}"),
]


def call_health() -> tuple[int, dict[str, Any]]:
    request = func.HttpRequest(method="GET", url="/api/health", body=b"", headers={})
    response = function_app.health(request)
    return response.status_code, json.loads(response.get_body())


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, base_env: dict[str, str]) -> pytest.MonkeyPatch:
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_healthy_when_every_setting_is_valid(env: pytest.MonkeyPatch) -> None:
    status, body = call_health()
    assert status == 200 and body["status"] == "ok" and body["ledger"] == "sqlite"


@pytest.mark.parametrize(("concern", "_", "setting", "value"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_concerns_bad_setting_is_named(env: pytest.MonkeyPatch, concern: str, _: None,
                                            setting: str, value: str) -> None:
    env.setenv(setting, value)
    status, body = call_health()
    assert status == 503 and body["status"] == "unhealthy"
    assert [p["setting"] for p in body["settings"]] == [setting]
    assert f"got {value}" not in json.dumps(body) and f"got '{value}'" not in json.dumps(body)
    assert len(value) < 6 or value not in json.dumps(body)  # the value is never echoed
    assert SECRET not in json.dumps(body)


def test_every_problem_is_listed_at_once(env: pytest.MonkeyPatch) -> None:
    env.setenv("AMLEVENTS_RETRAIN_ROUTES", "{not json")
    env.setenv("AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT", "many")
    env.setenv("AMLEVENTS_NOTIFY_OUTBOX_DIR", "")
    status, body = call_health()
    assert status == 503
    assert {p["setting"] for p in body["settings"]} == {
        "AMLEVENTS_RETRAIN_ROUTES", "AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT",
        "AMLEVENTS_NOTIFY_SMTP_HOST"}  # no notification channel at all


def test_an_unwritable_default_ledger_fails_loudly_naming_the_setting(
        env: pytest.MonkeyPatch, tmp_path: Any) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    env.setenv("AMLEVENTS_LEDGER_PATH", str(blocked / "ledger.sqlite3"))
    status, body = call_health()
    assert status == 503 and "AMLEVENTS_LEDGER_PATH" in body["error"]


@pytest.mark.parametrize("case", ["read-only", "corrupt", "a folder"])
def test_an_unusable_ledger_file_is_503_naming_path_and_setting(
        env: pytest.MonkeyPatch, tmp_path: Any, case: str) -> None:
    import os
    import subprocess

    from handlers.ledger.sqlite import SqliteLedgerStore

    # GIVEN the ledger file read-only (a real ledger, so it opens and reads), corrupt, or a folder
    path = tmp_path / "ledger.sqlite3"
    undo: list[str] = []
    if case == "read-only":
        SqliteLedgerStore(str(path)).close()
        path.chmod(0o444)
        if os.geteuid() == 0:  # root writes through file modes: make it immutable instead
            if subprocess.run(["chattr", "+i", str(path)], check=False).returncode != 0:
                pytest.skip("cannot make a file read-only for root here")
            undo = ["chattr", "-i", str(path)]
    elif case == "corrupt":
        path.write_bytes(b"not a database " * 300)
    else:
        path.mkdir()
    env.setenv("AMLEVENTS_LEDGER_PATH", str(path))
    try:
        status, body = call_health()
    finally:
        if undo:
            subprocess.run(undo, check=False)
    # THEN health is 503 (every event would fail), naming the file and the setting
    assert status == 503 and body["status"] == "unhealthy"
    assert "AMLEVENTS_LEDGER_PATH" in body["error"] and str(path) in body["error"]


@pytest.mark.parametrize(("message", "value", "shown"), [
    ("must be a number, got 'abcdefgh'", "abcdefgh", "must be a number, got another value"),
    ("the folder /srv/amlevents-ledger is read-only", "/srv/amlevents-ledger",
     "the folder … is read-only"),
    ("must be 1-10, got 12345", "12345", "must be 1-10, got another value"),
    ("is not one of a, b (abc)", "abc", "is not one of a, b (abc)"),  # too short to be a secret
])
def test_a_problem_never_shows_the_value_however_it_names_it(message: str, value: str,
                                                             shown: str) -> None:
    from handlers.runtime.health import _without_value

    assert _without_value(message, f"  {value} ") == shown


def test_the_healthy_answer_whole(env: pytest.MonkeyPatch) -> None:
    env.setenv("AMLEVENTS_ALLOWED_TOPICS", "/subscriptions/a/t1, /subscriptions/a/t2")
    env.setenv("AMLEVENTS_DRY_RUN_NOTIFY", "false")
    status, body = call_health()
    assert status == 200
    assert body == {"status": "ok", "dry_run": True,
                    "dry_run_by_concern": {concern: concern != "notify" for concern in CONCERNS},
                    "ledger": "sqlite", "allowed_topics": 2}


def test_the_unhealthy_answer_whole(env: pytest.MonkeyPatch) -> None:
    env.setenv("AMLEVENTS_DRY_RUN", "maybe")
    status, body = call_health()
    assert (status, body) == (503, {
        "status": "unhealthy",
        "settings": [{"setting": "AMLEVENTS_DRY_RUN",
                      "problem": "must be true or false, got another value"}],
        "error": "setting AMLEVENTS_DRY_RUN: must be true or false, got another value"})
