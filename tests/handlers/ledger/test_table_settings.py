"""Where the ledger table is (handlers/ledger/table_settings.py): pure, no Azurite needed."""

from __future__ import annotations

import pytest

from handlers.errors import SettingError
from handlers.ledger.table_settings import (
    DEV_CONNECTION_STRING,
    LEDGER_TABLE_CONNECTION,
    LEDGER_TABLE_ENDPOINT,
    LEDGER_TABLE_NAME,
    TableLedgerSettings,
)

ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "a2V5"


def conn(port: int) -> str:
    """A connection string to a table endpoint on a loopback port."""
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")


def test_own_connection_setting_wins_over_the_host_storage() -> None:
    settings = TableLedgerSettings.from_mapping({LEDGER_TABLE_CONNECTION: conn(1),
                                                 "AzureWebJobsStorage": conn(2)})
    assert settings.connection_string == conn(1)
    assert (settings.table_name, settings.endpoint) == ("amleventsledger", "")


def test_host_storage_is_the_default_and_dev_storage_means_azurite() -> None:
    settings = TableLedgerSettings.from_mapping({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                                 LEDGER_TABLE_NAME: "Ledger2"})
    assert settings.connection_string == DEV_CONNECTION_STRING
    assert "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1" in DEV_CONNECTION_STRING
    assert settings.table_name == "Ledger2"


def test_identity_based_host_storage_gives_an_endpoint_for_managed_identity() -> None:
    by_account = TableLedgerSettings.from_mapping({
        "AzureWebJobsStorage__accountName": "mystore", "AzureWebJobsStorage__clientId": "cid"})
    assert (by_account.endpoint, by_account.client_id) == (
        "https://mystore.table.core.windows.net", "cid")
    by_uri = TableLedgerSettings.from_mapping({
        "AzureWebJobsStorage__accountName": "mystore",
        "AzureWebJobsStorage__tableServiceUri": "https://other.table.core.windows.net/"})
    assert by_uri.endpoint == "https://other.table.core.windows.net"
    own = TableLedgerSettings.from_mapping({LEDGER_TABLE_ENDPOINT: "https://x.example/",
                                            "AzureWebJobsStorage": conn(2)})
    assert (own.endpoint, own.connection_string) == ("https://x.example", "")


def test_every_bad_setting_is_named_at_once() -> None:
    with pytest.raises(SettingError) as caught:
        TableLedgerSettings.from_mapping({LEDGER_TABLE_CONNECTION: conn(1),
                                          LEDGER_TABLE_ENDPOINT: "http://plain.example",
                                          LEDGER_TABLE_NAME: "no-dashes"})
    assert [name for name, _ in caught.value.problems] == [
        LEDGER_TABLE_NAME, LEDGER_TABLE_ENDPOINT, LEDGER_TABLE_ENDPOINT]
    with pytest.raises(SettingError) as nothing:
        TableLedgerSettings.from_mapping({})
    assert nothing.value.setting == LEDGER_TABLE_CONNECTION


def test_each_refusal_is_spelled_out_whole() -> None:
    with pytest.raises(SettingError) as caught:
        TableLedgerSettings.from_mapping({LEDGER_TABLE_CONNECTION: conn(1),
                                          LEDGER_TABLE_ENDPOINT: "http://plain.example",
                                          LEDGER_TABLE_NAME: "no-dashes"})
    assert caught.value.problems == (
        (LEDGER_TABLE_NAME, "must be 3-63 letters or digits, starting with a letter, "
                            "got 'no-dashes'"),
        (LEDGER_TABLE_ENDPOINT, f"set either it or {LEDGER_TABLE_CONNECTION}"),
        (LEDGER_TABLE_ENDPOINT, "must be an https:// URL (managed identity tokens are sent "
                                "over TLS only), got 'http://plain.example'"))
    with pytest.raises(SettingError) as nothing:
        TableLedgerSettings.from_mapping({})
    assert nothing.value.problems == ((
        LEDGER_TABLE_CONNECTION, "AMLEVENTS_LEDGER=table needs a connection string "
        "(AMLEVENTS_LEDGER_TABLE_CONNECTION or AzureWebJobsStorage) or a table endpoint for "
        "managed identity (AMLEVENTS_LEDGER_TABLE_ENDPOINT)"),)
    with pytest.raises(SettingError) as plain_uri:
        TableLedgerSettings.from_mapping(
            {"AzureWebJobsStorage__tableServiceUri": "http://other.example"})
    assert plain_uri.value.setting == "AzureWebJobsStorage__tableServiceUri"


def test_the_whole_settings_of_each_source() -> None:
    assert TableLedgerSettings.from_mapping({LEDGER_TABLE_CONNECTION: conn(1)}) == \
        TableLedgerSettings(table_name="amleventsledger", source=LEDGER_TABLE_CONNECTION,
                            endpoint="", client_id="", connection_string=conn(1))
    assert TableLedgerSettings.from_mapping(
        {"AzureWebJobsStorage": " UseDevelopmentStorage=true; "}) == TableLedgerSettings(
        table_name="amleventsledger", source="AzureWebJobsStorage",
        connection_string=DEV_CONNECTION_STRING)
    assert TableLedgerSettings.from_mapping({"AzureWebJobsStorage__accountName": "acct"}) == \
        TableLedgerSettings(table_name="amleventsledger",
                            source="AzureWebJobsStorage__accountName",
                            endpoint="https://acct.table.core.windows.net")
    assert TableLedgerSettings.from_mapping({LEDGER_TABLE_ENDPOINT: "https://x.example/",
                                             LEDGER_TABLE_NAME: "abc"}) == TableLedgerSettings(
        table_name="abc", source=LEDGER_TABLE_ENDPOINT, endpoint="https://x.example")
