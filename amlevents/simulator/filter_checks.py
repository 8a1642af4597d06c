"""Parse a subscription's `filter` (ARM's EventSubscriptionFilter), checking Event Grid's limits.

Limits from https://learn.microsoft.com/azure/event-grid/event-filtering#limitations; every
problem goes to the subscription's report, naming the filter field.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
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
from amlevents.simulator.subscription_model import ProblemReport

MAX_ADVANCED_FILTERS = 25  # "25 advanced filters and 25 filter values across all the filters"
MAX_FILTER_VALUES = 25
MAX_STRING_VALUE_CHARS = 512  # "512 characters per string value"

_FILTER_FIELDS = frozenset({"includedEventTypes", "subjectBeginsWith", "subjectEndsWith",
                            "isSubjectCaseSensitive", "advancedFilters",
                            "enableAdvancedFilteringOnArrays"})


def parse_filter(raw: Any, report: ProblemReport) -> EventFilter:
    """The subscription's filter; problems go to `report`."""
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


def _string(raw: Mapping[str, Any], name: str, report: ProblemReport) -> str:
    value = raw.get(name, "")
    if not isinstance(value, str):
        report.add(f"filter.{name}", "must be a string")
        return ""
    return value


def _flag(raw: Mapping[str, Any], name: str, report: ProblemReport) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        report.add(f"filter.{name}", "must be true or false")
        return False
    return value


def _parse_advanced_filters(raw: Any, report: ProblemReport) -> tuple[AdvancedFilter, ...]:
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


def _parse_advanced(raw: Any, index: int, report: ProblemReport) -> AdvancedFilter | None:
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
                   report: ProblemReport) -> tuple[Any, ...] | None:
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
                   report: ProblemReport) -> tuple[Any, ...] | None:
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
    # Decimal: how the subscriptions file's non-integer numbers are read (exact, as Event Grid).
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
