"""One Azure credential per process, shared by every adapter and the Table ledger.

A `DefaultAzureCredential` keeps the tokens it gets (managed identity, a service principal, az
login) in the object itself. One object per adapter, or per client, asked the identity endpoint
once per adapter for the same token; one object per process asks once per scope (ARM, Storage,
ACS, Event Grid, Azure DevOps), and warm events ask for none (benchmarks/warm_path.py counts).

A user-assigned identity: `DefaultAzureCredential` reads its client id from AZURE_CLIENT_ID; a
setting that names another one (AzureWebJobsStorage__clientId, for the Table ledger) gets a
credential of its own, shared the same way. The credential is built again only when the
variables azure-identity reads change (never in Azure; between tests' fake identity endpoints).

Every token request has one quick retry, not azure-identity's default (about 5 s of retries
against an unreachable identity endpoint would hold the invocation): Event Grid redelivers.
azure.identity is imported on the first call (cold start).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

# What DefaultAzureCredential reads from the environment when it is built.
IDENTITY_VARIABLES = (
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_USERNAME", "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT",
    "MSI_SECRET", "IMDS_ENDPOINT")
TOKEN_RETRY: dict[str, Any] = {"retry_total": 1, "retry_backoff_factor": 0.2}

_lock = threading.Lock()
# client id ("" for AZURE_CLIENT_ID's, or none) -> (the environment it was built in, credential)
_shared: dict[str, tuple[tuple[str | None, ...], TokenCredential]] = {}


def shared_credential(client_id: str = "") -> TokenCredential:
    """The process's credential for the identity `client_id` names ("" for the default one)."""
    if client_id and client_id == os.environ.get("AZURE_CLIENT_ID"):
        client_id = ""  # the identity DefaultAzureCredential picks anyway: the same object
    built_in = tuple(os.environ.get(name) for name in IDENTITY_VARIABLES)
    with _lock:
        found = _shared.get(client_id)
        if found is not None and found[0] == built_in:
            return found[1]
        from azure.identity import DefaultAzureCredential

        options = dict(TOKEN_RETRY)
        if client_id:
            options["managed_identity_client_id"] = client_id
        credential: TokenCredential = DefaultAzureCredential(**options)
        _shared[client_id] = (built_in, credential)
        return credential
