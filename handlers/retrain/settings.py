"""Settings of drift → retraining: routing, thresholds, parameter names, limits.

Routes and per-monitor thresholds are keyed by drift monitor name (exact) or id (any casing) for
v1 `DatasetDriftDetected`, and by signal or monitor name for v2 model-monitor breaches (see
`breach_key`). A target is one of three kinds, told apart by its ARM resource type:

* a Data Factory pipeline: a JSON object {"subscription", "resourceGroup", "factory",
  "pipeline"} or `/subscriptions/…/providers/Microsoft.DataFactory/factories/F/pipelines/P`;
* an Azure ML pipeline component: `…/Microsoft.MachineLearningServices/workspaces/W/components/
  NAME/versions/V`, or `…/components/NAME` for its latest version (a pipeline job is submitted);
* an Azure ML batch endpoint: `…/workspaces/W/batchEndpoints/NAME` (its default deployment,
  e.g. a pipeline component deployment, is invoked).

Names follow the Data Factory naming rules (https://learn.microsoft.com/azure/data-factory/naming-
rules) and Azure ML's (workspace 3-33 characters; endpoint 3-32, a letter first).
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

# Event field -> default pipeline parameter (or Azure ML job input) name. `requestId` is what makes
# a redelivery after "accepted but timed out" find the run it already started, so it cannot be
# turned off. v1 drift passes the first eight and requestId (unchanged, so existing pipelines keep
# working); a v2 monitor breach passes monitorName, signalName, driftRunId, features, violations,
# windowEnd and requestId (see decide.py).
DEFAULT_PARAMETER_NAMES: Mapping[str, str] = MappingProxyType({
    "monitorName": "monitorName", "monitorId": "monitorId", "driftRunId": "driftRunId",
    "baseDatasetId": "baseDatasetId", "targetDatasetId": "targetDatasetId",
    "driftCoefficient": "driftCoefficient", "windowStart": "windowStart",
    "windowEnd": "windowEnd", "signalName": "signalName", "features": "features",
    "violations": "violations", "requestId": "amleventsRequestId"})
REQUEST_ID = "requestId"

_TARGET_KEYS = ("subscription", "resourceGroup", "factory", "pipeline")
_ARM_PIPELINE_ID = re.compile(
    r"/?subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<resourceGroup>[^/]+)"
    r"/providers/Microsoft\.DataFactory/factories/(?P<factory>[^/]+)"
    r"/pipelines/(?P<pipeline>[^/]+)/?",
    re.IGNORECASE)
_ML_WORKSPACE = (r"/?subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<resourceGroup>[^/]+)"
                 r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<workspace>[^/]+)")
_ML_COMPONENT_ID = re.compile(
    _ML_WORKSPACE + r"/components/(?P<component>[^/]+)(?:/versions/(?P<version>[^/]+))?/?",
    re.IGNORECASE)
_ML_BATCH_ENDPOINT_ID = re.compile(_ML_WORKSPACE + r"/batchEndpoints/(?P<endpoint>[^/]+)/?",
                                   re.IGNORECASE)
_ML_WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,32}")
_ML_ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_ML_VERSION = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ML_ENDPOINT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]")
_RESOURCE_GROUP = re.compile(r"[-\w._()]{1,90}")
_FACTORY = re.compile(r"(?=.{3,63}$)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_PIPELINE_FORBIDDEN = set('.+?/<>*%&:\\')
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


DATA_FACTORY = "data_factory"
AML_COMPONENT = "aml_pipeline_component"
AML_BATCH_ENDPOINT = "aml_batch_endpoint"
TARGET_KINDS = (DATA_FACTORY, AML_COMPONENT, AML_BATCH_ENDPOINT)


@dataclass(frozen=True)
class DataFactoryTarget:
    """One Data Factory pipeline: where a retraining run is started."""

    subscription: str
    resource_group: str
    factory: str
    pipeline: str
    kind = DATA_FACTORY

    def as_dict(self) -> dict[str, str]:
        """The setting's JSON shape."""
        return {"subscription": self.subscription, "resourceGroup": self.resource_group,
                "factory": self.factory, "pipeline": self.pipeline}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> DataFactoryTarget:
        """From the setting's JSON shape (already validated)."""
        return cls(str(value["subscription"]), str(value["resourceGroup"]),
                   str(value["factory"]), str(value["pipeline"]))

    @property
    def resource_id(self) -> str:
        """The pipeline's ARM id."""
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.DataFactory/factories/{self.factory}"
                f"/pipelines/{self.pipeline}")

    def describe(self) -> str:
        """For people: 'Data Factory pipeline P in factory F'."""
        return f"Data Factory pipeline {self.pipeline} in factory {self.factory}"


@dataclass(frozen=True)
class _MlTarget:
    subscription: str
    resource_group: str
    workspace: str

    @property
    def workspace_id(self) -> str:
        """The workspace's ARM id."""
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}")


@dataclass(frozen=True)
class ComponentTarget(_MlTarget):
    """A registered Azure ML pipeline component: a pipeline job is submitted from it.

    `version` None means the latest version, resolved when the job is submitted.
    """

    component: str
    version: str | None = None
    kind = AML_COMPONENT

    @property
    def resource_id(self) -> str:
        """The component's ARM id (the container's when the latest version is meant)."""
        base = f"{self.workspace_id}/components/{self.component}"
        return f"{base}/versions/{self.version}" if self.version else base

    def as_dict(self) -> dict[str, str]:
        """Kind and resource id (what the route setting names)."""
        return {"kind": self.kind, "id": self.resource_id}

    def describe(self) -> str:
        """For people: 'Azure ML pipeline component C:V in workspace W'."""
        return (f"Azure ML pipeline component {self.component}:{self.version or 'latest'} in "
                f"workspace {self.workspace}")


@dataclass(frozen=True)
class BatchEndpointTarget(_MlTarget):
    """An Azure ML batch endpoint: its default deployment is invoked (one batch job)."""

    endpoint: str
    kind = AML_BATCH_ENDPOINT

    @property
    def resource_id(self) -> str:
        """The endpoint's ARM id."""
        return f"{self.workspace_id}/batchEndpoints/{self.endpoint}"

    def as_dict(self) -> dict[str, str]:
        """Kind and resource id (what the route setting names)."""
        return {"kind": self.kind, "id": self.resource_id}

    def describe(self) -> str:
        """For people: 'Azure ML batch endpoint E in workspace W'."""
        return f"Azure ML batch endpoint {self.endpoint} in workspace {self.workspace}"


RetrainTarget = DataFactoryTarget | ComponentTarget | BatchEndpointTarget


def target_from_dict(value: Mapping[str, Any]) -> RetrainTarget:
    """A target from its `as_dict()` (ledger state): Data Factory's shape, or kind and id."""
    if "kind" not in value:
        return DataFactoryTarget.from_dict(value)
    target, problems = target_problems(str(value["id"]))
    if target is None:
        raise ValueError(f"stored retraining target {value!r}: {'; '.join(problems)}")
    return target


# Used only while dry-run is on and no target is configured, so the demo shows a complete plan:
# a Data Factory pipeline for v1 drift, an Azure ML pipeline component for v2 monitor breaches.
PLACEHOLDER_TARGET = DataFactoryTarget("{subscription-id}", "{resource-group-name}",
                                       "{data-factory-name}", "{retraining-pipeline}")
PLACEHOLDER_COMPONENT = ComponentTarget("{subscription-id}", "{resource-group-name}",
                                        "{workspace-name}", "{retraining-pipeline-component}")


def _ml_target_problems(value: str) -> tuple[RetrainTarget | None, list[str]] | None:
    """An Azure ML component or batch endpoint id, or None when `value` is neither."""
    component = _ML_COMPONENT_ID.fullmatch(value)
    endpoint = _ML_BATCH_ENDPOINT_ID.fullmatch(value)
    match = component or endpoint
    if match is None:
        return None
    problems = _workspace_problems(match["subscription"], match["resourceGroup"],
                                   match["workspace"])
    target: RetrainTarget
    if component is not None:
        version = component["version"]
        if not _ML_ASSET_NAME.fullmatch(component["component"]):
            problems.append(f"component {component['component']!r} is not a valid component name")
        if version is not None and not _ML_VERSION.fullmatch(version):
            problems.append(f"component version {version!r} is not a valid version")
        target = ComponentTarget(match["subscription"], match["resourceGroup"], match["workspace"],
                                 component["component"], version)
    else:
        if not _ML_ENDPOINT_NAME.fullmatch(match["endpoint"]):
            problems.append(f"batch endpoint {match['endpoint']!r} is not a valid endpoint name "
                            "(3-32 characters, a letter first, letters, digits and hyphens)")
        target = BatchEndpointTarget(match["subscription"], match["resourceGroup"],
                                     match["workspace"], match["endpoint"])
    return (None, problems) if problems else (target, [])


def _workspace_problems(subscription: str, resource_group: str, workspace: str) -> list[str]:
    problems = []
    try:
        uuid.UUID(subscription)
    except ValueError:
        problems.append(f"subscription {subscription!r} is not a subscription id (GUID)")
    if not _RESOURCE_GROUP.fullmatch(resource_group):
        problems.append(f"resourceGroup {resource_group!r} is not a valid name")
    if not _ML_WORKSPACE_NAME.fullmatch(workspace):
        problems.append(f"workspace {workspace!r} is not a valid Azure ML workspace name")
    return problems


def target_problems(value: Any) -> tuple[RetrainTarget | None, list[str]]:
    """Parse a target (JSON object or ARM resource id); the target, or the problems found.

    The kind follows from the resource type in the id: a Data Factory pipeline, an Azure ML
    pipeline component (version optional: latest), or an Azure ML batch endpoint.
    """
    if isinstance(value, str):
        ml = _ml_target_problems(value.strip())
        if ml is not None:
            return ml
        match = _ARM_PIPELINE_ID.fullmatch(value.strip())
        if match is None:
            return None, ["must be a JSON object or the resource id of a Data Factory pipeline "
                          "(/subscriptions/…/factories/…/pipelines/…), an Azure ML component "
                          "(…/workspaces/…/components/NAME[/versions/V]) or an Azure ML batch "
                          "endpoint (…/workspaces/…/batchEndpoints/NAME)"]
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

    routes: Mapping[str, RetrainTarget | None]
    drift_threshold: float
    default_target: RetrainTarget | None
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

    def target_for(self, name: str, monitor_id: str) -> RetrainTarget | None:
        """The monitor's route (by name, then id), else the default; None means no retraining."""
        key = _lookup(self.routes, name, monitor_id)
        return self.routes[key] if key is not None else self.default_target

    def threshold_for(self, name: str, monitor_id: str, default: float) -> float:
        """The monitor's own threshold (by name, then id), else `default`."""
        key = _lookup(self.thresholds, name, monitor_id)
        return self.thresholds[key] if key is not None else default

    def breach_target(self, signal: str, monitor: str) -> tuple[str | None, RetrainTarget | None]:
        """A v2 breach's route key and target (see `breach_key`), else the default target."""
        key = breach_key(self.routes, signal, monitor)
        return key, (self.routes[key] if key is not None else self.default_target)

    def breach_threshold(self, signal: str, monitor: str) -> tuple[str, float] | None:
        """A v2 breach's own threshold, if one is set for its signal or monitor."""
        key = breach_key(self.thresholds, signal, monitor)
        return None if key is None else (key, self.thresholds[key])


def _lookup(table: Mapping[str, Any], name: str, monitor_id: str) -> str | None:
    if name in table:
        return name
    wanted = monitor_id.strip().lower()
    return next((k for k in table if wanted and k.strip().lower() == wanted), None)


def breach_key(table: Mapping[str, Any], signal: str, monitor: str) -> str | None:
    """The entry for a v2 breach, per signal and per monitor (names in any case):

    the signal's full name (`credit_card_fraud_monitor_data_drift`), else the monitor's name when
    the event tells it, else the longest key the signal name starts with followed by `_` (so the
    monitor's name routes every signal of the monitor).
    """
    lowered = {key.strip().lower(): key for key in table}
    for wanted in (signal, monitor):
        if wanted and wanted.strip().lower() in lowered:
            return lowered[wanted.strip().lower()]
    name = signal.strip().lower()
    prefixes = [k for k in lowered if k and name.startswith(k + "_")]
    return lowered[max(prefixes, key=len)] if prefixes else None


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


def _routes(reader: SettingsReader) -> dict[str, RetrainTarget | None]:
    routes: dict[str, RetrainTarget | None] = {}
    for monitor, value in _json_object(reader, ROUTES).items():
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            routes[monitor] = None  # explicitly no retraining for this monitor
            continue
        target, problems = target_problems(value)
        for problem in problems:
            reader.problem(ROUTES, f"monitor {monitor!r}: {problem}")
        routes[monitor] = target
    return routes


def _default_target(reader: SettingsReader) -> RetrainTarget | None:
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
