"""A clock the test moves by hand: what the ledger, the notifier and the CI/CD runner take as
`clock` (a callable returning epoch seconds)."""

from __future__ import annotations

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20.000+00:00


class Clock:
    """Returns `now`, which the test sets or advances."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
