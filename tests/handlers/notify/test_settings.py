"""Channel settings, rules and storm limits: defaults, validation naming every setting."""

from __future__ import annotations

import pytest

from handlers.errors import SettingError
from handlers.notify.settings import (
    ChannelSettings,
    NotifySettings,
    Rule,
    acs_connection_string_problem,
    channel_problems,
)


def test_defaults_enable_nothing() -> None:
    settings = ChannelSettings.from_mapping({})
    assert settings.enabled == ()
    assert (settings.smtp_port, settings.smtp_starttls) == (587, True)
    assert (settings.storm_max, settings.storm_window_s, settings.timeout_s) == (10, 300.0, 10.0)


def test_each_channel_is_on_when_its_settings_are_set() -> None:
    settings = ChannelSettings.from_mapping({
        "AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com",
        "AMLEVENTS_NOTIFY_SMTP_FROM": "ml@contoso.com",
        "AMLEVENTS_NOTIFY_SMTP_TO": "a@contoso.com; b@contoso.com",
        "AMLEVENTS_NOTIFY_ACS_ENDPOINT": "https://acs.communication.azure.com",
        "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
        "AMLEVENTS_NOTIFY_ACS_TO": "a@contoso.com",
        "AMLEVENTS_NOTIFY_TEAMS_URL": "https://prod-1.westeurope.logic.azure.com/workflows/x",
        "AMLEVENTS_NOTIFY_SLACK_URL": "https://hooks.slack.com/services/T/B/X",
        "AMLEVENTS_NOTIFY_WEBHOOK_URL": "https://example.com/hook",
        "AMLEVENTS_NOTIFY_OUTBOX_DIR": "/tmp/outbox"})
    assert settings.enabled == ("smtp", "acs", "teams", "slack", "webhook", "outbox")
    assert settings.smtp_to == ("a@contoso.com", "b@contoso.com")


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(SettingError) as info:
        ChannelSettings.from_mapping({
            "AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com",
            "AMLEVENTS_NOTIFY_SMTP_PASSWORD": "pw-123456",
            "AMLEVENTS_NOTIFY_ACS_ENDPOINT": "https://acs", "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING":
                "endpoint=https://acs/;accesskey=YWJj",
            "AMLEVENTS_NOTIFY_STORM_MAX": "0", "AMLEVENTS_NOTIFY_SMTP_STARTTLS": "maybe",
            "AMLEVENTS_NOTIFY_WEBHOOK_SECRET": "s3cret-value"})
    named = {name for name, _ in info.value.problems}
    assert named == {"AMLEVENTS_NOTIFY_SMTP_FROM", "AMLEVENTS_NOTIFY_SMTP_TO",
                     "AMLEVENTS_NOTIFY_SMTP_USERNAME", "AMLEVENTS_NOTIFY_ACS_ENDPOINT",
                     "AMLEVENTS_NOTIFY_ACS_SENDER", "AMLEVENTS_NOTIFY_ACS_TO",
                     "AMLEVENTS_NOTIFY_STORM_MAX", "AMLEVENTS_NOTIFY_SMTP_STARTTLS",
                     "AMLEVENTS_NOTIFY_WEBHOOK_URL"}
    assert "pw-123456" not in str(info.value)


@pytest.mark.parametrize("url", ["http://hooks.example.com/x?sig=SECRET123",
                                 "ftp://127.0.0.1/x", "not a url SECRET123"])
def test_webhook_urls_must_be_https_and_are_never_echoed(url: str) -> None:
    with pytest.raises(SettingError) as info:
        ChannelSettings.from_mapping({"AMLEVENTS_NOTIFY_SLACK_URL": url})
    assert info.value.setting == "AMLEVENTS_NOTIFY_SLACK_URL"
    assert "SECRET123" not in str(info.value)


def test_plain_http_is_allowed_to_loopback_only() -> None:
    settings = ChannelSettings.from_mapping(
        {"AMLEVENTS_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:8080/hook"})
    assert settings.enabled == ("webhook",)


def test_rules_parse_with_defaults() -> None:
    routing = NotifySettings.from_mapping({"AMLEVENTS_NOTIFY_RULES": """[
        {"name": "sweeps", "experiment": "hd-*", "tags": {"team": "vision"},
         "events": ["runstatuschanged"], "statuses": ["Failed"], "channels": ["teams", "smtp"]},
        {"channels": []}, {}]"""})
    assert routing.rules == (
        Rule(name="sweeps", experiment="hd-*", tags=(("team", "vision"),),
             events=frozenset({"RunStatusChanged"}), statuses=frozenset({"failed"}),
             channels=("smtp", "teams")),
        Rule(name="rule 2", channels=()), Rule(name="rule 3"))
    assert routing.studio_endpoint == "https://ml.azure.com"


@pytest.mark.parametrize(("rules", "message"), [
    ("{", "not valid JSON"), ('{"a": 1}', "JSON array"), ('[{"colour": "red"}]', "unknown key"),
    ('[{"events": ["Drift"]}]', "events must be among"), ('[{"channels": ["sms"]}]', "sms"),
    ('[{"tags": ["x"]}]', "tags must be"), ('[{"statuses": "failed"}]', "array of strings")])
def test_bad_rules_are_explained(rules: str, message: str) -> None:
    with pytest.raises(SettingError, match=message) as info:
        NotifySettings.from_mapping({"AMLEVENTS_NOTIFY_RULES": rules})
    assert info.value.setting == "AMLEVENTS_NOTIFY_RULES"


def test_rules_may_only_name_configured_channels() -> None:
    env = {"AMLEVENTS_NOTIFY_OUTBOX_DIR": "/tmp/o",
           "AMLEVENTS_NOTIFY_RULES": '[{"name": "sweeps", "channels": ["teams"]}]'}
    problems = channel_problems(ChannelSettings.from_mapping(env), NotifySettings.from_mapping(env))
    assert problems == [("AMLEVENTS_NOTIFY_RULES", "sweeps: channel(s) teams are not configured")]


def test_studio_endpoint_for_sovereign_clouds() -> None:
    routing = NotifySettings.from_mapping(
        {"AMLEVENTS_NOTIFY_STUDIO_ENDPOINT": "https://ml.azure.us/"})
    assert routing.studio_endpoint == "https://ml.azure.us"
    with pytest.raises(SettingError):
        NotifySettings.from_mapping({"AMLEVENTS_NOTIFY_STUDIO_ENDPOINT": "ml.azure.us"})


# --- poison settings (issue 12, rows 3 and 4): refused at validation, named, never echoed -------

URL_SETTINGS = ["AMLEVENTS_NOTIFY_TEAMS_URL", "AMLEVENTS_NOTIFY_SLACK_URL",
                "AMLEVENTS_NOTIFY_WEBHOOK_URL"]
TEAMS = ("https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/"
         "invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGsecret12345")


@pytest.mark.parametrize("name", URL_SETTINGS)
@pytest.mark.parametrize("url", [
    TEAMS.replace("/paths/", "/pa ths/"),  # a space: http.client raised InvalidURL(url) at send
    TEAMS.replace("&sig=", "\n&sig="),  # a line break pasted inside the value
    TEAMS.replace("&sp", "\t&sp"), TEAMS.replace("abc", "ab\x00c"), TEAMS.replace("abc", "äbc"),
    TEAMS.replace("https://", "https://user:SIGsecret12345@"),  # user-info: sent as the host
    TEAMS.replace(":443", ":44x3"), TEAMS.replace(":443", ":99999"),
    "https:///workflows?sig=SIGsecret12345"], ids=lambda v: repr(v[:12] + v[-16:]))
def test_webhook_urls_that_cannot_be_sent_to_are_refused_unechoed(name: str, url: str) -> None:
    with pytest.raises(SettingError) as info:
        ChannelSettings.from_mapping({name: url})
    assert info.value.setting == name
    assert "SIGsecret12345" not in str(info.value) and "abc" not in str(info.value)


def test_a_real_teams_workflows_url_is_accepted() -> None:
    assert ChannelSettings.from_mapping({"AMLEVENTS_NOTIFY_TEAMS_URL": TEAMS}).teams_url == TEAMS


ACS_KEY = "YWNzLWtleS1mb3ItdGVzdHM="  # base64 of a key


@pytest.mark.parametrize("value", [
    "endpoint=https://acs.communication.azure.com/;accesskey=not-base64!KEYSECRET",
    "endpoint=https://acs.communication.azure.com/;accesskey=KEYSECRETa",  # "Incorrect padding"
    "endpoint=https://acs.communication.azure.com/;accesskey=",
    "endpoint=https://acs.communication.azure.com/",
    f"accesskey={ACS_KEY}KEYSECRET=",
    f"endpoint=acs.communication.azure.com;accesskey={ACS_KEY}",
    f"endpoint=http://acs.communication.azure.com/;accesskey={ACS_KEY}",
    "KEYSECRET-just-a-key"])
def test_acs_connection_strings_are_checked_and_never_echoed(value: str) -> None:
    env = {"AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING": value,
           "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
           "AMLEVENTS_NOTIFY_ACS_TO": "a@contoso.com"}
    with pytest.raises(SettingError) as info:
        ChannelSettings.from_mapping(env)
    assert info.value.setting == "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING"
    assert "KEYSECRET" not in str(info.value) and ACS_KEY not in str(info.value)
    assert "endpoint=https://<resource>/;accesskey=<base64 key>" in str(info.value)


@pytest.mark.parametrize(("value", "but"), [
    ("endpoint=https://a.b/;accesskey=not-base64!", "its accesskey is not a base64 key"),
    ("endpoint=https://a.b/;accesskey=", "it has no accesskey"),
    ("endpoint=https://a.b/", "it has no accesskey"),
    (f"accesskey={ACS_KEY}", "it has no endpoint"),
    (f"endpoint=http://a.b/;accesskey={ACS_KEY}", "its endpoint is not an https URL"),
    ("", "it has no endpoint and it has no accesskey"),
    (f"Endpoint = https://a.b/ ; AccessKey = {ACS_KEY}", "")])
def test_an_acs_connection_string_problem_says_which_part_is_wrong(value: str, but: str) -> None:
    # The operator is told what to fix, since the value itself is never shown.
    problem = acs_connection_string_problem(value)
    assert problem == (f"must be endpoint=https://<resource>/;accesskey=<base64 key> as the "
                       f"Azure portal shows it, but {but}" if but else "")


def test_a_valid_acs_connection_string_is_accepted() -> None:
    value = f"endpoint=https://acs.communication.azure.com/;accesskey={ACS_KEY}"
    settings = ChannelSettings.from_mapping({
        "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING": value,
        "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
        "AMLEVENTS_NOTIFY_ACS_TO": "a@contoso.com"})
    assert settings.enabled == ("acs",)


@pytest.mark.parametrize("name", ["AMLEVENTS_NOTIFY_SMTP_FROM", "AMLEVENTS_NOTIFY_SMTP_TO",
                                  "AMLEVENTS_NOTIFY_ACS_SENDER", "AMLEVENTS_NOTIFY_ACS_TO"])
def test_addresses_with_line_breaks_are_refused(name: str) -> None:
    env = {"AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com",
           "AMLEVENTS_NOTIFY_SMTP_FROM": "ml@contoso.com", "AMLEVENTS_NOTIFY_SMTP_TO": "a@contoso.com",
           "AMLEVENTS_NOTIFY_ACS_ENDPOINT": "https://acs.communication.azure.com",
           "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
           "AMLEVENTS_NOTIFY_ACS_TO": "a@contoso.com",
           name: "ml@contoso.com\rBcc: x@evil.example"}
    with pytest.raises(SettingError) as info:
        ChannelSettings.from_mapping(env)
    assert info.value.setting == name


def test_acs_endpoint_must_be_https() -> None:
    with pytest.raises(SettingError) as info:
        ChannelSettings.from_mapping({"AMLEVENTS_NOTIFY_ACS_ENDPOINT": "acs.communication.azure.com",
                                      "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
                                      "AMLEVENTS_NOTIFY_ACS_TO": "a@contoso.com"})
    assert info.value.setting == "AMLEVENTS_NOTIFY_ACS_ENDPOINT"
