"""The workspace of an event's topic: parsed once per topic, refused every time when it is none."""

from __future__ import annotations

import pytest

from handlers.errors import InvalidEvent
from handlers.events.workspace import WorkspaceRef

TOPIC = ("/subscriptions/0000-1/resourceGroups/rg-ml/providers/"
         "Microsoft.MachineLearningServices/workspaces/ws-1")


def test_a_workspace_topic_is_parsed_once_and_the_same_value_returned() -> None:
    ref = WorkspaceRef.from_topic(TOPIC)
    assert ref == WorkspaceRef("0000-1", "rg-ml", "ws-1") and ref.resource_id == TOPIC
    assert WorkspaceRef.from_topic(TOPIC) is ref
    assert WorkspaceRef.from_topic(TOPIC.lower() + "/").workspace == "ws-1"


@pytest.mark.parametrize("topic", ["", "/subscriptions/x", "/providers/Microsoft.Storage/x"])
def test_anything_else_is_refused_each_time(topic: str) -> None:
    for _ in range(2):
        with pytest.raises(InvalidEvent, match="not an Azure ML workspace resource id"):
            WorkspaceRef.from_topic(topic)


def test_an_oversized_topic_is_parsed_but_not_held_in_the_cache() -> None:
    topic = TOPIC.replace("ws-1", "w" * 2000)
    assert WorkspaceRef.from_topic(topic).workspace == "w" * 2000
    assert WorkspaceRef.from_topic(topic) is not WorkspaceRef.from_topic(topic)
