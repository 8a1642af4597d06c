"""Process-wide tuning of the Python worker the app runs in, applied once, on the first event.

azure-functions decodes every Event Grid event's `eventTime` by trying `datetime.strptime` with
up to twelve formats in turn; Event Grid's own form (`2024-06-03T00:12:47.3124512Z`) is the
sixth (azure/functions/meta.py `_parse_datetime_utc`). CPython caches compiled strptime formats
but empties that cache whenever it holds more than five (`_strptime._CACHE_MAX_SIZE`), so six
formats per event recompile every time: 150 us to decode the RunStatusChanged sample here, 63 us
with this cache (docs/performance.md). A cache big enough for the converter's formats gives the
same results without the recompiling.
"""

from __future__ import annotations

# The converter's formats (twelve UTC, then its local-time ones), with room for the app's own.
STRPTIME_CACHE_SIZE = 32


def widen_strptime_cache(size: int = STRPTIME_CACHE_SIZE) -> int:
    """Let CPython's strptime cache hold `size` formats (never fewer than it does); the size."""
    import _strptime

    current = int(getattr(_strptime, "_CACHE_MAX_SIZE", 0))
    if current < size:  # a private knob: absent or renamed in some Python, it is simply unused
        _strptime._CACHE_MAX_SIZE = size
    return max(current, size)
