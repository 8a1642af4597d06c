"""Azure Pipelines over the REST API (api-version 7.1): Runs - Run Pipeline, Runs - List.

- `POST {org}/{project}/_apis/pipelines/{pipelineId}/runs` starts a run and answers the Run
  (`id`, `name`, `_links.web.href`).
- Finding the run an unanswered request started: `GET .../_apis/pipelines/{pipelineId}/runs`
  (the latest runs, newest first), looking at those created since the intent for the request id
  in the run's `name` (the pipeline's `name:` run-number format, docs/cicd.md).
- Credentials: the app's managed identity, through `DefaultAzureCredential`, asks Entra for a
  token for Azure DevOps' resource (`499b84ac-1321-427f-aa17-267ca6975798`); the identity must be
  added to the organization (and allowed to queue the pipeline). No secret.
- Errors: 400/401/403/404 (and other 4xx) are `PermanentError` with Azure DevOps' message (an
  undeclared template parameter, a variable not settable at queue time, a missing pipeline); a
  203 or an HTML page is Azure DevOps not knowing the identity; 429 is `NotStarted` with the wait
  it asks for (`Retry-After`, else `X-RateLimit-Reset`); 5xx are retryable (and may have started
  a run). https://learn.microsoft.com/rest/api/azure/devops/pipelines/runs/run-pipeline
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from handlers.adapters.cicd import Lookup, Started
from handlers.adapters.cicd.http import Answer, JsonClient, NotStarted
from handlers.cicd.decide import PIPELINES_API_VERSION
from handlers.cicd.plan import REQUEST_ID, Dispatch
from handlers.cicd.settings import CicdSettings
from handlers.errors import PermanentError, RetryableError

AZURE_DEVOPS_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"  # Azure DevOps' Entra app id
SCOPE = f"{AZURE_DEVOPS_RESOURCE}/.default"
_LOOKUP_MARGIN_S = 300.0  # clock skew between us and Azure DevOps' createdDate, both ways
_MESSAGE_MAX = 500
_NOT_A_MEMBER = ("Azure DevOps did not recognise the app's identity (it answered a sign-in page): "
                 "add the managed identity to the organization (Organization settings > Users) "
                 "and give it permission to queue the pipeline")
_HINTS = {
    401: " (add the app's managed identity to the organization: Organization settings > Users)",
    403: " (allow the app's identity to queue builds of this pipeline)",
    404: " (check the organization, project and pipelineId)",
}


def devops_message(answer: Answer) -> str:
    """Azure DevOps' error message (with its typeKey), else the start of the body."""
    body = answer.body if isinstance(answer.body, dict) else {}
    message = str(body.get("message") or answer.text or f"HTTP {answer.status}")
    kind = body.get("typeKey")
    if kind:
        message = f"{kind}: {message}"
    return " ".join(message.split())[:_MESSAGE_MAX]


def _retry_after(answer: Answer, now_s: float) -> float:
    headers = answer.headers
    try:
        return max(0.0, float(headers["retry-after"]))
    except (KeyError, ValueError):
        pass
    try:
        return max(0.0, float(headers["x-ratelimit-reset"]) - now_s)
    except (KeyError, ValueError):
        return 60.0


def _created_s(run: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(run.get("createdDate"))).timestamp()
    except (TypeError, ValueError):
        return None


class AzurePipelines:
    """Runs pipelines and finds the runs they started."""

    def __init__(self, settings: CicdSettings, credential: Any, http: JsonClient, *,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.credential = credential
        self.http = http
        self.clock = clock

    def send(self, dispatch: Dispatch) -> Started:
        """Run the pipeline; the run's id and web URL, or raise."""
        answer = self._call(dispatch.request.method, dispatch.request.url,
                            f"running {self._name(dispatch)}", body=dispatch.request.body)
        run = answer.body
        web = ((run.get("_links") or {}).get("web") or {}).get("href", "")
        return Started(run_id=str(run.get("id", "")), run_url=str(web))

    def find(self, dispatch: Dispatch, since_s: float) -> Lookup:
        """The run named after the dispatch's request id, among those created since then."""
        # Runs - List is Runs - Run Pipeline's URL read with GET.
        url = dispatch.request.url.split("?", 1)[0] + f"?api-version={PIPELINES_API_VERSION}"
        answer = self._call("GET", url, f"listing the runs of {self._name(dispatch)}")
        runs = answer.body.get("value")
        if not isinstance(runs, list):
            raise RetryableError(f"Azure DevOps listed the runs of {self._name(dispatch)} "
                                 "without value")
        unnamed = 0
        for run in runs:
            created = _created_s(run) if isinstance(run, dict) else None
            if created is None or created < since_s - _LOOKUP_MARGIN_S:
                continue
            name = str(run.get("name") or "")
            if dispatch.request_id in name:
                web = ((run.get("_links") or {}).get("web") or {}).get("href", "")
                return Lookup(str(run.get("id", "")), str(web))
            if not REQUEST_ID.search(name):
                unnamed += 1
        return Lookup(unnamed=unnamed)

    @staticmethod
    def _name(dispatch: Dispatch) -> str:
        t = dispatch.target
        return f"pipeline {t['pipelineId']} in {t['organization']}/{t['project']}"

    def _token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return str(self.credential.get_token(SCOPE).token)
        except ClientAuthenticationError as exc:  # CredentialUnavailableError included
            raise NotStarted(f"no Entra token for Azure DevOps: {exc}") from exc

    def _call(self, method: str, url: str, what: str, *, body: Any = None) -> Answer:
        token = self._token()
        answer = self.http.call(method, url, headers={"Authorization": f"Bearer {token}"},
                                body=body)
        if answer.ok:
            if answer.status == 203 or not isinstance(answer.body, dict):
                raise PermanentError(f"{what}: {_NOT_A_MEMBER}")
            return answer
        message = devops_message(answer)
        if answer.status == 429:
            wait = _retry_after(answer, self.clock())
            raise NotStarted(f"Azure DevOps rate limit on {what} (retry after {wait:.0f} s): "
                             f"{message}", retry_after_s=wait)
        if answer.status >= 500:
            raise RetryableError(f"Azure DevOps answered {answer.status} to {what}: {message}")
        if answer.body is None and answer.status in (401, 403):
            message = _NOT_A_MEMBER
        raise PermanentError(f"Azure DevOps answered {answer.status} to {what}: {message}"
                             f"{_HINTS.get(answer.status, '')}")
