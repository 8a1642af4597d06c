"""The Azure ML workspace an event came from, parsed from its topic resource id."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from handlers.errors import InvalidEvent

_TOPIC = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<resource_group>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<workspace>[^/]+)/?$",
    re.IGNORECASE)


@dataclass(frozen=True)
class WorkspaceRef:
    """Subscription, resource group and workspace name of an Azure ML workspace."""

    subscription_id: str
    resource_group: str
    workspace: str

    @classmethod
    def from_topic(cls, topic: str) -> WorkspaceRef:
        """Parse a workspace resource id: /subscriptions/{s}/resourceGroups/{rg}/.../workspaces/{w}."""
        if len(topic) > _CACHED_TOPIC_CHARS:  # hostile sizes are never held in the cache
            return _from_topic.__wrapped__(topic)
        return _from_topic(topic)

    @property
    def resource_id(self) -> str:
        """The workspace's ARM resource id."""
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}")


_CACHED_TOPIC_CHARS = 512  # a workspace resource id is at most about 300 characters


@functools.lru_cache(maxsize=256)  # an app hears from a few workspaces: parsed once each
def _from_topic(topic: str) -> WorkspaceRef:
    match = _TOPIC.match(topic.strip())
    if not match:
        raise InvalidEvent("topic", f"{topic!r} is not an Azure ML workspace resource id")
    return WorkspaceRef(match["subscription"], match["resource_group"], match["workspace"])
