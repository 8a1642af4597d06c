"""Typed Azure ML events: Event Grid schema and CloudEvents 1.0 in, frozen dataclasses out.

Liberal in what we accept (data keys in any casing, `ModelVersion` as int or string, unknown
fields ignored, `specVersion` spelled either way), strict about what we act on (a missing
required field raises one InvalidEvent naming every field at fault).

The public face of the events package (`from handlers.events import parse as ev`): the values
live in types.py, the wire formats in event_grid.py / cloud_event.py, what the worker hands a
trigger in binding.py, the batch splitter in batch.py.
"""

from __future__ import annotations

from typing import Any

from handlers.errors import InvalidEvent
from handlers.events.batch import split_batch
from handlers.events.binding import to_envelope
from handlers.events.fields import Fields, Problems
from handlers.events.monitor import MONITOR_BREACH_TAG, breach_message, parse_breach
from handlers.events.types import (
    CLOUD_EVENT_SCHEMA,
    DATASET_DRIFT_DETECTED,
    EVENT_GRID_SCHEMA,
    ML_EVENT_TYPES,
    MODEL_DEPLOYED,
    MODEL_REGISTERED,
    PREFIX,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
    DatasetDriftDetected,
    EventEnvelope,
    MlEvent,
    ModelDeployed,
    ModelRegistered,
    MonitorBreach,
    RunCompleted,
    RunEvent,
    RunStatusChanged,
    Violation,
)

__all__ = [
    "CLOUD_EVENT_SCHEMA", "DATASET_DRIFT_DETECTED", "EVENT_GRID_SCHEMA", "ML_EVENT_TYPES",
    "MODEL_DEPLOYED", "MODEL_REGISTERED", "MONITOR_BREACH_TAG", "PREFIX", "RUN_COMPLETED",
    "RUN_STATUS_CHANGED", "DatasetDriftDetected", "EventEnvelope", "InvalidEvent", "MlEvent",
    "ModelDeployed", "ModelRegistered", "MonitorBreach", "RunCompleted", "RunEvent",
    "RunStatusChanged", "Violation", "parse_data", "parse_envelope", "parse_event", "split_batch",
]


def parse_envelope(event: Any) -> EventEnvelope:
    """The envelope of one event: func.EventGridEvent, func.CloudEvent, a dict or JSON text."""
    return to_envelope(event)


def _run_fields(data: Fields) -> dict[str, Any]:
    return {
        "experiment_id": data.text("experimentId", required=False),
        "experiment_name": data.text("experimentName", required=True),
        "run_id": data.text("runId", required=True),
        "run_type": data.text("runType", required=False),
        "run_tags": data.string_map("runTags"),
        "run_properties": data.string_map("runProperties"),
    }


def _build(envelope: EventEnvelope, data: Fields) -> MlEvent:
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
        fields = _run_fields(data)
        message = breach_message(fields["run_tags"])
        return RunStatusChanged(
            envelope=envelope, **fields, run_status=data.text("runStatus", required=True),
            monitor_breach=None if message is None else parse_breach(
                message, fields["experiment_name"]))
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
    problems: Problems = []
    event = _build(envelope, Fields(envelope.data, "data.", problems))
    if problems:
        raise InvalidEvent.from_problems(problems)
    return event


def parse_event(event: Any) -> MlEvent:
    """Parse one event (func object, dict or JSON) into its typed dataclass."""
    return parse_data(parse_envelope(event))
