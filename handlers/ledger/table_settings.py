"""Where the ledger table is, and a TableClient for it: a connection string or managed identity.

Own settings first (AMLEVENTS_LEDGER_TABLE_*), then the Functions host's storage settings
(AzureWebJobsStorage, or its identity-based `__tableServiceUri` / `__accountName`).
azure.data.tables and azure.identity are imported only inside table_client (cold start).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from handlers.errors import SettingError
from handlers.settings import SettingsReader

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient

LEDGER_TABLE_CONNECTION = "AMLEVENTS_LEDGER_TABLE_CONNECTION"
LEDGER_TABLE_ENDPOINT = "AMLEVENTS_LEDGER_TABLE_ENDPOINT"
LEDGER_TABLE_NAME = "AMLEVENTS_LEDGER_TABLE_NAME"
# The Functions host's own storage settings (connection string, or identity-based connection).
WEBJOBS_STORAGE = "AzureWebJobsStorage"
WEBJOBS_TABLE_URI = "AzureWebJobsStorage__tableServiceUri"
WEBJOBS_ACCOUNT = "AzureWebJobsStorage__accountName"
WEBJOBS_CLIENT_ID = "AzureWebJobsStorage__clientId"

DEFAULT_TABLE_NAME = "amleventsledger"
# The emulator's documented development account (what `UseDevelopmentStorage=true` means).
DEV_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJP"
    "LlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;")
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
# Bounded SDK retries: a throttled ledger should hand the event back to Event Grid, not stall.
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.2,
                                   "retry_backoff_max": 2, "connection_timeout": 5,
                                   "read_timeout": 20}


@dataclass(frozen=True)
class TableLedgerSettings:
    """Where the ledger table is: a connection string, or an endpoint reached by managed identity."""

    table_name: str
    source: str  # the setting the connection string or endpoint came from
    endpoint: str = ""
    client_id: str = ""
    connection_string: str = field(default="", repr=False)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> TableLedgerSettings:
        """Read and validate; own settings first, then the Functions host's storage settings."""
        reader = SettingsReader(env)
        table_name = reader.text(LEDGER_TABLE_NAME, DEFAULT_TABLE_NAME)
        if not _TABLE_NAME.fullmatch(table_name):
            reader.problem(LEDGER_TABLE_NAME, "must be 3-63 letters or digits, starting with a "
                           f"letter, got {table_name!r}")
        endpoint = reader.text(LEDGER_TABLE_ENDPOINT)
        connection = reader.text(LEDGER_TABLE_CONNECTION)
        source = LEDGER_TABLE_ENDPOINT if endpoint else LEDGER_TABLE_CONNECTION
        client_id = ""
        if endpoint and connection:
            reader.problem(LEDGER_TABLE_ENDPOINT, f"set either it or {LEDGER_TABLE_CONNECTION}")
        if not (endpoint or connection):
            connection, source = reader.text(WEBJOBS_STORAGE), WEBJOBS_STORAGE
            account = reader.text(WEBJOBS_ACCOUNT)
            if not connection:
                source = WEBJOBS_TABLE_URI if reader.text(WEBJOBS_TABLE_URI) else WEBJOBS_ACCOUNT
                endpoint = reader.text(WEBJOBS_TABLE_URI) or (
                    f"https://{account}.table.core.windows.net" if account else "")
                client_id = reader.text(WEBJOBS_CLIENT_ID)
        if not (endpoint or connection):
            reader.problem(LEDGER_TABLE_CONNECTION, "AMLEVENTS_LEDGER=table needs a connection "
                           f"string ({LEDGER_TABLE_CONNECTION} or {WEBJOBS_STORAGE}) or a table "
                           f"endpoint for managed identity ({LEDGER_TABLE_ENDPOINT})")
        if endpoint and not endpoint.lower().startswith("https://"):
            reader.problem(source, "must be an https:// URL (managed identity "
                           f"tokens are sent over TLS only), got {endpoint!r}")
        reader.raise_if_invalid()
        if connection.replace(" ", "").rstrip(";").lower() == "usedevelopmentstorage=true":
            connection = DEV_CONNECTION_STRING
        return cls(table_name=table_name, source=source, endpoint=endpoint.rstrip("/"),
                   client_id=client_id, connection_string=connection)


def table_client(settings: TableLedgerSettings,
                 credential: TokenCredential | None = None) -> TableClient:
    """A TableClient for the settings (the process's credential unless one is given)."""
    from azure.data.tables import TableClient

    if settings.connection_string:
        try:
            return TableClient.from_connection_string(
                settings.connection_string, table_name=settings.table_name, **_CLIENT_OPTIONS)
        except ValueError as exc:  # never echo the value: it holds the account key
            raise SettingError(settings.source,
                               "is not a valid storage connection string") from exc
    if credential is None:
        from handlers.adapters.credential import shared_credential

        credential = shared_credential(settings.client_id)
    return TableClient(endpoint=settings.endpoint, table_name=settings.table_name,
                       credential=credential, **_CLIENT_OPTIONS)
