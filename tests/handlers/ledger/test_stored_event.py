"""The stored form of a received event: masked, compressed when large, bounded, versioned."""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from handlers.ledger.stored_event import (
    CHUNK_BYTES,
    COMPRESS_OVER_BYTES,
    MAX_STORED_BYTES,
    StoredEventError,
    chunks,
    decode_event,
    encode_event,
)
from handlers.runtime.redaction import json_forms, may_need_masking, redact, secret_values

EVENT = {"id": "e-1", "topic": "/t", "subject": "models/m:1", "eventType": "X.ModelRegistered",
         "eventTime": "2024-01-01T00:00:00Z", "data": {"ModelName": "m", "ModelVersion": 1,
                                                      "ModelTags": {"deploy": "true"}}}


def test_a_small_event_is_kept_as_json_and_read_back_unchanged() -> None:
    stored = encode_event(EVENT, schema="EventGridSchema")
    assert stored[:1] == b"j" and len(stored) <= COMPRESS_OVER_BYTES + 1
    back = decode_event(stored)
    assert (back.event, back.schema, back.masked, back.compressed) == (
        EVENT, "EventGridSchema", 0, False)
    assert back.replayable and back.stored_bytes == len(stored)


def test_a_large_event_is_compressed() -> None:
    big = {**EVENT, "data": {**EVENT["data"], "ModelProperties": {
        f"p{i}": "the same words again and again" for i in range(200)}}}
    stored = encode_event(big, schema="CloudEventSchemaV1_0")
    assert stored[:1] == b"z"
    assert len(stored) < len(json.dumps(big)) / 5
    back = decode_event(stored)
    assert back.event == big and back.compressed


def test_secrets_in_the_event_are_masked_before_it_is_stored() -> None:
    # GIVEN an event carrying a secret setting's value and a SAS URL in its tags
    secrets = secret_values({"AMLEVENTS_NOTIFY_WEBHOOK_URL": "https://hooks.example/abcdefgh"})
    event = {**EVENT, "data": {"ModelTags": {
        "hook": "https://hooks.example/abcdefgh",
        "model_uri": "https://acct.blob.core.windows.net/c/m.pkl?sv=2024&sig=SECRETSIG123"}}}
    # WHEN it is stored with the dispatcher's masking
    back = decode_event(encode_event(event, schema="EventGridSchema",
                                     clean=lambda text: redact(text, secrets)))
    # THEN neither secret is in the stored bytes, and the count says two strings were masked
    tags = back.event["data"]["ModelTags"]
    assert tags["hook"] == "***"
    assert "SECRETSIG123" not in json.dumps(back.event) and "sig=***" in tags["model_uri"]
    assert back.masked == 2


def test_an_event_too_large_even_compressed_is_truncated_with_a_marker() -> None:
    # GIVEN an event whose data does not compress (random text) beyond the bound
    noise = base64.b64encode(os.urandom(MAX_STORED_BYTES)).decode()
    event = {**EVENT, "data": {"blob": noise}}
    # WHEN it is stored
    stored = encode_event(event, schema="EventGridSchema")
    # THEN what is kept is small: the envelope, no data, and the marker with the size and hash
    assert len(stored) < 2000
    back = decode_event(stored)
    assert not back.replayable
    assert back.event == {k: v for k, v in EVENT.items() if k != "data"}
    assert back.truncated["bytes"] > MAX_STORED_BYTES and len(back.truncated["sha256"]) == 64


def test_a_truncated_event_still_says_how_many_strings_were_masked() -> None:
    noise = base64.b64encode(os.urandom(MAX_STORED_BYTES)).decode()
    event = {**EVENT, "data": {"blob": noise, "hook": "https://hooks.example/abcdefgh"}}
    secrets = secret_values({"AMLEVENTS_NOTIFY_WEBHOOK_URL": "https://hooks.example/abcdefgh"})
    back = decode_event(encode_event(event, schema="EventGridSchema",
                                     clean=lambda text: redact(text, secrets)))
    assert back.truncated and back.masked == 1


def test_an_event_just_under_the_bound_is_split_into_table_sized_chunks() -> None:
    noise = base64.b64encode(os.urandom(int(MAX_STORED_BYTES * 0.7))).decode()
    stored = encode_event({**EVENT, "data": {"blob": noise}}, schema="EventGridSchema")
    assert CHUNK_BYTES < len(stored) <= MAX_STORED_BYTES
    pieces = chunks(stored)
    assert len(pieces) >= 2 and all(len(p) <= CHUNK_BYTES for p in pieces)
    assert b"".join(pieces) == stored
    assert decode_event(stored).event["data"]["blob"] == noise


def test_an_event_nested_deeper_than_json_can_write_is_kept_as_its_envelope() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    back = decode_event(encode_event({**EVENT, "data": deep}, schema="EventGridSchema"))
    assert not back.replayable and back.truncated == {"reason": "nested too deeply to store"}
    assert back.event["id"] == "e-1"


def test_lone_surrogates_do_not_stop_an_event_being_stored() -> None:
    back = decode_event(encode_event({**EVENT, "subject": "bad\ud800x"}, schema="s"))
    assert back.event["subject"].startswith("bad") and back.event["subject"].endswith("x")


def test_unreadable_or_newer_stored_bytes_say_so() -> None:
    with pytest.raises(StoredEventError, match="no event"):
        decode_event(b"")
    with pytest.raises(StoredEventError, match="encoding"):
        decode_event(b"q{}")
    with pytest.raises(StoredEventError, match="cannot be read"):
        decode_event(b"z" + b"not zlib")
    newer = b"z" + zlib.compress(json.dumps({"v": 99, "event": {}}).encode())
    with pytest.raises(StoredEventError, match="upgrade amlevents"):
        decode_event(newer)


def test_the_text_form_keeps_plain_events_readable_and_round_trips() -> None:
    from handlers.ledger.stored_event import as_text, from_text

    small = encode_event(EVENT, schema="EventGridSchema")
    assert as_text(small).startswith('j{"v":1') and from_text(as_text(small)) == small
    big = encode_event({**EVENT, "data": {"x": "y" * 10_000}}, schema="EventGridSchema")
    assert as_text(big)[0] == "z" and from_text(as_text(big)) == big
    assert as_text(b"") == "" and from_text("") == b""
    with pytest.raises(StoredEventError):
        decode_event(from_text("z%%%not base64"))


# --- one check of the document instead of masking string by string ------------------------------

def _screen(secrets: tuple[str, ...]) -> Callable[[str], bool]:
    forms = json_forms(secrets)
    return lambda document: may_need_masking(document, forms)


@pytest.mark.parametrize("tags", [
    {"deploy": "true"},  # nothing to mask: stored as it came
    {"hook": "https://hooks.example/abcdefgh"},  # a secret setting's value
    {"uri": "https://acct.blob.core.windows.net/c/m.pkl?sv=2024&sig=SECRETSIG123"},  # a shape
    {"note": 'say "pa\\ss"-word1'},  # a secret that JSON writes escaped
    {"bearer": "Authorization: Bearer\tabc.def-ghi"},  # a shape across an escaped tab
    {"name": "caf\u00e9 \u017fig=x"},  # not ASCII: string by string
])
def test_the_screened_form_is_the_form_masked_string_by_string(tags: dict[str, str]) -> None:
    secrets = secret_values({"AMLEVENTS_NOTIFY_WEBHOOK_URL": "https://hooks.example/abcdefgh",
                             "AMLEVENTS_SMTP_PASSWORD": 'say "pa\\ss"'})
    event = {**EVENT, "data": {**EVENT["data"], "ModelTags": tags}}

    def clean(text: str) -> str:
        return redact(text, secrets)

    screened = encode_event(event, schema="EventGridSchema", clean=clean, screen=_screen(secrets))
    assert screened == encode_event(event, schema="EventGridSchema", clean=clean)
    assert "abcdefgh" not in screened.decode() and "SECRETSIG123" not in screened.decode()
    assert "pa\\\\ss" not in screened.decode() and "abc.def-ghi" not in screened.decode()


# --- _masked / _clean_tree: every string cleaned, nothing else touched ---------------------------

def test_masking_cleans_string_keys_and_values_and_leaves_other_keys_and_values_as_they_are(
) -> None:
    from handlers.ledger.stored_event import _masked

    event: dict[Any, Any] = {"id": "secret-1", 7: "secret-2",
                             "data": {"secret": ["secret", 3, None, True, ("secret", 1.5)]}}
    cleaned, masked = _masked(event, lambda text: text.replace("secret", "***"))
    # an int key stays an int (a key that is not text is not cleaned); tuples become lists
    assert cleaned == {"id": "***-1", 7: "***-2",
                       "data": {"***": ["***", 3, None, True, ["***", 1.5]]}}
    assert [type(k) for k in cleaned] == [str, int, str]
    assert masked == 5


def test_nothing_to_mask_returns_the_clean_copy_and_no_count() -> None:
    from handlers.ledger.stored_event import _masked

    event: dict[Any, Any] = {"id": "e", 1: [2, "x"]}
    assert _masked(event, lambda text: text) == (event, 0)
    assert _masked(event, None) == (event, 0)


def test_an_event_with_a_key_that_is_not_text_is_stored_masked() -> None:
    event: dict[Any, Any] = {**EVENT, 7: "a secret"}
    back = decode_event(encode_event(event, schema="EventGridSchema",
                                     clean=lambda text: text.replace("secret", "***")))
    assert back.event == {**EVENT, "7": "a ***"} and back.masked == 1


def test_a_secret_only_in_a_key_is_masked_and_counted() -> None:
    from handlers.ledger.stored_event import _masked

    event: dict[Any, Any] = {"id": "e", "data": {"secret": 1}}
    assert _masked(event, lambda text: text.replace("secret", "***")) == (
        {"id": "e", "data": {"***": 1}}, 1)
