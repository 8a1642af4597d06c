"""Data Factory (Microsoft.DataFactory, api-version 2018-06-01) routes of the fake ARM.

Served under ``/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.DataFactory/factories/{f}``:

* ``POST .../pipelines/{p}/createRun`` -> ``{"runId": "<uuid>"}``; the body is the parameters
  object; ``referencePipelineRunId`` reuses a run's parameters. Pipelines must be declared with
  ``add_pipeline``; an unknown factory answers 404 ``ResourceNotFound`` (ARM), an unknown pipeline
  404 ``EntityNotFound`` "Entity {p} not found" (modelled on what ADF answers; the exact wording
  is not in the REST reference).
* ``GET .../pipelineruns/{runId}`` -> a PipelineRun (runId, pipelineName, status, runStart,
  parameters as strings, ...); ``POST .../pipelineruns/{runId}/cancel``.

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

from .arm import RecordedRequest, Reply, arm_error, utc_now

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .arm import FakeArm

RUN_STATUSES = ("Queued", "InProgress", "Succeeded", "Failed", "Canceling", "Cancelled")
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})
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


class AdfService:
    """In-memory Data Factory state behind the fake ARM routes."""

    def __init__(self, arm: FakeArm, *, initial_status: str = "Queued") -> None:
        self.arm = arm
        self.initial_status = initial_status
        self._factories: set[tuple[str, ...]] = set()
        self._pipelines: set[tuple[str, ...]] = set()
        self._runs: dict[str, dict[str, Any]] = {}
        self._sent: dict[str, tuple[tuple[str, ...], Mapping[str, Any], Mapping[str, str]]] = {}
        arm.add_route("POST", _FACTORY + r"/pipelines/(?P<pipeline>[^/]+)/createRun", self._create_run)
        arm.add_route("GET", _FACTORY + r"/pipelineruns/(?P<run>[^/]+)", self._get_run)
        arm.add_route("POST", _FACTORY + r"/pipelineruns/(?P<run>[^/]+)/cancel", self._cancel_run)

    # -- seeding and hooks ---------------------------------------------------------------------

    def add_pipeline(self, factory: str, pipeline: str, *, resource_group: str | None = None) -> None:
        """Declare that ``factory`` exists and holds ``pipeline``."""
        rg = resource_group or self.arm.resource_group
        with self.arm.lock:
            self._factories.add(self._key(rg, factory))
            self._pipelines.add(self._key(rg, factory, pipeline))

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
        if self._key(match["rg"], match["factory"], pipeline) not in self._pipelines:
            return arm_error(404, "EntityNotFound", f"Entity {pipeline} not found",
                             target=f"pipeline/{pipeline}/")
        params: Mapping[str, Any] = request.body if isinstance(request.body, dict) else {}
        reference = request.query.get("referencePipelineRunId")
        if reference:
            if reference not in self._runs:
                return arm_error(400, "ReferencedPipelineRunNotValid", f"Referenced pipeline run id "
                                 f"{reference} is not a valid run id.", target=f"pipeline/{pipeline}/")
            params = self._sent[reference][1]
        run_id = str(uuid.uuid4())
        now = utc_now()
        self._runs[run_id] = {
            "id": f"{request.path.rsplit('/pipelines/', 1)[0]}/pipelineruns/{run_id}",
            "runId": run_id, "runGroupId": run_id, "isLatest": True, "pipelineName": pipeline,
            "parameters": {k: _as_string(v) for k, v in params.items()}, "runDimensions": {},
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
            self.set_run_status(match["run"], "Cancelled", "Cancelled by user.")
        return Reply(200)


_FACTORY_PATH = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                 r"Microsoft\.DataFactory/factories/(?P<factory>[^/]+)")


def serve_query_pipeline_runs(arm: FakeArm, *, page_size: int = 100) -> None:
    """POST .../queryPipelineRuns as the REST reference documents: RunFilterParameters in,
    {"value": [PipelineRun], "continuationToken"} out (learn.microsoft.com/rest/api/datafactory/
    pipeline-runs/query-by-factory); filters on PipelineName and Status, paged by `page_size`."""
    def query(request: RecordedRequest, match: re.Match[str]) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not body.get("lastUpdatedAfter") or not body.get("lastUpdatedBefore"):
            return arm_error(400, "BadRequest",
                             "lastUpdatedAfter and lastUpdatedBefore are required.")
        after, before = _when(body["lastUpdatedAfter"]), _when(body["lastUpdatedBefore"])
        runs = [view.raw for view in arm.adf.runs() if view.factory == match["factory"].lower()
                and after <= _when(view.raw["lastUpdated"]) <= before]
        for rule in body.get("filters") or []:
            field = {"pipelinename": "pipelineName", "status": "status"}.get(
                str(rule.get("operand", "")).lower())
            if field is None:
                return arm_error(400, "BadRequest", f"Unsupported operand {rule.get('operand')}.")
            wanted = {str(v).lower() for v in rule.get("values") or []}
            keep = str(rule.get("operator", "")).lower() in ("equals", "in")
            runs = [r for r in runs if (str(r[field]).lower() in wanted) == keep]
        start = int(body.get("continuationToken") or 0)
        more = start + page_size < len(runs)
        return Reply(200, {"value": runs[start:start + page_size],
                           "continuationToken": str(start + page_size) if more else None})

    arm.add_route("POST", _FACTORY_PATH + r"/queryPipelineRuns$", query)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
