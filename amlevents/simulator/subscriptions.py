"""Load and validate the subscriptions file (infra/subscriptions.json) into frozen values.

The Bicep template reads the same file (`loadJsonContent`), so names are ARM's
eventSubscription ones: `filter` is ARM's EventSubscriptionFilter as is, `retryPolicy` ARM's
RetryPolicy, `eventDeliverySchema` ARM's. The template assembles the rest: `function` becomes an
AzureFunction destination, `batching` its `maxEventsPerBatch`/`preferredBatchSizeInKilobytes`,
`deadLetter.blobContainerName` a StorageBlob dead-letter destination.

Validation runs twice: semantic checks first (every problem collected, each naming the
subscription and field; Event Grid's limits from
https://learn.microsoft.com/azure/event-grid/event-filtering#limitations), then the JSON Schema
(infra/subscriptions.schema.json) as a second net.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlevents.simulator.filters import (
    NULL_CHECKS,
    NUMBER_RANGE,
    OPERATORS,
    SINGLE_VALUE,
    STRING_MULTI,
    AdvancedFilter,
    EventFilter,
)

MAX_ADVANCED_FILTERS = 25  # "25 advanced filters and 25 filter values across all the filters"
MAX_FILTER_VALUES = 25
MAX_STRING_VALUE_CHARS = 512  # "512 characters per string value"
EVENT_GRID_SCHEMA = "EventGridSchema"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"
DELIVERY_SCHEMAS = (EVENT_GRID_SCHEMA, CLOUD_EVENT_SCHEMA)
SCHEMA_FILE_NAME = "subscriptions.schema.json"

_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")  # ARM event subscription names
_FUNCTION = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")  # Azure Functions names
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # blob container names
_SUBSCRIPTION_FIELDS = frozenset({"name", "description", "function", "filter", "retryPolicy",
                                  "batching", "deadLetter", "eventDeliverySchema"})
_FILTER_FIELDS = frozenset({"includedEventTypes", "subjectBeginsWith", "subjectEndsWith",
                            "isSubjectCaseSensitive", "advancedFilters",
                            "enableAdvancedFilteringOnArrays"})


@dataclass(frozen=True)
class RetryPolicy:
    """ARM's retryPolicy (defaults are Event Grid's)."""

    max_delivery_attempts: int = 30
    event_time_to_live_in_minutes: int = 1440


@dataclass(frozen=True)
class Batching:
    """Output batching (defaults are ARM's when batching is on)."""

    max_events_per_batch: int = 1
    preferred_batch_size_in_kilobytes: int = 64


@dataclass(frozen=True)
class DeadLetter:
    """Where undeliverable events go: a blob container (a local folder in the simulator)."""

    blob_container_name: str


@dataclass(frozen=True)
class Subscription:
    """One event subscription targeting one function of the app."""

    name: str
    function: str
    filter: EventFilter = field(default_factory=EventFilter)
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    batching: Batching | None = None
    dead_letter: DeadLetter | None = None
    event_delivery_schema: str = EVENT_GRID_SCHEMA
    description: str = ""


class SubscriptionsError(ValueError):
    """The subscriptions file is unreadable or invalid; `problems` lists every finding."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n  - "
                         + "\n  - ".join(self.problems))


class _Report:
    """Collects problems for one subscription, prefixed with its name."""

    def __init__(self, problems: list[str], label: str) -> None:
        self.problems, self.label = problems, label

    def add(self, field: str, message: str) -> None:
        self.problems.append(f"{self.label}: {field}: {message}")


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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
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
    report, before = _Report(problems, label), len(problems)
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
        name=str(name), function=function, filter=_parse_filter(raw.get("filter", {}), report),
        retry_policy=_parse_retry(raw.get("retryPolicy", {}), report),
        batching=_parse_batching(raw.get("batching"), report),
        dead_letter=_parse_dead_letter(raw.get("deadLetter"), report),
        event_delivery_schema=str(schema), description=str(description))
    return subscription if len(problems) == before else None


def _parse_function(value: Any, known: Mapping[str, str] | None, report: _Report) -> str:
    if not isinstance(value, str) or not _FUNCTION.match(value):
        report.add("function", "required: the name of an Event Grid-triggered function")
        return ""
    if known is not None and value.lower() not in known:
        report.add("function", f"{value!r} is not one of the app's Event Grid functions "
                               f"({', '.join(sorted(known.values())) or 'none'})")
    return value


def _parse_filter(raw: Any, report: _Report) -> EventFilter:
    if not isinstance(raw, dict):
        report.add("filter", "must be an object")
        return EventFilter()
    for extra in sorted(set(raw) - _FILTER_FIELDS):
        report.add(f"filter.{extra}", "unknown property")
    types = raw.get("includedEventTypes")
    if types is not None and (not isinstance(types, list) or not types
                              or not all(isinstance(t, str) and t for t in types)):
        report.add("filter.includedEventTypes", "must be a non-empty array of event type names")
        types = None
    advanced = _parse_advanced_filters(raw.get("advancedFilters", []), report)
    return EventFilter(
        included_event_types=tuple(types) if types is not None else None,
        subject_begins_with=_string(raw, "subjectBeginsWith", report),
        subject_ends_with=_string(raw, "subjectEndsWith", report),
        is_subject_case_sensitive=_flag(raw, "isSubjectCaseSensitive", report),
        advanced_filters=advanced,
        enable_advanced_filtering_on_arrays=_flag(raw, "enableAdvancedFilteringOnArrays", report))


def _string(raw: Mapping[str, Any], name: str, report: _Report) -> str:
    value = raw.get(name, "")
    if not isinstance(value, str):
        report.add(f"filter.{name}", "must be a string")
        return ""
    return value


def _flag(raw: Mapping[str, Any], name: str, report: _Report) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        report.add(f"filter.{name}", "must be true or false")
        return False
    return value


def _parse_advanced_filters(raw: Any, report: _Report) -> tuple[AdvancedFilter, ...]:
    if not isinstance(raw, list):
        report.add("filter.advancedFilters", "must be an array")
        return ()
    if len(raw) > MAX_ADVANCED_FILTERS:
        report.add("filter.advancedFilters", f"{len(raw)} advanced filters; Event Grid allows "
                   f"at most {MAX_ADVANCED_FILTERS} advanced filters per subscription")
    parsed = [_parse_advanced(item, index, report) for index, item in enumerate(raw)]
    filters = tuple(f for f in parsed if f is not None)
    total = sum(len(f.values) for f in filters)
    if total > MAX_FILTER_VALUES:
        report.add("filter.advancedFilters", f"{total} filter values across all the filters; "
                   f"Event Grid allows at most {MAX_FILTER_VALUES} per subscription")
    return filters


def _parse_advanced(raw: Any, index: int, report: _Report) -> AdvancedFilter | None:
    where = f"filter.advancedFilters[{index}]"
    if not isinstance(raw, dict):
        report.add(where, "must be an object with operatorType, key and value or values")
        return None
    operator, key = raw.get("operatorType"), raw.get("key")
    where = f"{where} ({operator} on {key!r})"
    for extra in sorted(set(raw) - {"operatorType", "key", "value", "values"}):
        report.add(where, f"unknown property {extra!r}")
    if operator not in OPERATORS:
        report.add(where, f"operatorType must be one of the {len(OPERATORS)} Event Grid operators")
        return None
    if not isinstance(key, str) or _key_problem(key):
        report.add(where, f"key: {_key_problem(key) if isinstance(key, str) else 'required'}")
        return None
    values = _filter_values(operator, raw, where, report)
    return AdvancedFilter(operator, key, values) if values is not None else None


def _key_problem(key: str) -> str:
    segments = key.split(".")
    if not key or any(not s for s in segments):
        return f"{key!r} must be a dotted path without empty segments (e.g. data.ModelTags.deploy)"
    if len(segments) > 1 and segments[0].lower() != "data":
        return f"{key!r}: only data.* keys can be nested"
    return ""


def _filter_values(operator: str, raw: Mapping[str, Any], where: str,
                   report: _Report) -> tuple[Any, ...] | None:
    has_value, has_values = "value" in raw, "values" in raw
    if operator in NULL_CHECKS:
        if has_value or has_values:
            report.add(where, f"{operator} takes no value or values")
            return None
        return ()
    if operator in SINGLE_VALUE:
        if has_values or not has_value:
            report.add(where, f"{operator} takes a single 'value' (not 'values')")
            return None
        return _checked_items(operator, [raw["value"]], where, report)
    if has_value or not isinstance(raw.get("values"), list) or not raw["values"]:
        report.add(where, f"{operator} takes a non-empty 'values' array (not 'value')")
        return None
    return _checked_items(operator, raw["values"], where, report)


def _checked_items(operator: str, items: list[Any], where: str,
                   report: _Report) -> tuple[Any, ...] | None:
    problems = [p for p in (_item_problem(operator, item) for item in items) if p]
    for problem in problems:
        report.add(where, problem)
    return None if problems else tuple(tuple(i) if isinstance(i, list) else i for i in items)


def _item_problem(operator: str, item: Any) -> str:
    if operator in STRING_MULTI:
        if not isinstance(item, str):
            return f"value {item!r} must be a string"
        if len(item) > MAX_STRING_VALUE_CHARS:
            return (f"a string value has {len(item)} characters; Event Grid allows at most "
                    f"{MAX_STRING_VALUE_CHARS} per string value")
        return ""
    if operator == "BoolEquals":
        return "" if isinstance(item, bool) else f"value {item!r} must be true or false"
    if operator in NUMBER_RANGE:
        if not (isinstance(item, list) and len(item) == 2 and all(map(_is_number, item))):
            return f"range {item!r} must be [low, high] numbers"
        return "" if item[0] <= item[1] else f"range {item!r}: low is above high"
    return "" if _is_number(item) else f"value {item!r} must be a number"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_retry(raw: Any, report: _Report) -> RetryPolicy:
    if not isinstance(raw, dict):
        report.add("retryPolicy", "must be an object")
        return RetryPolicy()
    _unknown(raw, {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}, "retryPolicy", report)
    return RetryPolicy(
        _int_in(raw, "maxDeliveryAttempts", 1, 30, 30, "retryPolicy", report),
        _int_in(raw, "eventTimeToLiveInMinutes", 1, 1440, 1440, "retryPolicy", report))


def _parse_batching(raw: Any, report: _Report) -> Batching | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        report.add("batching", "must be an object")
        return None
    _unknown(raw, {"maxEventsPerBatch", "preferredBatchSizeInKilobytes"}, "batching", report)
    return Batching(_int_in(raw, "maxEventsPerBatch", 1, 5000, 1, "batching", report),
                    _int_in(raw, "preferredBatchSizeInKilobytes", 1, 1024, 64, "batching", report))


def _parse_dead_letter(raw: Any, report: _Report) -> DeadLetter | None:
    """Required here (not by ARM): nothing published may be lost without a trace."""
    name = raw.get("blobContainerName") if isinstance(raw, dict) else None
    if isinstance(raw, dict):
        _unknown(raw, {"blobContainerName"}, "deadLetter", report)
    if not isinstance(name, str) or not _CONTAINER.match(name):
        report.add("deadLetter.blobContainerName", "required: a blob container name (3-63 "
                   "lower-case letters, digits and single hyphens)")
        return None
    return DeadLetter(name)


def _unknown(raw: Mapping[str, Any], allowed: set[str], where: str, report: _Report) -> None:
    for extra in sorted(set(raw) - allowed):
        report.add(f"{where}.{extra}", "unknown property")


def _int_in(raw: Mapping[str, Any], name: str, low: int, high: int, default: int, where: str,
            report: _Report) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        report.add(f"{where}.{name}", f"{value!r} must be an integer from {low} to {high}")
        return default
    return int(value)
