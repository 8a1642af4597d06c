"""Event Grid subscription filtering: event types, subject prefix/suffix, advanced filters.

Follows https://learn.microsoft.com/azure/event-grid/event-filtering:

- `includedEventTypes` absent (or containing `All`) accepts every type; types compare
  case-insensitively.
- `subjectBeginsWith` / `subjectEndsWith` compare case-insensitively unless
  `isSubjectCaseSensitive`.
- Advanced filters are ANDed; the values of one filter are ORed; the Not-operators
  (`...NotIn`, `StringNot...`, `NumberNotInRange`) must avoid every value (FAIL_MATCH).
  All string comparisons are case-insensitive. Numbers compare as decimals (Event Grid uses
  .NET `decimal`): bodies and the subscriptions file are parsed with Decimal (jsonnum.py), so
  1.1000000000000001 > 1.1 as it is in the service.
- A missing (or null) key does not match, except NumberNotIn and StringNotIn (match) and
  IsNullOrUndefined (match) - the documented lists; the range operators, not listed, do not.
- An array value only takes part with `enableAdvancedFilteringOnArrays`: then a positive
  operator matches when any element matches, a Not-operator when no element hits a value.
  Without it "the matching operation fails": the filter does not match. Elements of another
  type than the operator's are ignored, as the docs' pseudo code says.
- Keys: `id`, `topic`, `subject`, `eventType`, `dataVersion` (Event Grid schema); `id`,
  `source`, `type`, `subject`, `specversion` and extension attributes (CloudEvents); `data.a.b`
  for data. The docs spell keys in several casings (`ID`, `Data.Key1`, `data.key1`), so each
  key segment is looked up case-insensitively, an exact-case property winning if both exist.
- String operators also accept number and boolean values, in their JSON spelling: the docs'
  CloudEvents example filters a numeric extension attribute with StringBeginsWith ["5"].
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

NUMBER_SINGLE = frozenset({"NumberLessThan", "NumberGreaterThan", "NumberLessThanOrEquals",
                           "NumberGreaterThanOrEquals"})
NUMBER_MULTI = frozenset({"NumberIn", "NumberNotIn"})
NUMBER_RANGE = frozenset({"NumberInRange", "NumberNotInRange"})
BOOL_SINGLE = frozenset({"BoolEquals"})
STRING_MULTI = frozenset({"StringIn", "StringNotIn", "StringBeginsWith", "StringNotBeginsWith",
                          "StringEndsWith", "StringNotEndsWith", "StringContains",
                          "StringNotContains"})
NULL_CHECKS = frozenset({"IsNullOrUndefined", "IsNotNull"})
OPERATORS = NUMBER_SINGLE | NUMBER_MULTI | NUMBER_RANGE | BOOL_SINGLE | STRING_MULTI | NULL_CHECKS
SINGLE_VALUE = NUMBER_SINGLE | BOOL_SINGLE
NEGATED = frozenset({"NumberNotIn", "NumberNotInRange", "StringNotIn", "StringNotBeginsWith",
                     "StringNotEndsWith", "StringNotContains"})
MATCH_WHEN_MISSING = frozenset({"NumberNotIn", "StringNotIn"})


@dataclass(frozen=True)
class AdvancedFilter:
    """One advanced filter: operator, key, and its values (one item for `value` operators)."""

    operator_type: str
    key: str
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class EventFilter:
    """A subscription's filter, as ARM's EventSubscriptionFilter."""

    included_event_types: tuple[str, ...] | None = None
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    is_subject_case_sensitive: bool = False
    advanced_filters: tuple[AdvancedFilter, ...] = ()
    enable_advanced_filtering_on_arrays: bool = False


@dataclass(frozen=True)
class FilterResult:
    """Whether an event passed a filter, and why not when it did not."""

    matched: bool
    reason: str = ""


def is_cloud_event(event: Mapping[str, Any]) -> bool:
    """True for a CloudEvents 1.0 event (it carries `specversion`)."""
    return "specversion" in event


def event_type_of(event: Mapping[str, Any]) -> str:
    """The event type in either schema."""
    return str(event.get("type" if is_cloud_event(event) else "eventType") or "")


def subject_of(event: Mapping[str, Any]) -> str:
    """The subject in either schema ("" when absent, as CloudEvents allows)."""
    return str(event.get("subject") or "")


def evaluate(event_filter: EventFilter, event: Mapping[str, Any]) -> FilterResult:
    """Apply a whole subscription filter to one event."""
    event_type = event_type_of(event)
    if not accepts_event_type(event_filter.included_event_types, event_type):
        return FilterResult(False, f"eventType {event_type!r} is not in includedEventTypes")
    subject = subject_of(event)
    if not _subject_matches(event_filter, subject):
        return FilterResult(False, f"subject {subject!r} does not match "
                                   f"subjectBeginsWith/subjectEndsWith")
    for index, advanced in enumerate(event_filter.advanced_filters):
        if not matches(advanced, event, event_filter.enable_advanced_filtering_on_arrays):
            return FilterResult(False, f"advancedFilters[{index}] {advanced.operator_type} "
                                       f"on {advanced.key!r} did not match")
    return FilterResult(True)


def accepts_event_type(included: Sequence[str] | None, event_type: str) -> bool:
    """includedEventTypes: absent or `All` accepts everything; otherwise case-insensitive."""
    if included is None:
        return True
    lowered = {t.lower() for t in included}
    return "all" in lowered or event_type.lower() in lowered


def _subject_matches(event_filter: EventFilter, subject: str) -> bool:
    begins, ends = event_filter.subject_begins_with, event_filter.subject_ends_with
    if not event_filter.is_subject_case_sensitive:
        subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
    return subject.startswith(begins) and subject.endswith(ends)


def lookup(event: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """Follow a dotted key through the event: (found, value)."""
    current: Any = event
    for segment in key.split("."):
        if not isinstance(current, Mapping):
            return False, None
        found, current = _get_property(current, segment)
        if not found:
            return False, None
    return True, current


def _get_property(mapping: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    if name in mapping:
        return True, mapping[name]
    lowered = name.lower()
    for candidate, value in mapping.items():
        if isinstance(candidate, str) and candidate.lower() == lowered:
            return True, value
    return False, None


def matches(advanced: AdvancedFilter, event: Mapping[str, Any], on_arrays: bool) -> bool:
    """Apply one advanced filter to one event."""
    found, value = lookup(event, advanced.key)
    present = found and value is not None
    operator = advanced.operator_type
    if operator == "IsNullOrUndefined":
        return not present
    if not present:
        return operator in MATCH_WHEN_MISSING
    if isinstance(value, list) and not on_arrays:
        return False  # "the matching operation fails" when arrays are not enabled
    if operator == "IsNotNull":
        return True
    if isinstance(value, Mapping):
        return False  # objects are not filterable
    elements = value if isinstance(value, list) else [value]
    hit = any(_hits(operator, element, advanced.values) for element in elements)
    return not hit if operator in NEGATED else hit


def _hits(operator: str, element: Any, values: Sequence[Any]) -> bool:
    """True when `element` hits one of `values` for the operator's positive form."""
    if operator in NUMBER_SINGLE | NUMBER_MULTI | NUMBER_RANGE:
        number = _as_decimal(element)
        return number is not None and any(_NUMBER_TESTS[operator](number, v) for v in values)
    if operator in BOOL_SINGLE:
        return isinstance(element, bool) and element == values[0]
    text = _as_text(element)
    test = _STRING_TESTS[operator]
    return text is not None and any(test(text, str(v).lower()) for v in values)


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        return _num(value)
    except InvalidOperation:
        return None


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, Decimal):
        return str(value).lower()
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def _in_range(number: Decimal, bounds: Any) -> bool:
    low, high = (_num(b) for b in bounds)
    return low <= number <= high


def _num(value: Any) -> Decimal:
    """Exact for Decimal and int; a float (built in Python, not parsed) by its shortest repr."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


_NUMBER_TESTS: dict[str, Callable[[Decimal, Any], bool]] = {
    "NumberIn": lambda n, v: n == _num(v),
    "NumberNotIn": lambda n, v: n == _num(v),
    "NumberLessThan": lambda n, v: n < _num(v),
    "NumberGreaterThan": lambda n, v: n > _num(v),
    "NumberLessThanOrEquals": lambda n, v: n <= _num(v),
    "NumberGreaterThanOrEquals": lambda n, v: n >= _num(v),
    "NumberInRange": _in_range,
    "NumberNotInRange": _in_range,
}

_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "StringIn": lambda text, v: text == v,
    "StringNotIn": lambda text, v: text == v,
    "StringBeginsWith": lambda text, v: text.startswith(v),
    "StringNotBeginsWith": lambda text, v: text.startswith(v),
    "StringEndsWith": lambda text, v: text.endswith(v),
    "StringNotEndsWith": lambda text, v: text.endswith(v),
    "StringContains": lambda text, v: v in text,
    "StringNotContains": lambda text, v: v in text,
}
