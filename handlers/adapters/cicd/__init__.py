"""The CI/CD services (GitHub Actions, Azure Pipelines) behind the CicdDispatcher port.

`dispatcher.py` keeps each run exactly once with the ledger; `github.py` and
`azure_pipelines.py` speak each service's REST API through `http.py`; `dry_run.py` is the twin.
What a service module answers the dispatcher is defined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from handlers.cicd.plan import Dispatch


@dataclass(frozen=True)
class Started:
    """What a service said about the run it started (empty when it did not say)."""

    run_id: str = ""
    run_url: str = ""


@dataclass(frozen=True)
class Lookup:
    """The run carrying a request id, if found, and how many runs carried no request id at all."""

    run_id: str = ""
    run_url: str = ""
    unnamed: int = 0


class Service(Protocol):
    """One CI/CD service: start a run, find the run a request id started."""

    def send(self, dispatch: Dispatch) -> Started:
        """Send the request; raise NotStarted (nothing started), RetryableError (it may have),
        PermanentError (the service refused it)."""
        ...

    def find(self, dispatch: Dispatch, since_s: float) -> Lookup:
        """The run named after the dispatch's request id, among those created since `since_s`."""
        ...
