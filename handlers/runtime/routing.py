"""Which function takes which event types, and which handler acts on each type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handlers.cicd import handler as cicd
from handlers.deploy import handler as deploy
from handlers.events.parse import (
    DATASET_DRIFT_DETECTED,
    ML_EVENT_TYPES,
    MODEL_DEPLOYED,
    MODEL_REGISTERED,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
)
from handlers.notify import handler as notify
from handlers.outcome import ActionResult
from handlers.retrain import handler as retrain
from handlers.runtime.context import HandlerContext
from handlers.runtime.function_names import (
    ON_DRIFT_DETECTED,
    ON_ML_EVENT,
    ON_MODEL_REGISTERED,
    ON_RUN_STATUS,
)

FUNCTION_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    ON_MODEL_REGISTERED: (MODEL_REGISTERED,),
    ON_DRIFT_DETECTED: (DATASET_DRIFT_DETECTED,),
    ON_RUN_STATUS: (RUN_STATUS_CHANGED, RUN_COMPLETED),
    ON_ML_EVENT: ML_EVENT_TYPES,
}

Handler = Callable[[Any, HandlerContext], ActionResult]
Wants = Callable[[Any, HandlerContext], bool]

# Each concern's handler: decide (pure), then act through its port.
CONCERN_HANDLERS: dict[str, Handler] = {
    "deploy": deploy.handle,
    "retrain": retrain.handle,
    "notify": notify.handle,
    "cicd": cicd.handle,
}

# The concern every event of a type goes to (its ledger row keeps the event's own key).
HOME_CONCERN: dict[str, str] = {
    MODEL_REGISTERED: "deploy",
    DATASET_DRIFT_DETECTED: "retrain",
    RUN_STATUS_CHANGED: "notify",
    RUN_COMPLETED: "notify",
    MODEL_DEPLOYED: "notify",
}

# Further concerns one event may drive, each asked whether it wants the event (in this order).
# Each gets a ledger row of its own (key + "-" + concern): exactly once per concern.
EXTRA_CONCERNS: tuple[tuple[str, Wants], ...] = (
    # A model-monitor breach (RunStatusChanged carrying its tag) also retrains; on_run_status and
    # on_ml_event take RunStatusChanged, so both accept a breach.
    ("retrain", retrain.wants),
    ("cicd", cicd.wants),  # a CI/CD rule's when.types lists the event's type
)

HANDLERS: dict[str, Handler] = {kind: CONCERN_HANDLERS[c] for kind, c in HOME_CONCERN.items()}


def concerns_for(event: Any, ctx: HandlerContext) -> tuple[str, ...]:
    """The concerns that act on `event`: its home concern first, then every other that wants it."""
    home = HOME_CONCERN[event.envelope.event_type]
    return (home, *(name for name, wants in EXTRA_CONCERNS
                    if name != home and wants(event, ctx)))


def concern_key(event_key: str, concern: str, event_type: str) -> str:
    """The ledger key of one concern's row for an event (the home concern keeps the event's key)."""
    return event_key if HOME_CONCERN.get(event_type) == concern else f"{event_key}-{concern}"


def concern_of(ledger_key: str, event_type: str) -> str:
    """Which concern a ledger row belongs to (the inverse of `concern_key`)."""
    for name in CONCERN_HANDLERS:
        if ledger_key.endswith(f"-{name}") and HOME_CONCERN.get(event_type) != name:
            return name
    return HOME_CONCERN.get(event_type, "")


def function_for(event_type: str) -> str:
    """The dedicated function for an event type (the catch-all for the rest)."""
    lowered = event_type.lower()
    for function, types in FUNCTION_EVENT_TYPES.items():
        if function != ON_ML_EVENT and any(t.lower() == lowered for t in types):
            return function
    return ON_ML_EVENT


def accepts(function: str, event_type: str) -> bool:
    """True when `function` handles `event_type` (unknown function names accept nothing)."""
    return event_type in FUNCTION_EVENT_TYPES.get(function, ())
