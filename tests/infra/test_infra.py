"""Infrastructure checks that need no Bicep CLI and no network.

The Bicep CLI downloads a native binary, so the template cannot be compiled here. These tests check
what can be checked from the text: the subscriptions file against its schema, that it targets real
Event Grid functions and event types they accept, that the template reads it with loadJsonContent,
that every app setting the template sets is a documented one, structural sanity of the template,
the parameters example, and the CI workflow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP = INFRA / "main.bicep"
SUBSCRIPTIONS = INFRA / "subscriptions.json"
SCHEMA = INFRA / "subscriptions.schema.json"
PARAMETERS_EXAMPLE = INFRA / "main.parameters.example.json"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"
WORKFLOW = ROOT / ".github" / "workflows" / "ci-cd.yml"

# Settings the platform needs that a local run does not (so they are not in the sample file).
PLATFORM_SETTINGS = frozenset({
    "FUNCTIONS_EXTENSION_VERSION", "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "AZURE_CLIENT_ID"})
PLATFORM_PREFIXES = ("AzureWebJobsStorage__",)  # identity-based host storage connection
# Flex Consumption takes these from functionAppConfig or drops them; setting them fails the deploy.
FLEX_REJECTED_SETTINGS = frozenset({
    "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTSHARE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD"})


def read_json(path: Path) -> Any:
    """Parse a JSON file of the repository."""
    return json.loads(path.read_text(encoding="utf-8"))


def _skip_string(text: str, i: int, out: list[str]) -> int:
    """Past a Bicep '...' string starting at text[i]; interpolations `${...}` stay as code."""
    out.append("'")
    i += 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "'":
            out.append("'")
            return i + 1
        if text.startswith("${", i):
            out.append("${")
            i = _scan(text, i + 2, out, until="}")
            out.append("}")
            continue
        i += 1
    raise AssertionError("unterminated string in main.bicep")


def _scan(text: str, i: int, out: list[str], until: str = "") -> int:
    """Copy code to `out` without comments and string contents; stop at an unmatched `until`."""
    depth = 0
    while i < len(text):
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        elif text[i] == "'":
            i = _skip_string(text, i, out)
        else:
            char = text[i]
            if until and char == until and depth == 0:
                return i + 1
            depth += {"{": 1, "}": -1}.get(char, 0) if until else 0
            out.append(char)
            i += 1
    return i


@cache
def bicep_code() -> str:
    """main.bicep without comments and with string contents removed (interpolations kept)."""
    out: list[str] = []
    _scan(BICEP.read_text(encoding="utf-8"), 0, out)
    return "".join(out)


def object_keys(var_name: str) -> list[str]:
    """Top-level keys of `var <var_name> = { ... }` in main.bicep."""
    code = bicep_code()
    match = re.search(rf"^var {var_name} = \{{", code, re.MULTILINE)
    assert match, f"main.bicep has no `var {var_name} = {{` block"
    keys, depth = [], 1
    for line in code[match.end():].splitlines():
        if depth == 1 and (key := re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", line)):
            keys.append(key.group(1))
        depth += line.count("{") - line.count("}")
        if depth <= 0:
            return keys
    raise AssertionError(f"unbalanced braces after `var {var_name}`")


def template_settings() -> dict[str, list[str]]:
    """App setting names the template sets, by block."""
    return {block: object_keys(block) for block in ("platformSettings", "amleventsSettings")}


def subscriptions() -> list[dict[str, Any]]:
    """The entries of infra/subscriptions.json."""
    return list(read_json(SUBSCRIPTIONS)["subscriptions"])


# --- the subscriptions file ----------------------------------------------------------------------


def test_subscriptions_file_is_valid_against_its_schema() -> None:
    schema = read_json(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(read_json(SUBSCRIPTIONS))]
    assert errors == []
    assert subscriptions(), "the subscriptions file should ship subscriptions"


def test_schema_rejects_what_event_grid_rejects() -> None:
    # GIVEN a valid subscription, WHEN one field breaks an Event Grid rule, THEN the schema says so
    validator = jsonschema.Draft202012Validator(read_json(SCHEMA))
    good = subscriptions()[0]
    broken = [
        {**good, "retryPolicy": {"maxDeliveryAttempts": 31}},
        {**good, "retryPolicy": {"eventTimeToLiveInMinutes": 1441}},
        {**good, "name": "x"},
        {**good, "filter": {"advancedFilters": [{"operatorType": "StringIn", "key": "data.a",
                                                 "value": "one"}]}},
        {**good, "deadLetter": {"blobContainerName": "Bad_Name"}},
    ]
    for subscription in broken:
        assert not validator.is_valid({"subscriptions": [subscription]}), subscription


def test_schema_accepts_null_event_types_as_arm_does() -> None:
    # ARM: includedEventTypes null = every event type; the template passes it through as null.
    validator = jsonschema.Draft202012Validator(read_json(SCHEMA))
    good = subscriptions()[0]
    document = {"subscriptions": [{**good, "filter": {**good["filter"],
                                                      "includedEventTypes": None}}]}
    assert list(validator.iter_errors(document)) == []
    empty = {"subscriptions": [{**good, "filter": {"includedEventTypes": []}}]}
    assert not validator.is_valid(empty)
    assert re.search(r"^\s*includedEventTypes: sub\.\?filter\.\?includedEventTypes\s*$",
                     bicep_code(), re.MULTILINE), "no default: null must reach ARM as null"


def test_drift_subscription_takes_both_documented_subject_forms() -> None:
    # The ML events article: datadrift/{id}/run/{runId}; the schema article:
    # datadrifts/{id}/runs/{runId}. One subjectBeginsWith cannot take both: an advanced filter does.
    (drift,) = [s for s in subscriptions() if s.get("function") == "on_drift_detected"]
    assert drift["filter"].get("subjectBeginsWith", "") == ""
    prefixes = [f for f in drift["filter"]["advancedFilters"]
                if f["operatorType"] == "StringBeginsWith" and f["key"] == "subject"]
    assert [sorted(f["values"]) for f in prefixes] == [["datadrift/", "datadrifts/"]]


def test_subscription_names_are_unique() -> None:
    names = [s["name"].lower() for s in subscriptions()]
    assert len(names) == len(set(names))


@cache
def event_grid_functions() -> frozenset[str]:
    """Lower-case names of function_app.py's Event Grid-triggered functions."""
    import function_app
    from amlevents.host.server import load_functions

    return frozenset(load_functions(function_app.app).event_grid)


def test_every_target_function_is_an_event_grid_function_of_the_app() -> None:
    # Event Grid refuses an AzureFunction destination whose trigger is not Event Grid.
    missing = {s["name"]: s["function"] for s in subscriptions()
               if "function" in s and s["function"].lower() not in event_grid_functions()}
    assert missing == {}, f"the app's Event Grid functions: {sorted(event_grid_functions())}"


def test_every_included_event_type_is_accepted_by_its_function() -> None:
    from handlers.events.parse import ML_EVENT_TYPES
    from handlers.runtime.routing import accepts

    for subscription in [s for s in subscriptions() if "function" in s]:
        types = subscription["filter"].get("includedEventTypes") or ML_EVENT_TYPES  # null = all
        refused = [t for t in types if not accepts(subscription["function"], t)]
        assert refused == [], f"{subscription['name']}: {subscription['function']} refuses them"



# What is shipped, pinned: a changed destination, topic, schema or event type fails here, not in
# Azure. (name: topic, endpoint type, function, delivery schema, includedEventTypes)
ML = "Microsoft.MachineLearningServices."
SHIPPED = {
    "model-registered-deploy": ("workspace", "AzureFunction", "on_model_registered",
                                "EventGridSchema", (f"{ML}ModelRegistered",)),
    "dataset-drift-retrain": ("workspace", "AzureFunction", "on_drift_detected",
                              "EventGridSchema", (f"{ML}DatasetDriftDetected",)),
    "run-failed-alert": ("workspace", "AzureFunction", "on_run_status", "EventGridSchema",
                         (f"{ML}RunStatusChanged",)),
    "model-monitor-breach": ("workspace", "AzureFunction", "on_run_status", "EventGridSchema",
                             (f"{ML}RunStatusChanged",)),
    "ml-events-notify": ("workspace", "AzureFunction", "on_ml_event", "EventGridSchema",
                         (f"{ML}ModelDeployed", f"{ML}RunCompleted")),
    "ml-events-to-event-hub": ("workspace", "EventHub", "", "EventGridSchema", None),
    "deployment-failed-webhook": ("outcomes", "WebHook", "", "CloudEventSchemaV1_0",
                                  ("amlevents.DeploymentFailed",)),
}
# Which functions of the app each sample event reaches through the shipped filters.
REACHES = {
    "amlevents_model_registered_deploy": {"on_model_registered"},
    "model_registered": set(),  # no deploy tag: filtered out by Event Grid
    "dataset_drift_detected": {"on_drift_detected"},
    "run_status_changed": {"on_run_status"},  # failed
    "model_monitor_breach": {"on_run_status"},  # failed, and the breach tag
    "model_monitor_recovered": set(),  # Completed, the tag gone
    "run_completed": {"on_ml_event"},
    "model_deployed": {"on_ml_event"},
}


def shipped() -> tuple[Any, ...]:
    """The shipped file as the simulator parses it (the same rules as the template)."""
    from amlevents.simulator.subscriptions import load_subscriptions

    return load_subscriptions(SUBSCRIPTIONS)


def reached(event: dict[str, Any]) -> set[str]:
    """The app's functions the shipped workspace subscriptions deliver `event` to."""
    from amlevents.simulator.filters import evaluate

    return {s.function for s in shipped() if s.topic == "workspace" and s.function
            and evaluate(s.filter, event).matched}


def test_the_shipped_destinations_topics_schemas_and_event_types() -> None:
    got = {s.name: (s.topic, s.endpoint_type, s.function, s.event_delivery_schema,
                    s.filter.included_event_types) for s in shipped()}
    assert got == SHIPPED
    # the examples beyond the app are created only once their placeholder is given a value
    placeholders = {s.name: s.destination.unresolved for s in shipped() if s.destination}
    assert placeholders == {"ml-events-to-event-hub": ("eventHubId",),
                            "deployment-failed-webhook": ("outcomeWebhookUrl",)}


def test_the_shipped_filters_are_the_handlers_own_conditions() -> None:
    from amlevents.simulator.filters import AdvancedFilter
    from handlers.deploy.decide import DEPLOY_TAG
    from handlers.events.monitor import BREACH_SENTENCE, MONITOR_BREACH_TAG
    from handlers.notify.settings import NotifySettings

    filters = {s.name: s.filter.advanced_filters for s in shipped()}
    subjects = {s.name: (s.filter.subject_begins_with, s.filter.subject_ends_with)
                for s in shipped() if s.filter.subject_begins_with or s.filter.subject_ends_with}
    assert subjects == {"model-registered-deploy": ("models/", ""),
                        "run-failed-alert": ("experiments/", ""),
                        "deployment-failed-webhook": ("models/", "")}
    # deploy=true is the tag contract's opt-in (Event Grid's StringIn ignores case, as the handler)
    assert filters["model-registered-deploy"] == (
        AdvancedFilter("StringIn", f"data.ModelTags.{DEPLOY_TAG}", ("true",)),)
    # the run statuses that are delivered are the ones notify announces by default
    (statuses,) = filters["run-failed-alert"]
    assert (statuses.operator_type, statuses.key) == ("StringIn", "data.runStatus")
    assert set(statuses.values) == NotifySettings.from_mapping({}).run_statuses
    # the breach filter looks for the sentence the handlers read as a breach
    assert filters["model-monitor-breach"] == (AdvancedFilter(
        "StringContains", f"data.RunTags.{MONITOR_BREACH_TAG}", (BREACH_SENTENCE,)),)


@pytest.mark.parametrize("name", sorted(REACHES))
def test_each_sample_reaches_the_functions_that_act_on_it(
        name: str, sample: Any, make_dispatcher: Any, tmp_path: Path) -> None:
    # GIVEN a sample event, and what the handlers make of it on the catch-all function (dry run,
    # the opt-in notifications on: everything any concern can act on)
    event = sample(name)
    opt_in = {"AMLEVENTS_NOTIFY_RUN_COMPLETED": "true", "AMLEVENTS_NOTIFY_MODEL_DEPLOYED": "true"}

    def outcomes(function: str) -> list[str]:  # each on a fresh ledger: no duplicates
        ledger = str(tmp_path / f"{function}-{len(list(tmp_path.iterdir()))}.sqlite3")
        result = make_dispatcher(AMLEVENTS_LEDGER_PATH=ledger, **opt_in).dispatch(
            event, function=function)
        return [r.outcome.value for r in (result, *result.also)]

    everything = outcomes("on_ml_event")
    # WHEN the shipped filters route it
    functions = reached(event)
    # THEN it reaches exactly the functions listed, an event some concern acts on reaches one,
    # one that every concern skips reaches none, and each function it reaches acts on it in full
    assert functions == REACHES[name]
    assert bool(functions) == (everything != ["skipped"]), (name, everything)
    for function in functions:
        assert outcomes(function) == everything, function


def test_every_sample_is_in_the_routing_table() -> None:
    assert sorted(p.stem for p in (ROOT / "samples" / "events").glob("*.json")) == sorted(REACHES)


# --- the Bicep template --------------------------------------------------------------------------


def _loop(resource_type: str, items: str, condition: str) -> str:
    """The body of `resource NAME 'TYPE@VERSION' = [ for sub in ITEMS: if (CONDITION) {...} ]`."""
    raw = BICEP.read_text(encoding="utf-8")
    loop = re.search(rf"^resource \w+ '{re.escape(resource_type)}@[\d-]+' = \[\n"
                     rf"\s*for sub in {items}: if \({re.escape(condition)}\) \{{\n"
                     r"(?P<body>.*?)^\]$", raw, re.MULTILINE | re.DOTALL)
    assert loop, f"one {resource_type} per entry of {items}"
    return loop["body"]


def function_body(name: str) -> str:
    """The text of `func NAME(...) ... => ...` up to the next top-level declaration."""
    raw = BICEP.read_text(encoding="utf-8")
    match = re.search(rf"^func {name}\(.*?(?=^(?:func|var|param|resource|module|output|//) )",
                      raw, re.MULTILINE | re.DOTALL)
    assert match, f"main.bicep has no func {name}"
    return match.group(0)


def test_template_generates_the_subscriptions_from_the_file() -> None:
    raw = BICEP.read_text(encoding="utf-8")
    assert re.search(r"^var subscriptionsFile = loadJsonContent\('subscriptions\.json'\)$", raw,
                     re.MULTILINE)
    workspace = _loop("Microsoft.EventGrid/systemTopics/eventSubscriptions",
                      "workspaceSubscriptions", "deployEventSubscriptions")
    outcomes = _loop("Microsoft.EventGrid/topics/eventSubscriptions", "outcomeSubscriptions",
                     "deployEventSubscriptions && createOutcomeTopic")
    for body, parent in ((workspace, "systemTopic"), (outcomes, "outcomeTopic")):
        assert f"parent: {parent}" in body and "name: sub.name" in body
        assert "properties: subscriptionProperties(sub, functionApp.id, storage.id)" in body
    # One function turns an entry of the file into ARM's properties, for both topics.
    props = function_body("subscriptionProperties")
    assert "resourceId: '${functionAppId}/functions/${sub.function}'" in props
    assert "endpointType: 'AzureFunction'" in props
    assert "deliveryWithResourceIdentity:" in props and "destination: sub.target" in props
    # Every field of the file reaches ARM (with Event Grid's default when the file omits it).
    for field in ("includedEventTypes", "subjectBeginsWith", "subjectEndsWith",
                  "isSubjectCaseSensitive", "enableAdvancedFilteringOnArrays", "advancedFilters",
                  "maxDeliveryAttempts", "eventTimeToLiveInMinutes", "maxEventsPerBatch",
                  "preferredBatchSizeInKilobytes", "eventDeliverySchema", "blobContainerName"):
        assert re.search(rf"\b{field}: sub\.", props), field
    assert "deadLetterWithResourceIdentity:" in props and "endpointType: 'StorageBlob'" in props
    assert "'amlevents'" in props  # the label deploy_subscriptions.py prunes by
    assert "topicType: 'Microsoft.MachineLearningServices.Workspaces'" in (
        INFRA / "modules" / "system-topic.bicep").read_text(encoding="utf-8")


def test_template_splits_the_file_by_topic_and_skips_unresolved_placeholders() -> None:
    code = BICEP.read_text(encoding="utf-8")
    assert "var workspaceSubscriptions = filter(deployableSubscriptions, s => " \
           "(s.?topic ?? 'workspace') == 'workspace')" in code
    assert "var outcomeSubscriptions = filter(deployableSubscriptions, s => " \
           "s.?topic == 'outcomes')" in code
    resolve = function_body("resolve")
    assert "values[?substring(value, 1, length(value) - 2)] ?? ''" in resolve
    destination = function_body("destinationOf")
    for field in ("endpointUrl", "resourceId", "maxEventsPerBatch"):
        assert field in destination
    assert re.search(r"^@secure\(\)\nparam subscriptionValues object = \{\}$", code, re.MULTILINE)
    assert "output skippedSubscriptionNames array = skippedSubscriptionNames" in code


def test_template_creates_the_outcome_topic_and_lets_the_app_publish() -> None:
    raw = BICEP.read_text(encoding="utf-8")
    topic = re.search(r"^resource outcomeTopic 'Microsoft\.EventGrid/topics@[\d-]+' = "
                      r"if \(createOutcomeTopic\) \{\n(?P<body>.*?)^\}$", raw,
                      re.MULTILINE | re.DOTALL)
    assert topic and "inputSchema: 'CloudEventSchemaV1_0'" in topic["body"]
    assert "disableLocalAuth: true" in topic["body"]
    sender = re.search(r"^resource outcomeSender 'Microsoft\.Authorization/roleAssignments@"
                       r"[\d-]+' = if \(createOutcomeTopic\) \{\n(?P<body>.*?)^\}$", raw,
                       re.MULTILINE | re.DOTALL)
    assert sender and "scope: outcomeTopic" in sender["body"]
    assert "roles.eventGridDataSender" in sender["body"]
    assert "principalId: appIdentity.properties.principalId" in sender["body"]
    assert "AMLEVENTS_OUTCOME_TOPIC_ENDPOINT: createOutcomeTopic ? " \
           "outcomeTopic.properties.endpoint : ''" in raw


def test_identity_deliveries_get_the_destinations_sender_role() -> None:
    raw = BICEP.read_text(encoding="utf-8")
    for collection, topic in (("workspaceIdentityDeliveries", "systemTopic"),
                              ("outcomeIdentityDeliveries", "outcomeTopic")):
        module = re.search(rf"^module \w+ 'modules/destination-role\.bicep' = \[\n"
                           rf"\s*for sub in {collection}: if .*?\n(?P<body>.*?)^\]$", raw,
                           re.MULTILINE | re.DOTALL)
        assert module, collection
        assert f"topicId: {topic}.id" in module["body"]
        assert "scope: resourceGroup(split(sub.target.properties.resourceId, '/')[2]" \
               in module["body"]
    role = (INFRA / "modules" / "destination-role.bicep").read_text(encoding="utf-8")
    # https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
    for name, role_id in (("eventHubsDataSender", "2b629674-e913-4c01-ae53-ef4638d8f975"),
                          ("serviceBusDataSender", "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"),
                          ("storageQueueDataMessageSender",
                           "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a")):
        assert f"{name}: '{role_id}'" in role
    for scope in ("eventHub", "serviceBusQueue", "serviceBusTopic", "storageAccount"):
        assert f"scope: {scope}\n" in role
    # The subscriptions wait for their roles (Event Grid checks access when it delivers).
    assert "      workspaceDestinationRoles\n" in raw and "      outcomeDestinationRoles\n" in raw


def test_the_system_topic_lives_in_the_workspaces_region() -> None:
    raw = BICEP.read_text(encoding="utf-8")
    assert "param workspaceLocation string = ''" in raw
    assert "location: empty(workspaceLocation) ? workspace.location : workspaceLocation" in raw
    module = (INFRA / "modules" / "system-topic.bicep").read_text(encoding="utf-8")
    assert re.search(r"^param location string$", module, re.MULTILINE)
    assert "  location: location\n" in module


def test_the_modules_braces_balance() -> None:
    for path in (INFRA / "modules").glob("*.bicep"):
        out: list[str] = []
        _scan(path.read_text(encoding="utf-8"), 0, out)
        code = "".join(out)
        for opening, closing in ("{}", "[]", "()"):
            assert code.count(opening) == code.count(closing), (path.name, opening)


def test_template_sets_only_documented_app_settings() -> None:
    sample = set(read_json(SAMPLE_SETTINGS)["Values"])
    settings = template_settings()
    undocumented = [n for n in settings["amleventsSettings"] if n not in sample]
    assert undocumented == [], "add these to local.settings.sample.json (and README) or drop them"
    not_platform = [n for n in settings["platformSettings"]
                    if n not in PLATFORM_SETTINGS and not n.startswith(PLATFORM_PREFIXES)]
    assert not_platform == []
    rejected = FLEX_REJECTED_SETTINGS & {n for names in settings.values() for n in names}
    assert rejected == set(), "Flex Consumption rejects these app settings"
    union = "properties: union(platformSettings, amleventsSettings, extraAppSettings)"
    assert union in bicep_code()


def test_template_gives_the_app_its_identity() -> None:
    platform = template_settings()["platformSettings"]
    assert {"AZURE_CLIENT_ID", "AzureWebJobsStorage__accountName",
            "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
            "APPLICATIONINSIGHTS_CONNECTION_STRING"} <= set(platform)


def test_template_braces_balance_outside_strings_and_comments() -> None:
    code = bicep_code()
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for line_number, line in enumerate(code.splitlines(), start=1):
        for char in line:
            if char in "([{":
                stack.append(char)
            elif char in pairs:
                assert stack and stack.pop() == pairs[char], f"{char!r} near line {line_number}"
    assert stack == []


def declared(kind: str) -> set[str]:
    """Names declared in main.bicep as `param`, `var`, `resource` or `output`."""
    return set(re.findall(rf"^{kind} (\w+) ", bicep_code(), re.MULTILINE))


def test_template_references_only_declared_symbols() -> None:
    code = bicep_code()
    symbols = declared("param") | declared("var") | declared("resource")
    references = r"(?<![\w.?])([a-z]\w*)\.\??(?:id|name|properties|identity)\b"
    functions = set(re.findall(r"^func (\w+)\(", code, re.MULTILINE))
    for name in set(re.findall(references, code)):
        assert name in symbols | declared("module") | {"sub", "s", "raw"}, \
            f"{name} is not declared"
    for block in re.findall(r"dependsOn: \[([^\]]*)\]", code):
        assert set(block.split()) <= declared("resource") | declared("module"), block
    for called in set(re.findall(r"\b(resolve|destinationOf|subscriptionProperties)\(", code)):
        assert called in functions
    role_keys = set(object_keys("roles"))
    assert set(re.findall(r"roles\.(\w+)", code)) <= role_keys


def test_template_uses_ga_api_versions() -> None:
    versions = re.findall(r"^resource \w+ '([\w./]+)@([\w-]+)'", BICEP.read_text(encoding="utf-8"),
                          re.MULTILINE)
    assert versions
    for resource_type, version in versions:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", version), f"{resource_type}@{version}"


def test_template_role_ids_are_the_built_in_ones() -> None:
    raw = BICEP.read_text(encoding="utf-8")
    # https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
    built_in = {"eventGridDataSender": "d5a91429-5739-47e2-a06b-3470a27159e7",
                "azureMLDataScientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
                "dataFactoryContributor": "673868aa-7521-48a0-acc6-0f60742d39f5",
                "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
                "storageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
                "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
                "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb"}
    for key, role_id in built_in.items():
        assert f"{key}: '{role_id}'" in raw


def conditional_resource(name: str, resource_type: str, condition: str) -> str:
    """The body of `resource NAME 'TYPE@VERSION' = if (CONDITION) { ... }` in main.bicep."""
    raw = BICEP.read_text(encoding="utf-8")
    match = re.search(rf"^resource {name} '{re.escape(resource_type)}@[\d-]+' = "
                      rf"if \({re.escape(condition)}\) \{{\n(?P<body>.*?)^\}}$", raw,
                      re.MULTILINE | re.DOTALL)
    assert match, f"main.bicep has no `resource {name} '{resource_type}@…' = if ({condition})`"
    return match["body"]


def test_alerts_exist_only_with_an_alert_email() -> None:
    # GIVEN the optional alertEmail parameter (empty: no alerts at all)
    raw = BICEP.read_text(encoding="utf-8")
    assert re.search(r"^param alertEmail string = ''$", raw, re.MULTILINE)
    when = "!empty(alertEmail)"
    # THEN an action group emails it
    group = conditional_resource("alertActionGroup", "Microsoft.Insights/actionGroups", when)
    assert "emailAddress: alertEmail" in group
    short = re.search(r"groupShortName: '([^']*)'", group)
    assert short and 1 <= len(short[1]) <= 12  # ARM's limit for the short name
    # AND a log alert counts failed/retry deliveries of the metric telemetry.py records
    from handlers.runtime import telemetry

    failed = conditional_resource("failedEventsAlert", "Microsoft.Insights/scheduledQueryRules",
                                  when)
    assert "scopes: [\n      appInsights.id\n    ]" in failed
    assert "actionGroups: [\n        alertActionGroup.id" in failed
    query = re.search(r"query: '([^']*)'", failed)
    assert query, "the log alert's query"
    source = Path(telemetry.__file__).read_text(encoding="utf-8")
    assert '"amlevents.events"' in source and '"amlevents.outcome"' in source
    assert 'customMetrics | where name == "amlevents.events"' in query[1]
    assert 'customDimensions["amlevents.outcome"]' in query[1]
    assert 'outcome in ("failed", "retry")' in query[1]
    from handlers.outcome import Outcome

    assert {"failed", "retry"} <= {outcome.value for outcome in Outcome}  # the values it filters
    # AND a metric alert watches the system topic's dead letters
    dead = conditional_resource("deadLetterAlert", "Microsoft.Insights/metricAlerts", when)
    assert "scopes: [\n      systemTopic.id\n    ]" in dead
    assert "metricNamespace: 'Microsoft.EventGrid/systemTopics'" in dead
    assert "metricName: 'DeadLetteredCount'" in dead
    assert "actionGroupId: alertActionGroup.id" in dead
    assert "systemTopicDeployment" in dead  # the topic exists before its alert
    # AND nothing else refers to the alert resources unconditionally
    uses = re.findall(r"\b(alertActionGroup|failedEventsAlert|deadLetterAlert)\b", bicep_code())
    assert uses.count("alertActionGroup") == 3  # its declaration and the two alerts


def test_template_creates_the_ledger_table_the_app_uses() -> None:
    from handlers.ledger.table import DEFAULT_TABLE_NAME

    assert f"var ledgerTableName = '{DEFAULT_TABLE_NAME}'" in BICEP.read_text(encoding="utf-8")


def test_header_says_the_template_was_not_compiled() -> None:
    assert "NOT COMPILED HERE" in BICEP.read_text(encoding="utf-8")


# --- the parameters example ----------------------------------------------------------------------


def required_params() -> set[str]:
    """Parameters of main.bicep without a default value."""
    return set(re.findall(r"^param (\w+) \w+\s*$", bicep_code(), re.MULTILINE))


def test_parameters_example_matches_the_template() -> None:
    given = set(read_json(PARAMETERS_EXAMPLE)["parameters"])
    assert given <= declared("param"), given - declared("param")
    assert required_params() <= given, required_params() - given


def handler_setting_names() -> set[str]:
    """Every AMLEVENTS_* setting name spelled out in handlers/ (the settings modules' constants)."""
    return {name for path in (ROOT / "handlers").rglob("*.py")
            for name in re.findall(r"\"(AMLEVENTS_[A-Z0-9_]+)\"", path.read_text(encoding="utf-8"))}


def test_parameters_example_names_no_resource_that_may_not_exist() -> None:
    # Copied as is, it must deploy: a Data Factory named here would fail its role assignment.
    parameters = read_json(PARAMETERS_EXAMPLE)["parameters"]
    assert parameters["dataFactoryName"]["value"] == ""
    assert parameters["subscriptionValues"]["value"] == {}  # secrets never in a committed file
    assert "workspaceLocation" not in parameters  # read from the workspace


def test_parameters_example_extra_settings_are_real_settings() -> None:
    extra = read_json(PARAMETERS_EXAMPLE)["parameters"]["extraAppSettings"]["value"]
    assert set(extra) <= handler_setting_names(), set(extra) - handler_setting_names()


# --- the workflow --------------------------------------------------------------------------------


def load_workflow() -> dict[Any, Any]:
    """The workflow as data: PyYAML when installed, else the few keys the tests need, textually."""
    text = WORKFLOW.read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:  # PyYAML comes with azure-ai-ml; without it, check the text
        return {"_text": text}
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def steps(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The steps of a workflow job."""
    yield from job.get("steps", [])


def test_workflow_tests_on_pull_requests_and_deploys_main() -> None:
    workflow = load_workflow()
    if "_text" in workflow:
        text = workflow["_text"]
        for needle in ("pull_request:", "branches: [main]", "run: make test", "azure/login@",
                       "Azure/functions-action@", "az deployment group create", "id-token: write",
                       "infra/deploy_subscriptions.py"):
            assert needle in text, needle
        return
    triggers: dict[str, Any] = workflow.get("on", workflow.get(True)) or {}  # YAML 1.1: on = true
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    test, deploy = workflow["jobs"]["test"], workflow["jobs"]["deploy"]
    assert any(s.get("run", "").strip() == "make test" for s in steps(test))
    uses = {s.get("uses", "").split("@")[0]: s.get("with", {}) for s in steps(test)}
    assert uses["actions/setup-python"]["python-version"] == "3.11"
    assert str(uses["actions/setup-node"]["node-version"]) == "20"
    assert deploy["needs"] == "test" and "refs/heads/main" in deploy["if"]
    assert deploy["permissions"]["id-token"] == "write"
    deploy_uses = {s.get("uses", "").split("@")[0]: s.get("with", {}) for s in steps(deploy)}
    assert set(deploy_uses["azure/login"]) == {"client-id", "tenant-id", "subscription-id"}
    assert deploy_uses["Azure/functions-action"]["sku"] == "flexconsumption"
    runs = [s.get("run", "") for s in steps(deploy)]
    assert sum("az deployment group create" in r and "infra/main.bicep" in r for r in runs) == 1
    assert any("deployEventSubscriptions=false" in r for r in runs)
    # The subscriptions: once the functions are listed, retried, then the stale ones deleted.
    (events,) = [r for r in runs if "infra/deploy_subscriptions.py" in r]
    for flag in ("--resource-group", "--app-name", "--parameters"):
        assert flag in events
    publish = [i for i, s in enumerate(steps(deploy))
               if s.get("uses", "").startswith("Azure/functions-action")]
    subscriptions = [i for i, r in enumerate(runs) if "deploy_subscriptions.py" in r]
    assert publish and subscriptions and publish[0] < subscriptions[0]


@pytest.mark.parametrize("path", [SUBSCRIPTIONS, SCHEMA, PARAMETERS_EXAMPLE, SAMPLE_SETTINGS])
def test_json_files_parse(path: Path) -> None:
    assert isinstance(read_json(path), dict)
