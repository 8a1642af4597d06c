"""Azurite, the official Azure Storage emulator, for tests: installed with npm, started on free ports.

`start_azurite(("table",))` (or "blob", "queue") installs Azurite at the repo root when
node_modules lacks it (`npm ci` from the committed package-lock.json), starts each service on a
free loopback port with in-memory storage, waits until it answers, and returns a handle with the
connection string. Any failure raises AzuriteError with the reason: a broken install must fail the
tests, never skip them.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "devstoreaccount1"
# The emulator's documented, public development key (not a secret of anyone's).
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
SERVICES = {"table": "Table", "blob": "Blob", "queue": "Queue"}
INSTALL_TIMEOUT_S = 300.0
START_TIMEOUT_S = 30.0


class AzuriteError(RuntimeError):
    """Azurite could not be installed or started; the message says why."""


def _bin(service: str) -> Path:
    return ROOT / "node_modules" / ".bin" / f"azurite-{service}"


def ensure_installed(services: Iterable[str] = ("table",)) -> None:
    """Install Azurite into ./node_modules unless it is there (npm ci from the lock file)."""
    wanted = tuple(services)
    if all(_bin(s).exists() for s in wanted):
        return
    # One installer at a time: test sessions of one checkout may start together.
    digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"amlevents-npm-{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(_bin(s).exists() for s in wanted):
            _npm_install(wanted)


def _npm_install(services: tuple[str, ...]) -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise AzuriteError("node and npm are needed to install Azurite (npm package `azurite`), "
                           "but are not on PATH")
    locked = (ROOT / "package-lock.json").exists()
    command = ([npm, "ci"] if locked else [npm, "install", "--no-save", "azurite@3"])
    command += ["--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AzuriteError(f"`{' '.join(command[:2])}` took over {INSTALL_TIMEOUT_S:.0f}s") from exc
    missing = [s for s in services if not _bin(s).exists()]
    if done.returncode != 0 or missing:
        raise AzuriteError(f"`{' '.join(command[:2])}` failed (exit {done.returncode}); "
                           f"missing {missing}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    # A readiness probe of our own loopback child: its (test) certificate need not be trusted.
    unverified = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, timeout=1, context=unverified):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer (Azurite says 4xx to an unsigned request) means it is up
    except OSError:
        return False


@dataclass
class Azurite:
    """Running Azurite services: their ports, the connection string, and a way to stop them."""

    workdir: Path
    scheme: str = "http"
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def endpoint(self, service: str) -> str:
        """The service's account URL, e.g. http://127.0.0.1:PORT/devstoreaccount1."""
        return f"{self.scheme}://127.0.0.1:{self.ports[service]}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A connection string for every started service (the emulator's well-known key)."""
        parts = [f"DefaultEndpointsProtocol={self.scheme}", f"AccountName={ACCOUNT}",
                 f"AccountKey={ACCOUNT_KEY}"]
        parts += [f"{SERVICES[s]}Endpoint={self.endpoint(s)}" for s in self.ports]
        return ";".join(parts) + ";"

    def start(self, service: str, *, extra_args: tuple[str, ...] = (), attempts: int = 3) -> None:
        """Start one service on a free port; retry on another port if the port was taken."""
        problems: list[str] = []
        for attempt in range(attempts):
            port = free_port()
            log_path = self.workdir / f"{service}-{attempt}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [str(_bin(service)), f"--{service}Host", "127.0.0.1", f"--{service}Port",
                     str(port), "--inMemoryPersistence",
                     "--skipApiVersionCheck", "--loose", "--disableTelemetry", *extra_args],
                    cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            if self._wait(process, f"{self.scheme}://127.0.0.1:{port}/{ACCOUNT}"):
                self.ports[service], self.processes[service] = port, process
                return
            _stop(process)
            problems.append(log_path.read_text(errors="replace")[-1500:])
        raise AzuriteError(f"azurite-{service} did not start:\n" + "\n---\n".join(problems))

    @staticmethod
    def _wait(process: subprocess.Popen[bytes], url: str) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if _answers(url):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stop every service this handle started."""
        for process in self.processes.values():
            _stop(process)
        self.processes.clear()


def _die_with_parent() -> None:
    # Linux: the emulator gets SIGTERM when the test process dies, even by SIGKILL or timeout.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_azurite(services: Iterable[str] = ("table",), *,
                  extra_args: tuple[str, ...] = ()) -> Azurite:
    """Install (if needed) and start the given services; the caller stops them.

    `extra_args` go to every service, e.g. ("--oauth", "basic", "--cert", C, "--key", K) for
    HTTPS with bearer tokens (managed identity); the endpoints then use https.
    """
    wanted = tuple(services)
    unknown = [s for s in wanted if s not in SERVICES]
    if unknown:
        raise AzuriteError(f"unknown Azurite services {unknown}; known: {sorted(SERVICES)}")
    ensure_installed(wanted)
    server = Azurite(Path(tempfile.mkdtemp(prefix="azurite-")),
                     scheme="https" if "--cert" in extra_args else "http")
    try:
        for service in wanted:
            server.start(service, extra_args=extra_args)
    except BaseException:
        server.stop()
        raise
    return server


def _serve(services: tuple[str, ...]) -> Iterator[str]:
    server = start_azurite(services)
    try:
        yield server.connection_string
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """A connection string to an Azurite table service running for the whole test session."""
    yield from _serve(("table",))


@pytest.fixture(scope="session")
def azurite_blob() -> Iterator[str]:
    """A connection string to an Azurite blob service running for the whole test session."""
    yield from _serve(("blob",))


@pytest.fixture(scope="session")
def azurite_queue() -> Iterator[str]:
    """A connection string to an Azurite queue service running for the whole test session."""
    yield from _serve(("queue",))
