"""Typed Azure ML events: Event Grid schema and CloudEvents 1.0 in, frozen dataclasses out.

Liberal in what we accept (data keys in any casing, `ModelVersion` as int or string, unknown
fields ignored, `specVersion` spelled either way), strict about what we act on (a missing
required field raises one InvalidEvent naming every field at fault).
Schema reference: https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.errors import InvalidEvent

PREFIX = "Microsoft.MachineLearningServices."
MODEL_REGISTERED = PREFIX + "ModelRegistered"
MODEL_DEPLOYED = PREFIX + "ModelDeployed"
RUN_COMPLETED = PREFIX + "RunCompleted"
RUN_STATUS_CHANGED = PREFIX + "RunStatusChanged"
DATASET_DRIFT_DETECTED = PREFIX + "DatasetDriftDetected"
ML_EVENT_TYPES = (MODEL_REGISTERED, MODEL_DEPLOYED, RUN_COMPLETED, RUN_STATUS_CHANGED,
                  DATASET_DRIFT_DETECTED)
_CANONICAL_TYPES = {name.lower(): name for name in ML_EVENT_TYPES}

EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"


@dataclass(frozen=True, kw_only=True)
class EventEnvelope:
    """The schema-independent envelope of one event; `raw` keeps the dict as received."""

    id: str
    event_type: str
    subject: str
    topic: str
    event_time: str
    data_version: str
    schema: str
    data: Mapping[str, Any]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def known_type(self) -> bool:
        """True for the five Azure ML event types this app understands."""
        return self.event_type in ML_EVENT_TYPES


@dataclass(frozen=True, kw_only=True)
class ModelRegistered:
    """A model version was registered in the workspace."""

    envelope: EventEnvelope
    model_name: str
    model_version: str
    model_tags: Mapping[str, str]
    model_properties: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class ModelDeployed:
    """A model was deployed to a service (endpoint)."""

    envelope: EventEnvelope
    service_name: str
    service_compute_type: str
    model_ids: tuple[str, ...]
    service_tags: Mapping[str, str]
    service_properties: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class RunCompleted:
    """A run completed."""

    envelope: EventEnvelope
    experiment_id: str
    experiment_name: str
    run_id: str
    run_type: str
    run_tags: Mapping[str, str]
    run_properties: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class RunStatusChanged:
    """A run changed status (failed, completed, running, ...)."""

    envelope: EventEnvelope
    experiment_id: str
    experiment_name: str
    run_id: str
    run_type: str
    run_tags: Mapping[str, str]
    run_properties: Mapping[str, str]
    run_status: str


@dataclass(frozen=True, kw_only=True)
class DatasetDriftDetected:
    """A data drift monitor run detected drift."""

    envelope: EventEnvelope
    data_drift_id: str
    data_drift_name: str
    run_id: str
    base_dataset_id: str
    target_dataset_id: str
    drift_coefficient: float
    start_time: str
    end_time: str


MlEvent = ModelRegistered | ModelDeployed | RunCompleted | RunStatusChanged | DatasetDriftDetected


class _Fields:
    """Case-insensitive reader over one mapping that collects problems instead of raising early."""

    def __init__(self, source: Mapping[str, Any], prefix: str,
                 problems: list[tuple[str, str]]) -> None:
        self._by_lower = {str(key).lower(): value for key, value in source.items()}
        self._prefix = prefix
        self.problems = problems

    def _name(self, key: str) -> str:
        return f"{self._prefix}{key}"

    def get(self, key: str) -> Any:
        return self._by_lower.get(key.lower())

    def text(self, key: str, *, required: bool) -> str:
        value = self.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.problems.append((self._name(key), "is required"))
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.problems.append((self._name(key), f"must be a string, got {type(value).__name__}"))
            return ""
        return str(value)

    def number(self, key: str) -> float:
        value = self.get(key)
        if value is None:
            self.problems.append((self._name(key), "is required"))
            return math.nan
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            self.problems.append((self._name(key), f"must be a finite number, got {value!r}"))
        return number

    def string_map(self, key: str) -> dict[str, str]:
        value = self.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.append((self._name(key), f"must be an object, got {type(value).__name__}"))
            return {}
        result: dict[str, str] = {}
        for name, item in value.items():
            if isinstance(item, (Mapping, list)):
                self.problems.append((f"{self._name(key)}.{name}", "must be a string value"))
            elif isinstance(item, bool):
                result[str(name)] = "true" if item else "false"
            else:
                result[str(name)] = "" if item is None else str(item)
        return result


def to_dict(event: Any) -> Mapping[str, Any]:
    """Accept a raw dict, a JSON string/bytes, or an azure.functions.EventGridEvent."""
    if isinstance(event, Mapping):
        return event
    if isinstance(event, (bytes, bytearray, str)):
        try:
            loaded = json.loads(event)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEvent("body", f"is not valid JSON: {exc}") from exc
        if not isinstance(loaded, Mapping):
            raise InvalidEvent("body", f"must be a JSON object, got {type(loaded).__name__}")
        return loaded
    if hasattr(event, "event_type") and hasattr(event, "get_json"):
        # azure.functions.EventGridEvent: the worker has already unpacked the envelope.
        event_time: Any = getattr(event, "event_time", None)
        return {
            "id": event.id, "topic": event.topic, "subject": event.subject,
            "eventType": event.event_type,
            "eventTime": event_time.isoformat() if hasattr(event_time, "isoformat") else event_time,
            "dataVersion": getattr(event, "data_version", ""), "data": event.get_json(),
        }
    raise InvalidEvent("body", f"unsupported event object {type(event).__name__}")


def _is_cloud_event(raw: Mapping[str, Any]) -> bool:
    return any(key.lower() == "specversion" for key in raw)


def parse_envelope(event: Any) -> EventEnvelope:
    """Parse the envelope of one event in Event Grid or CloudEvents 1.0 schema."""
    raw = to_dict(event)
    problems: list[tuple[str, str]] = []
    fields = _Fields(raw, "", problems)
    cloud = _is_cloud_event(raw)
    if cloud:
        version = fields.text("specversion", required=True)
        if version and version != "1.0":
            problems.append(("specversion", f"must be 1.0, got {version!r}"))
        type_key, topic_key, time_key, version_key = "type", "source", "time", "dataschema"
    else:
        type_key, topic_key, time_key, version_key = "eventType", "topic", "eventTime", "dataVersion"
    event_id = fields.text("id", required=True)
    event_type = fields.text(type_key, required=True)
    topic = fields.text(topic_key, required=True)
    subject = fields.text("subject", required=not cloud)
    event_time = fields.text(time_key, required=False)
    data_version = fields.text(version_key, required=False)
    data = fields.get("data")
    if isinstance(data, (str, bytes)) and data:
        try:
            data = json.loads(data)
        except ValueError:
            problems.append(("data", "must be a JSON object"))
    if data is None:
        problems.append(("data", "is required"))
        data = {}
    elif not isinstance(data, Mapping):
        problems.append(("data", f"must be an object, got {type(data).__name__}"))
        data = {}
    if problems:
        raise InvalidEvent.from_problems(problems)
    return EventEnvelope(
        id=event_id, event_type=_CANONICAL_TYPES.get(event_type.lower(), event_type),
        subject=subject, topic=topic, event_time=event_time, data_version=data_version,
        schema=CLOUD_EVENT_SCHEMA if cloud else EVENT_GRID_SCHEMA, data=data, raw=raw)


def _run_fields(data: _Fields) -> dict[str, Any]:
    return {
        "experiment_id": data.text("experimentId", required=False),
        "experiment_name": data.text("experimentName", required=True),
        "run_id": data.text("runId", required=True),
        "run_type": data.text("runType", required=False),
        "run_tags": data.string_map("runTags"),
        "run_properties": data.string_map("runProperties"),
    }


def _build(envelope: EventEnvelope, data: _Fields) -> MlEvent:
    kind = envelope.event_type
    if kind == MODEL_REGISTERED:
        return ModelRegistered(
            envelope=envelope, model_name=data.text("ModelName", required=True),
            model_version=data.text("ModelVersion", required=True),
            model_tags=data.string_map("ModelTags"),
            model_properties=data.string_map("ModelProperties"))
    if kind == MODEL_DEPLOYED:
        ids = data.text("ModelIds", required=False)
        return ModelDeployed(
            envelope=envelope, service_name=data.text("ServiceName", required=True),
            service_compute_type=data.text("ServiceComputeType", required=False),
            model_ids=tuple(part.strip() for part in ids.split(",") if part.strip()),
            service_tags=data.string_map("ServiceTags"),
            service_properties=data.string_map("ServiceProperties"))
    if kind == RUN_COMPLETED:
        return RunCompleted(envelope=envelope, **_run_fields(data))
    if kind == RUN_STATUS_CHANGED:
        return RunStatusChanged(envelope=envelope, **_run_fields(data),
                                run_status=data.text("runStatus", required=True))
    return DatasetDriftDetected(
        envelope=envelope, data_drift_id=data.text("DataDriftId", required=True),
        data_drift_name=data.text("DataDriftName", required=True),
        run_id=data.text("RunId", required=True),
        base_dataset_id=data.text("BaseDatasetId", required=False),
        target_dataset_id=data.text("TargetDatasetId", required=False),
        drift_coefficient=data.number("DriftCoefficient"),
        start_time=data.text("StartTime", required=False),
        end_time=data.text("EndTime", required=False))


def parse_data(envelope: EventEnvelope) -> MlEvent:
    """Parse the data of an envelope whose type is one of the five Azure ML event types."""
    if not envelope.known_type:
        raise InvalidEvent("eventType", f"{envelope.event_type!r} is not an Azure ML event type")
    problems: list[tuple[str, str]] = []
    event = _build(envelope, _Fields(envelope.data, "data.", problems))
    if problems:
        raise InvalidEvent.from_problems(problems)
    return event


def parse_event(event: Any) -> MlEvent:
    """Parse one event (dict, JSON or azure.functions.EventGridEvent) into its typed dataclass."""
    return parse_data(parse_envelope(event))


def split_batch(payload: Any) -> list[Any]:
    """A delivery body is one event or an array of events; return the items."""
    if isinstance(payload, (bytes, bytearray, str)):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEvent("body", f"is not valid JSON: {exc}") from exc
    if isinstance(payload, list):
        return payload
    if isinstance(payload, Mapping):
        return [payload]
    raise InvalidEvent("body", f"must be an event object or an array of events, got "
                               f"{type(payload).__name__}")
