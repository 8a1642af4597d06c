"""The Table store's own concerns: settings, error mapping over HTTP, managed identity on Azurite.

The ledger semantics themselves are in test_ledger.py, run against every store.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from handlers.errors import PermanentError, RetryableError, SettingError
from handlers.ledger.table import (
    LEDGER_TABLE_CONNECTION,
    LEDGER_TABLE_ENDPOINT,
    LEDGER_TABLE_NAME,
    TableLedgerSettings,
    TableLedgerStore,
)
from tests.fakes.azurite import ACCOUNT, ACCOUNT_KEY, free_port, start_azurite
from tests.fakes.server import serve_in_thread

ROOT = Path(__file__).resolve().parents[3]


def conn(port: int) -> str:
    """A connection string to a table endpoint on a loopback port."""
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")


# --- settings (the rest are in test_table_settings.py, which needs no Azurite) ---------

def test_the_key_stays_out_of_repr_and_errors() -> None:
    settings = TableLedgerSettings.from_mapping({LEDGER_TABLE_CONNECTION: conn(1)})
    assert ACCOUNT_KEY not in repr(settings)
    with pytest.raises(SettingError) as caught:
        TableLedgerStore.from_settings({LEDGER_TABLE_CONNECTION: "AccountKey=s3cr3tValue;X=y"})
    assert caught.value.setting == LEDGER_TABLE_CONNECTION
    assert "s3cr3tValue" not in str(caught.value)
    with pytest.raises(SettingError) as host:
        TableLedgerStore.from_settings({"AzureWebJobsStorage": "AccountKey=s3cr3tValue"})
    assert host.value.setting == "AzureWebJobsStorage"


def test_importing_the_store_does_not_import_the_sdk() -> None:
    code = ("import sys, handlers.ledger.table, handlers.ledger.store, handlers.runtime.dispatch; "
            "sys.exit('azure.data.tables' in sys.modules or 'azure.core' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_from_settings_creates_the_default_table_in_the_host_storage(azurite: str) -> None:
    store = TableLedgerStore.from_settings({"AzureWebJobsStorage": azurite})
    try:
        assert store.client.table_name == "amleventsledger"
        assert store.entries() == []
        assert TableLedgerStore.from_settings({"AzureWebJobsStorage": azurite}).entries() == []
    finally:
        store.delete_table()
        store.close()


def test_text_that_a_table_cannot_hold_is_cleaned_not_refused(azurite: str) -> None:
    from handlers.ledger.ledger import LedgerEntry
    from handlers.outcome import Outcome

    store = TableLedgerStore.from_settings({LEDGER_TABLE_CONNECTION: azurite,
                                            LEDGER_TABLE_NAME: "clean" + str(free_port())})
    huge = "\U0001F600" * 40_000  # 160 KiB of UTF-16, more than one property holds
    entry = LedgerEntry(key="k", event_id="bad\ud800id", event_type="t", subject=huge, topic="",
                        function="f", received_at="", updated_at="", outcome=Outcome.INVALID)
    assert store.insert(entry) is not None
    stored = store.get("k")
    assert stored is not None and stored.event_id == "bad?id"
    assert stored.subject == "\U0001F600" * 15_000
    with pytest.raises(PermanentError, match="fit a table property"):
        store.put_state("big", {"v": "x" * 40_000}, etag=None)
    store.delete_table()
    store.close()


# --- transient and permanent storage errors, from a table endpoint answering over HTTP -------

class Answer(BaseHTTPRequestHandler):
    """Answers every request with the server's `status` and a Table Storage error body."""

    def _answer(self) -> None:
        server: Any = self.server
        body = json.dumps({"odata.error": {"code": server.code,
                                           "message": {"lang": "en-US", "value": "no"}}}).encode()
        self.send_response(server.status)
        self.send_header("Content-Type", "application/json;odata=minimalmetadata")
        self.send_header("Content-Length", str(len(body)))
        if server.status == 429:
            self.send_header("Retry-After", "7")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_MERGE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[ThreadingHTTPServer]:
    """A loopback server standing in for a table endpoint in trouble."""
    with serve_in_thread(ThreadingHTTPServer(("127.0.0.1", 0), Answer)) as server:
        yield server


def store_at(port: int) -> TableLedgerStore:
    """A store whose SDK client does not retry by itself (the test sees the first answer)."""
    from azure.data.tables import TableClient

    return TableLedgerStore(TableClient.from_connection_string(conn(port), table_name="ledger",
                                                               retry_total=0))


@pytest.mark.parametrize(("status", "code", "error", "says"), [
    (503, "ServerBusy", RetryableError, "answered 503"),
    (500, "InternalError", RetryableError, "answered 500"),
    (429, "TooManyRequests", RetryableError, "answered 429"),
    (403, "AuthorizationPermissionMismatch", RetryableError, "Storage Table Data Contributor"),
    (400, "PropertyValueTooLarge", PermanentError, "400 PropertyValueTooLarge"),
])
def test_storage_errors_are_classified(answering: ThreadingHTTPServer, status: int, code: str,
                                       error: type[Exception], says: str) -> None:
    answering.status, answering.code = status, code  # type: ignore[attr-defined]
    store = store_at(answering.server_address[1])
    with pytest.raises(error) as caught:
        store.get("k")
    assert says in str(caught.value)
    if status == 429:
        assert caught.value.retry_after_s == 7  # type: ignore[attr-defined]
    with pytest.raises(error):
        store.put_state("s", {"a": 1}, etag=None)


def test_an_unreachable_table_is_retryable() -> None:
    with pytest.raises(RetryableError, match="unreachable"):
        store_at(free_port()).get("k")


# --- managed identity: bearer tokens over HTTPS, as Azurite checks them with --oauth basic ---

class StaticToken:
    """A TokenCredential handing out one unsigned JWT (Azurite checks claims, not signatures)."""

    def __init__(self, audience: str) -> None:
        now = int(time.time())
        claims = {"aud": audience, "iss": "https://sts.windows.net/00000000-0000-0000-0000-0/",
                  "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "oid": "test"}
        parts = [{"alg": "none", "typ": "JWT"}, claims]
        self.token = ".".join(base64.urlsafe_b64encode(json.dumps(p).encode()).decode().rstrip("=")
                              for p in parts) + "."
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **_: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes += scopes
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTPS Azurite table service that takes bearer tokens; yields its account URL."""
    folder = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    cert = authority.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    server = start_azurite(("table",), extra_args=(
        "--oauth", "basic", "--cert", str(folder / "cert.pem"), "--key", str(folder / "key.pem")))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(folder / "ca.pem"))  # trust the test CA
        yield server.endpoint("table")
    server.stop()


def test_managed_identity_reaches_the_table_with_a_bearer_token(azurite_oauth: str) -> None:
    credential = StaticToken("https://storage.azure.com")
    store = TableLedgerStore.from_settings({LEDGER_TABLE_ENDPOINT: azurite_oauth},
                                           credential=credential)
    assert store.put_state("k", {"v": 1}, etag=None) is not None
    assert store.get_state("k") is not None
    assert credential.scopes and credential.scopes[0].startswith("https://storage.azure.com")
    store.close()


def test_a_token_for_another_resource_is_refused_with_the_role_named(azurite_oauth: str) -> None:
    with pytest.raises(RetryableError, match="Storage Table Data Contributor"):
        TableLedgerStore.from_settings({LEDGER_TABLE_ENDPOINT: azurite_oauth},
                                       credential=StaticToken("https://vault.azure.net"))
