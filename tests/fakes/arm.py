"""A fake Azure Resource Manager (ARM) that the REAL Azure SDK clients talk HTTPS to.

It serves, on 127.0.0.1 and free ports:

* ARM itself over HTTPS (``arm.url``), with a self-signed certificate from ``trustme``
  (CA PEM at ``arm.ca_path``); routes for Azure ML (``arm.ml``, see arm_ml.py) and
  Data Factory (``arm.adf``, see arm_adf.py); the cloud metadata document
  ``GET /metadata/endpoints`` that azure-ai-ml reads to learn about a custom cloud;
* the App Service / Azure Functions managed-identity token endpoint over plain HTTP
  (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``; azure-identity and MSAL accept http, as the real
  endpoint is http://localhost:.../msi/token). Every ARM request must carry a bearer token this
  endpoint issued, so a passing test proves ``DefaultAzureCredential()`` went the managed-identity way.

Usage (a test)::

    with start_fake_arm() as arm:            # or, in a test module: arm = fake_arm_fixture(seed)
        arm.apply_env(monkeypatch)           # sets/clears the variables listed below
        arm.ml.add_model("iris", "1")
        ml = MLClient(DefaultAzureCredential(), arm.subscription_id, arm.resource_group,
                      arm.workspace_name)   # production code needs no test-only kwargs
        ...
        assert arm.requests_matching("PUT", r"/onlineEndpoints/[^/]+$")[0].bearer_token

Environment set by ``arm.apply_env`` (``arm.environ()`` gives the dict; None means "unset"):

* ``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``: App Service managed identity (azure-identity
  GETs ``IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...`` with header ``X-IDENTITY-HEADER``
  and reads ``access_token``/``expires_on``).
* cleared so DefaultAzureCredential reaches managed identity without the internet:
  ``CLEARED_ENV`` (AZURE_CLIENT_ID/SECRET/TENANT_ID, certificate, username/password, workload
  identity, AZURE_TOKEN_CREDENTIALS, MSI_*/IMDS_*/IDENTITY_SERVER_THUMBPRINT, proxies).
* ``ARM_CLOUD_METADATA_URL`` (this server's ``/metadata/endpoints``) and
  ``AZUREML_CURRENT_CLOUD`` (``arm.cloud_name``): azure-ai-ml's supported way to use a custom
  cloud; ``MLClient`` ignores ``base_url``. It then sends ARM calls to ``arm.url`` and asks for
  tokens with scope ``{arm.url}/.default``.
* ``REQUESTS_CA_BUNDLE`` = ``arm.ca_path``: azure-core's requests transport honours it (the cloud
  metadata fetch inside azure-ai-ml takes no kwargs, so the env var is the only way there).
* ``NO_PROXY`` = 127.0.0.1,localhost.

Kwargs alternatives: ``MLClient(..., **arm.ml_client_kwargs())`` (``cloud=``, ``cloud_metadata=``,
``connection_verify=``) and ``DataFactoryManagementClient(cred, sub, **arm.adf_client_kwargs())``
(``base_url=``, ``connection_verify=``). Keep tests fast with azure-core kwargs ``retry_total``,
``retry_backoff_factor`` and ``polling_interval``; LRO responses carry ``Retry-After-ms``
(``arm.lro_retry_after_ms``), which azure-core's pollers obey over their own interval.

Strict as ARM: every route names its resource type and the api-versions the REST specs define
for it (arm_ml.py, arm_adf.py list them); another api-version gets ARM's 400
``NoRegisteredProviderFound`` (a malformed one ``InvalidApiVersionParameter``, none
``MissingApiVersionParameter``). Request bodies are checked with the SDKs' own generated REST
models (arm_models.py); every error is ARM's body ``{"error": {"code", "message", "target",
"details"}}``.

Faults: ``fail_next`` (status, headers, ARM error body), ``delay_next`` (hang past a client
timeout, before or after the request took effect), ``lro_in_progress_polls`` (slow LRO) and
``fail_next_lro`` (LRO ends Failed). ``NetworkGuard`` refuses any non-loopback connection.

Tests get one with ``arm = fake_arm_fixture(seed)`` (a pytest fixture: the environment applied,
the NetworkGuard installed and checked, ``seed(arm)`` run first).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import trustme

from .server import serve_in_thread

if TYPE_CHECKING:
    from .arm_adf import AdfService
    from .arm_ml import MlService
    from .arm_models import Problem

SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000001"
TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
RESOURCE_GROUP = "rg-amlevents"
WORKSPACE_NAME = "ws-amlevents"
LOCATION = "westeurope"
CLEARED_ENV = (
    "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "AZURE_USERNAME",
    "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "AZURE_TOKEN_CREDENTIALS",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
    "MSI_ENDPOINT", "MSI_SECRET", "AZUREML_DEV_URL_MFE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "all_proxy",
)


def apply_environ(monkeypatch: pytest.MonkeyPatch, environ: Mapping[str, str | None]) -> None:
    """Set the variables given a value and clear those given None (undone after the test)."""
    for name, value in environ.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


_ERROR_CODES = {400: "BadRequest", 401: "AuthenticationFailed", 403: "AuthorizationFailed",
                404: "ResourceNotFound", 409: "Conflict", 429: "TooManyRequests",
                500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
                504: "GatewayTimeout"}


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body (None for none) and extra headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(?:-(?:preview|privatepreview|alpha|beta))?")


def arm_error(status: int, code: str | None = None, message: str = "", target: str | None = None,
              details: list[dict[str, Any]] | None = None,
              headers: Mapping[str, str] | None = None) -> Reply:
    """An ARM error reply: ``{"error": {"code", "message", "target", "details"}}``."""
    error: dict[str, Any] = {"code": code or _ERROR_CODES.get(status, "Error"),
                             "message": message or f"HTTP {status}", "target": target,
                             "details": list(details or [])}
    return Reply(status, {"error": error}, dict(headers or {}))


def invalid_body(problems: list[Problem], code: str = "BadRequest") -> Reply:
    """400 for a body the SDK's REST model refuses: the first problem as the message, all as details.

    A member the model does not know gives ARM's ``InvalidRequestContent`` whatever ``code`` says.
    """
    first = problems[0]
    if any(p.code == "InvalidRequestContent" for p in problems):
        code = "InvalidRequestContent"
    message = "; ".join(f"{p.target}: {p.message}" for p in problems)
    return arm_error(400, code, f"The request content was invalid: {message}", first.target,
                     [p.as_detail() for p in problems])


def utc_now() -> str:
    """Now as ISO 8601 UTC, as ARM writes timestamps."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received (header names lower-cased, body parsed as JSON if it was)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    raw_body: bytes = b""

    @property
    def bearer_token(self) -> str | None:
        """The token of the ``Authorization: Bearer`` header, if any."""
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else None

    @property
    def api_version(self) -> str | None:
        """The ``api-version`` query parameter."""
        return self.query.get("api-version")


Handler = Callable[[RecordedRequest, "re.Match[str]"], Reply]


@dataclass(frozen=True)
class Route:
    """A handler for a method and a full-match path regex (case-insensitive, as ARM is), serving one
    resource type (``Namespace/type/child``) at the api-versions the REST specs define for it."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    resource_type: str
    api_versions: frozenset[str]


@dataclass(frozen=True)
class Fault:
    """An injected misbehaviour: an error reply instead of the real one, and/or a delay."""

    method: str
    path: re.Pattern[str]
    reply: Reply | None = None
    delay_s: float = 0.0
    process_first: bool = True

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        return self.method in ("*", method) and bool(self.path.search(path))


@dataclass
class _Operation:
    """A long-running operation: in progress for some polls, then Succeeded or Failed."""

    op_id: str
    remaining_polls: int
    error: Mapping[str, Any] | None
    finish: Callable[[bool], None]
    result: Callable[[], Reply]
    start_time: str = field(default_factory=utc_now)
    status: str = "InProgress"
    end_time: str | None = None

    def poll(self) -> str:
        """Count one poll; settle the outcome when the polls run out."""
        if self.status == "InProgress":
            if self.remaining_polls > 0:
                self.remaining_polls -= 1
            else:
                self.status = "Failed" if self.error else "Succeeded"
                self.end_time = utc_now()
                self.finish(self.error is None)
        return self.status


def make_jwt(claims: Mapping[str, Any]) -> str:
    """An unsigned-looking JWT (header.payload.signature) carrying ``claims``."""
    def part(value: Any) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return ".".join([part({"typ": "JWT", "alg": "RS256"}), part(dict(claims)), part(b"fake-signature")])


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the server's app for a Reply, writes it."""

    protocol_version = "HTTP/1.1"
    timeout = 30

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        app: Callable[[str, str, dict[str, str], bytes], Reply] = self.server.app  # type: ignore[attr-defined]
        reply = app(self.command, self.path, headers, raw)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            if reply.body is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout test): nothing to answer
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are recorded, not logged."""


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server calling ``app``; TLS (handshake in the worker thread) if given a context."""

    daemon_threads = True

    def __init__(self, app: Callable[..., Reply], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Wrap the connection in TLS here, not in accept(), so a slow client blocks no one."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(30)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except OSError:
            return
        with contextlib.closing(conn):
            super().finish_request(conn, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Dropped connections are expected (client timeouts); stay quiet."""


def _parse(target: str, headers: Mapping[str, str], raw: bytes, method: str) -> RecordedRequest:
    parts = urlsplit(target)
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return RecordedRequest(method, unquote(parts.path), query, dict(headers), body, raw)


class FakeArm:
    """The fake ARM server plus its managed-identity token endpoint; see the module docstring."""

    def __init__(self, *, lro_in_progress_polls: int = 1, lro_retry_after_ms: int = 10) -> None:
        self.lro_in_progress_polls = lro_in_progress_polls
        self.lro_retry_after_ms = lro_retry_after_ms
        self.require_issued_token = True
        self.subscription_id, self.tenant_id = SUBSCRIPTION_ID, TENANT_ID
        self.resource_group, self.workspace_name, self.location = RESOURCE_GROUP, WORKSPACE_NAME, LOCATION
        self.identity_header = uuid.uuid4().hex
        self.lock = threading.RLock()
        self._closing = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._token_requests: list[RecordedRequest] = []
        self._issued: set[str] = set()
        self._faults: list[list[Any]] = []  # [Fault, remaining]
        self._lro_failures: list[list[Any]] = []  # [method, pattern, error, remaining]
        self._operations: dict[str, _Operation] = {}
        self._routes: list[Route] = []
        self._tmp = tempfile.mkdtemp(prefix="fake-arm-")
        self.ca_path = f"{self._tmp}/ca.pem"
        self._arm = _Server(self._handle_arm, self._tls_context())
        self._token = _Server(self._handle_token)
        self._serving = contextlib.ExitStack()
        for server in (self._arm, self._token):
            self._serving.enter_context(serve_in_thread(server, poll_interval=0.05))
        self.url = f"https://127.0.0.1:{self._arm.server_address[1]}"
        self.token_url = f"http://127.0.0.1:{self._token.server_address[1]}/msi/token"
        self.cloud_name = f"FakeArm{self._arm.server_address[1]}"
        from .arm_adf import AdfService  # here, not at the top: those modules import this one
        from .arm_ml import MlService
        self.ml: MlService = MlService(self)
        self.adf: AdfService = AdfService(self)

    def _tls_context(self) -> ssl.SSLContext:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(self.ca_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        return context

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop both servers, wake any delayed handler, delete the CA file."""
        self._closing.set()
        self._serving.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> FakeArm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration for clients -------------------------------------------------------------

    def identity_env(self) -> dict[str, str]:
        """The App Service managed-identity variables DefaultAzureCredential reads."""
        return {"IDENTITY_ENDPOINT": self.token_url, "IDENTITY_HEADER": self.identity_header}

    def cloud_metadata(self) -> dict[str, Any]:
        """The ARM cloud metadata document (``GET /metadata/endpoints``) for this fake cloud."""
        return {"name": self.cloud_name, "portal": "https://portal.fake.local/",
                "resourceManager": f"{self.url}/", "authentication": {
                    "loginEndpoint": "https://login.fake.local/", "audiences": [f"{self.url}/"],
                    "tenant": "common", "identityProvider": "AAD"},
                "suffixes": {"storage": "core.fake.local", "keyVaultDns": "vault.fake.local"},
                "graph": "https://graph.fake.local/", "media": "https://media.fake.local/"}

    def environ(self) -> dict[str, str | None]:
        """Every variable to set (str) or clear (None) so SDKs use this fake; see module docstring."""
        env: dict[str, str | None] = dict.fromkeys(CLEARED_ENV)
        env.update(self.identity_env())
        env.update({"ARM_CLOUD_METADATA_URL": f"{self.url}/metadata/endpoints?api-version=2019-05-01",
                    "AZUREML_CURRENT_CLOUD": self.cloud_name, "REQUESTS_CA_BUNDLE": self.ca_path,
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
        return env

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Set and clear ``environ()`` through monkeypatch (undone after the test)."""
        apply_environ(monkeypatch, self.environ())

    def ml_client_kwargs(self) -> dict[str, Any]:
        """MLClient kwargs naming this fake cloud explicitly (``cloud``, ``cloud_metadata``)."""
        meta = {"azure_portal": "https://portal.fake.local/", "resource_manager": f"{self.url}/",
                "active_directory": "https://login.fake.local/", "aml_resource_id": "https://ml.fake.local/",
                "storage_endpoint": "core.fake.local", "registry_discovery_endpoint": f"{self.url}/"}
        return {"cloud": self.cloud_name, "cloud_metadata": meta, "connection_verify": self.ca_path}

    def adf_client_kwargs(self) -> dict[str, Any]:
        """DataFactoryManagementClient kwargs: ``base_url`` and ``connection_verify``."""
        return {"base_url": self.url, "connection_verify": self.ca_path}

    # -- recording ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every ARM request so far, oldest first."""
        with self.lock:
            return list(self._requests)

    @property
    def token_requests(self) -> list[RecordedRequest]:
        """Every managed-identity token request so far."""
        with self.lock:
            return list(self._token_requests)

    def issued(self, token: str) -> bool:
        """True for a bearer token this fake's managed-identity endpoint handed out."""
        with self.lock:
            return token in self._issued

    def requests_matching(self, method: str = "*", path_regex: str = "") -> list[RecordedRequest]:
        """Recorded ARM requests with this method (``*`` = any) whose path matches the regex."""
        pattern = re.compile(path_regex, re.IGNORECASE)
        return [r for r in self.requests if method in ("*", r.method) and pattern.search(r.path)]

    def clear_requests(self) -> None:
        """Forget recorded requests (state is kept)."""
        with self.lock:
            self._requests.clear()

    # -- faults ---------------------------------------------------------------------------

    def fail_next(self, method: str, path_regex: str, status: int, times: int = 1,
                  headers: Mapping[str, str] | None = None, body: Any = None, *,
                  delay_s: float = 0.0) -> None:
        """Answer the next ``times`` matching requests with ``status`` (default body: an ARM error).

        The request does not take effect; ``delay_s`` holds the answer first (a gateway timeout).
        """
        if body is None:
            body = arm_error(status, message=f"Injected {status} by the fake ARM.").body
        fault = Fault(method, re.compile(path_regex, re.IGNORECASE), Reply(status, body, dict(headers or {})),
                      delay_s)
        self._add_fault(fault, times)

    def delay_next(self, method: str, path_regex: str, seconds: float, times: int = 1, *,
                   process_first: bool = True) -> None:
        """Hold the next matching answers ``seconds``; with process_first the request takes effect first."""
        fault = Fault(method, re.compile(path_regex, re.IGNORECASE), delay_s=seconds,
                      process_first=process_first)
        self._add_fault(fault, times)

    def fail_next_lro(self, method: str, path_regex: str, code: str = "DeploymentFailed",
                      message: str = "Injected LRO failure.", times: int = 1) -> None:
        """Make the next matching long-running operations end ``Failed`` with this error."""
        error = {"code": code, "message": message}
        with self.lock:
            self._lro_failures.append([method, re.compile(path_regex, re.IGNORECASE), error, times])

    def _add_fault(self, fault: Fault, times: int) -> None:
        with self.lock:
            self._faults.append([fault, times])

    def _take(self, rules: list[list[Any]], match: Callable[[list[Any]], bool]) -> list[Any] | None:
        for rule in rules:
            if match(rule):
                rule[-1] -= 1
                if rule[-1] <= 0:
                    rules.remove(rule)
                return rule
        return None

    # -- long-running operations --------------------------------------------------------------

    def start_operation(self, request: RecordedRequest, *, namespace: str, location: str,
                        finish: Callable[[bool], None], result: Callable[[], Reply],
                        status_segment: str = "operationsStatus",
                        results_segment: str = "operationResults") -> dict[str, str]:
        """Begin an LRO for ``request``; returns the Azure-AsyncOperation/Location/Retry-After headers."""
        with self.lock:
            rule = self._take(self._lro_failures,
                              lambda r: r[0] in ("*", request.method) and bool(r[1].search(request.path)))
            op = _Operation(uuid.uuid4().hex, self.lro_in_progress_polls, rule[2] if rule else None,
                            finish, result)
            self._operations[op.op_id] = op
        base = f"{self.url}/subscriptions/{self.subscription_id}/providers/{namespace}/locations/{location}"
        version = request.api_version or ""
        return {"Azure-AsyncOperation": f"{base}/{status_segment}/{op.op_id}?api-version={version}",
                "Location": f"{base}/{results_segment}/{op.op_id}?api-version={version}",
                **self.retry_after_headers()}

    def retry_after_headers(self) -> dict[str, str]:
        """The polling hint sent with LRO answers (milliseconds keep SDK pollers fast)."""
        return {"Retry-After-ms": str(self.lro_retry_after_ms)}

    def _operation_status(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        op = self._operations.get(match["op"])
        if op is None:
            return arm_error(404, "OperationNotFound", f"Operation {match['op']} not found.")
        body: dict[str, Any] = {"id": request.path, "name": op.op_id, "status": op.poll(),
                                "startTime": op.start_time}
        if op.end_time:
            body["endTime"] = op.end_time
        if op.status == "Failed":
            body["error"] = dict(op.error or {})
        headers = self.retry_after_headers() if op.status == "InProgress" else {}
        return Reply(200, body, headers)

    def _operation_result(self, request: RecordedRequest, match: re.Match[str]) -> Reply:
        op = self._operations.get(match["op"])
        if op is None:
            return arm_error(404, "OperationNotFound", f"Operation {match['op']} not found.")
        status = op.poll()
        if status == "InProgress":
            location = f"{self.url}{request.path}?api-version={request.api_version or ''}"
            return Reply(202, None, {"Location": location, **self.retry_after_headers()})
        if status == "Failed":
            return arm_error(400, str((op.error or {}).get("code")), str((op.error or {}).get("message")))
        return op.result()

    # -- routing --------------------------------------------------------------------------

    def add_route(self, method: str, path_regex: str, handler: Handler, *, resource_type: str,
                  api_versions: Collection[str]) -> None:
        """Serve ``method`` on paths fully matching ``path_regex`` with ``handler``, for requests
        naming one of ``api_versions`` (the REST specs' versions of ``resource_type``)."""
        self._routes.append(Route(method, re.compile(path_regex, re.IGNORECASE), handler,
                                  resource_type, frozenset(api_versions)))

    def add_operation_routes(self, namespace: str, api_versions: Collection[str], *,
                             status_segment: str = "operationsStatus",
                             results_segment: str = "operationResults") -> None:
        """Serve a namespace's LRO status and result URLs (what ``start_operation`` hands out)."""
        ops = rf"/subscriptions/[^/]+/providers/{re.escape(namespace)}/locations/[^/]+"
        self.add_route("GET", ops + rf"/{status_segment}/(?P<op>[^/]+)", self._operation_status,
                       resource_type=f"{namespace}/locations/{status_segment}",
                       api_versions=api_versions)
        self.add_route("GET", ops + rf"/{results_segment}/(?P<op>[^/]+)", self._operation_result,
                       resource_type=f"{namespace}/locations/{results_segment}",
                       api_versions=api_versions)

    def _dispatch(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path == "/metadata/endpoints":
            return Reply(200, self.cloud_metadata())
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        if not request.api_version:
            return arm_error(400, "MissingApiVersionParameter",
                             "The api-version query parameter (?api-version=) is required for all requests.")
        allowed = []
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match and route.method == request.method:
                refused = self._api_version_problem(request.api_version, route)
                if refused is not None:
                    return refused
                with self.lock:
                    return route.handler(request, match)
            if match:
                allowed.append(route.method)
        if allowed:
            return arm_error(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}.")
        return arm_error(404, "NoRouteInFakeArm", f"The fake ARM has no route for {request.method} "
                                                  f"{request.path}.")

    def _api_version_problem(self, version: str, route: Route) -> Reply | None:
        """ARM's answer to an api-version the resource type does not have (None when it has it)."""
        if version in route.api_versions:
            return None
        supported = ", ".join(sorted(route.api_versions, reverse=True))
        if not _API_VERSION.fullmatch(version):
            return arm_error(400, "InvalidApiVersionParameter",
                             f"The api-version '{version}' is invalid. The supported versions are "
                             f"'{supported}'.")
        namespace, _, kind = route.resource_type.partition("/")
        return arm_error(400, "NoRegisteredProviderFound",
                         f"No registered resource provider found for location '{self.location}' and "
                         f"API version '{version}' for type '{kind}'. The supported api-versions are "
                         f"'{supported}'. The supported locations are '{self.location}'.",
                         target=namespace)

    def _check_auth(self, request: RecordedRequest) -> Reply | None:
        token = request.bearer_token
        if token is None:
            reply = arm_error(401, "AuthenticationFailed",
                              "Authentication failed. The 'Authorization' header is missing.")
        elif self.require_issued_token and token not in self._issued:
            reply = arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        else:
            return None
        return Reply(401, reply.body, {"WWW-Authenticate": 'Bearer authorization_uri='
                                       '"https://login.fake.local/", error="invalid_token"'})

    def _handle_arm(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        request = _parse(target, headers, raw, method)
        with self.lock:
            self._requests.append(request)
            rule = self._take(self._faults, lambda r: r[0].matches(method, request.path))
        fault: Fault | None = rule[0] if rule else None
        if fault is not None and fault.reply is not None:
            self._closing.wait(fault.delay_s)
            return fault.reply
        if fault is not None and not fault.process_first:
            self._closing.wait(fault.delay_s)
        reply = self._dispatch(request)
        if fault is not None and fault.process_first:
            self._closing.wait(fault.delay_s)
        return reply

    # -- managed identity ------------------------------------------------------------------

    def _handle_token(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        request = _parse(target, headers, raw, method)
        with self.lock:
            self._token_requests.append(request)
        if request.path != "/msi/token" or method != "GET":
            return Reply(404, {"statusCode": 404, "message": "Not found."})
        if headers.get("x-identity-header") != self.identity_header:
            return Reply(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."})
        resource = request.query.get("resource")
        if not resource or request.api_version != "2019-08-01":
            return Reply(400, {"statusCode": 400, "message": "resource and api-version=2019-08-01 needed."})
        return Reply(200, self._issue_token(resource, request.query.get("client_id")))

    def _issue_token(self, resource: str, client_id: str | None) -> dict[str, str]:
        now = int(time.time())
        client = client_id or "11111111-2222-3333-4444-555555555555"
        token = make_jwt({"aud": resource, "iss": f"https://sts.windows.net/{self.tenant_id}/",
                          "iat": now, "nbf": now, "exp": now + 3600, "appid": client, "idtyp": "app",
                          "oid": "66666666-7777-8888-9999-000000000000", "tid": self.tenant_id,
                          "sub": "66666666-7777-8888-9999-000000000000", "jti": uuid.uuid4().hex})
        with self.lock:
            self._issued.add(token)
        return {"access_token": token, "expires_on": str(now + 3600), "resource": resource,
                "token_type": "Bearer", "client_id": client}


class NetworkGuard:
    """Refuses DNS lookups and connections beyond loopback, recording each attempt."""

    LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> NetworkGuard:
        """Patch ``socket.getaddrinfo`` and ``socket.socket.connect`` for one test."""
        real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
        guard = self

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            guard._check(host)
            return real_getaddrinfo(host, *args, **kwargs)

        def connect(sock: socket.socket, address: Any) -> None:
            if isinstance(address, tuple):
                guard._check(address[0])
            real_connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)
        return self

    def _check(self, host: Any) -> None:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.lower() not in self.LOOPBACK:
            self.attempts.append(name)
            raise OSError(f"NetworkGuard: tests must not reach {name!r}")


@contextlib.contextmanager
def start_fake_arm(**options: Any) -> Iterator[FakeArm]:
    """Run a FakeArm for the ``with`` block (options: lro_in_progress_polls, lro_retry_after_ms)."""
    arm = FakeArm(**options)
    try:
        yield arm
    finally:
        arm.close()


def fake_arm_fixture(seed: Callable[[FakeArm], None] | None = None, *, name: str = "arm",
                     **options: Any) -> Any:
    """A pytest fixture ``name``: a FakeArm (``options`` as start_fake_arm takes them) with its
    environment applied, ``seed(arm)`` run, and a NetworkGuard that fails the test on any attempt
    to go beyond loopback. Assign it in a test module or conftest: ``arm = fake_arm_fixture(seed)``.
    """
    @pytest.fixture(name=name)
    def fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
        guard = NetworkGuard().install(monkeypatch)
        with start_fake_arm(**options) as arm:
            arm.apply_env(monkeypatch)
            if seed is not None:
                seed(arm)
            yield arm
        assert guard.attempts == [], f"a test reached beyond loopback: {guard.attempts}"

    return fixture
