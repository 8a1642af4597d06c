"""Timer triggers for the local host: NCRONTAB schedules run as `func start` runs them.

NCRONTAB (https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer) has six
fields: second minute hour day month day-of-week. Supported here: `*`, numbers, ranges `a-b`,
steps `*/n` and `a-b/n`, and comma lists; names (MON, JAN) and TimeSpan schedules are refused
with an error naming the schedule.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

log = logging.getLogger("amlevents.host")

_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31),
           ("month", 1, 12), ("day-of-week", 0, 6))


class ScheduleError(ValueError):
    """An NCRONTAB expression this host cannot run; names the schedule and the field."""


@dataclass(frozen=True)
class Schedule:
    """The allowed values of each of the six NCRONTAB fields."""

    expression: str
    allowed: tuple[frozenset[int], ...]

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        """Parse a six-field NCRONTAB expression."""
        parts = expression.split()
        if len(parts) != 6:
            raise ScheduleError(f"schedule {expression!r}: expected 6 fields "
                                "(second minute hour day month day-of-week)")
        return cls(expression, tuple(_field(expression, part, *spec)
                                     for part, spec in zip(parts, _FIELDS)))

    def matches(self, moment: datetime) -> bool:
        """True when the schedule fires at this (whole) second."""
        values = (moment.second, moment.minute, moment.hour, moment.day, moment.month,
                  (moment.weekday() + 1) % 7)  # NCRONTAB: 0 = Sunday
        return all(value in allowed for value, allowed in zip(values, self.allowed))

    def next_after(self, moment: datetime) -> datetime:
        """The first firing time strictly after `moment` (searching up to a year ahead)."""
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        minute = timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if self._minute_matches(candidate):
                for second in sorted(self.allowed[0]):
                    if second >= candidate.second:
                        return candidate.replace(second=second)
            candidate = (candidate + minute).replace(second=0)
        raise ScheduleError(f"schedule {self.expression!r} never fires")

    def _minute_matches(self, moment: datetime) -> bool:
        return self.matches(moment.replace(second=min(self.allowed[0])))


def _field(expression: str, text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                start, end = (int(v) for v in base.split("-", 1))
            else:
                start = int(base)
                end = high if step_text else start
        except ValueError:
            raise ScheduleError(f"schedule {expression!r}: {name} field {text!r} is not "
                                "supported (numbers, *, a-b, */n, lists)") from None
        if step < 1 or not low <= start <= end <= high:
            raise ScheduleError(f"schedule {expression!r}: {name} field {text!r} is out of "
                                f"range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class TimerFunction:
    """One timer-triggered function of the app."""

    name: str
    schedule: Schedule
    run_on_startup: bool
    function: Callable[..., object]


class TimerRunner:
    """Runs each timer function on its schedule in a daemon thread, until stopped."""

    def __init__(self, timers: list[TimerFunction],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.timers = timers
        self.clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> TimerRunner:
        """One thread per timer."""
        for timer in self.timers:
            thread = threading.Thread(target=self._loop, args=(timer,), daemon=True,
                                      name=f"timer-{timer.name}")
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self, timer: TimerFunction) -> None:
        if timer.run_on_startup:
            self._fire(timer)
        while not self._stop.is_set():
            now = self.clock()
            wait_s = (timer.schedule.next_after(now) - now).total_seconds()
            if self._stop.wait(max(wait_s, 0.0)):
                return
            self._fire(timer)

    @staticmethod
    def _fire(timer: TimerFunction) -> None:
        from azure.functions.timer import TimerRequest

        try:
            timer.function(TimerRequest(past_due=False))
        except Exception:
            log.exception("timer function %s failed", timer.name)

    def stop(self) -> None:
        """Stop every timer thread."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
