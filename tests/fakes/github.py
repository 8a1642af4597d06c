"""A fake GitHub REST API that the CI/CD adapter talks HTTPS to, answering as GitHub's docs say.

Serves on 127.0.0.1 (``github.url`` is the API base, as ``AMLEVENTS_GITHUB_API_URL``), TLS with a
``trustme`` certificate (the CA PEM at ``github.ca_path``, for ``AMLEVENTS_CICD_CA_FILE``). REST
API version 2022-11-28 (another ``X-GitHub-Api-Version`` → 400), a ``User-Agent`` required (403
without, as GitHub does). Routes (https://docs.github.com/rest/actions/workflows,
/rest/repos/repos#create-a-repository-dispatch-event, /rest/actions/workflow-runs, /rest/apps):

* ``POST /repos/{o}/{r}/actions/workflows/{file or id}/dispatches`` with ``{"ref", "inputs",
  "return_run_details"}`` → 204, or 200 ``{"workflow_run_id", "run_url", "html_url"}`` when
  ``return_run_details`` is true. 422 for: no ``workflow_dispatch`` trigger, a disabled workflow, a
  ref that does not exist (``No ref found for: x``), inputs the workflow does not declare
  (``Unexpected inputs provided: ["x"]``), a required input left out, more than 25 inputs, more
  than 65,535 characters of inputs, a value that is not a string, a key the body may not have.
* ``POST /repos/{o}/{r}/dispatches`` with ``{"event_type", "client_payload"}`` → 204; 422 for an
  event_type of 0 or over 100 characters, more than 10 client_payload properties, 64 KB or more.
  Each workflow listening for the event type (``repository_dispatch=(types)``) gets a run.
* ``GET /repos/{o}/{r}/actions/workflows/{wf}/runs`` and ``GET /repos/{o}/{r}/actions/runs``:
  ``event``, ``created`` (``>=ISO``), ``per_page`` (max 100), ``page``; newest first;
  ``{"total_count", "workflow_runs": [{"id", "name", "display_title", "event", "created_at",
  "html_url", ...}]}``. A run's ``display_title`` is its workflow's ``run_name`` with
  ``${{ inputs.X }}`` / ``${{ github.event.client_payload.X }}`` filled in (else the workflow name).
* GitHub Apps: ``add_app`` makes an RSA key pair (the private PEM is what the App downloads);
  ``GET /repos/{o}/{r}/installation`` and ``POST /app/installations/{id}/access_tokens`` (optional
  ``{"repositories": [...]}``) take the App's JWT, VERIFIED: RS256 with the App's public key,
  ``iss`` the App's id, ``exp`` in the future and at most 10 minutes after ``iat``, ``iat`` not in
  the future (60 s drift allowed); else 401 with GitHub's messages. Installation tokens
  (``ghs_...``) last ``token_lifetime_s`` (3600) and see the installation's repositories only.
* Tokens: ``add_token(token, repositories=..., permissions=...)`` (a fine-grained token: repos
  ``None`` = all; ``actions``/``contents`` ``read``/``write``); an unknown one → 401 ``Bad
  credentials``; a repository it cannot see → 404; a permission it lacks → 403 ``Resource not
  accessible by personal access token`` (``... by integration`` for an App).

Every answer carries ``x-ratelimit-*`` headers; errors are ``{"message", "documentation_url",
"status"}``. Faults: ``fail_next`` (any status, headers, body), ``rate_limit_next`` (primary:
403 with ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset``; secondary: 403 or 429 with
``retry-after`` and GitHub's message), ``delay_next`` (the request takes effect, the answer comes
late: a client timeout). ``NetworkGuard`` (fake ARM) keeps tests on loopback.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .arm import Fault, NetworkGuard, RecordedRequest, Reply, _Server
from .server import serve_in_thread

API_VERSION = "2022-11-28"
MAX_INPUTS = 25
MAX_INPUTS_CHARS = 65_535
MAX_EVENT_TYPE = 100
MAX_PAYLOAD_PROPERTIES = 10
MAX_PAYLOAD_BYTES = 64 * 1024
DOCS = "https://docs.github.com/rest"
_EXPRESSION = re.compile(r"\$\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")


def iso(epoch_s: float) -> str:
    """GitHub's timestamps: UTC, whole seconds, Z."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """An ISO 8601 time (Z or offset) as epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


class FakeService:
    """What both CI/CD fakes share: an HTTPS server, request recording, faults."""

    def __init__(self, ca: trustme.CA | None = None) -> None:
        self.lock = threading.RLock()
        self._closing = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._faults: list[list[Any]] = []
        self._tmp = tempfile.mkdtemp(prefix="fake-cicd-")
        self.ca = ca or trustme.CA()
        self.ca_path = f"{self._tmp}/ca.pem"
        self.ca.cert_pem.write_to_path(self.ca_path)
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._server = _Server(self._handle, context)
        self._serving = contextlib.ExitStack()
        self._serving.enter_context(serve_in_thread(self._server, poll_interval=0.05))
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        """Stop serving, wake delayed answers, delete the CA file."""
        self._closing.set()
        self._serving.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- recording and faults ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, oldest first."""
        with self.lock:
            return list(self._requests)

    def requests_matching(self, method: str = "*", path_regex: str = "") -> list[RecordedRequest]:
        """Recorded requests with this method (``*`` = any) whose path matches the regex."""
        pattern = re.compile(path_regex)
        return [r for r in self.requests if method in ("*", r.method) and pattern.search(r.path)]

    def fail_next(self, method: str, path_regex: str, status: int, *, times: int = 1,
                  headers: Mapping[str, str] | None = None, body: Any = None) -> None:
        """Answer the next ``times`` matching requests with ``status`` (nothing takes effect)."""
        reply = Reply(status, body if body is not None else self.error_body(
            status, f"Injected {status} by the fake."), dict(headers or {}))
        with self.lock:
            self._faults.append([Fault(method, re.compile(path_regex), reply), times])

    def delay_next(self, method: str, path_regex: str, seconds: float, *, times: int = 1,
                   process_first: bool = True) -> None:
        """Hold the next matching answers ``seconds``; with process_first the request takes
        effect first (a client that times out has started something)."""
        fault = Fault(method, re.compile(path_regex), delay_s=seconds,
                      process_first=process_first)
        with self.lock:
            self._faults.append([fault, times])

    def error_body(self, status: int, message: str) -> Any:
        """The service's error body."""
        raise NotImplementedError

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for rule in self._faults:
                if rule[0].matches(method, path):
                    rule[1] -= 1
                    if rule[1] <= 0:
                        self._faults.remove(rule)
                    fault: Fault = rule[0]
                    return fault
        return None

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        parts = urlsplit(target)
        try:
            body = json.loads(raw) if raw else None
            parsed = True
        except ValueError:
            body, parsed = None, False
        request = RecordedRequest(method, unquote(parts.path),
                                  dict(parse_qsl(parts.query, keep_blank_values=True)),
                                  dict(headers), body, raw)
        with self.lock:
            self._requests.append(request)
        fault = self._take_fault(method, request.path)
        if fault is not None and fault.reply is not None:
            self._closing.wait(fault.delay_s)
            return self.decorate(fault.reply)
        if fault is not None and not fault.process_first:
            self._closing.wait(fault.delay_s)
        with self.lock:
            reply = self.decorate(self.route(request, parsed))
        if fault is not None and fault.process_first:
            self._closing.wait(fault.delay_s)
        return reply

    def route(self, request: RecordedRequest, parsed: bool) -> Reply:
        """The answer to one request."""
        raise NotImplementedError

    def decorate(self, reply: Reply) -> Reply:
        """Headers every answer carries."""
        return reply


@dataclass
class Workflow:
    """A workflow file in a repository and the triggers it declares."""

    id: int
    path: str  # .github/workflows/release.yml
    name: str
    inputs: dict[str, dict[str, Any]]  # name -> {"required": bool, "default": str}
    run_name: str = ""
    workflow_dispatch: bool = True
    repository_dispatch: tuple[str, ...] | None = None  # listened types; () = every type
    state: str = "active"

    @property
    def file(self) -> str:
        """The file name, which the REST API takes as the workflow id."""
        return self.path.rsplit("/", 1)[-1]


@dataclass
class Run:
    """A workflow run, as the runs listing shows it."""

    id: int
    repository: str
    workflow: Workflow
    event: str
    display_title: str
    created_s: float
    head_branch: str
    inputs: dict[str, Any] = field(default_factory=dict)
    client_payload: dict[str, Any] = field(default_factory=dict)

    def as_json(self, api: str) -> dict[str, Any]:
        """The REST shape (the fields the listing carries that matter here)."""
        return {"id": self.id, "name": self.workflow.name, "display_title": self.display_title,
                "event": self.event, "status": "queued", "conclusion": None,
                "workflow_id": self.workflow.id, "head_branch": self.head_branch,
                "path": self.workflow.path, "run_number": self.id, "run_attempt": 1,
                "created_at": iso(self.created_s), "updated_at": iso(self.created_s),
                "url": f"{api}/repos/{self.repository}/actions/runs/{self.id}",
                "html_url": f"https://github.com/{self.repository}/actions/runs/{self.id}"}


@dataclass
class Repository:
    """A repository: its branches and tags, its workflows."""

    full_name: str
    refs: set[str]
    default_branch: str
    workflows: list[Workflow] = field(default_factory=list)


@dataclass
class Credential:
    """Who a token is: a fine-grained token, or an App installation token."""

    kind: str  # "pat" | "installation"
    repositories: frozenset[str] | None  # lower-cased full names; None: every repository
    permissions: Mapping[str, str]
    expires_s: float = float("inf")


@dataclass
class App:
    """A GitHub App: its id, key pair, installations (id -> repositories) and permissions."""

    app_id: str
    public_key: Any
    private_pem: str
    installations: dict[int, frozenset[str]]
    permissions: Mapping[str, str]


_LEVEL = {"none": 0, "read": 1, "write": 2}


class FakeGitHub(FakeService):
    """The fake GitHub; see the module docstring."""

    def __init__(self, ca: trustme.CA | None = None, *, token_lifetime_s: float = 3600.0) -> None:
        super().__init__(ca)
        self.token_lifetime_s = token_lifetime_s
        self.repositories: dict[str, Repository] = {}
        self.credentials: dict[str, Credential] = {}
        self.apps: dict[str, App] = {}
        self.runs: list[Run] = []
        self.issued_tokens: list[str] = []
        self.verified_jwts: list[dict[str, Any]] = []
        self._ids = itertools.count(1001)
        self._run_ids = itertools.count(9_000_001)
        self._remaining = 5000
        self._reset = int(time.time()) + 3600

    # -- the world -----------------------------------------------------------------------------

    def add_repository(self, full_name: str, *, refs: tuple[str, ...] = ("main",),
                       default_branch: str = "main") -> Repository:
        """A repository with these branches and tags."""
        repo = Repository(full_name, set(refs), default_branch)
        self.repositories[full_name.lower()] = repo
        return repo

    def add_workflow(self, repository: str, file: str, *, name: str = "",
                     inputs: Mapping[str, Mapping[str, Any]] | None = None, run_name: str = "",
                     workflow_dispatch: bool = True,
                     repository_dispatch: tuple[str, ...] | None = None,
                     disabled: bool = False) -> Workflow:
        """A workflow in `.github/workflows/`; `inputs` as the workflow_dispatch trigger
        declares them (name -> {"required": bool, "default": str})."""
        workflow = Workflow(next(self._ids), f".github/workflows/{file}", name or file,
                            {k: dict(v) for k, v in (inputs or {}).items()}, run_name,
                            workflow_dispatch, repository_dispatch,
                            "disabled_manually" if disabled else "active")
        self.repositories[repository.lower()].workflows.append(workflow)
        return workflow

    def add_token(self, token: str, *, repositories: tuple[str, ...] | None = None,
                  permissions: Mapping[str, str] | None = None) -> str:
        """A fine-grained personal access token (default: Actions and Contents write, on every
        repository)."""
        self.credentials[token] = Credential(
            "pat", None if repositories is None else frozenset(r.lower() for r in repositories),
            dict(permissions or {"actions": "write", "contents": "write", "metadata": "read"}))
        return token

    def add_app(self, app_id: str, installations: Mapping[int, tuple[str, ...]], *,
                permissions: Mapping[str, str] | None = None) -> App:
        """A GitHub App installed on repositories; `app.private_pem` is its private key."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,  # as GitHub's
                                serialization.NoEncryption()).decode()
        app = App(app_id, key.public_key(), pem,
                  {i: frozenset(r.lower() for r in repos) for i, repos in installations.items()},
                  dict(permissions or {"actions": "write", "contents": "write",
                                       "metadata": "read"}))
        self.apps[app_id] = app
        return app

    def rate_limit_next(self, method: str, path_regex: str, *, kind: str = "secondary",
                        status: int = 403, retry_after: int | None = 1,
                        reset_in_s: int = 30, times: int = 1) -> None:
        """The next matching requests hit a rate limit, as GitHub answers it."""
        if kind == "primary":
            headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                       "x-ratelimit-used": "5000", "x-ratelimit-resource": "core",
                       "x-ratelimit-reset": str(int(time.time()) + reset_in_s)}
            message = "API rate limit exceeded for user ID 1."
        else:
            headers = {} if retry_after is None else {"retry-after": str(retry_after)}
            message = ("You have exceeded a secondary rate limit. Please wait a few minutes "
                       "before you try again. If you reach out to GitHub Support for help, "
                       "please include the request ID ABCD:1234.")
        self.fail_next(method, path_regex, status, times=times, headers=headers,
                       body=self.error_body(status, message, "rest/using-the-rest-api/"
                                                             "rate-limits-for-the-rest-api"))

    def runs_of(self, repository: str) -> list[Run]:
        """The runs created in a repository, oldest first."""
        with self.lock:
            return [r for r in self.runs if r.repository.lower() == repository.lower()]

    # -- answers -------------------------------------------------------------------------------

    def error_body(self, status: int, message: str, doc: str = "") -> dict[str, str]:
        """GitHub's error body."""
        return {"message": message, "documentation_url": f"{DOCS}/{doc}" if doc else DOCS,
                "status": str(status)}

    def _error(self, status: int, message: str, doc: str = "") -> Reply:
        return Reply(status, self.error_body(status, message, doc))

    def decorate(self, reply: Reply) -> Reply:
        if "x-ratelimit-remaining" in reply.headers:
            return reply
        self._remaining = max(0, self._remaining - 1)
        return Reply(reply.status, reply.body, {
            "x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(self._remaining),
            "x-ratelimit-reset": str(self._reset), "x-ratelimit-used": str(5000 - self._remaining),
            "x-ratelimit-resource": "core", "x-github-request-id": secrets.token_hex(8).upper(),
            "x-github-api-version-selected": API_VERSION, **reply.headers})

    def route(self, request: RecordedRequest, parsed: bool) -> Reply:
        headers = request.headers
        if not headers.get("user-agent"):
            return self._error(403, "Request forbidden by administrative rules. Please make sure "
                                    "your request has a User-Agent header.")
        version = headers.get("x-github-api-version")
        if version is not None and version != API_VERSION:
            return self._error(400, f"Invalid API version provided: {version}. Supported "
                                    f"versions: {API_VERSION}.")
        if request.raw_body and not parsed:
            return self._error(400, "Problems parsing JSON")
        path = request.path
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/installation", path):
            repository = match[1]
            return self._app_only(request, lambda app: self._installation(app, repository), "GET")
        if match := re.fullmatch(r"/app/installations/(\d+)/access_tokens", path):
            installation = int(match[1])
            return self._app_only(request, lambda app: self._access_token(
                app, installation, request.body), "POST")
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/dispatches",
                                 path):
            workflow = match[2]
            return self._repo_call(request, match[1], "actions", "write", "POST",
                                   lambda repo: self._workflow_dispatch(repo, workflow,
                                                                        request.body))
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/dispatches", path):
            return self._repo_call(request, match[1], "contents", "write", "POST",
                                   lambda repo: self._repository_dispatch(repo, request.body))
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/runs", path):
            listed = match[2]
            return self._repo_call(request, match[1], "actions", "read", "GET",
                                   lambda repo: self._list_runs(repo, request.query, listed))
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/runs", path):
            return self._repo_call(request, match[1], "actions", "read", "GET",
                                   lambda repo: self._list_runs(repo, request.query, None))
        return self._error(404, "Not Found")

    # -- credentials ---------------------------------------------------------------------------

    @staticmethod
    def _bearer(request: RecordedRequest) -> str | None:
        value = request.headers.get("authorization", "")
        scheme, _, credential = value.partition(" ")
        return credential.strip() if scheme.lower() in ("bearer", "token") and credential else None

    def _app_only(self, request: RecordedRequest, answer: Callable[[App], Reply],
                  method: str) -> Reply:
        if request.method != method:
            return self._error(404, "Not Found")
        token = self._bearer(request)
        if token is None:
            return self._error(401, "A JSON web token could not be decoded")
        app_or_error = self._verify_jwt(token)
        if isinstance(app_or_error, Reply):
            return app_or_error
        return answer(app_or_error)

    def _verify_jwt(self, token: str) -> App | Reply:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return self._error(401, "A JSON web token could not be decoded")
        app = self.apps.get(str(claims.get("iss")))
        if app is None:
            return self._error(401, "A JSON web token could not be decoded")
        try:
            verified = jwt.decode(token, app.public_key, algorithms=["RS256"],
                                  options={"require": ["iat", "exp", "iss"],
                                           "verify_iat": False}, leeway=0)
        except jwt.ExpiredSignatureError:
            return self._error(401, "'Expiration time' claim ('exp') must be a numeric value "
                                    "representing the future time at which the assertion "
                                    "expires")
        except jwt.PyJWTError:
            return self._error(401, "A JSON web token could not be decoded")
        now = time.time()
        if not isinstance(verified["iat"], int) or verified["iat"] > now + 60:
            return self._error(401, "'Issued at' claim ('iat') must be an Integer representing "
                                    "the time that the assertion was issued")
        if verified["exp"] - verified["iat"] > 600:
            return self._error(401, "'Expiration time' claim ('exp') is too far in the future")
        self.verified_jwts.append(verified)
        return app

    def _installation(self, app: App, repository: str) -> Reply:
        for installation, repos in app.installations.items():
            if repository.lower() in repos:
                owner = repository.split("/")[0]
                return Reply(200, {
                    "id": installation, "app_id": int(app.app_id) if app.app_id.isdigit() else 0,
                    "account": {"login": owner}, "repository_selection": "selected",
                    "permissions": dict(app.permissions),
                    "access_tokens_url": f"{self.url}/app/installations/{installation}/"
                                         "access_tokens"})
        return self._error(404, "Not Found",
                           "apps/apps#get-a-repository-installation-for-the-authenticated-app")

    def _access_token(self, app: App, installation: int, body: Any) -> Reply:
        repos = app.installations.get(installation)
        if repos is None:
            return self._error(404, "Not Found")
        wanted = repos
        if isinstance(body, dict) and body.get("repositories") is not None:
            names = body["repositories"]
            owners = {r.split("/")[0] for r in repos}
            asked = {f"{o}/{n}".lower() for o in owners for n in names} & repos
            if len(asked) != len(names):
                return self._error(422, "There is at least one repository that does not exist or "
                                        "is not accessible to the parent installation.")
            wanted = frozenset(asked)
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = time.time() + self.token_lifetime_s
        self.credentials[token] = Credential("installation", wanted, dict(app.permissions),
                                             expires)
        self.issued_tokens.append(token)
        return Reply(201, {"token": token, "expires_at": iso(expires),
                           "permissions": dict(app.permissions),
                           "repository_selection": "selected"})

    def _repo_call(self, request: RecordedRequest, repository: str, permission: str,
                   level: str, method: str, answer: Callable[[Repository], Reply]) -> Reply:
        token = self._bearer(request)
        credential = self.credentials.get(token or "")
        if token is None:
            return self._error(401, "Requires authentication")
        if credential is None or credential.expires_s <= time.time():
            return self._error(401, "Bad credentials")
        repo = self.repositories.get(repository.lower())
        visible = credential.repositories is None or repository.lower() in credential.repositories
        if repo is None or not visible:
            return self._error(404, "Not Found")
        if request.method != method:
            return self._error(404, "Not Found")
        if _LEVEL[credential.permissions.get(permission, "none")] < _LEVEL[level]:
            who = "personal access token" if credential.kind == "pat" else "integration"
            return self._error(403, f"Resource not accessible by {who}")
        return answer(repo)

    # -- workflows -----------------------------------------------------------------------------

    def _workflow(self, repo: Repository, ref: str) -> Workflow | None:
        return next((w for w in repo.workflows if ref in (w.file, str(w.id))), None)

    def _workflow_dispatch(self, repo: Repository, ref: str, body: Any) -> Reply:
        workflow = self._workflow(repo, ref)
        if workflow is None:
            return self._error(404, "Not Found",
                               "actions/workflows#create-a-workflow-dispatch-event")
        if not isinstance(body, dict):
            return self._error(422, "Invalid request.\n\n\"ref\" wasn't supplied.")
        for key in body:
            if key not in ("ref", "inputs", "return_run_details"):
                return self._error(422, f"Invalid request.\n\n\"{key}\" is not a permitted key.")
        if not isinstance(body.get("ref"), str):
            return self._error(422, "Invalid request.\n\n\"ref\" wasn't supplied.")
        inputs = body.get("inputs", {})
        if not isinstance(inputs, dict):
            return self._error(422, "Invalid request.\n\nFor 'properties/inputs', "
                                    f"{json.dumps(inputs)} is not an object.")
        if len(inputs) > MAX_INPUTS:
            return self._error(422, f"Invalid request.\n\nFor 'properties/inputs', no more than "
                                    f"{MAX_INPUTS} properties are allowed; {len(inputs)} were "
                                    "supplied.")
        if "return_run_details" in body and not isinstance(body["return_run_details"], bool):
            return self._error(422, "Invalid request.\n\nFor 'properties/return_run_details', "
                                    f"{json.dumps(body['return_run_details'])} is not a boolean.")
        if not workflow.workflow_dispatch:
            return self._error(422, "Workflow does not have 'workflow_dispatch' trigger")
        if workflow.state != "active":
            return self._error(422, "Cannot trigger a 'workflow_dispatch' on a disabled workflow")
        branch = body["ref"].removeprefix("refs/heads/").removeprefix("refs/tags/")
        if branch not in repo.refs:
            return self._error(422, f"No ref found for: {body['ref']}")
        unexpected = sorted(set(inputs) - set(workflow.inputs))
        if unexpected:
            return self._error(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        for name, spec in workflow.inputs.items():
            if spec.get("required") and name not in inputs and spec.get("default") is None:
                return self._error(422, f"Required input '{name}' not provided")
        if any(not isinstance(v, str) for v in inputs.values()):
            return self._error(422, "Invalid request.\n\nFor 'properties/inputs', input values "
                                    "must be strings.")
        if len(json.dumps(inputs, separators=(",", ":"), ensure_ascii=False)) > MAX_INPUTS_CHARS:
            return self._error(422, "inputs are too large.")
        values = {k: str(spec.get("default", "")) for k, spec in workflow.inputs.items()}
        values.update(inputs)
        title = self._title(workflow, {"inputs": values})
        run = self._run(repo, workflow, "workflow_dispatch", title, branch, inputs=values)
        if body.get("return_run_details"):
            return Reply(200, {"workflow_run_id": run.id,
                               "run_url": f"{self.url}/repos/{repo.full_name}/actions/runs/"
                                          f"{run.id}",
                               "html_url": run.as_json(self.url)["html_url"]})
        return Reply(204)

    def _repository_dispatch(self, repo: Repository, body: Any) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("event_type"), str):
            return self._error(422, "Invalid request.\n\n\"event_type\" wasn't supplied.")
        for key in body:
            if key not in ("event_type", "client_payload"):
                return self._error(422, f"Invalid request.\n\n\"{key}\" is not a permitted key.")
        event_type = body["event_type"]
        if not 1 <= len(event_type) <= MAX_EVENT_TYPE:
            return self._error(422, "Invalid request.\n\nFor 'properties/event_type', "
                                    f"{json.dumps(event_type)[:40]} is too "
                                    f"{'long' if event_type else 'short'} (maximum is "
                                    f"{MAX_EVENT_TYPE} characters).")
        payload = body.get("client_payload", {})
        if not isinstance(payload, dict):
            return self._error(422, "Invalid request.\n\nFor 'properties/client_payload', "
                                    f"{json.dumps(payload)[:40]} is not an object.")
        if len(payload) > MAX_PAYLOAD_PROPERTIES:
            return self._error(422, f"Invalid request.\n\nNo more than {MAX_PAYLOAD_PROPERTIES} "
                                    f"properties are allowed; {len(payload)} were supplied.")
        if len(json.dumps(payload, separators=(",", ":")).encode()) >= MAX_PAYLOAD_BYTES:
            return self._error(422, "client_payload is too large.")
        for workflow in repo.workflows:
            types = workflow.repository_dispatch
            if types is not None and (not types or event_type in types) \
                    and workflow.state == "active":
                title = self._title(workflow, {"github.event.client_payload": payload,
                                               "github.event.action": event_type})
                self._run(repo, workflow, "repository_dispatch", title, repo.default_branch,
                          client_payload=payload)
        return Reply(204)

    @staticmethod
    def _title(workflow: Workflow, context: Mapping[str, Any]) -> str:
        if not workflow.run_name:
            return workflow.name

        def value(match: re.Match[str]) -> str:
            expression = match[1]
            for prefix, values in context.items():
                if expression == prefix and isinstance(values, str):
                    return values
                if expression.startswith(prefix + ".") and isinstance(values, Mapping):
                    found = values.get(expression[len(prefix) + 1:], "")
                    return found if isinstance(found, str) else json.dumps(found)
            return ""

        return _EXPRESSION.sub(value, workflow.run_name)

    def _run(self, repo: Repository, workflow: Workflow, event: str, title: str, branch: str,
             **extra: Any) -> Run:
        run = Run(next(self._run_ids), repo.full_name, workflow, event, title, time.time(),
                  branch, **extra)
        self.runs.append(run)
        return run

    def _list_runs(self, repo: Repository, query: Mapping[str, str],
                   workflow_ref: str | None) -> Reply:
        runs = [r for r in self.runs if r.repository == repo.full_name]
        if workflow_ref is not None:
            workflow = self._workflow(repo, workflow_ref)
            if workflow is None:
                return self._error(404, "Not Found")
            runs = [r for r in runs if r.workflow is workflow]
        if query.get("event"):
            runs = [r for r in runs if r.event == query["event"]]
        created = query.get("created")
        if created:
            if not created.startswith(">="):
                return self._error(422, "Invalid created filter (the fake knows >=DATE only)")
            since = parse_iso(created[2:])
            runs = [r for r in runs if r.created_s >= since]
        per_page = min(100, int(query.get("per_page", "30")))
        page = int(query.get("page", "1"))
        runs.sort(key=lambda r: (r.created_s, r.id), reverse=True)
        chosen = runs[(page - 1) * per_page: page * per_page]
        return Reply(200, {"total_count": len(runs),
                           "workflow_runs": [r.as_json(self.url) for r in chosen]})


@contextlib.contextmanager
def start_fake_github(**options: Any) -> Iterator[FakeGitHub]:
    """Run a FakeGitHub for the ``with`` block."""
    github = FakeGitHub(**options)
    try:
        yield github
    finally:
        github.close()


def fake_github_fixture(seed: Callable[[FakeGitHub], None] | None = None, *,
                        name: str = "github") -> Any:
    """A pytest fixture ``name``: a FakeGitHub, ``seed(github)`` run, and a NetworkGuard that
    fails the test on any attempt to go beyond loopback."""
    @pytest.fixture(name=name)
    def fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
        guard = NetworkGuard().install(monkeypatch)
        with start_fake_github() as github:
            if seed is not None:
                seed(github)
            yield github
        assert guard.attempts == [], f"a test reached beyond loopback: {guard.attempts}"

    return fixture
