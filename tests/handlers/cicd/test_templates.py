"""CI/CD templates: placeholders parsed once (unknown ones named), filled from the event (pure)."""

from __future__ import annotations

import pytest

from handlers.cicd.templates import (
    Placeholder,
    TemplateError,
    Values,
    as_text,
    lookup,
    parse,
    render,
)

VALUES = Values(
    fields={"id": "ev-1", "type": "Microsoft.MachineLearningServices.ModelRegistered",
            "subject": "models/fraud:3", "topic": "/subscriptions/s/workspaces/w",
            "requestId": "amlevents-0123456789abcdef01234567"},
    data={"ModelName": "fraud", "ModelVersion": 3, "ModelTags": {"stage": "production"},
          "ModelIds": ["a:1", "b:2"], "Nested": {"Deep": {"Flag": True}}, "Nothing": None},
    tags={"Stage": "production", "team.name": "risk"})


@pytest.mark.parametrize(("source", "expected"), [
    ("{id}", "ev-1"),
    ("{type}/{subject}", "Microsoft.MachineLearningServices.ModelRegistered/models/fraud:3"),
    ("{topic}", "/subscriptions/s/workspaces/w"),
    ("run {requestId}", "run amlevents-0123456789abcdef01234567"),
    ("{data.ModelName}", "fraud"),
    ("{data.modelname}", "fraud"),  # data keys ignore case
    ("v{data.ModelVersion}", "v3"),  # numbers as JSON writes them
    ("{data.ModelTags.stage}", "production"),  # nested with dots
    ("{data.ModelIds.1}", "b:2"),  # a list item by its index
    ("{data.Nested.deep.flag}", "true"),
    ("{data.ModelTags}", '{"stage":"production"}'),  # objects as compact JSON
    ("{tags.stage}", "production"),  # tag names ignore case
    ("{tags.team.name}", "risk"),  # a tag name may hold dots
    ("{{literal}} {ID}", "{literal} ev-1"),  # doubled braces, roots in any case
    ("no placeholder", "no placeholder"),
])
def test_placeholders_are_filled_from_the_event(source: str, expected: str) -> None:
    assert render(parse(source), VALUES) == (expected, ())


def test_missing_values_come_out_empty_and_are_named() -> None:
    text, empty = render(parse("{data.Missing}-{tags.nope}-{data.Nothing}-{data.ModelIds.9}"),
                         VALUES)
    assert text == "---"
    assert empty == ("data.Missing", "tags.nope", "data.Nothing", "data.ModelIds.9")


@pytest.mark.parametrize(("source", "named"), [
    ("{nope}", "{nope}"), ("{data}", "{data}"), ("{tags}", "{tags}"), ("{id.x}", "{id.x}"),
    ("{data..x}", "{data..x}"), ("{}", "{}"), ("{ id }", "{ id }")])
def test_an_unknown_placeholder_is_named(source: str, named: str) -> None:
    with pytest.raises(TemplateError, match="unknown placeholder") as info:
        parse(source)
    assert named in str(info.value) and "{data.KEY}" in str(info.value)


@pytest.mark.parametrize("source", ["a { b", "a } b", "{id}}"])
def test_a_lone_brace_is_refused(source: str) -> None:
    with pytest.raises(TemplateError, match="lone"):
        parse(source)


def test_a_parsed_template_knows_its_placeholders() -> None:
    template = parse("{id}-{data.A.b}")
    assert template.placeholders == (Placeholder("id"), Placeholder("data", ("A", "b")))
    assert template.literal is None and parse("x{{").literal == "x{"


@pytest.mark.parametrize(("path", "found"), [
    (("ModelIds", "0"), "a:1"),
    (("ModelIds", "1"), "b:2"),
    (("ModelIds", "2"), None),  # an index equal to the length: missing, not an error
    (("ModelIds", "x"), None),  # a list takes indexes only
    (("ModelIds", "-1"), None),
    (("ModelName", "x"), None),  # text has no keys
    (("Nothing", "x"), None),
    (("NESTED", "deep", "FLAG"), True),
])
def test_a_data_path_is_looked_up_key_by_key(path: tuple[str, ...], found: object) -> None:
    assert lookup(Placeholder("data", path), VALUES) == found


def test_envelope_fields_and_tags_are_looked_up_or_none() -> None:
    without_id = Values(fields={"id": "ev-1"}, data={}, tags={})
    assert lookup(Placeholder("requestId"), without_id) is None
    assert lookup(Placeholder("id"), without_id) == "ev-1"
    assert lookup(Placeholder("tags", ("TEAM.NAME",)), VALUES) == "risk"
    assert lookup(Placeholder("tags", ("nope",)), VALUES) is None


@pytest.mark.parametrize(("value", "text"), [
    (None, ""), ("é", "é"), (True, "true"), (False, "false"), (0, "0"), (2.5, "2.5"),
    ({"a": ["é", 1]}, '{"a":["é",1]}'),  # compact, non-ASCII text as itself
])
def test_values_are_written_as_text(value: object, text: str) -> None:
    assert as_text(value) == text


def test_template_errors_read_whole() -> None:
    with pytest.raises(TemplateError) as unknown:
        parse("x {nope}")
    assert str(unknown.value) == (
        "unknown placeholder {nope} (known: {id}, {type}, {subject}, {topic}, {requestId}, "
        "{data.KEY}, {tags.NAME}; write {{ and }} for literal braces)")
    with pytest.raises(TemplateError) as lone:
        parse("a } b")
    assert str(lone.value) == "a lone '}' in 'a } b': write }} for a brace"
