"""A fake Azure DevOps (Pipelines REST API) that the CI/CD adapter talks HTTPS to, with the App
Service managed-identity endpoint that DefaultAzureCredential gets its Entra token from.

* ``POST /{org}/{project}/_apis/pipelines/{id}/runs?api-version=7.1`` ("Runs - Run Pipeline")
  with a RunPipelineParameters body (``resources.repositories.self.refName``,
  ``templateParameters``, ``variables`` of ``{"value", "isSecret"}``, ``stagesToSkip``,
  ``previewRun``, ``yamlOverride``) → 200 and the Run (``id``, ``name``, ``state``,
  ``createdDate`` with 7 decimals as Azure DevOps writes it, ``url``, ``_links.web.href``,
  ``pipeline``). The run's ``name`` follows the pipeline's ``name:`` format: ``$(Rev:r)``,
  ``$(Date:yyyyMMdd)`` and ``${{ parameters.X }}``.
* ``GET`` on the same path ("Runs - List") → ``{"count", "value": [Run]}``, newest first.
* api-versions as the docs list them for these calls (6.0-preview.1, 6.1-preview.1, 7.0, 7.1,
  7.1-preview.1, 7.2-preview.1); none → 400 ``VssVersionNotSpecifiedException``, another →
  400 ``VssVersionOutOfRangeException``.
* 400 ``PipelineValidationException`` for a template parameter the pipeline does not declare
  (``Unexpected parameter 'x'``), a declared one without default left out, a variable not settable
  at queue time, a branch that does not exist; 404 for an unknown project
  (``ProjectDoesNotExistWithNameException``, TF200016) or pipeline
  (``PipelineNotFoundException``). Errors are Azure DevOps' body: ``{"$id", "innerException",
  "message", "typeName", "typeKey", "errorCode", "eventId"}``.
* Auth: a bearer token this fake's identity endpoint issued for Azure DevOps' resource
  (``499b84ac-1321-427f-aa17-267ca6975798``), whose identity (``oid``) was added to the
  organization; else 401 (``TF400813``). ``remove_identity()`` takes it out again.
* Faults (as the GitHub fake): ``fail_next``, ``delay_next``, ``throttle_next`` (429 with
  ``Retry-After`` and the ``X-RateLimit-*`` headers).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import trustme

from .arm import CLEARED_ENV, NetworkGuard, RecordedRequest, Reply, _Server, apply_environ, make_jwt
from .github import FakeService
from .server import serve_in_thread

AZURE_DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
API_VERSIONS = frozenset({"6.0-preview.1", "6.1-preview.1", "7.0", "7.1", "7.1-preview.1",
                          "7.2-preview.1"})
IDENTITY_OID = "66666666-7777-8888-9999-000000000000"
_PARAMETER = re.compile(r"\$\{\{\s*parameters\.([A-Za-z0-9_]+)\s*\}\}")
_BODY_KEYS = frozenset({"previewRun", "resources", "stagesToSkip", "templateParameters",
                        "variables", "yamlOverride"})


def devops_time(epoch_s: float) -> str:
    """Azure DevOps' timestamps: UTC with seven decimals."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


@dataclass
class Pipeline:
    """A YAML pipeline: its parameters, queue-time variables, branches and run-name format."""

    organization: str
    project: str
    id: int
    name: str
    parameters: dict[str, dict[str, Any]]  # name -> {"default": str} (no default: required)
    settable_variables: frozenset[str]
    branches: frozenset[str]
    run_name: str = "$(Date:yyyyMMdd).$(Rev:r)"
    runs: list[dict[str, Any]] = field(default_factory=list)


class FakeAzureDevOps(FakeService):
    """The fake Azure DevOps and its managed-identity endpoint; see the module docstring."""

    def __init__(self, ca: trustme.CA | None = None) -> None:
        super().__init__(ca)
        self.pipelines: dict[tuple[str, str, int], Pipeline] = {}
        self.members: set[str] = {IDENTITY_OID}
        self.identity_header = uuid.uuid4().hex
        self._issued: dict[str, dict[str, Any]] = {}
        self._run_ids = itertools.count(501)
        self.token_requests: list[RecordedRequest] = []
        self._token = _Server(self._handle_token)
        self._serving.enter_context(serve_in_thread(self._token, poll_interval=0.05))
        self.token_url = f"http://127.0.0.1:{self._token.server_address[1]}/msi/token"

    # -- the world -----------------------------------------------------------------------------

    def add_pipeline(self, organization: str, project: str, pipeline_id: int, *,
                     name: str = "release",
                     parameters: Mapping[str, Mapping[str, Any]] | None = None,
                     settable_variables: tuple[str, ...] = (),
                     branches: tuple[str, ...] = ("main",),
                     run_name: str = "$(Date:yyyyMMdd).$(Rev:r)") -> Pipeline:
        """A pipeline; `parameters` as its YAML declares them (name -> {"default": ...})."""
        pipeline = Pipeline(organization, project, pipeline_id, name,
                            {k: dict(v) for k, v in (parameters or {}).items()},
                            frozenset(settable_variables), frozenset(branches), run_name)
        self.pipelines[(organization.lower(), project.lower(), pipeline_id)] = pipeline
        return pipeline

    def remove_identity(self) -> None:
        """The app's identity is no longer a member of the organization."""
        self.members.discard(IDENTITY_OID)

    def throttle_next(self, method: str, path_regex: str, *, retry_after: int = 1,
                      times: int = 1) -> None:
        """The next matching requests are throttled (429), as Azure DevOps answers it."""
        headers = {"Retry-After": str(retry_after),
                   "X-RateLimit-Resource": "ATCPU", "X-RateLimit-Delay": "0.000",
                   "X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": str(int(time.time()) + retry_after)}
        self.fail_next(method, path_regex, 429, times=times, headers=headers, body=self.error_body(
            429, "TF400733: The request has been canceled: Request was blocked due to exceeding "
                 "usage of resource 'ATCPU' in namespace 'User'.", "RequestBlockedException"))

    def runs_of(self, organization: str, project: str, pipeline_id: int) -> list[dict[str, Any]]:
        """The runs of a pipeline, oldest first."""
        with self.lock:
            return list(self.pipelines[(organization.lower(), project.lower(),
                                        pipeline_id)].runs)

    # -- configuration for clients -------------------------------------------------------------

    def environ(self) -> dict[str, str | None]:
        """Variables to set (str) or clear (None) so DefaultAzureCredential uses this fake's
        managed identity (App Service style) and nothing else."""
        env: dict[str, str | None] = dict.fromkeys(CLEARED_ENV)
        env.update({"IDENTITY_ENDPOINT": self.token_url, "IDENTITY_HEADER": self.identity_header,
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
        return env

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Set and clear ``environ()`` through monkeypatch."""
        apply_environ(monkeypatch, self.environ())

    # -- the identity endpoint -----------------------------------------------------------------

    def _handle_token(self, method: str, target: str, headers: dict[str, str],
                      raw: bytes) -> Reply:
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query))
        request = RecordedRequest(method, parts.path, query, dict(headers), None, raw)
        with self.lock:
            self.token_requests.append(request)
        if parts.path != "/msi/token" or method != "GET":
            return Reply(404, {"statusCode": 404, "message": "Not found."})
        if headers.get("x-identity-header") != self.identity_header:
            return Reply(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is wrong."})
        if not query.get("resource") or query.get("api-version") != "2019-08-01":
            return Reply(400, {"statusCode": 400, "message": "resource and api-version needed."})
        now = int(time.time())
        claims = {"aud": query["resource"], "iat": now, "nbf": now, "exp": now + 3600,
                  "oid": IDENTITY_OID, "tid": "00000000-0000-0000-0000-0000000000aa",
                  "appid": "11111111-2222-3333-4444-555555555555", "idtyp": "app",
                  "jti": uuid.uuid4().hex}
        token = make_jwt(claims)
        with self.lock:
            self._issued[token] = claims
        return Reply(200, {"access_token": token, "expires_on": str(now + 3600),
                           "resource": query["resource"], "token_type": "Bearer",
                           "client_id": claims["appid"]})

    # -- answers -------------------------------------------------------------------------------

    def error_body(self, status: int, message: str, type_key: str = "") -> dict[str, Any]:
        """Azure DevOps' error body."""
        kind = type_key or {400: "InvalidArgumentValueException", 401: "UnauthorizedRequestException",
                            404: "NotFoundException"}.get(status, "VssServiceException")
        return {"$id": "1", "innerException": None, "message": message,
                "typeName": f"Microsoft.VisualStudio.Services.WebApi.{kind}, "
                            "Microsoft.VisualStudio.Services.WebApi",
                "typeKey": kind, "errorCode": 0, "eventId": 3000}

    def _error(self, status: int, message: str, type_key: str = "") -> Reply:
        return Reply(status, self.error_body(status, message, type_key))

    def _unauthorized(self, who: str) -> Reply:
        return Reply(401, self.error_body(401, f"TF400813: The user '{who}' is not authorized to "
                                               "access this resource."),
                     {"WWW-Authenticate": "Bearer authorization_uri=https://login.microsoftonline"
                                          ".com/00000000-0000-0000-0000-0000000000aa"})

    def route(self, request: RecordedRequest, parsed: bool) -> Reply:
        value = request.headers.get("authorization", "")
        token = value[7:] if value.lower().startswith("bearer ") else ""
        claims = self._issued.get(token)
        if claims is None or claims["aud"] not in (AZURE_DEVOPS_RESOURCE,
                                                   f"{AZURE_DEVOPS_RESOURCE}/.default"):
            return self._unauthorized("anonymous")
        if claims["oid"] not in self.members:
            return self._unauthorized(f"{claims['appid']}")
        match = re.fullmatch(r"/([^/]+)/([^/]+)/_apis/pipelines/(\d+)/runs", request.path)
        if match is None:
            return self._error(404, f"The resource {request.path} cannot be found.")
        version = request.query.get("api-version")
        if not version:
            return self._error(400, f"No api-version was supplied for the \"{request.method}\" "
                                    "request. Please provide an api-version.",
                               "VssVersionNotSpecifiedException")
        if version not in API_VERSIONS:
            return self._error(400, f"The requested REST API version of {version} is out of "
                                    "range for this server.", "VssVersionOutOfRangeException")
        organization, project, pipeline_id = match[1], match[2], int(match[3])
        if not any(o == organization.lower() and p == project.lower()
                   for o, p, _ in self.pipelines):
            return self._error(404, f"TF200016: The following project does not exist: {project}."
                                    " Verify that the name of the project is correct and that "
                                    "the project exists on the specified Azure DevOps Server.",
                               "ProjectDoesNotExistWithNameException")
        pipeline = self.pipelines.get((organization.lower(), project.lower(), pipeline_id))
        if pipeline is None:
            return self._error(404, f"Pipeline with id {pipeline_id} not found.",
                               "PipelineNotFoundException")
        if request.method == "GET":
            runs = sorted(pipeline.runs, key=lambda r: r["id"], reverse=True)
            return Reply(200, {"count": len(runs), "value": runs})
        if request.method != "POST":
            return self._error(405, "Method not allowed.")
        if not parsed or not isinstance(request.body, dict):
            return self._error(400, "Value cannot be null.\r\nParameter name: runParameters",
                               "ArgumentNullException")
        return self._run(pipeline, request.body)

    def _run(self, pipeline: Pipeline, body: Mapping[str, Any]) -> Reply:
        def invalid(message: str) -> Reply:
            return self._error(400, message, "PipelineValidationException")

        ref = (((body.get("resources") or {}).get("repositories") or {}).get("self") or {}) \
            .get("refName", "refs/heads/main")
        branch = str(ref).removeprefix("refs/heads/").removeprefix("refs/tags/")
        if branch not in pipeline.branches:
            return invalid(f"Unable to resolve the reference '{ref}' to a specific version. "
                           "Verify the reference exists in the source repository.")
        parameters = body.get("templateParameters") or {}
        if not isinstance(parameters, dict):
            return invalid("templateParameters must be an object.")
        for name in parameters:
            if name not in pipeline.parameters:
                return invalid(f"/azure-pipelines.yml (Line: 1, Col: 1): Unexpected parameter "
                               f"'{name}'")
        for name, spec in pipeline.parameters.items():
            if name not in parameters and "default" not in spec:
                return invalid(f"A value for the '{name}' parameter must be provided.")
        variables = body.get("variables") or {}
        if not isinstance(variables, dict) or not all(
                isinstance(v, dict) and set(v) <= {"value", "isSecret"}
                for v in variables.values()):
            return invalid("variables must be an object of name -> {\"value\", \"isSecret\"}.")
        refused = sorted(set(variables) - pipeline.settable_variables)
        if refused:
            return invalid(f"You can't set the following variables ({', '.join(refused)}). If "
                           "you want to be able to set these variables, then edit the pipeline "
                           "and select Settable at queue time on the variables tab of the "
                           "pipeline editor.")
        values = {k: spec.get("default", "") for k, spec in pipeline.parameters.items()}
        values.update(parameters)
        run_id = next(self._run_ids)
        name = pipeline.run_name.replace("$(Rev:r)", str(len(pipeline.runs) + 1)).replace(
            "$(Date:yyyyMMdd)", datetime.now(UTC).strftime("%Y%m%d"))
        name = _PARAMETER.sub(lambda m: str(values.get(m[1], "")), name)
        base = f"{self.url}/{pipeline.organization}/{pipeline.project}"
        run = {
            "_links": {"self": {"href": f"{base}/_apis/pipelines/{pipeline.id}/runs/{run_id}"},
                       "web": {"href": f"{base}/_build/results?buildId={run_id}"},
                       "pipeline.web": {"href": f"{base}/_build/definition?definitionId="
                                                f"{pipeline.id}"},
                       "pipeline": {"href": f"{base}/_apis/pipelines/{pipeline.id}?revision=1"}},
            "pipeline": {"url": f"{base}/_apis/pipelines/{pipeline.id}?revision=1",
                         "id": pipeline.id, "revision": 1, "name": pipeline.name,
                         "folder": "\\"},
            "state": "inProgress", "createdDate": devops_time(time.time()),
            "url": f"{base}/_apis/pipelines/{pipeline.id}/runs/{run_id}", "id": run_id,
            "name": name, "templateParameters": dict(parameters),
            "resources": {"repositories": {"self": {"refName": ref, "repository": {
                "type": "azureReposGit"}}}}}
        pipeline.runs.append(run)
        return Reply(200, run)


@contextlib.contextmanager
def start_fake_azure_devops(**options: Any) -> Iterator[FakeAzureDevOps]:
    """Run a FakeAzureDevOps for the ``with`` block."""
    devops = FakeAzureDevOps(**options)
    try:
        yield devops
    finally:
        devops.close()


def fake_azure_devops_fixture(seed: Callable[[FakeAzureDevOps], None] | None = None, *,
                              name: str = "devops") -> Any:
    """A pytest fixture ``name``: a FakeAzureDevOps with its identity environment applied,
    ``seed(devops)`` run, and a NetworkGuard that fails the test beyond loopback."""
    @pytest.fixture(name=name)
    def fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzureDevOps]:
        guard = NetworkGuard().install(monkeypatch)
        with start_fake_azure_devops() as devops:
            devops.apply_env(monkeypatch)
            if seed is not None:
                seed(devops)
            yield devops
        assert guard.attempts == [], f"a test reached beyond loopback: {guard.attempts}"

    return fixture
