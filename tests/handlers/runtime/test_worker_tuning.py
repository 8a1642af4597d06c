"""The strptime cache holds every format azure-functions tries for an Event Grid eventTime."""

from __future__ import annotations

import _strptime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.runtime.dispatch import default_dispatcher
from handlers.runtime.worker_tuning import STRPTIME_CACHE_SIZE, widen_strptime_cache

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "events" / "run_status_changed.json"
# The formats azure-functions tries, in order, up to Event Grid's (meta._parse_datetime_utc).
TRIED = ("%Y-%m-%dT%H:%M:%S+00:00", "%Y-%m-%dT%H:%M:%S-00:00", "%Y-%m-%dT%H:%M:%S.%f+00:00",
         "%Y-%m-%dT%H:%M:%S.%f-00:00", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def stock_cache() -> Iterator[None]:
    """CPython's own size for the test, restored after it (the knob is process-wide)."""
    saved = _strptime._CACHE_MAX_SIZE
    _strptime._CACHE_MAX_SIZE = 5
    _strptime._regex_cache.clear()
    yield
    _strptime._CACHE_MAX_SIZE = saved


def _decode_sample() -> None:
    import azure.functions as func
    from azure.functions import meta

    converter = func.get_binding_registry().get("eventGridTrigger")
    event = json.loads(SAMPLE.read_text())[0]
    decoded = converter.decode(meta.Datum(type="json", value=json.dumps(event)),
                               trigger_metadata=None)
    assert decoded.event_time is not None


def _compiles_per_event(monkeypatch: pytest.MonkeyPatch, events: int = 3) -> list[int]:
    """How many formats strptime compiled for each of `events` decoded events."""
    counts: list[int] = []
    time_re = _strptime._TimeRE_cache
    compile_format = time_re.compile

    def counting(fmt: str) -> object:
        counts[-1] += 1
        return compile_format(fmt)

    monkeypatch.setattr(time_re, "compile", counting)  # stdlib's, counted, not replaced
    for _ in range(events):
        counts.append(0)
        _decode_sample()
    return counts


def test_stock_cache_compiles_every_format_for_every_event(
        stock_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _compiles_per_event(monkeypatch) == [len(TRIED)] * 3


def test_widened_cache_compiles_each_format_once(
        stock_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert widen_strptime_cache() == STRPTIME_CACHE_SIZE
    assert _compiles_per_event(monkeypatch) == [len(TRIED), 0, 0]


def test_never_narrows_a_larger_cache(stock_cache: None) -> None:
    _strptime._CACHE_MAX_SIZE = STRPTIME_CACHE_SIZE * 2
    assert widen_strptime_cache() == STRPTIME_CACHE_SIZE * 2
    assert _strptime._CACHE_MAX_SIZE == STRPTIME_CACHE_SIZE * 2


def test_the_process_dispatcher_widens_it(stock_cache: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLEVENTS_DRY_RUN", "true")
    default_dispatcher.cache_clear()
    try:
        default_dispatcher()
    finally:
        default_dispatcher.cache_clear()
    assert _strptime._CACHE_MAX_SIZE == STRPTIME_CACHE_SIZE
