"""types: the run events share one base, so their six common fields are declared once."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from handlers.events import parse as ev
from handlers.events.types import RunEvent, canonical_type

COMMON = ["envelope", "experiment_id", "experiment_name", "run_id", "run_type", "run_tags",
          "run_properties"]


def test_run_events_share_their_fields() -> None:
    assert [f.name for f in dataclasses.fields(RunEvent)] == COMMON
    assert [f.name for f in dataclasses.fields(ev.RunCompleted)] == COMMON
    assert [f.name for f in dataclasses.fields(ev.RunStatusChanged)] == [
        *COMMON, "run_status", "monitor_breach"]
    # declared once: each subclass declares only what is its own
    assert inspect.get_annotations(ev.RunCompleted) == {}
    assert inspect.get_annotations(ev.RunStatusChanged) == {
        "run_status": "str", "monitor_breach": "MonitorBreach | None"}
    assert not issubclass(ev.RunStatusChanged, ev.RunCompleted)  # siblings, never confused


def test_typed_events_are_frozen(sample: Callable[[str], dict[str, Any]]) -> None:
    event = ev.parse_event(sample("run_completed"))
    assert isinstance(event, RunEvent)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.run_id = "other"  # type: ignore[misc]


def test_canonical_type_restores_the_documented_spelling() -> None:
    assert canonical_type(ev.MODEL_REGISTERED.upper()) == ev.MODEL_REGISTERED
    assert canonical_type("Microsoft.Storage.BlobCreated") == "Microsoft.Storage.BlobCreated"
