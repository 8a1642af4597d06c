"""Data Factory (Microsoft.DataFactory) routes of the fake ARM.

Served under ``/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.DataFactory/factories/{f}``
at the api-versions the REST specs define (specification/datafactory/resource-manager/readme.md:
2018-06-01, and 2017-09-01-preview for createRun and pipelineruns/{runId} only; ``API_VERSIONS``):

* ``POST .../pipelines/{p}/createRun`` -> ``{"runId": "<uuid>"}``; the body is the parameters
  object; ``referencePipelineRunId`` reuses a run's parameters. Pipelines are declared with
  ``add_pipeline(factory, pipeline, parameters={name: {"type": ..., "defaultValue": ...}})`` (ADF's
  ``ParameterSpecification``, checked with azure-mgmt-datafactory's own model). A parameter the
  pipeline does not declare, a declared one without ``defaultValue`` left out, or a value of the
  wrong type (String/SecureString, Int, Float, Bool, Array, Object) → 400 ``BadRequest`` naming it,
  and no run. An unknown factory → 404 ``ResourceNotFound`` (ARM), an unknown pipeline → 404
  ``EntityNotFound`` "Entity {p} not found" (modelled on what ADF answers; the REST reference gives
  neither wording).
* ``GET .../pipelineruns/{runId}`` -> a PipelineRun (runId, pipelineName, status, runStart,
  parameters as strings, defaults included, ...); ``POST .../pipelineruns/{runId}/cancel`` moves a
  running one to ``Canceling`` (cancelling is asynchronous in ADF: ``set_run_status`` ends it).
* ``POST .../queryPipelineRuns``: a ``RunFilterParameters`` body (checked with the SDK's model:
  lastUpdatedAfter/Before required, operators Equals/NotEquals/In/NotIn, an unknown one → 400),
  filters on the pipeline-run operands (PipelineName, Status, RunStart, RunEnd, RunGroupId,
  LatestOnly; an activity or trigger operand → 400), ``orderBy``, paged by ``page_size`` with
  ``continuationToken``; answers ``{"value": [PipelineRun], "continuationToken"}``
  (learn.microsoft.com/rest/api/datafactory/pipeline-runs/query-by-factory).

Test hooks: ``set_run_status`` (Queued/InProgress/Succeeded/Failed/Canceling/Cancelled),
``runs()``/``run()`` views, and ``accept_then_time_out`` (the run is created, the answer comes late).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.mgmt.datafactory import models as rest

from .arm import RecordedRequest, Reply, arm_error, invalid_body, utc_now
from .arm_models import check

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .arm import FakeArm

NAMESPACE = "Microsoft.DataFactory"
API_VERSIONS: Mapping[str, frozenset[str]] = {
    "factories/pipelines": frozenset({"2017-09-01-preview", "2018-06-01"}),
    "factories/pipelineruns": frozenset({"2017-09-01-preview", "2018-06-01"}),
    "factories/pipelineruns/cancel": frozenset({"2018-06-01"}),
    "factories/queryPipelineRuns": frozenset({"2018-06-01"}),
}
RUN_STATUSES = ("Queued", "InProgress", "Succeeded", "Failed", "Canceling", "Cancelled")
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})
# What a pipeline-run query may filter on (RunQueryFilterOperand's documentation).
PIPELINE_RUN_OPERANDS = {"pipelinename": "pipelineName", "status": "status", "runstart": "runStart",
                         "runend": "runEnd", "rungroupid": "runGroupId", "latestonly": "isLatest"}
_JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,), "securestring": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "array": (list,), "object": (dict,)}
# A retraining pipeline as the docs tell users to build one: it declares every parameter amlevents
# passes (docs/retraining.md), amleventsRequestId required, the others with defaults.
AMLEVENTS_PARAMETERS: Mapping[str, Mapping[str, Any]] = {
    **{name: {"type": "String", "defaultValue": ""} for name in (
        "monitorName", "monitorId", "driftRunId", "baseDatasetId", "targetDatasetId", "windowStart",
        "windowEnd")},
    "driftCoefficient": {"type": "Float", "defaultValue": 0.0},
    "amleventsRequestId": {"type": "String"}}
_FACTORY = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
            r"Microsoft\.DataFactory/factories/(?P<factory>[^/]+)")


@dataclass(frozen=True)
class PipelineRunView:
    """A pipeline run as the fake holds it (``parameters`` as sent; ``raw`` as ADF answers it)."""

    run_id: str
    factory: str
    pipeline: str
    parameters: Mapping[str, Any]
    status: str
    query: Mapping[str, str]
    raw: Mapping[str, Any] = field(repr=False)


def _as_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _duration_ms(start: str, end: str) -> int:
    elapsed = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return int(elapsed.total_seconds() * 1000)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class AdfService:
    """In-memory Data Factory state behind the fake ARM routes."""

    def __init__(self, arm: FakeArm, *, initial_status: str = "Queued", page_size: int = 100) -> None:
        self.arm = arm
        self.initial_status = initial_status
        self.page_size = page_size
        self._factories: set[tuple[str, ...]] = set()
        self._pipelines: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
        self._runs: dict[str, dict[str, Any]] = {}
        self._sent: dict[str, tuple[tuple[str, ...], Mapping[str, Any], Mapping[str, str]]] = {}
        for method, path, handler, kind in (
                ("POST", r"/pipelines/(?P<pipeline>[^/]+)/createRun", self._create_run,
                 "factories/pipelines"),
                ("GET", r"/pipelineruns/(?P<run>[^/]+)", self._get_run, "factories/pipelineruns"),
                ("POST", r"/pipelineruns/(?P<run>[^/]+)/cancel", self._cancel_run,
                 "factories/pipelineruns/cancel"),
                ("POST", r"/queryPipelineRuns", self._query_runs, "factories/queryPipelineRuns")):
            arm.add_route(method, _FACTORY + path, handler, resource_type=f"{NAMESPACE}/{kind}",
                          api_versions=API_VERSIONS[kind])

    # -- seeding and hooks ---------------------------------------------------------------------

    def add_pipeline(self, factory: str, pipeline: str, *,
                     parameters: Mapping[str, Mapping[str, Any]] | None = None,
                     resource_group: str | None = None) -> None:
        """Declare that ``factory`` exists and holds ``pipeline`` with these declared parameters
        (``{name: {"type": "String", "defaultValue": ...}}``; no defaultValue = required)."""
        declared = {name: dict(spec) for name, spec in (parameters or {}).items()}
        for name, spec in declared.items():
            problems = check(rest.ParameterSpecification, spec)
            if problems:
                raise ValueError(f"parameter {name}: {problems[0].message}")
        rg = resource_group or self.arm.resource_group
        with self.arm.lock:
            self._factories.add(self._key(rg, factory))
            self._pipelines[self._key(rg, factory, pipeline)] = declared

    def set_run_status(self, run_id: str, status: str, message: str = "") -> None:
        """Move a run to ``status`` (terminal ones get runEnd and durationInMs)."""
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, not {status!r}")
        with self.arm.lock:
            run = self._runs[run_id]
            run.update({"status": status, "message": message, "lastUpdated": utc_now()})
            if status in TERMINAL:
                run["runEnd"] = run["lastUpdated"]
                run["durationInMs"] = _duration_ms(run["runStart"], run["runEnd"])

    def accept_then_time_out(self, pipeline: str, seconds: float, times: int = 1) -> None:
        """The next createRun of ``pipeline`` creates the run, then answers only after ``seconds``."""
        path = rf"/pipelines/{re.escape(pipeline)}/createRun$"
        self.arm.delay_next("POST", path, seconds, times, process_first=True)

    def runs(self, pipeline: str | None = None) -> list[PipelineRunView]:
        """Every run created (of one pipeline if named), oldest first."""
        with self.arm.lock:
            views = [self._view(run_id) for run_id in self._runs]
        return [v for v in views if pipeline is None or v.pipeline.lower() == pipeline.lower()]

    def run(self, run_id: str) -> PipelineRunView:
        """One run by id (KeyError if unknown)."""
        with self.arm.lock:
            return self._view(run_id)

    def _view(self, run_id: str) -> PipelineRunView:
        key, params, query = self._sent[run_id]
        raw = copy.deepcopy(self._runs[run_id])
        return PipelineRunView(run_id, key[-2], raw["pipelineName"], copy.deepcopy(dict(params)),
                               raw["status"], dict(query), raw)

    def _key(self, *parts: str) -> tuple[str, ...]:
        return tuple(p.lower() for p in (self.arm.subscription_id, *parts))

    # -- routes ----------------------------------------------------------------------------

    def _missing_factory(self, match: re.Match[str]) -> Reply | None:
        if self._key(match["rg"], match["factory"]) in self._factories and \
                match["sub"].lower() == self.arm.subscription_id.lower():
            return None
        return arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.DataFactory/factories/"
                                                  f"{match['factory']}' under resource group "
                                                  f"'{match['rg']}' was not found.")

    def _create_run(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        missing = self._missing_factory(match)
        if missing:
            return missing
        pipeline = match["pipeline"]
        declared = self._pipelines.get(self._key(match["rg"], match["factory"], pipeline))
        if declared is None:
            return arm_error(404, "EntityNotFound", f"Entity {pipeline} not found",
                             target=f"pipeline/{pipeline}/")
        if request.body is not None and not isinstance(request.body, dict):
            return arm_error(400, "BadRequest", "The request body must be a JSON object of pipeline "
                             "parameters.", target=f"pipeline/{pipeline}/")
        params: Mapping[str, Any] = request.body or {}
        reference = request.query.get("referencePipelineRunId")
        if reference:
            if reference not in self._runs:
                return arm_error(400, "ReferencedPipelineRunNotValid", f"Referenced pipeline run id "
                                 f"{reference} is not a valid run id.", target=f"pipeline/{pipeline}/")
            params = self._sent[reference][1]
        problem = _parameter_problem(pipeline, declared, params)
        if problem:
            return arm_error(400, "BadRequest", problem, target=f"pipeline/{pipeline}/")
        run_id = str(uuid.uuid4())
        now = utc_now()
        values = {name: spec["defaultValue"] for name, spec in declared.items() if "defaultValue" in spec}
        values.update(params)
        self._runs[run_id] = {
            "id": f"{request.path.rsplit('/pipelines/', 1)[0]}/pipelineruns/{run_id}",
            "runId": run_id, "runGroupId": run_id, "isLatest": True, "pipelineName": pipeline,
            "parameters": {k: _as_string(v) for k, v in values.items()}, "runDimensions": {},
            "invokedBy": {"name": "Manual", "id": uuid.uuid4().hex, "invokedByType": "Manual"},
            "lastUpdated": now, "runStart": now, "runEnd": None, "durationInMs": None,
            "status": self.initial_status, "message": "", "annotations": []}
        self._sent[run_id] = (self._key(match["rg"], match["factory"], pipeline), dict(params),
                              dict(request.query))
        return Reply(200, {"runId": run_id})

    def _get_run(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        missing = self._missing_factory(match)
        if missing:
            return missing
        run = self._runs.get(match["run"])
        if run is None:
            return arm_error(404, "PipelineRunNotFound", f"Pipeline run {match['run']} not found.")
        return Reply(200, copy.deepcopy(run))

    def _cancel_run(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        missing = self._missing_factory(match)
        if missing or match["run"] not in self._runs:
            return missing or arm_error(404, "PipelineRunNotFound", f"Pipeline run {match['run']} not found.")
        if self._runs[match["run"]]["status"] not in TERMINAL:
            self.set_run_status(match["run"], "Canceling", "Cancellation requested by user.")
        return Reply(200)

    def _query_runs(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        missing = self._missing_factory(match)
        if missing:
            return missing
        problems = check(rest.RunFilterParameters, request.body)
        if problems:
            return invalid_body(problems)
        body: dict[str, Any] = request.body
        after, before = _when(body["lastUpdatedAfter"]), _when(body["lastUpdatedBefore"])
        runs = [view.raw for view in self.runs() if view.factory == match["factory"].lower()
                and after <= _when(view.raw["lastUpdated"]) <= before]
        for rule in body.get("filters") or []:
            name = PIPELINE_RUN_OPERANDS.get(str(rule["operand"]).lower())
            if name is None:
                return arm_error(400, "BadRequest", f"The operand {rule['operand']} cannot be used to "
                                 f"query pipeline runs; use one of PipelineName, Status, RunStart, "
                                 f"RunEnd, RunGroupId, LatestOnly.", target="filters")
            wanted = {str(v).lower() for v in rule["values"]}
            keep = str(rule["operator"]).lower() in ("equals", "in")
            runs = [r for r in runs if (str(r.get(name)).lower() in wanted) == keep]
        for order in reversed(body.get("orderBy") or []):
            name = PIPELINE_RUN_OPERANDS.get(str(order["orderBy"]).lower())
            if name is None:
                return arm_error(400, "BadRequest", f"Pipeline runs cannot be ordered by "
                                 f"{order['orderBy']}.", target="orderBy")
            runs.sort(key=lambda r: str(r.get(name) or ""), reverse=str(order["order"]).upper() == "DESC")
        start = int(body.get("continuationToken") or 0)
        more = start + self.page_size < len(runs)
        return Reply(200, {"value": runs[start:start + self.page_size],
                           "continuationToken": str(start + self.page_size) if more else None})


def _parameter_problem(pipeline: str, declared: Mapping[str, Mapping[str, Any]],
                       given: Mapping[str, Any]) -> str | None:
    """ADF's refusal of a createRun's parameters, or None (names are case-sensitive in ADF)."""
    undeclared = [name for name in given if name not in declared]
    if undeclared:
        return (f"The parameter(s) {', '.join(undeclared)} are not declared in pipeline {pipeline}; "
                f"it declares: {', '.join(declared) or 'no parameters'}.")
    required = [name for name, spec in declared.items()
                if "defaultValue" not in spec and given.get(name) is None]
    if required:
        return f"Missing value for required parameter(s) {', '.join(required)} of pipeline {pipeline}."
    for name, value in given.items():
        kind = str(declared[name]["type"])
        accepted = _JSON_TYPES.get(kind.lower(), (object,))
        if value is not None and (not isinstance(value, accepted) or
                                  (isinstance(value, bool) and bool not in accepted)):
            return f"The value {value!r} of parameter {name} is not a valid {kind}."
    return None
