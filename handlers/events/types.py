"""The typed values of Azure ML events: the envelope and one frozen dataclass per event type.

Pure values, no parsing here (see parse.py). Schema reference:
https://learn.microsoft.com/azure/event-grid/event-schema-machine-learning
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "Microsoft.MachineLearningServices."
MODEL_REGISTERED = PREFIX + "ModelRegistered"
MODEL_DEPLOYED = PREFIX + "ModelDeployed"
RUN_COMPLETED = PREFIX + "RunCompleted"
RUN_STATUS_CHANGED = PREFIX + "RunStatusChanged"
DATASET_DRIFT_DETECTED = PREFIX + "DatasetDriftDetected"
ML_EVENT_TYPES = (MODEL_REGISTERED, MODEL_DEPLOYED, RUN_COMPLETED, RUN_STATUS_CHANGED,
                  DATASET_DRIFT_DETECTED)
_CANONICAL_TYPES = {name.lower(): name for name in ML_EVENT_TYPES}

# The two delivery schemas an Event Grid subscription may use (its `eventDeliverySchema`).
EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"


def canonical_type(event_type: str) -> str:
    """The documented spelling of an Azure ML event type (matched case-insensitively)."""
    return _CANONICAL_TYPES.get(event_type.lower(), event_type)


@dataclass(frozen=True, kw_only=True)
class EventEnvelope:
    """The schema-independent envelope of one event.

    `raw` is the event in the schema it arrived in (for a `func` object, rebuilt from its
    attributes); it is passed on (e.g. in webhook notifications), never parsed again.
    """

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
class RunEvent:
    """The fields both run events carry (RunCompleted, RunStatusChanged)."""

    envelope: EventEnvelope
    experiment_id: str
    experiment_name: str
    run_id: str
    run_type: str
    run_tags: Mapping[str, str]
    run_properties: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class RunCompleted(RunEvent):
    """A run completed."""


@dataclass(frozen=True, kw_only=True)
class RunStatusChanged(RunEvent):
    """A run changed status (failed, completed, running, ...)."""

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
