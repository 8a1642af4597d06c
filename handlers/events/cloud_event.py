"""An event in CloudEvents 1.0 structured JSON, as a dict (the CLI, raw JSON), to the envelope.

Event Grid maps its schema onto CloudEvents as source = topic, type = eventType, time =
eventTime, dataschema = "#" + dataVersion; `subject` is optional in CloudEvents, so it is not
required here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.events.fields import Fields, Problems, data_object, envelope, text
from handlers.events.types import CLOUD_EVENT_SCHEMA, EventEnvelope

SPEC_VERSION = "1.0"
# The Event Grid schema's keys, as documented (none of them is `specversion` in any casing).
_EVENT_GRID_KEYS = frozenset({"id", "topic", "subject", "eventType", "eventTime", "data",
                              "dataVersion", "metadataVersion"})


def is_cloud_event(raw: Mapping[str, Any]) -> bool:
    """A CloudEvent carries `specversion` (we also accept the `specVersion` spelling)."""
    if "specversion" in raw:
        return True
    if raw.keys() <= _EVENT_GRID_KEYS:  # an Event Grid event as documented: one set operation
        return False
    return any(isinstance(key, str) and len(key) == 11 and key.lower() == "specversion"
               for key in raw)


def check_spec_version(value: Any, problems: Problems) -> None:
    """Only CloudEvents 1.0 is understood; 0.x names its attributes differently."""
    version = text(value, "specversion", problems, required=True)
    if version and version != SPEC_VERSION:
        problems.append(("specversion", f"must be {SPEC_VERSION}, got {version!r}"))


def data_version(dataschema: str) -> str:
    """The Event Grid dataVersion carried in a CloudEvents dataschema ("#2" -> "2", "#" -> "")."""
    return dataschema[1:] if dataschema.startswith("#") else dataschema


def from_cloud_event(raw: Mapping[str, Any]) -> EventEnvelope:
    """Read specversion, id, type, source (required), subject, time, dataschema and data."""
    problems: Problems = []
    fields = Fields(raw, "", problems)
    check_spec_version(fields.get("specversion"), problems)
    return envelope(
        problems, id=fields.text("id", required=True), event_type=fields.text("type", required=True),
        topic=fields.text("source", required=True), subject=fields.text("subject", required=False),
        event_time=fields.text("time", required=False),
        data_version=data_version(fields.text("dataschema", required=False)),
        data=data_object(fields.get("data"), problems), schema=CLOUD_EVENT_SCHEMA, raw=raw)
