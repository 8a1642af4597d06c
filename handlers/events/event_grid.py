"""An event in Event Grid schema, as a dict (the CLI, raw JSON), to the envelope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.events.fields import Fields, Problems, data_object, envelope
from handlers.events.types import EVENT_GRID_SCHEMA, EventEnvelope


def from_event_grid(raw: Mapping[str, Any]) -> EventEnvelope:
    """Read id, eventType, topic, subject (required), eventTime, dataVersion and data."""
    problems: Problems = []
    fields = Fields(raw, "", problems)
    return envelope(
        problems, id=fields.text("id", required=True),
        event_type=fields.text("eventType", required=True),
        topic=fields.text("topic", required=True), subject=fields.text("subject", required=True),
        event_time=fields.text("eventTime", required=False),
        data_version=fields.text("dataVersion", required=False),
        data=data_object(fields.get("data"), problems), schema=EVENT_GRID_SCHEMA, raw=raw)
