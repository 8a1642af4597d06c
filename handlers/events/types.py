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


@dataclass(frozen=True)
class Violation:
    """One metric of one feature (a monitor's `group`) on the wrong side of its threshold."""

    feature: str
    metric: str
    value: float
    threshold: float

    @property
    def higher_is_worse(self) -> bool:
        """Drift distances breach upwards; accuracy-like metrics breach downwards."""
        return self.value > self.threshold

    def describe(self) -> str:
        """'age: jensen_shannon_distance 0.41 > 0.1'."""
        sign = ">" if self.higher_is_worse else "<"
        where = f"{self.feature}: " if self.feature else ""
        return f"{where}{self.metric} {self.value:g} {sign} {self.threshold:g}"

    def as_dict(self) -> dict[str, object]:
        """As the monitor writes it (group, metric_name, metric_value, threshold_value)."""
        return {"feature": self.feature, "metric": self.metric, "value": self.value,
                "threshold": self.threshold}


@dataclass(frozen=True, kw_only=True)
class MonitorBreach:
    """What a v2 model monitor wrote in `RunTags.azureml_modelmonitor_threshold_breached`.

    `signal` is the name the message quotes (Microsoft's article: the monitor's name and the
    signal's joined by `_`, e.g. credit_card_fraud_monitor_data_drift); `monitor` is the monitor's
    own name when it can be told apart (empty otherwise). `message` is the tag as written.
    """

    signal: str
    monitor: str
    violations: tuple[Violation, ...]
    message: str = field(repr=False)

    @property
    def features(self) -> tuple[str, ...]:
        """The features (groups) that breached, each once, in the monitor's order."""
        return tuple(dict.fromkeys(v.feature for v in self.violations if v.feature))

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics that breached, each once."""
        return tuple(dict.fromkeys(v.metric for v in self.violations if v.metric))

    @property
    def monitor_key(self) -> str:
        """What routes and coalesces it: the monitor when known, else the signal."""
        return self.monitor or self.signal


@dataclass(frozen=True, kw_only=True)
class RunStatusChanged(RunEvent):
    """A run changed status (failed, completed, running, ...).

    `monitor_breach` is set when the run tags carry a v2 model monitor's threshold breach (the
    event is then a monitor breach while `run_status` is Failed, and its recovery otherwise).
    """

    run_status: str
    monitor_breach: MonitorBreach | None = None

    @property
    def is_monitor_breach(self) -> bool:
        """A model monitor's signal failed on a threshold (tag present, run Failed)."""
        return self.monitor_breach is not None and self.run_status.strip().lower() == "failed"


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
