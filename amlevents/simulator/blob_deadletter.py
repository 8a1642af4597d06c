"""Dead letters to Azure Blob Storage (or Azurite), as Event Grid writes them.

Event Grid dead-letters to a storage container, one JSON array per blob, named
`{TOPIC}/{SUBSCRIPTION}/{year}/{month}/{day}/{hour}/{guid}.json`, not zero-padded (see
journal.py); this writer stores
exactly what `FolderDeadLetterWriter` writes, in a blob instead of a file.
https://learn.microsoft.com/azure/event-grid/manage-event-delivery
azure-storage-blob is imported when the writer is built, never at import.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from amlevents.simulator import jsonnum
from handlers.ledger.table import DEV_CONNECTION_STRING

# Azurite's development account (`UseDevelopmentStorage=true`) as the ledger spells it, with the
# blob service's well-known port instead of the table service's.
DEV_BLOB_CONNECTION_STRING = DEV_CONNECTION_STRING.replace(
    "TableEndpoint=http://127.0.0.1:10002/", "BlobEndpoint=http://127.0.0.1:10000/")
_TIMEOUTS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 20}


def expand_development_storage(connection_string: str) -> str:
    """`UseDevelopmentStorage=true` (any case or spacing) → Azurite's blob connection string."""
    if connection_string.replace(" ", "").rstrip(";").lower() == "usedevelopmentstorage=true":
        return DEV_BLOB_CONNECTION_STRING
    return connection_string


class BlobDeadLetterWriter:
    """Writes dead-letter blobs (JSON arrays) to containers it creates when missing."""

    def __init__(self, connection_string: str) -> None:
        from azure.storage.blob import BlobServiceClient, LinearRetry

        # A local tool's dead letters: one retry after 1 s (the SDK's default backs off 15 s, 45 s,
        # holding a delivery worker), then the journal says the write failed.
        retry = LinearRetry(backoff=1, random_jitter_range=0, retry_total=1)
        # ValueError for a malformed string; its message never echoes the value (account key).
        self._service = BlobServiceClient.from_connection_string(
            expand_development_storage(connection_string), retry_policy=retry, **_TIMEOUTS)
        self._containers: set[str] = set()
        self._lock = threading.Lock()

    @property
    def account_url(self) -> str:
        """The blob service URL the writer talks to (no credentials in it)."""
        return str(self._service.url)

    def write(self, container: str, blob_name: str,
              records: Sequence[Mapping[str, Any]]) -> str:
        """Upload one JSON array blob; return `blob://{container}/{blob_name}`.

        Storage failures raise OSError, which the delivery engine journals as a failed write.
        """
        from azure.core.exceptions import AzureError
        from azure.storage.blob import ContentSettings

        data = jsonnum.dumps(list(records), indent=2).encode("utf-8")
        try:
            self._ensure_container(container)
            self._service.get_blob_client(container, blob_name).upload_blob(
                data, overwrite=True,
                content_settings=ContentSettings(content_type="application/json"))
        except AzureError as exc:
            status = getattr(exc, "status_code", None)
            code = getattr(exc, "error_code", None)
            detail = " ".join(str(part) for part in (status, code) if part)
            raise OSError(f"blob {container}/{blob_name}: {type(exc).__name__} {detail}".rstrip()
                          ) from None
        return f"blob://{container}/{blob_name}"

    def _ensure_container(self, container: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        with self._lock:
            if container in self._containers:
                return
        try:
            self._service.create_container(container)
        except ResourceExistsError:
            pass  # created earlier, by us or anyone: what we wanted
        with self._lock:
            self._containers.add(container)
