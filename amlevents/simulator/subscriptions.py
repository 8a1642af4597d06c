"""Load and validate the subscriptions file (infra/subscriptions.json) into frozen values.

The Bicep template reads the same file (`loadJsonContent`), so names are ARM's
eventSubscription ones: `filter` is ARM's EventSubscriptionFilter as is, `retryPolicy` ARM's
RetryPolicy, `eventDeliverySchema` ARM's, `destination` and `deliveryWithResourceIdentity` ARM's
(WebHook, EventHub, ServiceBusQueue, ServiceBusTopic, StorageQueue, with ARM's properties). The
template assembles the rest: `function` becomes an AzureFunction destination of the app,
`batching` the destination's `maxEventsPerBatch`/`preferredBatchSizeInKilobytes`,
`deadLetter.blobContainerName` a StorageBlob dead-letter destination, `topic` the parent topic
(the workspace's system topic, or amlevents' outcome topic).

A destination's `endpointUrl` or `resourceId` may be a placeholder, `{name}`, whose value comes
from the template's `subscriptionValues` parameter (locally: AMLEVENTS_SIMULATOR_SUBSCRIPTION_VALUES,
a JSON object): ids that differ per environment, and webhook URLs that carry a key, stay out of
the file. A subscription with a placeholder that has no value is not created, by either.

Validation runs twice: semantic checks first (every problem collected, each naming the
subscription and field; the filter and Event Grid's limits on it in filter_checks.py), then the
JSON Schema (infra/subscriptions.schema.json) as a second net. The values are in
subscription_model.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from amlevents.simulator import jsonnum
from amlevents.simulator.filter_checks import (
    MAX_ADVANCED_FILTERS,
    MAX_FILTER_VALUES,
    MAX_STRING_VALUE_CHARS,
    parse_filter,
)
from amlevents.simulator.subscription_model import (
    CLOUD_EVENT_SCHEMA,
    DELIVERY_SCHEMAS,
    ENDPOINT_TYPES,
    EVENT_GRID_SCHEMA,
    IDENTITY_ENDPOINT_TYPES,
    INPUT_SCHEMAS,
    OUTCOMES_TOPIC,
    STORAGE_QUEUE,
    TOPICS,
    WEBHOOK,
    WORKSPACE_TOPIC,
    Batching,
    DeadLetter,
    DeliveryAttribute,
    Destination,
    ProblemReport,
    RetryPolicy,
    Subscription,
    SubscriptionsError,
    SubscriptionValidationError,
    delivery_schema_problem,
)

# Re-exported: the values and limits are imported from here by the package, topic and tests.
__all__ = ["CLOUD_EVENT_SCHEMA", "DELIVERY_SCHEMAS", "EVENT_GRID_SCHEMA", "INPUT_SCHEMAS",
           "MAX_ADVANCED_FILTERS", "MAX_FILTER_VALUES", "MAX_STRING_VALUE_CHARS",
           "SCHEMA_FILE_NAME", "Batching", "DeadLetter", "RetryPolicy", "Subscription",
           "SubscriptionValidationError", "SubscriptionsError", "delivery_schema_problem",
           "load_subscriptions", "parse_subscriptions", "schema_problems"]

SCHEMA_FILE_NAME = "subscriptions.schema.json"

_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")  # ARM event subscription names
_FUNCTION = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")  # Azure Functions names
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # blob container names
_SUBSCRIPTION_FIELDS = frozenset({"name", "description", "topic", "function", "destination",
                                  "deliveryWithResourceIdentity", "filter", "retryPolicy",
                                  "batching", "deadLetter", "eventDeliverySchema"})
_TARGETS = ("function", "destination", "deliveryWithResourceIdentity")
_PLACEHOLDER = re.compile(r"^\{(?P<name>[A-Za-z][A-Za-z0-9_]{0,63})\}$")
_ARM = r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
# What each endpointType's resourceId names (ARM refuses another resource type).
RESOURCE_IDS = {
    "EventHub": re.compile(_ARM + r"Microsoft\.EventHub/namespaces/[^/]+/eventhubs/[^/]+$",
                           re.IGNORECASE),
    "ServiceBusQueue": re.compile(_ARM + r"Microsoft\.ServiceBus/namespaces/[^/]+/queues/[^/]+$",
                                  re.IGNORECASE),
    "ServiceBusTopic": re.compile(_ARM + r"Microsoft\.ServiceBus/namespaces/[^/]+/topics/[^/]+$",
                                  re.IGNORECASE),
    "StorageQueue": re.compile(_ARM + r"Microsoft\.Storage/storageAccounts/[^/]+$",
                               re.IGNORECASE),
}
# ARM's properties of each endpointType that the file may set (batching comes from `batching`).
_PROPERTIES = {
    "WebHook": {"endpointUrl", "azureActiveDirectoryTenantId",
                "azureActiveDirectoryApplicationIdOrUri", "deliveryAttributeMappings",
                "minimumTlsVersionAllowed"},
    "EventHub": {"resourceId", "deliveryAttributeMappings"},
    "ServiceBusQueue": {"resourceId", "deliveryAttributeMappings"},
    "ServiceBusTopic": {"resourceId", "deliveryAttributeMappings"},
    "StorageQueue": {"resourceId", "queueName", "queueMessageTimeToLiveInSeconds"},
}
_QUEUE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # storage queue names
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def load_subscriptions(path: str | Path, *, schema_path: str | Path | None = None,
                       known_functions: Iterable[str] | None = None,
                       values: Mapping[str, str] | None = None) -> tuple[Subscription, ...]:
    """Read, check (semantics, then JSON Schema) and parse the subscriptions file.

    `values` are the placeholders' values (the template's subscriptionValues).
    """
    path = Path(path)
    document = _read_json(path)
    subscriptions = parse_subscriptions(document, known_functions=known_functions,
                                        source=str(path), values=values)
    schema = _read_json(Path(schema_path) if schema_path else path.with_name(SCHEMA_FILE_NAME))
    problems = schema_problems(document, schema)
    if problems:
        raise SubscriptionsError(str(path), problems)
    return subscriptions


def _read_json(path: Path) -> Any:
    try:  # filter numbers as exact decimals, as Event Grid compares them
        return jsonnum.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SubscriptionsError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    except ValueError as exc:
        raise SubscriptionsError(str(path), [f"not valid JSON: {exc}"]) from exc


def schema_problems(document: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every JSON Schema (draft 2020-12) violation, located by subscription and path."""
    import jsonschema  # dev dependency, needed only by the local simulator

    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path))):
        path = list(error.absolute_path)
        label = _label_for(document, path)
        where = ".".join(str(p) for p in path[2:]) or "(subscription)"
        problems.append(f"{label}: {where}: {error.message}" if label else
                        f"{'.'.join(map(str, path)) or '(document)'}: {error.message}")
    return problems


def _label_for(document: Any, path: list[Any]) -> str:
    if len(path) < 2 or path[0] != "subscriptions" or not isinstance(path[1], int):
        return ""
    raw = document["subscriptions"][path[1]]
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"subscription {name!r}" if isinstance(name, str) else f"subscriptions[{path[1]}]"


def parse_subscriptions(document: Any, *, known_functions: Iterable[str] | None = None,
                        source: str = "subscriptions",
                        values: Mapping[str, str] | None = None) -> tuple[Subscription, ...]:
    """Semantic checks and parsing of an already-loaded subscriptions document."""
    problems: list[str] = []
    items = _subscription_items(document, problems)
    known = {f.lower(): f for f in known_functions} if known_functions is not None else None
    given = {k: str(v) for k, v in (values or {}).items() if str(v).strip()}
    parsed = [_parse_subscription(raw, index, problems, known, given)
              for index, raw in enumerate(items)]
    subscriptions = [s for s in parsed if s is not None]
    seen: set[str] = set()
    for subscription in subscriptions:
        if subscription.name.lower() in seen:
            problems.append(f"subscription {subscription.name!r}: name: used more than once")
        seen.add(subscription.name.lower())
    if problems:
        raise SubscriptionsError(source, problems)
    return tuple(subscriptions)


def _subscription_items(document: Any, problems: list[str]) -> list[Any]:
    if not isinstance(document, dict) or not isinstance(document.get("subscriptions"), list):
        problems.append('(document): must be an object with a "subscriptions" array')
        return []
    for extra in sorted(set(document) - {"$schema", "subscriptions"}):
        problems.append(f"(document): unknown property {extra!r}")
    return list(document["subscriptions"])


def _parse_subscription(raw: Any, index: int, problems: list[str],
                        known: Mapping[str, str] | None,
                        values: Mapping[str, str]) -> Subscription | None:
    if not isinstance(raw, dict):
        problems.append(f"subscriptions[{index}]: must be an object")
        return None
    name = raw.get("name")
    label = f"subscription {name!r}" if isinstance(name, str) else f"subscriptions[{index}]"
    report, before = ProblemReport(problems, label), len(problems)
    for extra in sorted(set(raw) - _SUBSCRIPTION_FIELDS):
        report.add(extra, "unknown property")
    if not isinstance(name, str) or not _NAME.match(name):
        report.add("name", "required: 3-64 letters, digits or hyphens")
    topic = raw.get("topic", WORKSPACE_TOPIC)
    if topic not in TOPICS:
        report.add("topic", f"{topic!r} is not one of {', '.join(TOPICS)}")
    targets = [t for t in _TARGETS if t in raw]
    function, destination = "", None
    if len(targets) != 1:
        report.add("function", "exactly one of function, destination or "
                               f"deliveryWithResourceIdentity is required (found {len(targets)})")
    elif targets[0] == "function":
        function = _parse_function(raw["function"], known, report)
        if topic == OUTCOMES_TOPIC:
            report.add("function", "the app's functions take Azure ML events, not the outcome "
                                   "topic's amlevents.* events: use another destination")
    else:
        destination = parse_destination(raw[targets[0]], targets[0], values, report)
    schema = raw.get("eventDeliverySchema", EVENT_GRID_SCHEMA)
    if schema not in DELIVERY_SCHEMAS:
        report.add("eventDeliverySchema", f"{schema!r} is not one of {', '.join(DELIVERY_SCHEMAS)}")
    elif topic == OUTCOMES_TOPIC and schema != CLOUD_EVENT_SCHEMA:
        report.add("eventDeliverySchema", f"the outcome topic takes CloudEvents: its "
                                          f"subscriptions deliver {CLOUD_EVENT_SCHEMA}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        report.add("description", "must be a string")
    batching = _parse_batching(raw.get("batching"), report)
    if batching is not None and destination is not None \
            and destination.endpoint_type != WEBHOOK:
        report.add("batching", f"a {destination.endpoint_type} destination delivers one event "
                               "at a time (ARM has no batching for it)")
    subscription = Subscription(
        name=str(name), function=function, filter=parse_filter(raw.get("filter", {}), report),
        retry_policy=_parse_retry(raw.get("retryPolicy", {}), report),
        batching=batching, dead_letter=_parse_dead_letter(raw.get("deadLetter"), report),
        event_delivery_schema=str(schema), description=str(description),
        destination=destination, topic=str(topic))
    return subscription if len(problems) == before else None


def parse_destination(raw: Any, where: str, values: Mapping[str, str],
                      report: ProblemReport) -> Destination | None:
    """ARM's `destination` (or `deliveryWithResourceIdentity`) of one subscription."""
    identity = ""
    if where == "deliveryWithResourceIdentity":
        if not isinstance(raw, dict):
            report.add(where, "must be an object with identity and destination")
            return None
        _unknown(raw, {"identity", "destination"}, where, report)
        ident = raw.get("identity")
        if not isinstance(ident, dict) or ident.get("type") != "SystemAssigned" \
                or set(ident) - {"type"}:
            report.add(f"{where}.identity", 'must be {"type": "SystemAssigned"} (the topic\'s '
                                            "system identity, which the template grants the "
                                            "destination's sender role)")
        identity = "SystemAssigned"
        where, raw = f"{where}.destination", raw.get("destination")
    if not isinstance(raw, dict):
        report.add(where, "must be an object with endpointType and properties")
        return None
    _unknown(raw, {"endpointType", "properties"}, where, report)
    kind = str(raw.get("endpointType"))
    allowed = IDENTITY_ENDPOINT_TYPES if identity else ENDPOINT_TYPES
    if kind not in allowed:
        report.add(f"{where}.endpointType", f"{raw.get('endpointType')!r} is not one of "
                   f"{', '.join(allowed)}"
                   + (" (function destinations use `function`)" if kind == "AzureFunction"
                      else ""))
        return None
    props = raw.get("properties")
    if not isinstance(props, dict):
        report.add(f"{where}.properties", f"required: the {kind} destination's properties")
        return None
    where = f"{where}.properties"
    _unknown(props, _PROPERTIES[kind], where, report)
    unresolved: list[str] = []

    def resolved(field: str) -> str:
        value = props.get(field)
        if not isinstance(value, str) or not value:
            report.add(f"{where}.{field}", f"required for a {kind} destination")
            return ""
        placeholder = _PLACEHOLDER.match(value)
        if placeholder is None:
            return value
        if placeholder["name"] in values:
            return values[placeholder["name"]]
        unresolved.append(placeholder["name"])
        return ""

    url = resource = queue = ""
    ttl: int | None = None
    if kind == WEBHOOK:
        url = resolved("endpointUrl")
        if url:
            _check_webhook_url(url, f"{where}.endpointUrl", report)
    else:
        resource = resolved("resourceId")
        if resource and not RESOURCE_IDS[kind].match(resource):
            report.add(f"{where}.resourceId", f"is not the resource id of "
                       f"{'a storage account' if kind == STORAGE_QUEUE else 'an ' + kind}")
    if kind == STORAGE_QUEUE:
        queue = str(props.get("queueName") or "")
        if not queue or not _QUEUE.match(queue):
            report.add(f"{where}.queueName", "required for a StorageQueue destination: 3-63 "
                       "lower-case letters, digits and single hyphens")
        raw_ttl = props.get("queueMessageTimeToLiveInSeconds")
        if raw_ttl is not None:
            if isinstance(raw_ttl, bool) or not isinstance(raw_ttl, int) \
                    or not (raw_ttl == -1 or raw_ttl >= 1):
                report.add(f"{where}.queueMessageTimeToLiveInSeconds",
                           "must be -1 (never expires) or a positive number of seconds")
            else:
                ttl = int(raw_ttl)
    attributes = _parse_attributes(props.get("deliveryAttributeMappings"),
                                   f"{where}.deliveryAttributeMappings", report)
    return Destination(endpoint_type=kind, endpoint_url=url, resource_id=resource,
                       queue_name=queue, queue_message_ttl_s=ttl, identity=identity,
                       attributes=attributes, unresolved=tuple(unresolved))


def _check_webhook_url(url: str, where: str, report: ProblemReport) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    local = (parts.hostname or "").lower() in _LOOPBACK_HOSTS
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and local:
        return  # the simulator only: Event Grid takes https endpoints
    report.add(where, "must be an https URL (Event Grid delivers to https endpoints only; "
                      "http is accepted locally for 127.0.0.1 and localhost)")


def _parse_attributes(raw: Any, where: str,
                      report: ProblemReport) -> tuple[DeliveryAttribute, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        report.add(where, "must be an array")
        return ()
    found: list[DeliveryAttribute] = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        props = item.get("properties") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                or not item["name"] or not isinstance(props, dict):
            report.add(at, "must have a name, a type (Static or Dynamic) and properties")
            continue
        if item.get("type") == "Static" and isinstance(props.get("value"), str):
            found.append(DeliveryAttribute(item["name"], "Static", value=props["value"],
                                           is_secret=bool(props.get("isSecret", False))))
        elif item.get("type") == "Dynamic" and isinstance(props.get("sourceField"), str):
            found.append(DeliveryAttribute(item["name"], "Dynamic",
                                           source_field=props["sourceField"]))
        else:
            report.add(at, "Static needs properties.value, Dynamic properties.sourceField")
    return tuple(found)


def _parse_function(value: Any, known: Mapping[str, str] | None, report: ProblemReport) -> str:
    if not isinstance(value, str) or not _FUNCTION.match(value):
        report.add("function", "required: the name of an Event Grid-triggered function")
        return ""
    if known is not None and value.lower() not in known:
        report.add("function", f"{value!r} is not one of the app's Event Grid functions "
                               f"({', '.join(sorted(known.values())) or 'none'})")
    return value


def _parse_retry(raw: Any, report: ProblemReport) -> RetryPolicy:
    if not isinstance(raw, dict):
        report.add("retryPolicy", "must be an object")
        return RetryPolicy()
    _unknown(raw, {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}, "retryPolicy", report)
    return RetryPolicy(
        _int_in(raw, "maxDeliveryAttempts", 1, 30, 30, "retryPolicy", report),
        _int_in(raw, "eventTimeToLiveInMinutes", 1, 1440, 1440, "retryPolicy", report))


def _parse_batching(raw: Any, report: ProblemReport) -> Batching | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        report.add("batching", "must be an object")
        return None
    _unknown(raw, {"maxEventsPerBatch", "preferredBatchSizeInKilobytes"}, "batching", report)
    return Batching(_int_in(raw, "maxEventsPerBatch", 1, 5000, 1, "batching", report),
                    _int_in(raw, "preferredBatchSizeInKilobytes", 1, 1024, 64, "batching", report))


def _parse_dead_letter(raw: Any, report: ProblemReport) -> DeadLetter | None:
    """Required here (not by ARM): nothing published may be lost without a trace."""
    name = raw.get("blobContainerName") if isinstance(raw, dict) else None
    if isinstance(raw, dict):
        _unknown(raw, {"blobContainerName"}, "deadLetter", report)
    if not isinstance(name, str) or not _CONTAINER.match(name):
        report.add("deadLetter.blobContainerName", "required: a blob container name (3-63 "
                   "lower-case letters, digits and single hyphens)")
        return None
    return DeadLetter(name)


def _unknown(raw: Mapping[str, Any], allowed: set[str], where: str, report: ProblemReport) -> None:
    for extra in sorted(set(raw) - allowed):
        report.add(f"{where}.{extra}", "unknown property")


def _int_in(raw: Mapping[str, Any], name: str, low: int, high: int, default: int, where: str,
            report: ProblemReport) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        report.add(f"{where}.{name}", f"{value!r} must be an integer from {low} to {high}")
        return default
    return int(value)
