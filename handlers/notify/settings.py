"""Settings of the notification concern: channels, rules, storm control and the studio link.

A channel is on when its settings are set (SMTP host, ACS endpoint or connection string, a
webhook URL, an outbox folder). Rules (`AMLEVENTS_NOTIFY_RULES`, JSON) are tried in order and
the first that matches an event picks its channels. Webhook URLs, the SMTP password, the ACS
connection string and the webhook secret are secrets (handlers/runtime/redaction.py masks them).
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers.rules import CRITERIA_KEYS, Criteria, parse_criteria
from handlers.settings import SettingsReader

SMTP_HOST = "AMLEVENTS_NOTIFY_SMTP_HOST"
SMTP_PORT = "AMLEVENTS_NOTIFY_SMTP_PORT"
SMTP_STARTTLS = "AMLEVENTS_NOTIFY_SMTP_STARTTLS"
SMTP_USERNAME = "AMLEVENTS_NOTIFY_SMTP_USERNAME"
SMTP_PASSWORD = "AMLEVENTS_NOTIFY_SMTP_PASSWORD"
SMTP_FROM = "AMLEVENTS_NOTIFY_SMTP_FROM"
SMTP_TO = "AMLEVENTS_NOTIFY_SMTP_TO"
ACS_ENDPOINT = "AMLEVENTS_NOTIFY_ACS_ENDPOINT"
ACS_CONNECTION_STRING = "AMLEVENTS_NOTIFY_ACS_CONNECTION_STRING"
ACS_SENDER = "AMLEVENTS_NOTIFY_ACS_SENDER"
ACS_TO = "AMLEVENTS_NOTIFY_ACS_TO"
ACS_POLL_INTERVAL_S = "AMLEVENTS_NOTIFY_ACS_POLL_INTERVAL_S"
TEAMS_URL = "AMLEVENTS_NOTIFY_TEAMS_URL"
SLACK_URL = "AMLEVENTS_NOTIFY_SLACK_URL"
WEBHOOK_URL = "AMLEVENTS_NOTIFY_WEBHOOK_URL"
WEBHOOK_SECRET = "AMLEVENTS_NOTIFY_WEBHOOK_SECRET"
OUTBOX_DIR = "AMLEVENTS_NOTIFY_OUTBOX_DIR"
CA_FILE = "AMLEVENTS_NOTIFY_CA_FILE"
TIMEOUT_S = "AMLEVENTS_NOTIFY_TIMEOUT_S"
RULES = "AMLEVENTS_NOTIFY_RULES"
RUN_STATUSES = "AMLEVENTS_NOTIFY_RUN_STATUSES"
RUN_COMPLETED = "AMLEVENTS_NOTIFY_RUN_COMPLETED"
MODEL_DEPLOYED = "AMLEVENTS_NOTIFY_MODEL_DEPLOYED"
STORM_MAX = "AMLEVENTS_NOTIFY_STORM_MAX"
STORM_WINDOW_S = "AMLEVENTS_NOTIFY_STORM_WINDOW_S"
STUDIO_ENDPOINT = "AMLEVENTS_NOTIFY_STUDIO_ENDPOINT"

DEFAULT_STUDIO_ENDPOINT = "https://ml.azure.com"
CHANNELS = ("smtp", "acs", "teams", "slack", "webhook", "outbox")
# Short names a rule's "events" may list, and the full Event Grid types they stand for.
RULE_EVENTS = ("RunStatusChanged", "RunCompleted", "ModelDeployed")
_RULE_KEYS = CRITERIA_KEYS | {"name", "channels"}  # the criteria: handlers/rules.py
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# What an HTTP request line may carry: printable ASCII, no space (RFC 3986; http.client refuses
# the rest with an InvalidURL that repeats the whole URL, signature included).
_NOT_URL = re.compile(r"[^\x21-\x7e]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ACS_CONNECTION_FORMAT = "endpoint=https://<resource>/;accesskey=<base64 key>"


@dataclass(frozen=True)
class Rule:
    """Which events a rule takes (all given criteria must hold) and the channels it picks."""

    name: str
    experiment: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()
    events: frozenset[str] | None = None
    statuses: frozenset[str] | None = None
    channels: tuple[str, ...] | None = None  # None: every configured channel
    model: str | None = None

    @property
    def criteria(self) -> Criteria:
        """What the rule asks of an event, in the vocabulary CI/CD rules share (handlers/rules)."""
        return Criteria(types=self.events, model=self.model, experiment=self.experiment,
                        tags=self.tags, statuses=self.statuses)


@dataclass(frozen=True)
class NotifySettings:
    """What deciding needs: which events notify, the rules (parsed once) and the studio link."""

    run_statuses: frozenset[str]
    run_completed: bool
    model_deployed: bool
    rules: tuple[Rule, ...]
    studio_endpoint: str

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> NotifySettings:
        """Build and validate from a mapping such as os.environ."""
        reader = SettingsReader(env)
        settings = cls(
            run_statuses=frozenset(s.lower() for s in reader.items(RUN_STATUSES, ("failed",))),
            run_completed=reader.flag(RUN_COMPLETED, False),
            model_deployed=reader.flag(MODEL_DEPLOYED, False),
            rules=parse_rules(reader),
            studio_endpoint=reader.text(STUDIO_ENDPOINT, DEFAULT_STUDIO_ENDPOINT).rstrip("/"))
        if urllib.parse.urlsplit(settings.studio_endpoint).scheme != "https":
            reader.problem(STUDIO_ENDPOINT, f"must be an https URL, got {settings.studio_endpoint!r}")
        reader.raise_if_invalid()
        return settings


def parse_rules(reader: SettingsReader) -> tuple[Rule, ...]:
    """The rules in AMLEVENTS_NOTIFY_RULES (a JSON array of objects); problems go to `reader`."""
    items = reader.json_objects(RULES, "rule objects")
    return tuple(_rule(item, index, reader) for index, item in enumerate(items))


def _rule(item: Mapping[str, Any], index: int, reader: SettingsReader) -> Rule:
    where = f"rule {index + 1}"
    unknown = sorted(set(item) - _RULE_KEYS)
    if unknown:
        reader.problem(RULES, f"{where}: unknown key(s) {', '.join(unknown)} "
                              f"(allowed: {', '.join(sorted(_RULE_KEYS))})")
    name = item.get("name", where)
    criteria = parse_criteria(item, where, lambda message: reader.problem(RULES, message),
                              types=RULE_EVENTS)
    channels = _names(item, "channels", where, reader)
    if channels is not None and not channels <= set(CHANNELS):
        reader.problem(RULES, f"{where}: unknown channel(s) "
                              f"{', '.join(sorted(channels - set(CHANNELS)))} "
                              f"(channels: {', '.join(CHANNELS)})")
    return Rule(name=str(name), experiment=criteria.experiment, tags=criteria.tags,
                events=criteria.types, statuses=criteria.statuses, model=criteria.model,
                channels=None if channels is None else tuple(c for c in CHANNELS if c in channels))


def _names(item: Mapping[str, Any], key: str, where: str,
           reader: SettingsReader) -> frozenset[str] | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        reader.problem(RULES, f"{where}: {key} must be an array of strings")
        return None
    return frozenset(v.strip().lower() for v in value)


@dataclass(frozen=True)
class ChannelSettings:
    """Every channel's settings, the storm-control limits and the network timeout."""

    smtp_host: str
    smtp_port: int
    smtp_starttls: bool
    smtp_username: str
    smtp_password: str
    smtp_from: str
    smtp_to: tuple[str, ...]
    acs_endpoint: str
    acs_connection_string: str
    acs_sender: str
    acs_to: tuple[str, ...]
    acs_poll_interval_s: float
    teams_url: str
    slack_url: str
    webhook_url: str
    webhook_secret: str
    outbox_dir: str
    ca_file: str
    timeout_s: float
    storm_max: int
    storm_window_s: float

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> ChannelSettings:
        """Build and validate from a mapping such as os.environ."""
        r = SettingsReader(env)
        settings = cls(
            smtp_host=r.text(SMTP_HOST), smtp_port=r.integer(SMTP_PORT, 587, minimum=1,
                                                              maximum=65535),
            smtp_starttls=r.flag(SMTP_STARTTLS, True), smtp_username=r.text(SMTP_USERNAME),
            smtp_password=r.text(SMTP_PASSWORD), smtp_from=r.text(SMTP_FROM),
            smtp_to=r.items(SMTP_TO), acs_endpoint=r.text(ACS_ENDPOINT),
            acs_connection_string=r.text(ACS_CONNECTION_STRING), acs_sender=r.text(ACS_SENDER),
            acs_to=r.items(ACS_TO),
            acs_poll_interval_s=r.number(ACS_POLL_INTERVAL_S, 1.0, minimum=0.0, maximum=60.0),
            teams_url=_url(r, TEAMS_URL), slack_url=_url(r, SLACK_URL),
            webhook_url=_url(r, WEBHOOK_URL), webhook_secret=r.text(WEBHOOK_SECRET),
            outbox_dir=r.text(OUTBOX_DIR), ca_file=r.text(CA_FILE),
            timeout_s=r.number(TIMEOUT_S, 10.0, minimum=0.1, maximum=300.0),
            storm_max=r.integer(STORM_MAX, 10, minimum=1, maximum=100_000),
            storm_window_s=r.number(STORM_WINDOW_S, 300.0, minimum=1.0, maximum=86_400.0))
        settings._check(r)
        r.raise_if_invalid()
        return settings

    def _check(self, r: SettingsReader) -> None:
        if self.smtp_host:
            if not self.smtp_from:
                r.problem(SMTP_FROM, f"is required when {SMTP_HOST} is set")
            if not self.smtp_to:
                r.problem(SMTP_TO, f"is required when {SMTP_HOST} is set")
            if self.smtp_password and not self.smtp_username:
                r.problem(SMTP_USERNAME, f"is required when {SMTP_PASSWORD} is set")
        if self.acs_endpoint and self.acs_connection_string:
            r.problem(ACS_ENDPOINT, f"set {ACS_ENDPOINT} (managed identity) or "
                                    f"{ACS_CONNECTION_STRING}, not both")
        if self.acs_endpoint or self.acs_connection_string:
            if not self.acs_sender:
                r.problem(ACS_SENDER, "is required when ACS Email is configured")
            if not self.acs_to:
                r.problem(ACS_TO, "is required when ACS Email is configured")
        if self.webhook_secret and not self.webhook_url:
            r.problem(WEBHOOK_URL, f"is required when {WEBHOOK_SECRET} is set")
        if self.acs_endpoint and not _https_url(self.acs_endpoint):
            r.problem(ACS_ENDPOINT, f"must be an https URL, got {self.acs_endpoint!r}")
        if self.acs_connection_string:
            problem = acs_connection_string_problem(self.acs_connection_string)
            if problem:
                r.problem(ACS_CONNECTION_STRING, problem)
        for name, addresses in ((SMTP_FROM, (self.smtp_from,)), (SMTP_TO, self.smtp_to),
                                (ACS_SENDER, (self.acs_sender,)), (ACS_TO, self.acs_to)):
            # A line break in an address would end its email header (and start another).
            if any(_CONTROL.search(address) for address in addresses):
                r.problem(name, "must not contain line breaks or other control characters")

    @property
    def enabled(self) -> tuple[str, ...]:
        """The configured channels, in a fixed order."""
        on = {"smtp": bool(self.smtp_host),
              "acs": bool(self.acs_endpoint or self.acs_connection_string),
              "teams": bool(self.teams_url), "slack": bool(self.slack_url),
              "webhook": bool(self.webhook_url), "outbox": bool(self.outbox_dir)}
        return tuple(name for name in CHANNELS if on[name])


def _https_url(value: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and not _NOT_URL.search(value)


def _url(reader: SettingsReader, name: str) -> str:
    """An https URL (plain http only to loopback, for local receivers); never echoed back.

    Checked here for everything that would fail at send time, where the error (http.client's
    InvalidURL, urllib's "nonnumeric port") repeats the URL and its signature.
    """
    value = reader.text(name)
    if not value:
        return ""
    # The value is a secret (it carries the webhook's signature): describe, never repeat it.
    if _NOT_URL.search(value):
        reader.problem(name, "must be a URL without spaces, line breaks, control or non-ASCII "
                             "characters (percent-encode them; check for a stray paste)")
        return ""
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        reader.problem(name, "is not a valid URL (check the host and the port)")
        return ""
    if parts.username is not None or parts.password is not None:
        reader.problem(name, "must not carry credentials before the host (user:password@): "
                             "webhooks authenticate with the URL's path or query")
        return ""
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return value
    reader.problem(name, "must be an https URL (http only to localhost)")
    return ""


def acs_connection_string_problem(value: str) -> str:
    """What is wrong with an ACS connection string ('' if nothing), never repeating it.

    Parsed as the SDK parses it (azure/communication/email/_shared/utils.py), and the key
    decoded now: the SDK decodes it only to sign the first request ("Incorrect padding").
    """
    parts: dict[str, str] = {}
    for element in value.split(";"):
        key, _, part = element.partition("=")
        parts[key.strip().lower()] = part.strip()
    endpoint, access_key = parts.get("endpoint", ""), parts.get("accesskey", "")
    wrong = []
    if not _https_url(endpoint):
        wrong.append("its endpoint is not an https URL" if endpoint else "it has no endpoint")
    try:
        key_ok = bool(access_key) and bool(base64.b64decode(access_key, validate=True))
    except (binascii.Error, ValueError):
        key_ok = False
    if not key_ok:
        wrong.append("its accesskey is not a base64 key" if access_key else "it has no accesskey")
    if not wrong:
        return ""
    return (f"must be {ACS_CONNECTION_FORMAT} as the Azure portal shows it, but "
            f"{' and '.join(wrong)}")


def channel_problems(channels: ChannelSettings, notify: NotifySettings) -> list[tuple[str, str]]:
    """What the live notifier would refuse: no channel at all, or a rule naming an absent one."""
    if not channels.enabled:
        return [(SMTP_HOST, f"no notification channel is configured: set {SMTP_HOST}, "
                            f"{ACS_ENDPOINT}, {TEAMS_URL} (or another channel's setting, "
                            f"e.g. {OUTBOX_DIR})")]
    enabled = set(channels.enabled)
    problems = []
    for rule in notify.rules:
        missing = sorted(set(rule.channels or ()) - enabled)
        if missing:
            problems.append((RULES, f"{rule.name}: channel(s) {', '.join(missing)} are not "
                                    "configured"))
    return problems
