"""Reliability suite: the figures recorder, the local host over HTTP, the fakes, the events.

Every test records its figure (`figures.record(...)`); the lines are printed again at the end
of the run (pytest_terminal_summary), so they show in `make test` output.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as MailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from handlers.ledger.ledger import LedgerEntry
from handlers.retrain.settings import ARM_ENDPOINT, READ_RETRIES, ROUTES, TIMEOUT_S
from handlers.runtime.dispatch import Dispatcher, default_dispatcher
from tests.conftest import SAMPLE_TOPIC, load_sample
from tests.fakes.arm import FakeArm, fake_arm_fixture
from tests.fakes.arm_adf import AMLEVENTS_PARAMETERS
from tests.reliability.workers import post

FIGURES = pytest.StashKey[list[str]]()
FACTORY, PIPELINE = "adf-reliability", "retrain-model"
CREATE_RUN = rf"/pipelines/{PIPELINE}/createRun$"
MODEL, ENDPOINT = "sklearn_regression_model", "sklearn-regression-model"
DEPLOYMENT_PUT = rf"/onlineEndpoints/{ENDPOINT}/deployments/[^/]+$"


# -- figures -------------------------------------------------------------------------------

@dataclass
class Figures:
    """Collects the suite's measured figures for the end-of-run summary."""

    lines: list[str]

    def record(self, topic: str, text: str) -> None:
        """Print one figure now and keep it for the summary."""
        line = f"RELIABILITY {topic}: {text}"
        print(line)
        self.lines.append(line)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """The run's figures recorder."""
    return Figures(request.config.stash.setdefault(FIGURES, []))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    """Print every recorded figure after the test results."""
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)


# -- the local host ------------------------------------------------------------------------

@dataclass
class Host:
    """A running local host (function_app on LocalServer) in this process."""

    port: int
    key: str | None = None

    def post(self, function: str, body: Any, *, headers: dict[str, str] | None = None,
             query: str = "") -> tuple[int, Any]:
        """POST a delivery (JSON-encoded unless bytes); (status, parsed JSON body or None)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        given = dict(headers or {})
        if self.key and "x-functions-key" not in given and "code=" not in query:
            given["x-functions-key"] = self.key
        status, content = post(self.port, function, raw, headers=given, query=query)
        return status, json.loads(content) if content else None

    def redeliver(self, function: str, events: Any, *, attempts: int = 10,
                  interval_s: float = 0.0) -> list[int]:
        """Deliver like Event Grid: again (after `interval_s`) while the host answers 5xx."""
        statuses = []
        for attempt in range(attempts):
            if attempt and interval_s:
                time.sleep(interval_s)
            status, _ = self.post(function, events)
            statuses.append(status)
            if status < 500:
                break
        return statuses

    def health(self) -> int:
        """GET /api/health (the host still serves)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/api/health", headers={"x-functions-key": self.key or ""})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


@pytest.fixture
def start_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Host]]:
    """Start the local host with `env` applied to os.environ (as `func start` does)."""
    import function_app
    from amlevents.host.server import FunctionsHost, LocalServer, load_functions

    servers: list[Any] = []

    def start(env: dict[str, str], *, key: str | None = None) -> Host:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        default_dispatcher.cache_clear()
        host = FunctionsHost(load_functions(function_app.app), key=key)
        server = LocalServer(host, port=0).start()
        servers.append(server)
        return Host(server.port, key)

    yield start
    for server in servers:
        server.stop()


def ledger_rows(env: dict[str, str]) -> list[LedgerEntry]:
    """Every ledger row, read through a fresh dispatcher on the same store."""
    return Dispatcher(env).ledger.entries()


# -- ledgers ---------------------------------------------------------------------------------

# -- the fake ARM ----------------------------------------------------------------------------

def _seed(fake: FakeArm) -> None:
    """A retraining pipeline declaring amlevents' parameters, and the model the events name."""
    fake.adf.add_pipeline(FACTORY, PIPELINE, parameters=AMLEVENTS_PARAMETERS)
    fake.ml.add_model(MODEL, "20")


arm = fake_arm_fixture(_seed)  # the shared fake ARM (HTTPS, managed identity), loopback only


def workspace_id(arm: FakeArm) -> str:
    """The fake workspace's resource id (the topic of its events)."""
    return (f"/subscriptions/{arm.subscription_id}/resourceGroups/{arm.resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{arm.workspace_name}")


def live_env(arm: FakeArm, **overrides: str) -> dict[str, str]:
    """Deploy and retrain live against the fake ARM; both topics allowed; notify dry-run."""
    route = {"subscription": arm.subscription_id, "resourceGroup": arm.resource_group,
             "factory": FACTORY, "pipeline": PIPELINE}
    env = {"AMLEVENTS_ALLOWED_TOPICS": f"{SAMPLE_TOPIC},{workspace_id(arm)}",
           "AMLEVENTS_DRY_RUN": "true", "AMLEVENTS_DRY_RUN_RETRAIN": "false",
           "AMLEVENTS_DRY_RUN_DEPLOY": "false", ARM_ENDPOINT: arm.url,
           ROUTES: json.dumps({"myDriftMonitor": route}), TIMEOUT_S: "5", READ_RETRIES: "0",
           "AMLEVENTS_DEPLOY_SDK_RETRIES": "0", "AMLEVENTS_DEPLOY_WAIT_S": "20",
           "AMLEVENTS_DEPLOY_POLL_S": "0.05", "AMLEVENTS_DEPLOY_HTTP_TIMEOUT_S": "5"}
    return {**env, **overrides}


# -- events ----------------------------------------------------------------------------------

def drift_event(event_id: str = "drift-1", monitor: str = "myDriftMonitor") -> dict[str, Any]:
    """The documented DatasetDriftDetected sample with its own id (and monitor)."""
    raw = load_sample("dataset_drift_detected")
    raw["id"] = event_id
    if monitor != "myDriftMonitor":
        raw["data"].update(DataDriftName=monitor, DataDriftId=f"id-{monitor}")
    return raw


def model_event(arm: FakeArm, version: int = 20, event_id: str = "") -> dict[str, Any]:
    """The documented ModelRegistered sample, from the fake workspace, asking for deployment."""
    raw = load_sample("model_registered")
    raw["topic"] = workspace_id(arm)
    raw["id"] = event_id or f"registered-{version}"
    raw["data"].update(ModelVersion=version, ModelTags={"deploy": "true"})
    return raw


def failed_run_event(n: int, experiment: str = "sweep-a",
                     template: dict[str, Any] | None = None) -> dict[str, Any]:
    """A RunStatusChanged (Failed) event for child run `n` of an experiment."""
    raw = copy.deepcopy(template) if template else load_sample("run_status_changed")
    raw["id"] = f"run-failed-{experiment}-{n}"
    raw["data"].update(runId=f"HD_{experiment}_{n}", experimentName=experiment,
                       runStatus="Failed")
    return raw


# -- an SMTP server that can refuse for a while ----------------------------------------------

@dataclass
class FlakySmtp:
    """A real SMTP server (aiosmtpd) answering `451` to the first `refuse` messages."""

    port: int = 0
    refuse: int = 0
    attempts: int = 0
    messages: list[MailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.attempts += 1
            if self.refuse > 0:
                self.refuse -= 1
                return "451 4.3.0 Mailbox busy, try again later"
            self.messages.append(message_from_bytes(envelope.original_content))
        await asyncio.sleep(0)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[FlakySmtp]:
    """A FlakySmtp on a free loopback port."""
    from tests.fakes.azurite import free_port

    sink = FlakySmtp(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    yield sink
    controller.stop()


def smtp_env(sink: FlakySmtp) -> dict[str, str]:
    """Settings sending email to the sink (no TLS: loopback)."""
    return {"AMLEVENTS_NOTIFY_SMTP_HOST": "127.0.0.1",
            "AMLEVENTS_NOTIFY_SMTP_PORT": str(sink.port),
            "AMLEVENTS_NOTIFY_SMTP_STARTTLS": "false",
            "AMLEVENTS_NOTIFY_SMTP_FROM": "amlevents@contoso.com",
            "AMLEVENTS_NOTIFY_SMTP_TO": "ml-team@contoso.com"}


