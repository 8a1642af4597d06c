"""The received event, kept with its ledger row so it can be shown and replayed.

What is kept is the event alone, in the schema it arrived in (Event Grid or CloudEvents): no
delivery headers, no settings. Every string in it (keys and values) goes through the dispatcher's
secret masking first, so a secret that rode along in a tag is stored as `***`, as in the row's
detail. The stored form is bytes, the same in every store:

    b"j" + JSON (UTF-8)                  when the JSON is at most COMPRESS_OVER_BYTES (4 KiB)
    b"z" + zlib(JSON)                    when it is larger (compressed)

where JSON is a small record, versioned so that later versions can read older rows:

    {"v": 1, "schema": "EventGridSchema", "event": {...}, "masked": 0}

Bounded: at most MAX_STORED_BYTES (four 60,000-byte chunks: the Table store splits the bytes over
binary properties `ev0`..`ev3`, each under the 64 KiB property limit; SQLite keeps the same bytes
in one text column, plain JSON as it is and compressed bytes in base64: `as_text`). An event
still larger once compressed is TRUNCATED, never split further: the record then holds the
envelope without `data` and a marker, and cannot be replayed:

    {"v": 1, "schema": ..., "event": {id, type, subject, topic, time...},
     "truncated": {"bytes": <JSON size>, "sha256": <of the JSON>}}

Event Grid accepts events of up to 1 MB; Azure ML's are a few KB, so truncation is for hostile or
broken input only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1
COMPRESS_OVER_BYTES = 4096  # Azure ML events (1-3 KB) are kept as they are: no CPU spent
CHUNK_BYTES = 60_000  # one Table binary property holds 64 KiB
MAX_CHUNKS = 4
MAX_STORED_BYTES = CHUNK_BYTES * MAX_CHUNKS
_ENVELOPE_KEYS = ("id", "topic", "source", "subject", "eventtype", "type", "eventtime", "time",
                  "dataversion", "dataschema", "specversion", "metadataversion")
_MAX_ENVELOPE_TEXT = 1024
_PLAIN, _ZLIB = b"j", b"z"


class StoredEventError(ValueError):
    """Stored bytes that cannot be read back (a newer format, or damaged)."""


@dataclass(frozen=True)
class StoredEvent:
    """A stored event read back: the event, its schema, and what storing did to it."""

    event: Mapping[str, Any]
    schema: str
    masked: int = 0  # strings in which a secret was masked
    truncated: Mapping[str, Any] = field(default_factory=dict)  # the marker, if truncated
    stored_bytes: int = 0
    compressed: bool = False

    @property
    def replayable(self) -> bool:
        """False when the event was too large and only its envelope was kept."""
        return not self.truncated


def encode_event(event: Mapping[str, Any], *, schema: str,
                 clean: Callable[[str], str] | None = None,
                 screen: Callable[[str], bool] | None = None) -> bytes:
    """The stored form of one received event (masked, compressed if large, bounded).

    `clean` masks one string. `screen(document)` is False only when no string in the JSON
    document needs `clean` (redaction.may_need_masking): then the event is written as it came,
    with one check of the whole document instead of one call per string (the common case).
    """
    record: dict[str, Any] = {"v": FORMAT_VERSION, "schema": schema, "event": event, "masked": 0}
    cleaned, masked, text = event, 0, None
    if clean is not None:
        if screen is not None:
            text = _text_or_none(record)
            if text is not None and screen(text):
                text = None  # something may need masking: string by string
        if text is None:
            cleaned, masked = _masked(event, clean)
            record = {"v": FORMAT_VERSION, "schema": schema, "event": cleaned, "masked": masked}
    if text is None:
        text = _text_or_none(record)
    marker: dict[str, Any]
    if text is None:  # nested deeper than json.dumps can go
        marker = {"reason": "nested too deeply to store"}
    else:
        data = _utf8(text)
        stored = _pack(data)
        if len(stored) <= MAX_STORED_BYTES:
            return stored
        marker = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    envelope = {str(k): _short(v) for k, v in cleaned.items()
                if str(k).lower() in _ENVELOPE_KEYS}
    return _pack(_dumps({"v": FORMAT_VERSION, "schema": schema, "event": envelope,
                         "masked": masked, "truncated": marker}))


def decode_event(stored: bytes) -> StoredEvent:
    """Read stored bytes back; StoredEventError when they cannot be read."""
    if not stored:
        raise StoredEventError("no event is stored")
    kind, body = stored[:1], stored[1:]
    try:
        if kind == _ZLIB:
            body = zlib.decompress(body)
        elif kind != _PLAIN:
            raise StoredEventError(f"unknown stored-event encoding {kind!r}")
        record = json.loads(body.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise StoredEventError(f"the stored event cannot be read: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("event"), dict):
        raise StoredEventError("the stored event is not a record with an event")
    version = record.get("v")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StoredEventError(f"stored-event format {version!r} is newer than this amlevents "
                               f"reads ({FORMAT_VERSION}): upgrade amlevents")
    return StoredEvent(event=record["event"], schema=str(record.get("schema", "")),
                       masked=int(record.get("masked", 0) or 0),
                       truncated=record.get("truncated") or {}, stored_bytes=len(stored),
                       compressed=kind == _ZLIB)


def as_text(stored: bytes) -> str:
    """The stored bytes as text (the SQLite column): plain JSON stays readable, compressed bytes
    are base64 (`z` + base64)."""
    if not stored:
        return ""
    if stored[:1] == _PLAIN:
        return "j" + stored[1:].decode("utf-8")
    return stored[:1].decode("ascii", "replace") + base64.b64encode(stored[1:]).decode("ascii")


def from_text(text: str) -> bytes:
    """The stored bytes `as_text` wrote (b"" for none; undecodable text reads as damaged)."""
    if not text:
        return b""
    if text[0] == "j":
        return _PLAIN + text[1:].encode("utf-8")
    try:
        return text[0].encode("ascii", "replace") + base64.b64decode(text[1:], validate=True)
    except (binascii.Error, ValueError):
        return b"?"  # decode_event reports it as an unknown encoding


def chunks(stored: bytes) -> list[bytes]:
    """The stored bytes in pieces of at most CHUNK_BYTES (the Table store's properties)."""
    return [stored[i:i + CHUNK_BYTES] for i in range(0, len(stored), CHUNK_BYTES)]


def _pack(text: bytes) -> bytes:
    if len(text) <= COMPRESS_OVER_BYTES:
        return _PLAIN + text
    return _ZLIB + zlib.compress(text, 6)


# Built once: json.dumps with options builds an encoder per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def _text_or_none(record: Mapping[str, Any]) -> str | None:
    try:
        return _ENCODE(record)
    except (RecursionError, ValueError):
        return None


def _utf8(text: str) -> bytes:
    # Lone surrogates (valid JSON escapes, invalid UTF-8) become U+FFFD: any store takes the rest.
    return text.encode("utf-8", "replace")


def _dumps(record: Mapping[str, Any]) -> bytes:
    return _utf8(_ENCODE(record))


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_ENVELOPE_TEXT:
        return value[:_MAX_ENVELOPE_TEXT] + "…"
    if isinstance(value, (dict, list)):
        return "…"
    return value


def _masked(event: Mapping[str, Any], clean: Callable[[str], str] | None
            ) -> tuple[Mapping[str, Any], int]:
    """A copy of the event with `clean` applied to every string (keys too); how many changed.

    The common case (nothing to mask) is one recursive copy and one comparison, both quick; the
    strings are counted only when something was masked. An event nested deeper than recursion
    allows is walked iteratively.
    """
    if clean is None:
        return event, 0
    try:
        cleaned = _clean_tree(event, clean)
        if cleaned == event:
            return cleaned, 0
    except RecursionError:
        pass
    return _masked_iteratively(event, clean)


def _clean_tree(value: Any, clean: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        return {(clean(k) if isinstance(k, str) else k): _clean_tree(v, clean)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_tree(v, clean) for v in value]
    return value


def _masked_iteratively(event: Mapping[str, Any], clean: Callable[[str], str]
                        ) -> tuple[dict[str, Any], int]:
    count = 0

    def text(value: str) -> str:
        nonlocal count
        cleaned = clean(value)
        if cleaned != value:
            count += 1
        return cleaned

    root: dict[str, Any] = {}
    stack: list[tuple[Any, Any]] = [(event, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, Mapping) else enumerate(source)
        for key, value in items:
            if isinstance(value, Mapping):
                copy: Any = {}
                stack.append((value, copy))
            elif isinstance(value, (list, tuple)):
                copy = [None] * len(value)
                stack.append((value, copy))
            elif isinstance(value, str):
                copy = text(value)
            else:
                copy = value
            if isinstance(target, dict):
                target[text(key) if isinstance(key, str) else key] = copy
            else:
                target[key] = copy
    return root, count
