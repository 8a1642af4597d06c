"""batch: a delivery body split into its events, in order; anything else named whole."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from handlers.errors import InvalidEvent
from handlers.events.batch import split_batch


@pytest.mark.parametrize("body", ['[{"id": "a"}, {"id": "b"}, 3]',
                                  b'[{"id": "a"}, {"id": "b"}, 3]',
                                  bytearray(b'[{"id": "a"}, {"id": "b"}, 3]')])
def test_a_json_array_is_its_events_in_order(body: str | bytes | bytearray) -> None:
    # an element that is not an event is still handed on: it is refused on its own
    assert split_batch(body) == [{"id": "a"}, {"id": "b"}, 3]


@pytest.mark.parametrize("body", ['{"id": "a"}', b'{"id": "a"}'])
def test_a_json_object_is_one_event(body: str | bytes) -> None:
    assert split_batch(body) == [{"id": "a"}]


def test_a_list_is_returned_as_it_is() -> None:
    events: list[Any] = [{"id": "a"}]
    assert split_batch(events) is events
    assert split_batch([]) == []


def test_any_mapping_is_one_event() -> None:
    event = OrderedDict(id="a")
    (only,) = split_batch(event)
    assert only is event


@pytest.mark.parametrize(("body", "kind"), [
    ('"text"', "str"), ("3", "int"), ("null", "NoneType"), ("true", "bool"), (2.5, "float"),
    (None, "NoneType"), ((1, 2), "tuple")])
def test_anything_else_is_refused_naming_the_body_and_its_type(body: Any, kind: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        split_batch(body)
    message = f"must be an event object or an array of events, got {kind}"
    assert (caught.value.field, caught.value.message) == ("body", message)
    assert str(caught.value) == f"body: {message}"


def test_a_body_that_is_not_json_is_named() -> None:
    with pytest.raises(InvalidEvent) as caught:
        split_batch("{not json")
    assert caught.value.field == "body"
    assert caught.value.message == ("is not valid JSON: Expecting property name enclosed in "
                                    "double quotes: line 1 column 2 (char 1)")
