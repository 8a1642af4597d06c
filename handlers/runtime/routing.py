"""Which function takes which event types, and which handler acts on each type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

ON_MODEL_REGISTERED = "on_model_registered"
ON_DRIFT_DETECTED = "on_drift_detected"
ON_RUN_STATUS = "on_run_status"
ON_ML_EVENT = "on_ml_event"

FUNCTION_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    ON_MODEL_REGISTERED: (MODEL_REGISTERED,),
    ON_DRIFT_DETECTED: (DATASET_DRIFT_DETECTED,),
    ON_RUN_STATUS: (RUN_STATUS_CHANGED, RUN_COMPLETED),
    ON_ML_EVENT: ML_EVENT_TYPES,
}

HANDLERS: dict[str, Callable[[Any, HandlerContext], ActionResult]] = {
    MODEL_REGISTERED: deploy.handle,
    DATASET_DRIFT_DETECTED: retrain.handle,
    RUN_STATUS_CHANGED: notify.handle,
    RUN_COMPLETED: notify.handle,
    MODEL_DEPLOYED: notify.handle,
}


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
