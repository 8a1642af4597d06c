"""Which events a rule takes: the one matching vocabulary of notification and CI/CD rules (pure).

A rule's criteria are all optional, and every one given must hold:

- `types` (or `events`): short event type names (`ModelRegistered`, `RunStatusChanged`, ...), any
  case; the full `Microsoft.MachineLearningServices.` names are accepted too;
- `model`: a glob on the model name (`ModelRegistered`), or on any model a `ModelDeployed` names;
- `experiment`: a glob on the run's experiment name (`RunStatusChanged`, `RunCompleted`);
- `tags`: tag name -> value glob, or `null` for "the tag is there, whatever its value (empty too)";
  the model's tags (`ModelRegistered`), the run's (run events), the service's (`ModelDeployed`);
- `runStatus` (or `statuses`): run statuses; `RunCompleted` counts as `completed`, `ModelDeployed`
  as `deployed`.

Names, values and globs ignore case. An event without the fact a criterion asks about (a model
name for a run event, say) does not match it. `handlers/notify` and `handlers/cicd` parse their
rules' criteria with `parse_criteria` and match them with `Criteria.matches`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from handlers.events.types import (
    ML_EVENT_TYPES,
    PREFIX,
    MlEvent,
    ModelDeployed,
    ModelRegistered,
    RunCompleted,
    RunStatusChanged,
)

# Every short type name a rule may list, in the documented spelling.
SHORT_TYPES: tuple[str, ...] = tuple(t.removeprefix(PREFIX) for t in ML_EVENT_TYPES)
# The keys of a rule's criteria; the second spelling of a pair is the notification rules' older one.
CRITERIA_KEYS = frozenset({"types", "events", "model", "experiment", "tags", "runStatus",
                           "statuses"})
_ALIASES = (("types", "events"), ("runStatus", "statuses"))


@dataclass(frozen=True)
class Facts:
    """What rules match on, whatever the event type (lower-cased where matching ignores case)."""

    kind: str  # the short type, lower-cased: "modelregistered"
    status: str | None = None
    experiment: str | None = None
    models: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


def facts_of(event: MlEvent) -> Facts:
    """The facts of one typed event."""
    kind = event.envelope.event_type.removeprefix(PREFIX).lower()
    if isinstance(event, ModelRegistered):
        return Facts(kind, models=(event.model_name,), tags=event.model_tags)
    if isinstance(event, ModelDeployed):
        # Model ids are "name:version"; a rule's model glob is on the name.
        names = tuple(model_id.rsplit(":", 1)[0] for model_id in event.model_ids)
        return Facts(kind, status="deployed", models=names, tags=event.service_tags)
    if isinstance(event, RunCompleted):
        return Facts(kind, status="completed", experiment=event.experiment_name,
                     tags=event.run_tags)
    if isinstance(event, RunStatusChanged):
        return Facts(kind, status=event.run_status.strip().lower(),
                     experiment=event.experiment_name, tags=event.run_tags)
    return Facts(kind)  # DatasetDriftDetected: no model, experiment, tags or status


def _glob(value: str, pattern: str) -> bool:
    return fnmatchcase(value.lower(), pattern.lower())


@dataclass(frozen=True)
class Criteria:
    """What a rule asks of an event; None (or no tags) means "any"."""

    types: frozenset[str] | None = None  # short names in the documented spelling
    model: str | None = None
    experiment: str | None = None
    tags: tuple[tuple[str, str | None], ...] = ()  # name -> value glob; None: present
    statuses: frozenset[str] | None = None  # lower-cased

    def matches(self, facts: Facts) -> bool:
        """True when every criterion given holds for the event's facts."""
        if self.types is not None and facts.kind not in {t.lower() for t in self.types}:
            return False
        if self.statuses is not None and facts.status not in self.statuses:
            return False
        if self.experiment is not None and (
                facts.experiment is None or not _glob(facts.experiment, self.experiment)):
            return False
        if self.model is not None and not any(_glob(m, self.model) for m in facts.models):
            return False
        tags = {k.lower(): v for k, v in facts.tags.items()}
        return all(name.lower() in tags
                   and (pattern is None or _glob(tags[name.lower()], pattern))
                   for name, pattern in self.tags)


def short_type(name: str) -> str:
    """A type as a rule may spell it (`modelregistered`, the full name) in the documented form,
    or '' when it is not an Azure ML event type."""
    wanted = name.strip().lower().removeprefix(PREFIX.lower())
    return next((t for t in SHORT_TYPES if t.lower() == wanted), "")


def parse_criteria(item: Mapping[str, Any], where: str, problem: Callable[[str], None], *,
                   types: tuple[str, ...] = SHORT_TYPES) -> Criteria:
    """The criteria among a rule's keys (others are the caller's); each problem goes to `problem`
    as one line starting with `where`. `types` are the short names this concern's rules may list."""
    for key, alias in _ALIASES:
        if key in item and alias in item:
            problem(f"{where}: give {key} or {alias}, not both")
    type_key = "types" if "types" in item else "events"
    names = _names(item, type_key, where, problem)
    kinds: frozenset[str] | None = None
    if names is not None:
        known = {short_type(n) for n in names}
        if "" in known or not known <= set(types):
            problem(f"{where}: {type_key} must be among {', '.join(types)}")
        kinds = frozenset(k for k in known if k)
    status_key = "runStatus" if "runStatus" in item else "statuses"
    return Criteria(types=kinds, model=_pattern(item, "model", where, problem),
                    experiment=_pattern(item, "experiment", where, problem),
                    tags=_tags(item, where, problem),
                    statuses=_names(item, status_key, where, problem))


def _pattern(item: Mapping[str, Any], key: str, where: str,
             problem: Callable[[str], None]) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        problem(f"{where}: {key} must be a string pattern")
        return None
    return value


def _tags(item: Mapping[str, Any], where: str,
          problem: Callable[[str], None]) -> tuple[tuple[str, str | None], ...]:
    tags = item.get("tags", {})
    if not isinstance(tags, dict) or not all(
            isinstance(v, str) or v is None for v in tags.values()):
        problem(f"{where}: tags must be an object of name -> value pattern "
                "(null: the tag is there, whatever its value)")
        return ()
    return tuple(sorted((str(k), v) for k, v in tags.items()))


def _names(item: Mapping[str, Any], key: str, where: str,
           problem: Callable[[str], None]) -> frozenset[str] | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problem(f"{where}: {key} must be an array of strings")
        return None
    return frozenset(v.strip().lower() for v in value)
