"""CI/CD templates: placeholders parsed once (unknown ones named), filled from the event (pure)."""

from __future__ import annotations

import pytest

from handlers.cicd.templates import Placeholder, TemplateError, Values, parse, render

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
