"""Settings of drift → Data Factory retraining: routing, thresholds, parameter names, limits.

Routes and per-monitor thresholds are keyed by drift monitor name (exact) or id (any casing);
a target is a JSON object {"subscription", "resourceGroup", "factory", "pipeline"} or the ARM
id of the pipeline. Names follow the Data Factory naming rules:
https://learn.microsoft.com/azure/data-factory/naming-rules
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from handlers.settings import SettingsReader

DRIFT_THRESHOLD = "AMLEVENTS_DRIFT_THRESHOLD"
ROUTES = "AMLEVENTS_RETRAIN_ROUTES"
DEFAULT_TARGET = "AMLEVENTS_RETRAIN_DEFAULT_TARGET"
MONITOR_THRESHOLDS = "AMLEVENTS_DRIFT_MONITOR_THRESHOLDS"
PARAMETER_NAMES = "AMLEVENTS_RETRAIN_PARAMETER_NAMES"
COOLDOWN_S = "AMLEVENTS_RETRAIN_COOLDOWN_S"
ARM_ENDPOINT = "AMLEVENTS_RETRAIN_ARM_ENDPOINT"
TIMEOUT_S = "AMLEVENTS_RETRAIN_TIMEOUT_S"
READ_RETRIES = "AMLEVENTS_RETRAIN_READ_RETRIES"
RECONCILE_GRACE_S = "AMLEVENTS_RETRAIN_RECONCILE_GRACE_S"

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"

# Event field -> default ADF pipeline parameter name. `requestId` is what makes a redelivery
# after "accepted but timed out" find the run it already started, so it cannot be turned off.
DEFAULT_PARAMETER_NAMES: Mapping[str, str] = MappingProxyType({
    "monitorName": "monitorName", "monitorId": "monitorId", "driftRunId": "driftRunId",
    "baseDatasetId": "baseDatasetId", "targetDatasetId": "targetDatasetId",
    "driftCoefficient": "driftCoefficient", "windowStart": "windowStart",
    "windowEnd": "windowEnd", "requestId": "amleventsRequestId"})
REQUEST_ID = "requestId"

_TARGET_KEYS = ("subscription", "resourceGroup", "factory", "pipeline")
_ARM_PIPELINE_ID = re.compile(
    r"/?subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<resourceGroup>[^/]+)"
    r"/providers/Microsoft\.DataFactory/factories/(?P<factory>[^/]+)"
    r"/pipelines/(?P<pipeline>[^/]+)/?",
    re.IGNORECASE)
_RESOURCE_GROUP = re.compile(r"[-\w._()]{1,90}")
_FACTORY = re.compile(r"(?=.{3,63}$)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_PIPELINE_FORBIDDEN = set('.+?/<>*%&:\\')
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class DataFactoryTarget:
    """One Data Factory pipeline: where a retraining run is started."""

    subscription: str
    resource_group: str
    factory: str
    pipeline: str

    def as_dict(self) -> dict[str, str]:
        """The setting's JSON shape."""
        return {"subscription": self.subscription, "resourceGroup": self.resource_group,
                "factory": self.factory, "pipeline": self.pipeline}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> DataFactoryTarget:
        """From the setting's JSON shape (already validated)."""
        return cls(str(value["subscription"]), str(value["resourceGroup"]),
                   str(value["factory"]), str(value["pipeline"]))


# Used only while dry-run is on and no target is configured, so the demo shows a complete plan.
PLACEHOLDER_TARGET = DataFactoryTarget("{subscription-id}", "{resource-group-name}",
                                       "{data-factory-name}", "{retraining-pipeline}")


def target_problems(value: Any) -> tuple[DataFactoryTarget | None, list[str]]:
    """Parse a target (JSON object or ARM pipeline id); the target, or the problems found."""
    if isinstance(value, str):
        match = _ARM_PIPELINE_ID.fullmatch(value.strip())
        if match is None:
            return None, ["must be a JSON object or a Data Factory pipeline resource id "
                          "(/subscriptions/…/factories/…/pipelines/…)"]
        value = match.groupdict()
    if not isinstance(value, Mapping):
        return None, ["must be a JSON object with " + ", ".join(_TARGET_KEYS)]
    lowered = {str(k).lower(): v for k, v in value.items()}
    fields = {key: lowered.get(key.lower()) for key in _TARGET_KEYS}
    problems = [f"{key} is required" for key, v in fields.items()
                if not isinstance(v, str) or not v.strip()]
    problems += [f"unknown key {k!r}" for k in value
                 if str(k).lower() not in {t.lower() for t in _TARGET_KEYS}]
    if problems:
        return None, problems
    target = DataFactoryTarget(*(str(fields[k]).strip() for k in _TARGET_KEYS))
    try:
        uuid.UUID(target.subscription)
    except ValueError:
        problems.append(f"subscription {target.subscription!r} is not a subscription id (GUID)")
    if not _RESOURCE_GROUP.fullmatch(target.resource_group):
        problems.append(f"resourceGroup {target.resource_group!r} is not a valid name")
    if not _FACTORY.fullmatch(target.factory):
        problems.append(f"factory {target.factory!r} is not a valid Data Factory name")
    if len(target.pipeline) > 140 or _PIPELINE_FORBIDDEN & set(target.pipeline):
        problems.append(f"pipeline {target.pipeline!r} is not a valid pipeline name")
    return (None, problems) if problems else (target, [])


@dataclass(frozen=True)
class RetrainSettings:
    """Where and how drift starts a retraining run; built from a mapping, validated at once."""

    routes: Mapping[str, DataFactoryTarget | None]
    drift_threshold: float
    default_target: DataFactoryTarget | None
    thresholds: Mapping[str, float]
    parameter_names: Mapping[str, str]
    cooldown_s: float
    arm_endpoint: str
    timeout_s: float
    read_retries: int
    reconcile_grace_s: float

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> RetrainSettings:
        """Build and validate from a mapping such as os.environ."""
        reader = SettingsReader(env)
        settings = cls(
            routes=MappingProxyType(_routes(reader)),
            drift_threshold=reader.number(DRIFT_THRESHOLD, 0.3, minimum=0.0, maximum=1.0),
            default_target=_default_target(reader),
            thresholds=MappingProxyType(_thresholds(reader)),
            parameter_names=MappingProxyType(_parameter_names(reader)),
            cooldown_s=reader.number(COOLDOWN_S, 0.0, minimum=0.0, maximum=30 * 86400.0),
            arm_endpoint=_endpoint(reader),
            timeout_s=reader.number(TIMEOUT_S, 30.0, minimum=0.05, maximum=600.0),
            read_retries=reader.integer(READ_RETRIES, 2, minimum=0, maximum=10),
            # An unanswered createRun may land late, or be listed late by queryPipelineRuns.
            reconcile_grace_s=reader.number(RECONCILE_GRACE_S, 120.0, minimum=0.0,
                                            maximum=86400.0),
        )
        reader.raise_if_invalid()
        return settings

    @property
    def has_targets(self) -> bool:
        """True when any target is configured (routes or a default)."""
        return bool(self.routes) or self.default_target is not None

    def target_for(self, name: str, monitor_id: str) -> DataFactoryTarget | None:
        """The monitor's route (by name, then id), else the default; None means no retraining."""
        key = _lookup(self.routes, name, monitor_id)
        return self.routes[key] if key is not None else self.default_target

    def threshold_for(self, name: str, monitor_id: str, default: float) -> float:
        """The monitor's own threshold (by name, then id), else `default`."""
        key = _lookup(self.thresholds, name, monitor_id)
        return self.thresholds[key] if key is not None else default


def _lookup(table: Mapping[str, Any], name: str, monitor_id: str) -> str | None:
    if name in table:
        return name
    wanted = monitor_id.strip().lower()
    return next((k for k in table if wanted and k.strip().lower() == wanted), None)


def _json_object(reader: SettingsReader, name: str) -> Mapping[str, Any]:
    raw = reader.text(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        reader.problem(name, f"is not valid JSON: {exc}")
        return {}
    if not isinstance(value, dict):
        reader.problem(name, "must be a JSON object")
        return {}
    return value


def _routes(reader: SettingsReader) -> dict[str, DataFactoryTarget | None]:
    routes: dict[str, DataFactoryTarget | None] = {}
    for monitor, value in _json_object(reader, ROUTES).items():
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            routes[monitor] = None  # explicitly no retraining for this monitor
            continue
        target, problems = target_problems(value)
        for problem in problems:
            reader.problem(ROUTES, f"monitor {monitor!r}: {problem}")
        routes[monitor] = target
    return routes


def _default_target(reader: SettingsReader) -> DataFactoryTarget | None:
    raw = reader.text(DEFAULT_TARGET)
    if not raw:
        return None
    value: Any = raw
    if raw.startswith("{"):
        try:
            value = json.loads(raw)
        except ValueError as exc:
            reader.problem(DEFAULT_TARGET, f"is not valid JSON: {exc}")
            return None
    target, problems = target_problems(value)
    for problem in problems:
        reader.problem(DEFAULT_TARGET, problem)
    return target


def _thresholds(reader: SettingsReader) -> dict[str, float]:
    thresholds: dict[str, float] = {}
    for monitor, value in _json_object(reader, MONITOR_THRESHOLDS).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0.0 <= float(value) <= 1.0:
            reader.problem(MONITOR_THRESHOLDS,
                           f"monitor {monitor!r}: must be a number between 0 and 1, got {value!r}")
            continue
        thresholds[monitor] = float(value)
    return thresholds


def _parameter_names(reader: SettingsReader) -> dict[str, str]:
    names = dict(DEFAULT_PARAMETER_NAMES)
    for field, value in _json_object(reader, PARAMETER_NAMES).items():
        if field not in DEFAULT_PARAMETER_NAMES:
            reader.problem(PARAMETER_NAMES, f"unknown field {field!r} (known: "
                           f"{', '.join(DEFAULT_PARAMETER_NAMES)})")
        elif value is None or value == "":
            if field == REQUEST_ID:
                reader.problem(PARAMETER_NAMES, "requestId cannot be turned off: redeliveries "
                               "use it to find a run already started")
            names.pop(field, None)
        elif not isinstance(value, str) or not _PARAMETER.fullmatch(value):
            reader.problem(PARAMETER_NAMES, f"{field}: {value!r} is not a valid parameter name")
        else:
            names[field] = value
    used = list(names.values())
    for duplicate in sorted({n for n in used if used.count(n) > 1}):
        reader.problem(PARAMETER_NAMES, f"parameter name {duplicate!r} is used twice")
    return names


def _endpoint(reader: SettingsReader) -> str:
    endpoint = reader.text(ARM_ENDPOINT, DEFAULT_ARM_ENDPOINT).rstrip("/")
    if not re.fullmatch(r"https://[^/\s]+(/\S*)?", endpoint):
        reader.problem(ARM_ENDPOINT, f"must be an https:// URL, got {endpoint!r}")
        return DEFAULT_ARM_ENDPOINT
    return endpoint
