"""Logging for the local tools (`amlevents serve` and every other command): nothing unredacted
reaches a terminal.

Python prints a record that no handler takes through `logging.lastResort`, a bare stderr handler
that no filter of ours was ever on; so `serve` used to print tracebacks with webhook tokens in them.
`install_log_redaction` gives the root logger a stderr handler when it has none (printing what
lastResort would: warnings and errors, but as `LEVEL logger: message`), and puts one
RedactingFilter on every handler there is (root's, every logger's, lastResort), replacing the one
a previous call left. Log messages are one line each: control characters in them (an event's CR/LF,
ANSI escapes) are shown escaped, so event data cannot forge a log line or drive the terminal.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO

from handlers.runtime.redaction import RedactingFilter, secret_values

# C0 and C1 controls, DEL, and the bidi controls that reorder what a terminal shows.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FORMAT = "%(levelname)s %(name)s: %(message)s"


def escape_controls(text: str) -> str:
    """`text` with control characters shown as escapes (\\x1b, \\n, \\u202e): one safe line."""
    return _CONTROLS.sub(lambda m: _escape(m.group()), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class _OneLineFormatter(logging.Formatter):
    """The message escaped to one line; a traceback (ours, not event data) keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (as lastResort does), so a replaced stream
    (a test's capture, a closed pipe's replacement) is never written to after it is gone."""

    def __init__(self, level: int = logging.WARNING) -> None:
        logging.Handler.__init__(self, level)
        self.setFormatter(_OneLineFormatter(_FORMAT))

    @property
    def stream(self) -> TextIO:
        return sys.stderr


def install_log_redaction(env: Mapping[str, str], *, extra: Iterable[str] = ()) -> RedactingFilter:
    """Mask the secrets of `env` (and every secret recognized by its shape) on every handler."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_StderrHandler())
    fresh = RedactingFilter((*secret_values(env), *extra))
    for handler in _every_handler():
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(fresh)
    return fresh


def _every_handler() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [item for item in logging.Logger.manager.loggerDict.values()
                if isinstance(item, logging.Logger)]
    handlers = {id(h): h for logger in loggers for h in logger.handlers}
    if logging.lastResort is not None:
        handlers[id(logging.lastResort)] = logging.lastResort
    return list(handlers.values())
