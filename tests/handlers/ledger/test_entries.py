"""The ledger's values, built fast on the hot path and exactly as before: timestamps, entries."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.ledger.ledger import LedgerEntry, event_key, utc_iso
from handlers.outcome import Outcome

FACTS: dict[str, Any] = {"key": "k", "event_id": "e", "event_type": "t", "subject": "s", "topic": "/t",
         "function": "f", "received_at": "r", "updated_at": "u", "outcome": Outcome.DONE}


@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False) |
       st.integers(min_value=0, max_value=2**32).map(lambda s: s + 0.0005) |
       st.integers(min_value=0, max_value=2**32).map(lambda s: s + 0.9999995))
def test_utc_iso_writes_what_datetime_writes(epoch_s: float) -> None:
    # Rounding to microseconds (half to even), then milliseconds: as datetime does it.
    assert utc_iso(epoch_s) == datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(
        timespec="milliseconds")


def test_an_entry_built_from_its_fields_equals_the_dataclass_one() -> None:
    built = LedgerEntry.of(FACTS)
    assert built == LedgerEntry(**FACTS)
    assert (built.attempts, built.etag, built.history) == (1, "", "")


def test_evolve_changes_fields_and_refuses_unknown_ones() -> None:
    entry = LedgerEntry(**FACTS)
    changed = entry.evolve(outcome=Outcome.FAILED, attempts=2)
    assert (changed.outcome, changed.attempts, entry.outcome) == (Outcome.FAILED, 2, Outcome.DONE)
    with pytest.raises(TypeError, match="outcom"):
        entry.evolve(outcom=Outcome.FAILED)


def test_the_event_key_is_the_same_however_often_it_is_asked() -> None:
    first = event_key("/subscriptions/S/x", "Microsoft.MachineLearningServices.ModelRegistered", "1")
    again = event_key("/subscriptions/s/X ", "microsoft.machinelearningservices.modelregistered",
                      " 1")
    assert first == again and len(first) == 40


def test_the_event_key_is_the_same_in_every_release() -> None:
    # Rows written by an earlier version must still deduplicate a redelivery after an upgrade:
    # the key is the first 40 hex digits of SHA-256 over lower-cased topic and type, and the id.
    ws = "/subscriptions/S/resourceGroups/R/providers/Microsoft.MachineLearningServices/workspaces/W"
    assert event_key(ws, "Microsoft.MachineLearningServices.RunStatusChanged", "id-1") == (
        "df963719ce9d6fd4a1ba1a8efef704690d41a8e6")
    assert event_key(ws, "T", "x" * 100_000) == hashlib.sha256(
        f"{ws.lower()}\nt\n{'x' * 100_000}".encode()).hexdigest()[:40]  # the uncached way too


def test_a_hostile_event_size_is_hashed_but_never_held_in_the_cache() -> None:
    from handlers.ledger import ledger

    huge = "x" * 100_000
    before = ledger._cached_event_key.cache_info().currsize
    assert event_key("/t", "T", huge) == event_key("/t", "T", huge) == ledger._event_key(
        "/t", "T", huge)
    assert ledger._cached_event_key.cache_info().currsize == before
