"""Load and validate the subscriptions file (infra/subscriptions.json) into frozen values.

The Bicep template reads the same file (`loadJsonContent`), so names are ARM's
eventSubscription ones: `filter` is ARM's EventSubscriptionFilter as is, `retryPolicy` ARM's
RetryPolicy, `eventDeliverySchema` ARM's. The template assembles the rest: `function` becomes an
AzureFunction destination, `batching` its `maxEventsPerBatch`/`preferredBatchSizeInKilobytes`,
`deadLetter.blobContainerName` a StorageBlob dead-letter destination.

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
    EVENT_GRID_SCHEMA,
    INPUT_SCHEMAS,
    Batching,
    DeadLetter,
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
_SUBSCRIPTION_FIELDS = frozenset({"name", "description", "function", "filter", "retryPolicy",
                                  "batching", "deadLetter", "eventDeliverySchema"})


def load_subscriptions(path: str | Path, *, schema_path: str | Path | None = None,
                       known_functions: Iterable[str] | None = None) -> tuple[Subscription, ...]:
    """Read, check (semantics, then JSON Schema) and parse the subscriptions file."""
    path = Path(path)
    document = _read_json(path)
    subscriptions = parse_subscriptions(document, known_functions=known_functions,
                                        source=str(path))
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
                        source: str = "subscriptions") -> tuple[Subscription, ...]:
    """Semantic checks and parsing of an already-loaded subscriptions document."""
    problems: list[str] = []
    items = _subscription_items(document, problems)
    known = {f.lower(): f for f in known_functions} if known_functions is not None else None
    parsed = [_parse_subscription(raw, index, problems, known) for index, raw in enumerate(items)]
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
                        known: Mapping[str, str] | None) -> Subscription | None:
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
    function = _parse_function(raw.get("function"), known, report)
    schema = raw.get("eventDeliverySchema", EVENT_GRID_SCHEMA)
    if schema not in DELIVERY_SCHEMAS:
        report.add("eventDeliverySchema", f"{schema!r} is not one of {', '.join(DELIVERY_SCHEMAS)}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        report.add("description", "must be a string")
    subscription = Subscription(
        name=str(name), function=function, filter=parse_filter(raw.get("filter", {}), report),
        retry_policy=_parse_retry(raw.get("retryPolicy", {}), report),
        batching=_parse_batching(raw.get("batching"), report),
        dead_letter=_parse_dead_letter(raw.get("deadLetter"), report),
        event_delivery_schema=str(schema), description=str(description))
    return subscription if len(problems) == before else None


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
