"""Settings of the outcome events: where they go, how the app signs in, whether rehearsals count.

Off when AMLEVENTS_OUTCOME_TOPIC_ENDPOINT is empty. With AMLEVENTS_OUTCOME_TOPIC_KEY the topic's
access key signs each request (`aeg-sas-key`); without it the app's managed identity does
(DefaultAzureCredential, role *EventGrid Data Sender* on the topic).

Outcomes of a concern in dry run (`planned` as `*Planned` types, and the skips and refusals a
rehearsal decides, all with `dryRun: true`) are published only when AMLEVENTS_OUTCOME_PUBLISH_DRY_RUN
says so; by default only when the topic is on this machine (the local simulator), so a rehearsal in
Azure never reaches the subscribers of real outcomes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from handlers.settings import SettingsReader

TOPIC_ENDPOINT = "AMLEVENTS_OUTCOME_TOPIC_ENDPOINT"
TOPIC_KEY = "AMLEVENTS_OUTCOME_TOPIC_KEY"
SOURCE = "AMLEVENTS_OUTCOME_SOURCE"
PUBLISH_DRY_RUN = "AMLEVENTS_OUTCOME_PUBLISH_DRY_RUN"
TIMEOUT_S = "AMLEVENTS_OUTCOME_TIMEOUT_S"
SITE_NAME = "WEBSITE_SITE_NAME"  # set by App Service / Azure Functions: the app's name


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (the local simulator)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OutcomeTopicSettings:
    """Where outcome events go (empty endpoint: nowhere) and how they are signed."""

    endpoint: str = ""
    key: str = field(default="", repr=False)
    source: str = "/amlevents/local"
    publish_dry_run: bool = False
    timeout_s: float = 10.0

    @property
    def enabled(self) -> bool:
        """True when outcome events are published."""
        return bool(self.endpoint)

    @property
    def local(self) -> bool:
        """True when the topic is on this machine (the local simulator)."""
        return is_loopback(urlsplit(self.endpoint).hostname or "")

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> OutcomeTopicSettings:
        """Build and validate from a mapping such as os.environ."""
        reader = SettingsReader(env)
        endpoint = reader.text(TOPIC_ENDPOINT)
        parts = urlsplit(endpoint)
        local = is_loopback(parts.hostname or "")
        if endpoint and (parts.scheme not in ("https", "http") or not parts.hostname):
            reader.problem(TOPIC_ENDPOINT, "must be the topic's URL, e.g. "
                           "https://TOPIC.REGION-1.eventgrid.azure.net/api/events")
        elif endpoint and parts.scheme == "http" and not local:
            reader.problem(TOPIC_ENDPOINT, "must use https (http only for the local simulator "
                           "on 127.0.0.1 or localhost)")
        if endpoint and local and not reader.text(TOPIC_KEY):
            reader.problem(TOPIC_KEY, "is required for a local topic (the simulator takes keys, "
                           "not managed identity tokens)")
        site = str(env.get(SITE_NAME) or "").strip()
        settings = cls(
            endpoint=endpoint, key=reader.text(TOPIC_KEY),
            source=reader.text(SOURCE, f"/amlevents/{site or 'local'}"),
            publish_dry_run=reader.flag(PUBLISH_DRY_RUN, local),
            timeout_s=reader.number(TIMEOUT_S, 10.0, minimum=0.5, maximum=120.0))
        reader.raise_if_invalid()
        return settings
