"""Settings of the CI/CD concern: the rules (parsed once, every problem named), the two services.

`AMLEVENTS_CICD_RULES` is a JSON array of rules, tried in order; every rule whose `when` matches
fires (a matching rule with `"stop": true` ends the list). Each rule has one target: `github`
(workflow_dispatch, or repository_dispatch with `eventType`) or `azurePipelines` (Runs - Run
Pipeline). Templates are parsed here, so an unknown placeholder is a setting error naming it, and
so is anything over a documented limit that can be known before an event arrives:

- workflow_dispatch: at most 25 inputs ("The maximum number of properties is 25", REST "Create a
  workflow dispatch event"), input names as the workflow syntax allows them (a letter or `_`,
  then letters, digits, `-`, `_`), a `ref`;
- repository_dispatch: `event_type` of 1-100 characters, at most 10 top-level `client_payload`
  properties (REST "Create a repository dispatch event");
- Azure Pipelines: organization names (letters, digits, `-`, at most 50), project names (at most
  64 characters, none of `\\ / : * ? " < > | ; # $ { } , + = [ ]`, not starting with `_` or `.`),
  variable names (letters, digits, `.`, `_`, not starting with `endpoint`, `input`, `secret`,
  `path` or `securefile`), a positive pipeline id.

Sizes that depend on the event (the 65,535 characters of workflow inputs, the 64 KB of a
client payload) are checked when the request is built (decide.py).

The GitHub credential is a fine-grained token (`AMLEVENTS_GITHUB_TOKEN`) or a GitHub App (id and
private key, e.g. from a Key Vault reference); Azure Pipelines uses the app's managed identity.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.cicd import templates
from handlers.cicd.templates import Template, TemplateError
from handlers.rules import CRITERIA_KEYS, Criteria, parse_criteria, short_type
from handlers.settings import SettingsReader

RULES = "AMLEVENTS_CICD_RULES"
GITHUB_API_URL = "AMLEVENTS_GITHUB_API_URL"
GITHUB_TOKEN = "AMLEVENTS_GITHUB_TOKEN"
GITHUB_APP_ID = "AMLEVENTS_GITHUB_APP_ID"
GITHUB_APP_PRIVATE_KEY = "AMLEVENTS_GITHUB_APP_PRIVATE_KEY"
GITHUB_APP_INSTALLATION_ID = "AMLEVENTS_GITHUB_APP_INSTALLATION_ID"
GITHUB_RETURN_RUN_DETAILS = "AMLEVENTS_GITHUB_RETURN_RUN_DETAILS"
AZURE_DEVOPS_URL = "AMLEVENTS_AZURE_DEVOPS_URL"
TIMEOUT_S = "AMLEVENTS_CICD_TIMEOUT_S"
CA_FILE = "AMLEVENTS_CICD_CA_FILE"
RECONCILE_GRACE_S = "AMLEVENTS_CICD_RECONCILE_GRACE_S"

DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_AZURE_DEVOPS_URL = "https://dev.azure.com"
DEFAULT_REQUEST_ID_NAME = "amlevents_request_id"

# GitHub's documented limits (REST "Create a workflow dispatch event" / "Create a repository
# dispatch event"; workflow syntax `on.workflow_dispatch.inputs`).
MAX_WORKFLOW_INPUTS = 25
MAX_WORKFLOW_INPUTS_CHARS = 65_535
MAX_EVENT_TYPE_CHARS = 100
MAX_CLIENT_PAYLOAD_PROPERTIES = 10
MAX_CLIENT_PAYLOAD_BYTES = 64 * 1024  # "must be less than 64KB"

_RULE_KEYS = frozenset({"name", "when", "stop", "github", "azurePipelines"})
_GITHUB_KEYS = frozenset({"repository", "workflow", "ref", "inputs", "eventType",
                          "clientPayload", "requestIdInput"})
_PIPELINES_KEYS = frozenset({"organization", "project", "pipelineId", "branch",
                             "templateParameters", "variables", "requestIdParameter"})
_REPOSITORY = re.compile(r"(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/"
                         r"(?P<repo>[A-Za-z0-9._-]{1,100})")
_WORKFLOW = re.compile(r"\d+|[A-Za-z0-9._-]+\.ya?ml")
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_ORGANIZATION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")
_PROJECT_FORBIDDEN = set('\\/:*?"<>|;#${},+=[]')
_VARIABLE = re.compile(r"[A-Za-z0-9._]+")
_VARIABLE_RESERVED = ("endpoint", "input", "secret", "path", "securefile")
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_KEY_VAULT_REFERENCE = "@microsoft.keyvault("


@dataclass(frozen=True)
class GitHubWorkflow:
    """workflow_dispatch: run one workflow on a ref with inputs."""

    repository: str
    workflow: str
    ref: Template
    inputs: tuple[tuple[str, Template], ...]
    request_id_input: str | None

    service = "github"


@dataclass(frozen=True)
class GitHubRepositoryDispatch:
    """repository_dispatch: an event that every workflow listening for its type takes."""

    repository: str
    event_type: Template
    client_payload: Mapping[str, Any] = field(repr=False)  # JSON; strings are Templates
    request_id_key: str | None = None

    service = "github"


@dataclass(frozen=True)
class AzurePipeline:
    """Runs - Run Pipeline: one run of a pipeline, on a branch, with parameters and variables."""

    organization: str
    project: str
    pipeline_id: int
    branch: Template | None
    template_parameters: tuple[tuple[str, Template], ...]
    variables: tuple[tuple[str, Template], ...]
    request_id_parameter: str | None

    service = "azurePipelines"


Target = GitHubWorkflow | GitHubRepositoryDispatch | AzurePipeline


@dataclass(frozen=True)
class CicdRule:
    """When a rule fires, what it starts, and whether later rules are still tried."""

    name: str
    when: Criteria
    target: Target
    stop: bool = False


@dataclass(frozen=True)
class CicdSettings:
    """The rules and where the services are: what deciding and sending need (no secret)."""

    rules: tuple[CicdRule, ...]
    github_api_url: str
    github_run_details: bool  # workflow_dispatch asks for the run's id and URL (return_run_details)
    azure_devops_url: str
    timeout_s: float
    ca_file: str
    reconcile_grace_s: float

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> CicdSettings:
        """Build and validate from a mapping such as os.environ."""
        reader = SettingsReader(env)
        github = _base_url(reader, GITHUB_API_URL, DEFAULT_GITHUB_API_URL)
        settings = cls(
            rules=parse_rules(reader),
            github_api_url=github,
            github_run_details=reader.flag(GITHUB_RETURN_RUN_DETAILS, _cloud(github)),
            azure_devops_url=_base_url(reader, AZURE_DEVOPS_URL, DEFAULT_AZURE_DEVOPS_URL),
            timeout_s=reader.number(TIMEOUT_S, 10.0, minimum=0.5, maximum=120.0),
            ca_file=reader.text(CA_FILE),
            reconcile_grace_s=reader.number(RECONCILE_GRACE_S, 120.0, minimum=0.0,
                                            maximum=86_400.0))
        reader.raise_if_invalid()
        return settings

    def wants(self, event_type: str) -> bool:
        """True when a rule's `when.types` lists the type (the routing's cheap first look)."""
        kind = short_type(event_type)
        return any(rule.when.types is not None and kind in rule.when.types
                   for rule in self.rules)

    @property
    def services(self) -> frozenset[str]:
        """The services the rules target (`github`, `azurePipelines`)."""
        return frozenset(rule.target.service for rule in self.rules)


def _cloud(api_url: str) -> bool:
    """GitHub.com and GHE.com (data residency) answer workflow_dispatch with the run's details
    (since 2026-02); a GitHub Enterprise Server may not know the parameter yet."""
    host = urllib.parse.urlsplit(api_url).hostname or ""
    return host == "api.github.com" or host.endswith(".ghe.com")


def _base_url(reader: SettingsReader, name: str, default: str) -> str:
    value = reader.text(name, default).rstrip("/")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        reader.problem(name, "is not a valid URL (check the host and the port)")
        return default
    if parts.query or parts.fragment or parts.username or _CONTROL.search(value) or " " in value:
        reader.problem(name, "must be a plain base URL (no query, fragment, credentials or "
                             "spaces)")
        return default
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return value
    reader.problem(name, "must be an https URL (http only to localhost)")
    return default


# -- the rules -------------------------------------------------------------------------------------

def parse_rules(reader: SettingsReader) -> tuple[CicdRule, ...]:
    """The rules in AMLEVENTS_CICD_RULES (a JSON array of objects); problems go to `reader`."""
    items = reader.json_objects(RULES, "rule objects")
    rules = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        rule = _rule(item, index, lambda message: reader.problem(RULES, message))
        if rule is None:
            continue
        if rule.name.lower() in seen:
            reader.problem(RULES, f"rule {index + 1}: another rule is named {rule.name!r} "
                                  "(names identify a rule's runs: keep them unique)")
        seen.add(rule.name.lower())
        rules.append(rule)
    return tuple(rules)


Problem = Callable[[str], None]


def _rule(item: Mapping[str, Any], index: int, problem: Problem) -> CicdRule | None:
    where = f"rule {index + 1}"
    unknown = sorted(set(item) - _RULE_KEYS)
    if unknown:
        problem(f"{where}: unknown key(s) {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(_RULE_KEYS))})")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or _CONTROL.search(name):
        problem(f"{where}: name is required: a text of 1-100 characters that identifies the rule")
        name = where
    else:
        where = f"rule {name.strip()!r}"
    stop = item.get("stop", False)
    if not isinstance(stop, bool):
        problem(f"{where}: stop must be true or false")
    when = _when(item.get("when"), where, problem)
    targets = [key for key in ("github", "azurePipelines") if key in item]
    if len(targets) != 1:
        problem(f"{where}: give exactly one target, github or azurePipelines")
        return None
    raw = item[targets[0]]
    if not isinstance(raw, dict):
        problem(f"{where}: {targets[0]} must be an object")
        return None
    target = (_github(raw, f"{where}: github", problem) if targets[0] == "github"
              else _pipeline(raw, f"{where}: azurePipelines", problem))
    if when is None or target is None:
        return None
    return CicdRule(name=name.strip(), when=when, target=target, stop=stop is True)


def _when(value: Any, where: str, problem: Problem) -> Criteria | None:
    if not isinstance(value, dict):
        problem(f"{where}: when is required: an object with types (and optional model, "
                "experiment, tags, runStatus)")
        return None
    unknown = sorted(set(value) - CRITERIA_KEYS)
    if unknown:
        problem(f"{where}: when: unknown key(s) {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(CRITERIA_KEYS))})")
    criteria = parse_criteria(value, f"{where}: when", problem)
    if not value.get("types", value.get("events")):
        problem(f"{where}: when.types is required: the event types the rule takes")
    return criteria if criteria.types else None


def _unknown(raw: Mapping[str, Any], allowed: frozenset[str], where: str,
             problem: Problem) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        problem(f"{where}: unknown key(s) {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(allowed))})")


def _template(value: Any, where: str, problem: Problem) -> Template | None:
    if not isinstance(value, str):
        problem(f"{where} must be a string (a template)")
        return None
    try:
        return templates.parse(value)
    except TemplateError as exc:
        problem(f"{where}: {exc}")
        return None


def _string_map(value: Any, where: str, problem: Problem,
                name_ok: Callable[[str], str]) -> tuple[tuple[str, Template], ...]:
    """An object of name -> string template; `name_ok` says what is wrong with a name ('')."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        problem(f"{where} must be an object of name -> string (a template)")
        return ()
    found = []
    for name, raw in value.items():
        wrong = name_ok(str(name))
        if wrong:
            problem(f"{where}: {name!r} {wrong}")
            continue
        template = _template(raw, f"{where}.{name}", problem)
        if template is not None:
            found.append((str(name), template))
    return tuple(found)


def _request_id_name(raw: Mapping[str, Any], key: str, where: str, problem: Problem,
                     pattern: re.Pattern[str]) -> str | None:
    value = raw.get(key, DEFAULT_REQUEST_ID_NAME)
    if value is None:
        return None  # not passed: a lost answer cannot be looked up (docs/cicd.md)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        problem(f"{where}: {key} must be a name ({pattern.pattern}) or null")
        return None
    return value


def _input_name(name: str) -> str:
    if not _INPUT_NAME.fullmatch(name):
        return "is not an input name (a letter or _, then letters, digits, - or _)"
    return ""


def _github(raw: Mapping[str, Any], where: str,
            problem: Problem) -> GitHubWorkflow | GitHubRepositoryDispatch | None:
    _unknown(raw, _GITHUB_KEYS, where, problem)
    repository = raw.get("repository")
    if not isinstance(repository, str) or not _REPOSITORY.fullmatch(repository):
        problem(f"{where}: repository must be OWNER/REPO (e.g. contoso/ml-release)")
        repository = None
    if ("workflow" in raw) == ("eventType" in raw):
        problem(f"{where}: give workflow (workflow_dispatch) or eventType "
                "(repository_dispatch), one of them")
        return None
    build = _workflow if "workflow" in raw else _repository_dispatch
    target = build(raw, repository or "", where, problem)  # its problems too, whatever the repo
    return target if repository else None


def _workflow(raw: Mapping[str, Any], repository: str, where: str,
              problem: Problem) -> GitHubWorkflow | None:
    if "clientPayload" in raw:
        problem(f"{where}: clientPayload goes with eventType; a workflow takes inputs")
    workflow = raw.get("workflow")
    if isinstance(workflow, int) and not isinstance(workflow, bool):
        workflow = str(workflow)
    if not isinstance(workflow, str) or not _WORKFLOW.fullmatch(workflow):
        problem(f"{where}: workflow must be the workflow's file name (release.yml) or its id")
        return None
    if "ref" not in raw:
        problem(f"{where}: ref is required with workflow: the branch or tag to run it on")
        return None
    ref = _template(raw["ref"], f"{where}: ref", problem)
    inputs = _string_map(raw.get("inputs"), f"{where}: inputs", problem, _input_name)
    request_input = _request_id_name(raw, "requestIdInput", where, problem, _INPUT_NAME)
    names = [name for name, _ in inputs]
    if request_input is not None and request_input in names:
        problem(f"{where}: inputs already has {request_input!r}, the request id's input "
                "(set requestIdInput to another name, or to null)")
    count = len(set(names) | ({request_input} if request_input else set()))
    if count > MAX_WORKFLOW_INPUTS:
        problem(f"{where}: {count} inputs (the request id's included): GitHub takes at most "
                f"{MAX_WORKFLOW_INPUTS}")
    if ref is None or (ref.literal is not None and not ref.literal.strip()):
        if ref is not None:
            problem(f"{where}: ref must not be empty")
        return None
    return GitHubWorkflow(repository, workflow, ref, inputs, request_input)


def _repository_dispatch(raw: Mapping[str, Any], repository: str, where: str,
                         problem: Problem) -> GitHubRepositoryDispatch | None:
    for misplaced in ("inputs", "ref"):
        if misplaced in raw:
            problem(f"{where}: {misplaced} goes with workflow; eventType takes clientPayload")
    event_type = _template(raw.get("eventType"), f"{where}: eventType", problem)
    if event_type is not None and event_type.literal is not None and not (
            1 <= len(event_type.literal) <= MAX_EVENT_TYPE_CHARS):
        problem(f"{where}: eventType must be 1-{MAX_EVENT_TYPE_CHARS} characters")
    payload = raw.get("clientPayload", {})
    if not isinstance(payload, dict):
        problem(f"{where}: clientPayload must be a JSON object")
        payload = {}
    compiled = _json_templates(payload, f"{where}: clientPayload", problem)
    key = _request_id_name(raw, "requestIdInput", where, problem, re.compile(r"[^\x00-\x1f]+"))
    if key is not None and key in payload:
        problem(f"{where}: clientPayload already has {key!r}, the request id's key "
                "(set requestIdInput to another name, or to null)")
    count = len(set(payload) | ({key} if key else set()))
    if count > MAX_CLIENT_PAYLOAD_PROPERTIES:
        problem(f"{where}: clientPayload has {count} top-level properties (the request id's "
                f"included): GitHub takes at most {MAX_CLIENT_PAYLOAD_PROPERTIES}")
    if event_type is None:
        return None
    return GitHubRepositoryDispatch(repository, event_type, compiled, key)


def _json_templates(value: Any, where: str, problem: Problem) -> Any:
    """A JSON value whose strings are templates (objects and arrays walked, other values kept)."""
    if isinstance(value, str):
        return _template(value, where, problem) or ""
    if isinstance(value, dict):
        return {str(k): _json_templates(v, f"{where}.{k}", problem) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_templates(v, f"{where}[{i}]", problem) for i, v in enumerate(value)]
    return value


def _variable_name(name: str) -> str:
    if not _VARIABLE.fullmatch(name):
        return "is not a variable name (letters, digits, . and _)"
    if name.lower().startswith(_VARIABLE_RESERVED):
        return f"is a reserved variable name (it starts with one of {', '.join(_VARIABLE_RESERVED)})"
    return ""


def _parameter_name(name: str) -> str:
    return "" if _PARAMETER.fullmatch(name) else \
        "is not a parameter name (a letter or _, then letters, digits or _)"


def _pipeline(raw: Mapping[str, Any], where: str, problem: Problem) -> AzurePipeline | None:
    _unknown(raw, _PIPELINES_KEYS, where, problem)
    ok = True
    organization = raw.get("organization")
    if not isinstance(organization, str) or not _ORGANIZATION.fullmatch(organization):
        problem(f"{where}: organization must be the organization's name (letters, digits and "
                "hyphens, at most 50), as in https://dev.azure.com/ORGANIZATION")
        ok = False
    project = raw.get("project")
    if not isinstance(project, str) or not project.strip() or len(project) > 64 \
            or set(project) & _PROJECT_FORBIDDEN or project.startswith(("_", ".")) \
            or project.endswith(".") or _CONTROL.search(project):
        problem(f"{where}: project must be the project's name or id (at most 64 characters, "
                "none of \\ / : * ? \" < > | ; # $ { } , + = [ ])")
        ok = False
    pipeline_id = raw.get("pipelineId")
    if isinstance(pipeline_id, str) and pipeline_id.strip().isdigit():
        pipeline_id = int(pipeline_id)
    if isinstance(pipeline_id, bool) or not isinstance(pipeline_id, int) or pipeline_id < 1:
        problem(f"{where}: pipelineId must be the pipeline's id, a positive whole number "
                "(definitionId in the pipeline's URL)")
        ok = False
    branch = None
    if raw.get("branch") is not None:
        branch = _template(raw["branch"], f"{where}: branch", problem)
        ok = ok and branch is not None
    parameters = _string_map(raw.get("templateParameters"), f"{where}: templateParameters",
                             problem, _parameter_name)
    variables = _string_map(raw.get("variables"), f"{where}: variables", problem,
                            _variable_name)
    request_parameter = _request_id_name(raw, "requestIdParameter", where, problem, _PARAMETER)
    if request_parameter is not None and request_parameter in dict(parameters):
        problem(f"{where}: templateParameters already has {request_parameter!r}, the request "
                "id's parameter (set requestIdParameter to another name, or to null)")
    if not ok:
        return None
    assert isinstance(organization, str) and isinstance(project, str)
    assert isinstance(pipeline_id, int)
    return AzurePipeline(organization, project.strip(), pipeline_id, branch, parameters,
                         variables, request_parameter)


# -- GitHub credentials ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GitHubAuth:
    """How amlevents signs in to GitHub: a token, or a GitHub App (JWT -> installation token)."""

    token: str = field(default="", repr=False)
    app_id: str = ""
    private_key: str = field(default="", repr=False)
    installation_id: int | None = None

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> GitHubAuth:
        """Build and validate from a mapping such as os.environ (secrets are never echoed)."""
        reader = SettingsReader(env)
        token = reader.text(GITHUB_TOKEN)
        app_id = reader.text(GITHUB_APP_ID)
        key = reader.text(GITHUB_APP_PRIVATE_KEY).replace("\\n", "\n")
        installation = reader.integer(GITHUB_APP_INSTALLATION_ID, 0, minimum=1)
        for name, value in ((GITHUB_TOKEN, token), (GITHUB_APP_PRIVATE_KEY, key)):
            if value.lower().startswith(_KEY_VAULT_REFERENCE):
                reader.problem(name, "is a Key Vault reference the platform did not resolve: "
                                     "give the app's identity 'Key Vault Secrets User' on the "
                                     "vault and check the secret URI")
        if token and (app_id or key):
            reader.problem(GITHUB_TOKEN, f"set {GITHUB_TOKEN} or a GitHub App "
                                         f"({GITHUB_APP_ID}, {GITHUB_APP_PRIVATE_KEY}), not both")
        if token and (_CONTROL.search(token) or " " in token):
            reader.problem(GITHUB_TOKEN, "must be one token, without spaces or line breaks")
        if bool(app_id) != bool(key):
            missing = GITHUB_APP_PRIVATE_KEY if app_id else GITHUB_APP_ID
            reader.problem(missing, f"is required with {GITHUB_APP_ID if app_id else GITHUB_APP_PRIVATE_KEY}"
                                    " (a GitHub App needs both)")
        if app_id and not re.fullmatch(r"\d+|Iv[0-9A-Za-z.]+", app_id):
            reader.problem(GITHUB_APP_ID, "must be the App's id (digits) or its client id (Iv...)")
        if key and not key.lower().startswith(_KEY_VAULT_REFERENCE):
            wrong = private_key_problem(key)
            if wrong:
                reader.problem(GITHUB_APP_PRIVATE_KEY, wrong)
        if installation and not app_id:
            reader.problem(GITHUB_APP_INSTALLATION_ID, f"goes with {GITHUB_APP_ID}")
        reader.raise_if_invalid()
        return cls(token=token, app_id=app_id, private_key=key,
                   installation_id=installation or None)

    @property
    def mode(self) -> str:
        """`token`, `app`, or '' (none configured)."""
        return "token" if self.token else "app" if self.app_id else ""


def private_key_problem(pem: str) -> str:
    """What is wrong with a GitHub App private key ('' if nothing), never repeating it.

    Loaded now, as PyJWT will load it to sign (cryptography, imported here: only with an App).
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if "-----BEGIN" not in pem:
        return ("must be the App's private key in PEM (-----BEGIN RSA PRIVATE KEY-----...), "
                "as GitHub downloads it")
    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        return "is not a readable PEM private key (an unencrypted one, as GitHub downloads it)"
    except UnsupportedAlgorithm:
        return "uses a key type this app cannot load (GitHub App keys are RSA)"
    if not isinstance(key, rsa.RSAPrivateKey):
        return "must be an RSA key (GitHub App keys are; RS256 signs the App's JWT)"
    return ""


def auth_problems(settings: CicdSettings, auth: GitHubAuth) -> list[tuple[str, str]]:
    """What the live dispatcher would refuse: a GitHub rule without a GitHub credential."""
    github = [rule.name for rule in settings.rules if rule.target.service == "github"]
    if github and not auth.mode:
        return [(GITHUB_TOKEN, f"rule {github[0]!r} targets GitHub: set {GITHUB_TOKEN} (a "
                               f"fine-grained token), or {GITHUB_APP_ID} and "
                               f"{GITHUB_APP_PRIVATE_KEY} (a GitHub App)")]
    return []
