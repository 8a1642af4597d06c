"""CI/CD settings: the rules parsed once with every problem named, templates and the services'
documented limits checked before any event, and the GitHub credential."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from handlers.cicd.settings import (
    AzurePipeline,
    CicdSettings,
    GitHubAuth,
    GitHubRepositoryDispatch,
    GitHubWorkflow,
    auth_problems,
)
from handlers.errors import SettingError
from handlers.runtime.settings import validate_all
from handlers.settings import SettingsCache

EXAMPLE: dict[str, Any] = {"name": "release fraud models",
           "when": {"types": ["ModelRegistered"], "model": "fraud-*",
                    "tags": {"stage": "production"}},
           "github": {"repository": "contoso/ml-release", "workflow": "release.yml",
                      "ref": "main", "inputs": {"model": "{data.ModelName}",
                                                "version": "{data.ModelVersion}",
                                                "event": "{id}"}}}
PIPELINE: dict[str, Any] = {
    "name": "investigate", "when": {"types": ["RunStatusChanged"], "runStatus": ["failed"]},
    "azurePipelines": {"organization": "contoso", "project": "ML Ops", "pipelineId": 42,
                       "branch": "main", "templateParameters": {"run": "{data.runId}"},
                       "variables": {"experiment": "{data.experimentName}"}}}


def settings(*rules: dict[str, Any], **env: str) -> CicdSettings:
    return CicdSettings.from_mapping({"AMLEVENTS_CICD_RULES": json.dumps(list(rules)), **env})


def problems(*rules: Any, **env: str) -> list[str]:
    with pytest.raises(SettingError) as info:
        CicdSettings.from_mapping({"AMLEVENTS_CICD_RULES": json.dumps(list(rules)), **env})
    return [f"{name}: {message}" for name, message in info.value.problems]


def with_github(**github: Any) -> dict[str, Any]:
    return {**EXAMPLE, "github": {**EXAMPLE["github"], **github}}


def test_defaults_without_rules() -> None:
    found = CicdSettings.from_mapping({})
    assert found.rules == () and found.services == frozenset()
    assert found.github_api_url == "https://api.github.com" and found.github_run_details
    assert found.azure_devops_url == "https://dev.azure.com"
    assert (found.timeout_s, found.reconcile_grace_s, found.ca_file) == (10.0, 120.0, "")
    assert not found.wants("Microsoft.MachineLearningServices.ModelRegistered")


def test_the_issue_example_parses() -> None:
    (rule,) = settings(EXAMPLE).rules
    assert rule.name == "release fraud models" and not rule.stop
    assert rule.when.types == frozenset({"ModelRegistered"}) and rule.when.model == "fraud-*"
    assert rule.when.tags == (("stage", "production"),)
    target = rule.target
    assert isinstance(target, GitHubWorkflow)
    assert (target.repository, target.workflow, target.ref.source) == (
        "contoso/ml-release", "release.yml", "main")
    assert [name for name, _ in target.inputs] == ["model", "version", "event"]
    assert target.request_id_input == "amlevents_request_id"


def test_repository_dispatch_and_azure_pipelines_parse() -> None:
    dispatch = {"name": "notify", "when": {"types": ["ModelDeployed"]}, "stop": True,
                "github": {"repository": "contoso/ops", "eventType": "model-{data.ServiceName}",
                           "clientPayload": {"service": "{data.ServiceName}",
                                             "nested": {"tags": ["{tags.area}", 1]}}}}
    first, second = settings(dispatch, PIPELINE).rules
    assert first.stop and isinstance(first.target, GitHubRepositoryDispatch)
    assert first.target.request_id_key == "amlevents_request_id"
    assert isinstance(second.target, AzurePipeline)
    assert (second.target.organization, second.target.project, second.target.pipeline_id) == (
        "contoso", "ML Ops", 42)
    assert second.when.statuses == frozenset({"failed"})
    assert settings(dispatch, PIPELINE).services == frozenset({"github", "azurePipelines"})


def test_wants_looks_at_when_types_only() -> None:
    found = settings(EXAMPLE, PIPELINE)
    assert found.wants("Microsoft.MachineLearningServices.ModelRegistered")
    assert found.wants("Microsoft.MachineLearningServices.RunStatusChanged")
    assert not found.wants("Microsoft.MachineLearningServices.RunCompleted")


def test_a_github_enterprise_server_is_not_asked_for_run_details() -> None:
    ghes = settings(EXAMPLE, AMLEVENTS_GITHUB_API_URL="https://ghe.contoso.com/api/v3/")
    assert ghes.github_api_url == "https://ghe.contoso.com/api/v3" and not ghes.github_run_details
    assert settings(EXAMPLE, AMLEVENTS_GITHUB_API_URL="https://api.contoso.ghe.com") \
        .github_run_details  # GHE.com (data residency) is GitHub's cloud
    assert settings(EXAMPLE, AMLEVENTS_GITHUB_API_URL="https://ghe.contoso.com/api/v3",
                    AMLEVENTS_GITHUB_RETURN_RUN_DETAILS="true").github_run_details


@pytest.mark.parametrize(("rule", "message"), [
    ({**EXAMPLE, "github": {**EXAMPLE["github"], "ref": "{branch}"}},
     "rule 'release fraud models': github: ref: unknown placeholder {branch} (known: "
     "{id}, {type}, {subject}, {topic}, {requestId}, {data.KEY}, {tags.NAME}; write {{ "
     "and }} for literal braces)"),
    (with_github(inputs={"model": "{data.ModelName"}),
     "rule 'release fraud models': github: inputs.model: a lone '{' in "
     "'{data.ModelName': write {{ for a brace"),
    (with_github(inputs={"model": 3}),
     "rule 'release fraud models': github: inputs.model must be a string (a template)"),
    (with_github(inputs={"2fast": "x"}),
     "rule 'release fraud models': github: inputs: '2fast' is not an input name (a "
     "letter or _, then letters, digits, - or _)"),
    (with_github(inputs={f"i{n}": "x" for n in range(25)}),
     "rule 'release fraud models': github: 26 inputs (the request id's included): "
     "GitHub takes at most 25"),
    (with_github(inputs={"amlevents_request_id": "x"}),
     "rule 'release fraud models': github: inputs already has 'amlevents_request_id', "
     "the request id's input (set requestIdInput to another name, or to null)"),
    (with_github(workflow="../x.yml"),
     "rule 'release fraud models': github: workflow must be the workflow's file name "
     "(release.yml) or its id"),
    (with_github(repository="contoso"),
     "rule 'release fraud models': github: repository must be OWNER/REPO (e.g. "
     "contoso/ml-release)"),
    (with_github(ref=""), "rule 'release fraud models': github: ref must not be empty"),
    (with_github(eventType="x"),
     "rule 'release fraud models': github: give workflow (workflow_dispatch) or "
     "eventType (repository_dispatch), one of them"),
    (with_github(clientPayload={}),
     "rule 'release fraud models': github: clientPayload goes with eventType; a "
     "workflow takes inputs"),
    (with_github(colour="red"),
     "rule 'release fraud models': github: unknown key(s) colour (allowed: "
     "clientPayload, eventType, inputs, ref, repository, requestIdInput, workflow)"),
    ({**EXAMPLE, "when": {"model": "x"}},
     "rule 'release fraud models': when.types is required: the event types the rule "
     "takes"),
    ({**EXAMPLE, "when": {"types": ["ModelRegistered"], "colour": "red"}},
     "rule 'release fraud models': when: unknown key(s) colour (allowed: events, "
     "experiment, model, runStatus, statuses, tags, types)"),
    ({**EXAMPLE, "when": {"types": ["Drift"]}},
     "rule 'release fraud models': when: types must be among ModelRegistered, "
     "ModelDeployed, RunCompleted, RunStatusChanged, DatasetDriftDetected"),
    ({k: v for k, v in EXAMPLE.items() if k != "when"},
     "rule 'release fraud models': when is required: an object with types (and optional model, "
     "experiment, tags, runStatus)"),
    ({**EXAMPLE, "name": "x" * 101},
     "rule 1: name is required: a text of 1-100 characters that identifies the rule"),
    ({**EXAMPLE, "name": "bad\nname"},
     "rule 1: name is required: a text of 1-100 characters that identifies the rule"),
    ({**EXAMPLE, "github": "contoso/ml-release"},
     "rule 'release fraud models': github must be an object"),
    ({**EXAMPLE, "stop": "yes"}, "rule 'release fraud models': stop must be true or false"),
    ({**EXAMPLE, "colour": "red"},
     "rule 1: unknown key(s) colour (allowed: azurePipelines, github, name, stop, "
     "when)"),
    ({"when": EXAMPLE["when"], "github": EXAMPLE["github"]},
     "rule 1: name is required: a text of 1-100 characters that identifies the rule"),
    ({**EXAMPLE, "azurePipelines": PIPELINE["azurePipelines"]},
     "rule 'release fraud models': give exactly one target, github or azurePipelines"),
])
def test_a_bad_rule_is_named_with_what_is_wrong(rule: dict[str, Any], message: str) -> None:
    # the whole problem, once: the operator reads exactly this
    assert problems(rule) == [f"AMLEVENTS_CICD_RULES: {message}"]


def test_limits_count_the_request_id() -> None:
    settings(with_github(inputs={f"i{n}": "x" for n in range(24)}))  # 24 + the request id
    settings(with_github(inputs={f"i{n}": "x" for n in range(25)}, requestIdInput=None))


@pytest.mark.parametrize(("github", "message"), [
    ({"eventType": "x" * 101}, "rule 'r': github: eventType must be 1-100 characters"),
    ({"eventType": ""}, "rule 'r': github: eventType must be 1-100 characters"),
    ({"eventType": "go", "clientPayload": {f"k{n}": "v" for n in range(10)}},
     "rule 'r': github: clientPayload has 11 top-level properties (the request id's "
     "included): GitHub takes at most 10"),
    ({"eventType": "go", "clientPayload": []}, "rule 'r': github: clientPayload must be a JSON object"),
    ({"eventType": "go", "clientPayload": {"a": "{nope}"}},
     "rule 'r': github: clientPayload.a: unknown placeholder {nope} (known: {id}, "
     "{type}, {subject}, {topic}, {requestId}, {data.KEY}, {tags.NAME}; write {{ and "
     "}} for literal braces)"),
    ({"eventType": "go", "inputs": {}},
     "rule 'r': github: inputs goes with workflow; eventType takes clientPayload"),
])
def test_repository_dispatch_limits(github: dict[str, Any], message: str) -> None:
    rule = {"name": "r", "when": {"types": ["ModelRegistered"]},
            "github": {"repository": "contoso/ops", **github}}
    assert problems(rule) == [f"AMLEVENTS_CICD_RULES: {message}"]


@pytest.mark.parametrize(("pipeline", "message"), [
    ({"organization": "-contoso"},
     "rule 'investigate': azurePipelines: organization must be the organization's name "
     "(letters, digits and hyphens, at most 50), as in "
     "https://dev.azure.com/ORGANIZATION"),
    ({"organization": "x" * 51},
     "rule 'investigate': azurePipelines: organization must be the organization's name "
     "(letters, digits and hyphens, at most 50), as in "
     "https://dev.azure.com/ORGANIZATION"),
    ({"project": "ml/ops"},
     "rule 'investigate': azurePipelines: project must be the project's name or id (at "
     'most 64 characters, none of \\ / : * ? " < > | ; # $ { } , + = [ ])'),
    ({"project": "_ops"},
     "rule 'investigate': azurePipelines: project must be the project's name or id (at "
     'most 64 characters, none of \\ / : * ? " < > | ; # $ { } , + = [ ])'),
    ({"project": "x" * 65},
     "rule 'investigate': azurePipelines: project must be the project's name or id (at "
     'most 64 characters, none of \\ / : * ? " < > | ; # $ { } , + = [ ])'),
    ({"pipelineId": 0},
     "rule 'investigate': azurePipelines: pipelineId must be the pipeline's id, a "
     "positive whole number (definitionId in the pipeline's URL)"),
    ({"pipelineId": "abc"},
     "rule 'investigate': azurePipelines: pipelineId must be the pipeline's id, a "
     "positive whole number (definitionId in the pipeline's URL)"),
    ({"variables": {"secret.key": "x"}},
     "rule 'investigate': azurePipelines: variables: 'secret.key' is a reserved "
     "variable name (it starts with one of endpoint, input, secret, path, securefile)"),
    ({"variables": {"my var": "x"}},
     "rule 'investigate': azurePipelines: variables: 'my var' is not a variable name "
     "(letters, digits, . and _)"),
    ({"templateParameters": {"my-param": "x"}},
     "rule 'investigate': azurePipelines: templateParameters: 'my-param' is not a "
     "parameter name (a letter or _, then letters, digits or _)"),
    ({"templateParameters": {"amlevents_request_id": "x"}},
     "rule 'investigate': azurePipelines: templateParameters already has "
     "'amlevents_request_id', the request id's parameter (set requestIdParameter to "
     "another name, or to null)"),
    ({"branch": "{nope}"},
     "rule 'investigate': azurePipelines: branch: unknown placeholder {nope} (known: "
     "{id}, {type}, {subject}, {topic}, {requestId}, {data.KEY}, {tags.NAME}; write {{ "
     "and }} for literal braces)"),
    ({"requestIdParameter": "a b"},
     "rule 'investigate': azurePipelines: requestIdParameter must be a name "
     "([A-Za-z_][A-Za-z0-9_]*) or null"),
    ({"yaml": "x"},
     "rule 'investigate': azurePipelines: unknown key(s) yaml (allowed: branch, "
     "organization, pipelineId, project, requestIdParameter, templateParameters, "
     "variables)"),
])
def test_azure_pipelines_names_and_limits(pipeline: dict[str, Any], message: str) -> None:
    rule = {**PIPELINE, "azurePipelines": {**PIPELINE["azurePipelines"], **pipeline}}
    assert problems(rule) == [f"AMLEVENTS_CICD_RULES: {message}"]


def test_a_pipeline_id_may_be_a_digit_string() -> None:
    rule = {**PIPELINE, "azurePipelines": {**PIPELINE["azurePipelines"], "pipelineId": "42"}}
    target = settings(rule).rules[0].target
    assert isinstance(target, AzurePipeline) and target.pipeline_id == 42


def test_every_problem_is_named_at_once() -> None:
    found = problems({**EXAMPLE, "when": {"types": ["Nope"]}},
                     {**PIPELINE, "azurePipelines": {**PIPELINE["azurePipelines"],
                                                     "pipelineId": -1}},
                     AMLEVENTS_CICD_TIMEOUT_S="0", AMLEVENTS_GITHUB_API_URL="http://github.com")
    assert found == [
        "AMLEVENTS_GITHUB_API_URL: must be an https URL (http only to localhost)",
        "AMLEVENTS_CICD_RULES: rule 'release fraud models': when: types must be among "
        "ModelRegistered, ModelDeployed, RunCompleted, RunStatusChanged, DatasetDriftDetected",
        "AMLEVENTS_CICD_RULES: rule 'investigate': azurePipelines: pipelineId must be the "
        "pipeline's id, a positive whole number (definitionId in the pipeline's URL)",
        "AMLEVENTS_CICD_TIMEOUT_S: must be between 0.5 and 120.0, got 0"]


def test_rule_names_are_unique() -> None:
    # names compare in any case; the problem names the second rule by its place in the list
    assert problems(EXAMPLE, {**EXAMPLE, "name": "Release Fraud Models"}) == [
        "AMLEVENTS_CICD_RULES: rule 2: another rule is named 'Release Fraud Models' (names "
        "identify a rule's runs: keep them unique)"]


@pytest.mark.parametrize("raw", ["{", '{"a": 1}', "[1]"])
def test_the_setting_must_be_a_json_array_of_objects(raw: str) -> None:
    with pytest.raises(SettingError) as info:
        CicdSettings.from_mapping({"AMLEVENTS_CICD_RULES": raw})
    assert info.value.setting == "AMLEVENTS_CICD_RULES"


@pytest.mark.parametrize(("name", "value"), [
    ("AMLEVENTS_AZURE_DEVOPS_URL", "https://dev.azure.com?x=1"),
    ("AMLEVENTS_AZURE_DEVOPS_URL", "ftp://dev.azure.com"),
    ("AMLEVENTS_GITHUB_API_URL", "https://user:pw@github.com"),
    ("AMLEVENTS_GITHUB_API_URL", "https://github.com:99999"),
    ("AMLEVENTS_CICD_RECONCILE_GRACE_S", "-1"),
    ("AMLEVENTS_CICD_RECONCILE_GRACE_S", "86401"),
    ("AMLEVENTS_CICD_TIMEOUT_S", "0.4"),
    ("AMLEVENTS_CICD_TIMEOUT_S", "120.5"),
])
def test_service_urls_and_numbers_are_checked(name: str, value: str) -> None:
    with pytest.raises(SettingError) as info:
        CicdSettings.from_mapping({name: value})
    assert info.value.setting == name and "pw" not in str(info.value)


def test_http_is_allowed_to_loopback() -> None:
    assert CicdSettings.from_mapping({"AMLEVENTS_AZURE_DEVOPS_URL": "http://127.0.0.1:8080"}) \
        .azure_devops_url == "http://127.0.0.1:8080"


# -- the GitHub credential -----------------------------------------------------------------------

def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def auth_problems_of(env: dict[str, str]) -> list[tuple[str, str]]:
    with pytest.raises(SettingError) as info:
        GitHubAuth.from_mapping(env)
    return list(info.value.problems)


def test_a_token_or_an_app() -> None:
    assert GitHubAuth.from_mapping({}).mode == ""
    token = GitHubAuth.from_mapping({"AMLEVENTS_GITHUB_TOKEN": "github_pat_abc123"})
    assert token.mode == "token" and "github_pat" not in repr(token)
    pem = rsa_pem()
    app = GitHubAuth.from_mapping({"AMLEVENTS_GITHUB_APP_ID": "12345",
                                   "AMLEVENTS_GITHUB_APP_PRIVATE_KEY": pem,
                                   "AMLEVENTS_GITHUB_APP_INSTALLATION_ID": "777"})
    assert (app.mode, app.installation_id) == ("app", 777) and "PRIVATE" not in repr(app)
    # An app setting holding the key on one line, with \n escapes, is read as the PEM.
    escaped = GitHubAuth.from_mapping({"AMLEVENTS_GITHUB_APP_ID": "Iv23liABCdef",
                                       "AMLEVENTS_GITHUB_APP_PRIVATE_KEY": pem.replace("\n", "\\n")})
    assert escaped.private_key == pem


@pytest.mark.parametrize(("env", "named", "message"), [
    ({"AMLEVENTS_GITHUB_TOKEN": "github_pat_abc", "AMLEVENTS_GITHUB_APP_ID": "1"},
     "AMLEVENTS_GITHUB_TOKEN", "not both"),
    ({"AMLEVENTS_GITHUB_APP_ID": "1"}, "AMLEVENTS_GITHUB_APP_PRIVATE_KEY", "is required"),
    ({"AMLEVENTS_GITHUB_APP_ID": "one", "AMLEVENTS_GITHUB_APP_PRIVATE_KEY": "x"},
     "AMLEVENTS_GITHUB_APP_ID", "the App's id"),
    ({"AMLEVENTS_GITHUB_APP_ID": "1", "AMLEVENTS_GITHUB_APP_PRIVATE_KEY": "not a key at all"},
     "AMLEVENTS_GITHUB_APP_PRIVATE_KEY", "PEM"),
    ({"AMLEVENTS_GITHUB_APP_ID": "1", "AMLEVENTS_GITHUB_APP_PRIVATE_KEY":
      "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"},
     "AMLEVENTS_GITHUB_APP_PRIVATE_KEY", "not a readable PEM private key"),
    ({"AMLEVENTS_GITHUB_APP_ID": "1", "AMLEVENTS_GITHUB_APP_PRIVATE_KEY":
      "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/gh/)"},
     "AMLEVENTS_GITHUB_APP_PRIVATE_KEY", "Key Vault reference the platform did not resolve"),
    ({"AMLEVENTS_GITHUB_APP_INSTALLATION_ID": "5"}, "AMLEVENTS_GITHUB_APP_INSTALLATION_ID",
     "goes with"),
    ({"AMLEVENTS_GITHUB_TOKEN": "two words"}, "AMLEVENTS_GITHUB_TOKEN", "one token"),
])
def test_credential_problems_are_named_never_echoed(env: dict[str, str], named: str,
                                                     message: str) -> None:
    found = auth_problems_of(env)
    assert any(name == named and message in text for name, text in found), found
    assert not any(value in text for value in env.values() if len(value) > 6
                   for _, text in found)


def test_an_ec_key_is_not_an_app_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    found = auth_problems_of({"AMLEVENTS_GITHUB_APP_ID": "1",
                              "AMLEVENTS_GITHUB_APP_PRIVATE_KEY": pem})
    assert found == [("AMLEVENTS_GITHUB_APP_PRIVATE_KEY",
                      "must be an RSA key (GitHub App keys are; RS256 signs the App's JWT)")]


def test_a_github_rule_needs_a_credential_and_validate_all_says_so() -> None:
    env = {"AMLEVENTS_CICD_RULES": json.dumps([EXAMPLE, PIPELINE])}
    assert auth_problems(CicdSettings.from_mapping(env), GitHubAuth.from_mapping(env)) == [
        ("AMLEVENTS_GITHUB_TOKEN", "rule 'release fraud models' targets GitHub: set "
         "AMLEVENTS_GITHUB_TOKEN (a fine-grained token), or AMLEVENTS_GITHUB_APP_ID and "
         "AMLEVENTS_GITHUB_APP_PRIVATE_KEY (a GitHub App)")]
    assert any(name == "AMLEVENTS_GITHUB_TOKEN" for name, _ in validate_all(SettingsCache(env)))
    pipelines_only = {"AMLEVENTS_CICD_RULES": json.dumps([PIPELINE])}
    assert not any(name.startswith(("AMLEVENTS_CICD", "AMLEVENTS_GITHUB"))
                   for name, _ in validate_all(SettingsCache(pipelines_only)))
    broken = validate_all(SettingsCache({"AMLEVENTS_CICD_RULES": "[{}]"}))
    assert any(name == "AMLEVENTS_CICD_RULES" for name, _ in broken)


def test_the_numbers_edges_are_allowed() -> None:
    edges = CicdSettings.from_mapping({"AMLEVENTS_CICD_TIMEOUT_S": "120",
                                       "AMLEVENTS_CICD_RECONCILE_GRACE_S": "86400"})
    assert (edges.timeout_s, edges.reconcile_grace_s) == (120.0, 86400.0)
    low = CicdSettings.from_mapping({"AMLEVENTS_CICD_TIMEOUT_S": "0.5",
                                     "AMLEVENTS_CICD_RECONCILE_GRACE_S": "0"})
    assert (low.timeout_s, low.reconcile_grace_s) == (0.5, 0.0)


def test_a_rule_name_is_trimmed_and_may_be_100_characters() -> None:
    (rule,) = settings({**EXAMPLE, "name": "  release  ", "stop": True}).rules
    assert (rule.name, rule.stop) == ("release", True)
    (long,) = settings({**EXAMPLE, "name": "n" * 100}).rules
    assert long.name == "n" * 100 and long.stop is False
    # a problem in a named rule names it as trimmed
    assert problems({**EXAMPLE, "name": " release ", "stop": 1}) == [
        "AMLEVENTS_CICD_RULES: rule 'release': stop must be true or false"]


def test_when_takes_events_as_another_name_for_types_and_needs_one() -> None:
    (rule,) = settings({**EXAMPLE, "when": {"events": ["ModelRegistered"]}}).rules
    assert rule.when.types == frozenset({"ModelRegistered"})
    assert problems({**EXAMPLE, "when": {"types": []}}) == [
        "AMLEVENTS_CICD_RULES: rule 'release fraud models': when.types is required: the event "
        "types the rule takes"]


_NOT_A_URL = "is not a valid URL (check the host and the port)"
_NOT_PLAIN = "must be a plain base URL (no query, fragment, credentials or spaces)"
_NOT_HTTPS = "must be an https URL (http only to localhost)"


# Each refusal is compared whole, for both service URLs: the operator reads exactly this.
@pytest.mark.parametrize("name", ["AMLEVENTS_GITHUB_API_URL", "AMLEVENTS_AZURE_DEVOPS_URL"])
@pytest.mark.parametrize(("value", "message"), [
    ("https://github.com:99999", _NOT_A_URL),
    ("https://github.com:abc", _NOT_A_URL),
    ("https://[::1", _NOT_A_URL),
    ("https://x.com?x=1", _NOT_PLAIN),
    ("https://x.com#f", _NOT_PLAIN),
    ("https://user@x.com", _NOT_PLAIN),
    ("https://a b.com", _NOT_PLAIN),
    ("https://x.com/\x07", _NOT_PLAIN),
    ("ftp://x.com", _NOT_HTTPS),
    ("http://github.com", _NOT_HTTPS),
    ("https://", _NOT_HTTPS),
])
def test_a_bad_service_url_is_refused_whole(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingError) as info:
        CicdSettings.from_mapping({name: value})
    assert info.value.problems == ((name, message),)


@pytest.mark.parametrize(("value", "kept"), [
    ("https://ghe.contoso.com/api/v3/", "https://ghe.contoso.com/api/v3"),
    ("https://proxy.contoso.com/GHX//", "https://proxy.contoso.com/GHX"),  # only slashes go
    ("  https://ghe.contoso.com  ", "https://ghe.contoso.com"),
    ("http://localhost:3000", "http://localhost:3000"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("http://127.0.0.1", "http://127.0.0.1"),
])
def test_a_service_url_is_kept_without_its_trailing_slash(value: str, kept: str) -> None:
    found = CicdSettings.from_mapping({"AMLEVENTS_GITHUB_API_URL": value,
                                       "AMLEVENTS_AZURE_DEVOPS_URL": value})
    assert (found.github_api_url, found.azure_devops_url) == (kept, kept)
