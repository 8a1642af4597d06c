"""GitHub Actions over the REST API: workflow_dispatch, repository_dispatch, and finding their runs.

- `POST /repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches` (204; 200 with the run's
  id and URLs when `return_run_details` is sent) and `POST /repos/{owner}/{repo}/dispatches`
  (204). REST API version 2022-11-28 (`X-GitHub-Api-Version`).
- Finding the run an unanswered request started: `GET .../actions/workflows/{workflow}/runs`
  (`event=workflow_dispatch`) or `GET .../actions/runs` (`event=repository_dispatch`), created
  since the intent, looking for the request id in each run's `display_title` (the workflow's
  `run-name`, docs/cicd.md).
- Credentials: a token (`Authorization: Bearer`), or a GitHub App: a JWT signed RS256 with the
  App's private key (`iss` the App's id, `iat` 60 s back for clock drift, `exp` 9 minutes on, under
  GitHub's 10) buys an installation token (`POST /app/installations/{id}/access_tokens`, narrowed
  to the repository), cached until 5 minutes before its `expires_at`. The installation is the
  setting's, else the repository's (`GET /repos/{owner}/{repo}/installation`).
- Errors: 401/403/404/422 (and other 4xx) are `PermanentError` with GitHub's message; rate limits
  (403 or 429 with `x-ratelimit-remaining: 0`, a `retry-after`, or a "secondary rate limit"
  message) are `NotStarted` with the wait GitHub asks for (`retry-after`, else until
  `x-ratelimit-reset`, else a minute); 5xx are retryable (and may have started a run).
  https://docs.github.com/rest/using-the-rest-api/troubleshooting-the-rest-api
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from handlers.adapters.cicd import Lookup, Started
from handlers.adapters.cicd.http import Answer, JsonClient, NotStarted
from handlers.cicd.plan import REQUEST_ID, Dispatch
from handlers.cicd.settings import (
    GITHUB_APP_ID,
    GITHUB_APP_INSTALLATION_ID,
    CicdSettings,
    GitHubAuth,
)
from handlers.errors import PermanentError, RetryableError

API_VERSION = "2022-11-28"
_JWT_BACKDATE_S = 60  # GitHub's advice: iat 60 s in the past, against clock drift
_JWT_LIFETIME_S = 540  # GitHub refuses an exp more than 10 minutes after iat
_TOKEN_MARGIN_S = 300  # an installation token is renewed this long before it expires
_LOOKUP_MARGIN_S = 300  # clock skew between us and GitHub's created_at, both ways
_PAGE = 100
_MAX_PAGES = 10
_MESSAGE_MAX = 500
_HINTS = {
    401: " (the token is wrong, expired or revoked)",
    403: " (the token needs Actions: write for workflow_dispatch, Contents: write for "
         "repository_dispatch, on this repository)",
    404: " (check the repository and the workflow, and that the token can see them)",
}


def iso(epoch_s: float) -> str:
    """Seconds since the epoch as GitHub writes times (UTC, whole seconds, Z)."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def github_message(answer: Answer) -> str:
    """GitHub's error message (and its `errors`), else the start of the body."""
    body = answer.body if isinstance(answer.body, dict) else {}
    message = str(body.get("message") or answer.text or f"HTTP {answer.status}")
    errors = body.get("errors")
    if isinstance(errors, list):
        details = [str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e)
                   for e in errors]
        message += "".join(f"; {d}" for d in details if d)
    return " ".join(message.split())[:_MESSAGE_MAX]


def rate_limit_wait(answer: Answer, now_s: float) -> float | None:
    """Seconds to wait when the answer is a rate limit (primary or secondary), else None."""
    if answer.status not in (403, 429):
        return None
    headers = answer.headers
    secondary = "secondary rate limit" in github_message(answer).lower()
    if "retry-after" in headers:
        try:
            return max(0.0, float(headers["retry-after"]))
        except ValueError:
            return 60.0
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(headers.get("x-ratelimit-reset", "")) - now_s)
        except ValueError:
            return 60.0
    return 60.0 if secondary or answer.status == 429 else None


class GitHub:
    """Dispatches workflows and repository events, and finds the runs they started."""

    def __init__(self, settings: CicdSettings, auth: GitHubAuth, http: JsonClient, *,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.auth = auth
        self.http = http
        self.clock = clock
        self.app = GitHubApp(auth, http, settings.github_api_url, clock=clock) \
            if auth.mode == "app" else None

    def send(self, dispatch: Dispatch) -> Started:
        """Send the dispatch; what GitHub said about the run, or raise."""
        repository = str(dispatch.target["repository"])
        answer = self._call(dispatch.request.method, dispatch.request.url, repository,
                            f"{dispatch.action} to {repository}", body=dispatch.request.body)
        body = answer.body if isinstance(answer.body, dict) else {}
        run_id = body.get("workflow_run_id")
        return Started(run_id=str(run_id) if run_id is not None else "",
                       run_url=str(body.get("html_url") or ""))

    def find(self, dispatch: Dispatch, since_s: float) -> Lookup:
        """The run whose display title carries the dispatch's request id, created since then."""
        repository = str(dispatch.target["repository"])
        query = {"created": f">={iso(since_s - _LOOKUP_MARGIN_S)}", "per_page": str(_PAGE)}
        base = f"{self.settings.github_api_url}/repos/{repository}/actions"
        if dispatch.action == "workflow_dispatch":
            workflow = urllib.parse.quote(str(dispatch.target["workflow"]), safe="")
            base += f"/workflows/{workflow}/runs"
            query["event"] = "workflow_dispatch"
        else:
            base += "/runs"
            query["event"] = "repository_dispatch"
        unnamed = 0
        for page in range(1, _MAX_PAGES + 1):
            url = f"{base}?{urllib.parse.urlencode({**query, 'page': str(page)})}"
            answer = self._call("GET", url, repository, f"listing the runs of {repository}")
            runs = (answer.body or {}).get("workflow_runs") if isinstance(answer.body, dict) \
                else None
            if not isinstance(runs, list):
                raise RetryableError(f"GitHub listed the runs of {repository} without "
                                     "workflow_runs")
            for run in runs:
                title = str(run.get("display_title") or run.get("name") or "")
                if dispatch.request_id in title:
                    return Lookup(str(run.get("id", "")), str(run.get("html_url") or ""))
                if not REQUEST_ID.search(title):
                    unnamed += 1
            if len(runs) < _PAGE:
                break
        return Lookup(unnamed=unnamed)

    def _call(self, method: str, url: str, repository: str, what: str, *,
              body: Any = None) -> Answer:
        for attempt in (1, 2):
            try:
                token = self.app.token(repository) if self.app else self.auth.token
            except RetryableError as exc:  # no token yet: nothing was sent to start a run
                raise NotStarted(str(exc), retry_after_s=exc.retry_after_s) from exc
            answer = self.http.call(method, url, headers=headers(token), body=body)
            if answer.status == 401 and self.app is not None and attempt == 1:
                self.app.forget(repository)  # revoked or expired early: a fresh token, once
                continue
            return self._check(answer, what)
        raise AssertionError("unreachable")

    def _check(self, answer: Answer, what: str) -> Answer:
        if answer.ok:
            return answer
        message = github_message(answer)
        wait = rate_limit_wait(answer, self.clock())
        if wait is not None:
            raise NotStarted(f"GitHub rate limit on {what} (HTTP {answer.status}, retry after "
                             f"{wait:.0f} s): {message}", retry_after_s=wait)
        if answer.status >= 500:
            raise RetryableError(f"GitHub answered {answer.status} to {what}: {message}")
        hint = _HINTS.get(answer.status, "")
        if answer.status == 403 and self.app is not None:
            hint = (" (the GitHub App needs the Actions: write permission for workflow_dispatch, "
                    "Contents: write for repository_dispatch)")
        raise PermanentError(f"GitHub answered {answer.status} to {what}: {message}{hint}")


def headers(token: str) -> dict[str, str]:
    """GitHub's REST headers with a bearer credential."""
    return {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {token}"}


class GitHubApp:
    """A GitHub App's installation tokens, per repository, cached until shortly before expiry."""

    def __init__(self, auth: GitHubAuth, http: JsonClient, api_url: str, *,
                 clock: Callable[[], float]) -> None:
        self.auth = auth
        self.http = http
        self.api_url = api_url
        self.clock = clock
        self._installations: dict[str, int] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def jwt(self) -> str:
        """The App's JSON Web Token (RS256), valid for 9 minutes."""
        import jwt  # PyJWT, with cryptography for RS256: imported on first use

        now = int(self.clock())
        claims = {"iat": now - _JWT_BACKDATE_S, "exp": now + _JWT_LIFETIME_S,
                  "iss": self.auth.app_id}
        return jwt.encode(claims, self.auth.private_key, algorithm="RS256")

    def token(self, repository: str) -> str:
        """An installation token that can act on `repository`."""
        with self._lock:
            cached = self._tokens.get(repository.lower())
            if cached and cached[1] - _TOKEN_MARGIN_S > self.clock():
                return cached[0]
        installation = self._installation(repository)
        url = f"{self.api_url}/app/installations/{installation}/access_tokens"
        answer = self._app_call("POST", url, f"an installation token for {repository}",
                                body={"repositories": [repository.split("/", 1)[1]]})
        body = answer.body if isinstance(answer.body, dict) else {}
        token, expires = body.get("token"), body.get("expires_at")
        if not token or not expires:
            raise RetryableError("GitHub answered the installation token request without a "
                                 "token or its expiry")
        expires_s = datetime.fromisoformat(str(expires)).timestamp()
        with self._lock:
            self._tokens[repository.lower()] = (str(token), expires_s)
        return str(token)

    def forget(self, repository: str) -> None:
        """Drop the cached token of a repository (GitHub refused it)."""
        with self._lock:
            self._tokens.pop(repository.lower(), None)

    def _installation(self, repository: str) -> int:
        if self.auth.installation_id is not None:
            return self.auth.installation_id
        with self._lock:
            known = self._installations.get(repository.lower())
        if known is not None:
            return known
        answer = self._app_call("GET", f"{self.api_url}/repos/{repository}/installation",
                                f"the App's installation on {repository}")
        found = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(found, int):
            raise RetryableError(f"GitHub answered the installation of {repository} without id")
        with self._lock:
            self._installations[repository.lower()] = found
        return found

    def _app_call(self, method: str, url: str, what: str, *, body: Any = None) -> Answer:
        answer = self.http.call(method, url, headers=headers(self.jwt()), body=body)
        if answer.ok:
            return answer
        message = github_message(answer)
        wait = rate_limit_wait(answer, self.clock())
        if wait is not None or answer.status >= 500:
            raise RetryableError(f"GitHub answered {answer.status} to {what}: {message}",
                                 retry_after_s=wait)
        if answer.status == 401:
            message += f" (check {GITHUB_APP_ID} and the App's private key)"
        elif answer.status == 404 and "/installation" in url and "/app/" not in url:
            message += (f" (the App is not installed on this repository: install it, or set "
                        f"{GITHUB_APP_INSTALLATION_ID})")
        elif answer.status in (403, 404, 422):
            message += " (check the App's installation: its repositories and permissions)"
        raise PermanentError(f"GitHub answered {answer.status} to {what}: {message}")

