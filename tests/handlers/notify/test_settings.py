"""Channel settings, rules and storm limits: defaults, validation naming every setting."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from handlers.errors import SettingError
from handlers.notify.settings import (
    CHANNELS,
    ChannelSettings,
    NotifySettings,
    Rule,
    acs_connection_string_problem,
    channel_problems,
)
from handlers.rules import Criteria


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
    ("endpoint=https://a.b/;accesskey=YWJj!", "its accesskey is not a base64 key"),  # strict
    ("endpoint=https://a.b:99999/;accesskey=YWJj", "its endpoint is not an https URL"),
    ("endpoint=https://a.b/x y;accesskey=YWJj", "its endpoint is not an https URL"),
    ("endpoint=https:///x;accesskey=YWJj", "its endpoint is not an https URL"),
    ("endpoint=;accesskey=", "it has no endpoint and it has no accesskey"),
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


# --- whole values and whole refusals: what the operator reads is compared as written -----------

def problems_of(build: Callable[[dict[str, str]], object], env: dict[str, str]) -> tuple[
        tuple[str, str], ...]:
    """Every (setting, message) the validation names, in order."""
    with pytest.raises(SettingError) as info:
        build(env)
    return info.value.problems


def test_defaults_whole() -> None:
    assert ChannelSettings.from_mapping({}) == ChannelSettings(
        smtp_host="", smtp_port=587, smtp_starttls=True, smtp_username="", smtp_password="",
        smtp_from="", smtp_to=(), acs_endpoint="", acs_connection_string="", acs_sender="",
        acs_to=(), acs_poll_interval_s=1.0, teams_url="", slack_url="", webhook_url="",
        webhook_secret="", outbox_dir="", ca_file="", timeout_s=10.0, storm_max=10,
        storm_window_s=300.0)
    assert NotifySettings.from_mapping({}) == NotifySettings(
        run_statuses=frozenset({"failed"}), run_completed=False, model_deployed=False,
        rules=(), studio_endpoint="https://ml.azure.com")


def test_every_setting_is_read_whole() -> None:
    settings = ChannelSettings.from_mapping({
        "AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com", "AMLEVENTS_NOTIFY_SMTP_PORT": "2525",
        "AMLEVENTS_NOTIFY_SMTP_STARTTLS": "false", "AMLEVENTS_NOTIFY_SMTP_USERNAME": "mailer",
        "AMLEVENTS_NOTIFY_SMTP_PASSWORD": "pw", "AMLEVENTS_NOTIFY_SMTP_FROM": "ml@contoso.com",
        "AMLEVENTS_NOTIFY_SMTP_TO": "a@contoso.com,b@contoso.com",
        "AMLEVENTS_NOTIFY_ACS_ENDPOINT": "https://acs.communication.azure.com",
        "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
        "AMLEVENTS_NOTIFY_ACS_TO": "c@contoso.com", "AMLEVENTS_NOTIFY_ACS_POLL_INTERVAL_S": "2.5",
        "AMLEVENTS_NOTIFY_TEAMS_URL": "https://t.example/x",
        "AMLEVENTS_NOTIFY_SLACK_URL": "https://s.example/x",
        "AMLEVENTS_NOTIFY_WEBHOOK_URL": "http://localhost:8080/x",
        "AMLEVENTS_NOTIFY_WEBHOOK_SECRET": "whsec", "AMLEVENTS_NOTIFY_OUTBOX_DIR": "/tmp/o",
        "AMLEVENTS_NOTIFY_CA_FILE": "/etc/ca.pem", "AMLEVENTS_NOTIFY_TIMEOUT_S": "3",
        "AMLEVENTS_NOTIFY_STORM_MAX": "7", "AMLEVENTS_NOTIFY_STORM_WINDOW_S": "90"})
    assert settings == ChannelSettings(
        smtp_host="smtp.contoso.com", smtp_port=2525, smtp_starttls=False,
        smtp_username="mailer", smtp_password="pw", smtp_from="ml@contoso.com",
        smtp_to=("a@contoso.com", "b@contoso.com"),
        acs_endpoint="https://acs.communication.azure.com", acs_connection_string="",
        acs_sender="DoNotReply@x.azurecomm.net", acs_to=("c@contoso.com",),
        acs_poll_interval_s=2.5, teams_url="https://t.example/x",
        slack_url="https://s.example/x", webhook_url="http://localhost:8080/x",
        webhook_secret="whsec", outbox_dir="/tmp/o", ca_file="/etc/ca.pem", timeout_s=3.0,
        storm_max=7, storm_window_s=90.0)
    routing = NotifySettings.from_mapping({
        "AMLEVENTS_NOTIFY_RUN_STATUSES": "Failed; Canceled",
        "AMLEVENTS_NOTIFY_RUN_COMPLETED": "yes", "AMLEVENTS_NOTIFY_MODEL_DEPLOYED": "on",
        "AMLEVENTS_NOTIFY_STUDIO_ENDPOINT": "https://ml.azure.cn//"})
    assert routing == NotifySettings(
        run_statuses=frozenset({"failed", "canceled"}), run_completed=True,
        model_deployed=True, rules=(), studio_endpoint="https://ml.azure.cn")


@pytest.mark.parametrize(("name", "value", "refusal"), [
    ("SMTP_PORT", "0", "must be between 1 and 65535, got 0"), ("SMTP_PORT", "1", None),
    ("SMTP_PORT", "65535", None), ("SMTP_PORT", "65536", "must be between 1 and 65535, got 65536"),
    ("ACS_POLL_INTERVAL_S", "-0.1", "must be between 0.0 and 60.0, got -0.1"),
    ("ACS_POLL_INTERVAL_S", "0", None), ("ACS_POLL_INTERVAL_S", "60", None),
    ("ACS_POLL_INTERVAL_S", "60.5", "must be between 0.0 and 60.0, got 60.5"),
    ("TIMEOUT_S", "0.09", "must be between 0.1 and 300.0, got 0.09"), ("TIMEOUT_S", "0.1", None),
    ("TIMEOUT_S", "300", None), ("TIMEOUT_S", "300.1", "must be between 0.1 and 300.0, got 300.1"),
    ("STORM_MAX", "0", "must be between 1 and 100000, got 0"), ("STORM_MAX", "1", None),
    ("STORM_MAX", "100000", None),
    ("STORM_MAX", "100001", "must be between 1 and 100000, got 100001"),
    ("STORM_WINDOW_S", "0.99", "must be between 1.0 and 86400.0, got 0.99"),
    ("STORM_WINDOW_S", "1", None), ("STORM_WINDOW_S", "86400", None),
    ("STORM_WINDOW_S", "86400.5", "must be between 1.0 and 86400.0, got 86400.5")])
def test_number_settings_accept_their_bounds_and_refuse_beyond(name: str, value: str,
                                                               refusal: str | None) -> None:
    setting = f"AMLEVENTS_NOTIFY_{name}"
    if refusal is None:
        settings = ChannelSettings.from_mapping({setting: value})
        assert getattr(settings, name.lower()) == float(value)
    else:
        assert problems_of(ChannelSettings.from_mapping, {setting: value}) == ((setting, refusal),)


def test_every_problem_is_named_at_once_whole() -> None:
    problems = problems_of(ChannelSettings.from_mapping, {
        "AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com",
        "AMLEVENTS_NOTIFY_SMTP_PASSWORD": "pw-123456",
        "AMLEVENTS_NOTIFY_ACS_ENDPOINT": "https://acs",
        "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING": "endpoint=https://acs/;accesskey=YWJj",
        "AMLEVENTS_NOTIFY_STORM_MAX": "0", "AMLEVENTS_NOTIFY_SMTP_STARTTLS": "maybe",
        "AMLEVENTS_NOTIFY_WEBHOOK_SECRET": "s3cret-value"})
    assert problems == (
        ("AMLEVENTS_NOTIFY_SMTP_STARTTLS", "must be true or false, got 'maybe'"),
        ("AMLEVENTS_NOTIFY_STORM_MAX", "must be between 1 and 100000, got 0"),
        ("AMLEVENTS_NOTIFY_SMTP_FROM", "is required when AMLEVENTS_NOTIFY_SMTP_HOST is set"),
        ("AMLEVENTS_NOTIFY_SMTP_TO", "is required when AMLEVENTS_NOTIFY_SMTP_HOST is set"),
        ("AMLEVENTS_NOTIFY_SMTP_USERNAME",
         "is required when AMLEVENTS_NOTIFY_SMTP_PASSWORD is set"),
        ("AMLEVENTS_NOTIFY_ACS_ENDPOINT",
         "set AMLEVENTS_NOTIFY_ACS_ENDPOINT (managed identity) or "
         "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING, not both"),
        ("AMLEVENTS_NOTIFY_ACS_SENDER", "is required when ACS Email is configured"),
        ("AMLEVENTS_NOTIFY_ACS_TO", "is required when ACS Email is configured"),
        ("AMLEVENTS_NOTIFY_WEBHOOK_URL",
         "is required when AMLEVENTS_NOTIFY_WEBHOOK_SECRET is set"))


def test_smtp_with_a_username_and_password_is_accepted() -> None:
    # The password needs the username, not the reverse: a username alone is fine too.
    env = {"AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com",
           "AMLEVENTS_NOTIFY_SMTP_FROM": "ml@contoso.com", "AMLEVENTS_NOTIFY_SMTP_TO": "a@c.com"}
    assert ChannelSettings.from_mapping(
        {**env, "AMLEVENTS_NOTIFY_SMTP_USERNAME": "u", "AMLEVENTS_NOTIFY_SMTP_PASSWORD": "p"}
    ).enabled == ("smtp",)
    assert ChannelSettings.from_mapping(
        {**env, "AMLEVENTS_NOTIFY_SMTP_USERNAME": "u"}).smtp_username == "u"


def test_acs_by_connection_string_alone_still_needs_sender_and_recipients() -> None:
    value = f"endpoint=https://acs.communication.azure.com/;accesskey={ACS_KEY}"
    assert problems_of(ChannelSettings.from_mapping,
                       {"AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING": value}) == (
        ("AMLEVENTS_NOTIFY_ACS_SENDER", "is required when ACS Email is configured"),
        ("AMLEVENTS_NOTIFY_ACS_TO", "is required when ACS Email is configured"))


@pytest.mark.parametrize("endpoint", ["acs.communication.azure.com", "https://acs.x:99999",
                                      "https://acs.x/a b", "https:///x", "http://acs.x"])
def test_an_acs_endpoint_that_is_not_an_https_url_is_refused_whole(endpoint: str) -> None:
    # The endpoint is no secret: it is shown, so the operator sees the typo.
    assert problems_of(ChannelSettings.from_mapping, {
        "AMLEVENTS_NOTIFY_ACS_ENDPOINT": endpoint,
        "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
        "AMLEVENTS_NOTIFY_ACS_TO": "a@contoso.com"}) == (
        ("AMLEVENTS_NOTIFY_ACS_ENDPOINT", f"must be an https URL, got {endpoint!r}"),)


@pytest.mark.parametrize("name", ["AMLEVENTS_NOTIFY_SMTP_FROM", "AMLEVENTS_NOTIFY_SMTP_TO",
                                  "AMLEVENTS_NOTIFY_ACS_SENDER", "AMLEVENTS_NOTIFY_ACS_TO"])
def test_an_address_with_a_control_character_is_refused_whole(name: str) -> None:
    env = {"AMLEVENTS_NOTIFY_SMTP_HOST": "smtp.contoso.com",
           "AMLEVENTS_NOTIFY_SMTP_FROM": "ml@contoso.com",
           "AMLEVENTS_NOTIFY_SMTP_TO": "a@contoso.com, b@contoso.com",
           "AMLEVENTS_NOTIFY_ACS_ENDPOINT": "https://acs.communication.azure.com",
           "AMLEVENTS_NOTIFY_ACS_SENDER": "DoNotReply@x.azurecomm.net",
           "AMLEVENTS_NOTIFY_ACS_TO": "a@contoso.com, b@contoso.com",
           name: "ok@contoso.com, ml@contoso.com\x1bBcc: x@evil.example"}
    assert problems_of(ChannelSettings.from_mapping, env) == (
        (name, "must not contain line breaks or other control characters"),)


_NOT_SENDABLE = ("must be a URL without spaces, line breaks, control or non-ASCII characters "
                 "(percent-encode them; check for a stray paste)")
_INVALID = "is not a valid URL (check the host and the port)"
_CREDENTIALS = ("must not carry credentials before the host (user:password@): webhooks "
                "authenticate with the URL's path or query")
_NOT_HTTPS = "must be an https URL (http only to localhost)"


@pytest.mark.parametrize("name", URL_SETTINGS)
@pytest.mark.parametrize(("url", "refusal"), [
    ("https://h.example/a b", _NOT_SENDABLE), ("https://h.example/\x7f", _NOT_SENDABLE),
    ("https://h.example:99999/x", _INVALID), ("https://h.example:44x3/x", _INVALID),
    ("https://user:pw@h.example/x", _CREDENTIALS), ("https://user@h.example/x", _CREDENTIALS),
    ("https://:pw@h.example/x", _CREDENTIALS), ("http://hooks.example.com/x", _NOT_HTTPS),
    ("http://127.0.0.2/x", _NOT_HTTPS), ("ftp://127.0.0.1/x", _NOT_HTTPS),
    ("https:///x", _NOT_HTTPS), ("h.example/x", _NOT_HTTPS)])
def test_a_url_refusal_is_whole(name: str, url: str, refusal: str) -> None:
    assert problems_of(ChannelSettings.from_mapping, {name: url}) == ((name, refusal),)


@pytest.mark.parametrize("url", ["https://h.example/x", "https://h.example:8443/x?sig=a%20b",
                                 "http://127.0.0.1:8080/x", "http://localhost/x",
                                 "http://[::1]:80/x", "  https://h.example/x  "])
def test_sendable_urls_are_kept(url: str) -> None:
    assert ChannelSettings.from_mapping({"AMLEVENTS_NOTIFY_WEBHOOK_URL": url}).webhook_url == \
        url.strip()


@pytest.mark.parametrize(("env", "enabled"), [
    ({"AMLEVENTS_NOTIFY_SMTP_HOST": "h", "AMLEVENTS_NOTIFY_SMTP_FROM": "a@b",
      "AMLEVENTS_NOTIFY_SMTP_TO": "c@d"}, ("smtp",)),
    ({"AMLEVENTS_NOTIFY_ACS_ENDPOINT": "https://acs.x", "AMLEVENTS_NOTIFY_ACS_SENDER": "a@b",
      "AMLEVENTS_NOTIFY_ACS_TO": "c@d"}, ("acs",)),
    ({"AMLEVENTS_NOTIFY_TEAMS_URL": "https://t.x/"}, ("teams",)),
    ({"AMLEVENTS_NOTIFY_SLACK_URL": "https://s.x/"}, ("slack",)),
    ({"AMLEVENTS_NOTIFY_WEBHOOK_URL": "https://w.x/"}, ("webhook",)),
    ({"AMLEVENTS_NOTIFY_OUTBOX_DIR": "/tmp/o"}, ("outbox",)),
    ({"AMLEVENTS_NOTIFY_OUTBOX_DIR": "/tmp/o", "AMLEVENTS_NOTIFY_TEAMS_URL": "https://t.x/"},
     ("teams", "outbox"))])
def test_each_channel_alone_is_the_only_one_on(env: dict[str, str],
                                               enabled: tuple[str, ...]) -> None:
    assert ChannelSettings.from_mapping(env).enabled == enabled


@pytest.mark.parametrize(("rules", "problems"), [
    ("{", ["is not valid JSON: Expecting property name enclosed in double quotes: "
           "line 1 column 2 (char 1)"]),
    ("[1]", ["must be a JSON array of rule objects"]),
    ('[{"colour": "red", "size": 1}]',
     ["rule 1: unknown key(s) colour, size (allowed: channels, events, experiment, model, name, "
      "runStatus, statuses, tags, types)"]),
    ('[{}, {"events": ["Drift"]}]',
     ["rule 2: events must be among RunStatusChanged, RunCompleted, ModelDeployed"]),
    ('[{"events": ["ModelRegistered"]}]',
     ["rule 1: events must be among RunStatusChanged, RunCompleted, ModelDeployed"]),
    ('[{"channels": ["sms", "Pager", "teams"]}]',
     ["rule 1: unknown channel(s) pager, sms "
      "(channels: smtp, acs, teams, slack, webhook, outbox)"]),
    ('[{"tags": ["x"]}]', ["rule 1: tags must be an object of name -> value pattern "
                           "(null: the tag is there, whatever its value)"]),
    ('[{"statuses": "failed"}]', ["rule 1: statuses must be an array of strings"]),
    ('[{}, {}, {"channels": "teams"}]', ["rule 3: channels must be an array of strings"]),
    ('[{"channels": ["teams", 1]}]', ["rule 1: channels must be an array of strings"]),
    ('[{"types": ["RunCompleted"], "events": ["RunCompleted"]}]',
     ["rule 1: give types or events, not both"]),
    ('[{"experiment": 3, "model": ["m"]}]', ["rule 1: model must be a string pattern",
                                              "rule 1: experiment must be a string pattern"])])
def test_bad_rules_are_explained_whole(rules: str, problems: list[str]) -> None:
    # Each problem names the rule (by its place) and what is wrong with it, whole.
    assert problems_of(NotifySettings.from_mapping, {"AMLEVENTS_NOTIFY_RULES": rules}) == tuple(
        ("AMLEVENTS_NOTIFY_RULES", problem) for problem in problems)


def test_a_rule_is_parsed_whole_with_every_criterion() -> None:
    routing = NotifySettings.from_mapping({"AMLEVENTS_NOTIFY_RULES": json.dumps([
        {"name": 7, "types": ["modeldeployed"], "model": "churn-*", "runStatus": ["Deployed"],
         "tags": {"team": None}, "channels": [" Outbox ", "WEBHOOK", "smtp"]}])})
    assert routing.rules == (Rule(
        name="7", events=frozenset({"ModelDeployed"}), model="churn-*",
        statuses=frozenset({"deployed"}), tags=(("team", None),),
        channels=("smtp", "webhook", "outbox")),)


def test_a_rule_s_criteria_are_the_shared_vocabulary() -> None:
    rule = Rule(name="r", experiment="e*", tags=(("t", "v"),), events=frozenset({"RunCompleted"}),
                statuses=frozenset({"completed"}), model="m*")
    assert rule.criteria == Criteria(types=frozenset({"RunCompleted"}), model="m*",
                                     experiment="e*", tags=(("t", "v"),),
                                     statuses=frozenset({"completed"}))


@pytest.mark.parametrize("endpoint", ["ml.azure.us", "http://ml.azure.us"])
def test_a_studio_endpoint_that_is_not_https_is_refused_whole(endpoint: str) -> None:
    assert problems_of(NotifySettings.from_mapping,
                       {"AMLEVENTS_NOTIFY_STUDIO_ENDPOINT": endpoint}) == (
        ("AMLEVENTS_NOTIFY_STUDIO_ENDPOINT", f"must be an https URL, got {endpoint!r}"),)


def test_no_channel_at_all_names_the_settings_whole() -> None:
    assert channel_problems(ChannelSettings.from_mapping({}), NotifySettings.from_mapping({})) == [
        ("AMLEVENTS_NOTIFY_SMTP_HOST",
         "no notification channel is configured: set AMLEVENTS_NOTIFY_SMTP_HOST, "
         "AMLEVENTS_NOTIFY_ACS_ENDPOINT, AMLEVENTS_NOTIFY_TEAMS_URL (or another channel's "
         "setting, e.g. AMLEVENTS_NOTIFY_OUTBOX_DIR)")]


def test_each_rule_naming_absent_channels_is_named() -> None:
    env = {"AMLEVENTS_NOTIFY_OUTBOX_DIR": "/tmp/o", "AMLEVENTS_NOTIFY_RULES": json.dumps([
        {"name": "a", "channels": ["teams", "slack", "outbox"]}, {"name": "b"},
        {"name": "c", "channels": ["outbox"]}, {"name": "d", "channels": ["smtp"]}])}
    assert channel_problems(ChannelSettings.from_mapping(env),
                            NotifySettings.from_mapping(env)) == [
        ("AMLEVENTS_NOTIFY_RULES", "a: channel(s) slack, teams are not configured"),
        ("AMLEVENTS_NOTIFY_RULES", "d: channel(s) smtp are not configured")]


def test_a_rule_may_name_every_channel() -> None:
    every = ["outbox", "webhook", "slack", "teams", "acs", "smtp"]
    routing = NotifySettings.from_mapping(
        {"AMLEVENTS_NOTIFY_RULES": json.dumps([{"channels": every}])})
    assert routing.rules == (Rule(name="rule 1", channels=CHANNELS),)
