"""NCRONTAB schedules and the timer runner of the local host."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

import function_app
from amlevents.host.server import load_functions
from amlevents.timers import Schedule, ScheduleError, TimerFunction, TimerRunner

T0 = datetime(2026, 11, 24, 10, 15, 30, 500_000, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(("expression", "expected"), [
    ("0 * * * * *", datetime(2026, 11, 24, 10, 16, 0, tzinfo=UTC)),       # every minute
    ("*/10 * * * * *", datetime(2026, 11, 24, 10, 15, 40, tzinfo=UTC)),  # every 10 s
    ("0 0 * * * *", datetime(2026, 11, 24, 11, 0, 0, tzinfo=UTC)),       # every hour
    ("0 30 9 * * 1-5", datetime(2026, 11, 25, 9, 30, 0, tzinfo=UTC)),    # 9:30 on weekdays
    ("0 0 0 * * 0", datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC)),        # Sundays
    ("15,45 * * * * *", datetime(2026, 11, 24, 10, 15, 45, tzinfo=UTC)),
])
def test_next_firing_time(expression: str, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(T0) == expected


@pytest.mark.parametrize(("expression", "named"), [
    ("* * * * *", "6 fields"), ("0 * * * * MON", "day-of-week"), ("61 * * * * *", "second"),
    ("0 */0 * * * *", "minute"), ("00:05:00", "6 fields")])
def test_unsupported_schedules_are_named(expression: str, named: str) -> None:
    with pytest.raises(ScheduleError, match=named):
        Schedule.parse(expression)


def test_the_apps_timers_are_loaded_with_their_schedules() -> None:
    timers = {t.name: t for t in load_functions(function_app.app).timers}
    assert {name: t.schedule.expression for name, t in timers.items()} == {
        "notify_digests": "0 * * * * *", "ledger_prune": "0 17 3 * * *"}
    assert not any(t.run_on_startup for t in timers.values())


def test_runner_fires_on_schedule_and_survives_a_failing_run() -> None:
    fired = threading.Event()
    calls: list[object] = []

    def job(request: object) -> None:
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("first run fails")
        fired.set()

    runner = TimerRunner([TimerFunction("job", Schedule.parse("* * * * * *"), True, job)]).start()
    try:
        assert fired.wait(5)  # run on startup (fails, logged), then the next second
    finally:
        runner.stop()
    assert len(calls) >= 2 and getattr(calls[0], "past_due", None) is False
