"""Operator guardrails for tag-driven deployment: what model tags may ask for, at most.

Registering a model must not be a way to spend unlimited money, so the defaults are
conservative: managed online endpoints only, two small CPU SKUs, at most two instances.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from handlers.errors import InvalidEvent
from handlers.events.workspace import WorkspaceRef
from handlers.settings import SettingsReader

ALLOWED_TARGETS = "AMLEVENTS_DEPLOY_ALLOWED_TARGETS"
ALLOWED_INSTANCE_TYPES = "AMLEVENTS_DEPLOY_ALLOWED_INSTANCE_TYPES"
ALLOWED_K8S_INSTANCE_TYPES = "AMLEVENTS_DEPLOY_ALLOWED_K8S_INSTANCE_TYPES"
ALLOWED_COMPUTES = "AMLEVENTS_DEPLOY_ALLOWED_COMPUTES"
MAX_INSTANCE_COUNT = "AMLEVENTS_DEPLOY_MAX_INSTANCE_COUNT"
MAX_CPU_CORES = "AMLEVENTS_DEPLOY_MAX_CPU_CORES"
MAX_MEMORY_GB = "AMLEVENTS_DEPLOY_MAX_MEMORY_GB"
MODEL_PATTERN = "AMLEVENTS_DEPLOY_MODEL_PATTERN"
ENDPOINT_PATTERN = "AMLEVENTS_DEPLOY_ENDPOINT_PATTERN"
REQUIRED_TAGS = "AMLEVENTS_DEPLOY_REQUIRED_TAGS"
WORKSPACE = "AMLEVENTS_DEPLOY_WORKSPACE"
ORDER_HOLD_S = "AMLEVENTS_DEPLOY_ORDER_HOLD_S"

TARGETS = ("managed", "kubernetes", "aci", "aks")
V1_TARGETS = frozenset({"aci", "aks"})
COMPUTE_TARGETS = frozenset({"kubernetes", "aks"})

DEFAULT_INSTANCE_TYPES = ("Standard_DS3_v2", "Standard_F2s_v2")
DEFAULT_K8S_INSTANCE_TYPES = ("defaultinstancetype",)
DEFAULT_MAX_INSTANCE_COUNT = 2
_TAG_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class RequiredTag:
    """A tag a model must carry to deploy: present (value None) or equal to `value`."""

    name: str
    value: str | None

    def satisfied_by(self, tags: Mapping[str, str]) -> bool:
        """True when `tags` (keys lower-cased) carries this tag (values compare ignoring case)."""
        actual = tags.get(self.name.lower(), "").strip()
        if self.value is None:
            return bool(actual)
        return actual.lower() == self.value.lower()

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}={self.value}"


@dataclass(frozen=True)
class DeployPolicy:
    """What tags may ask for; every field is an operator setting (docs/tag-contract.md)."""

    allowed_targets: tuple[str, ...] = ("managed",)
    allowed_instance_types: tuple[str, ...] = DEFAULT_INSTANCE_TYPES
    allowed_k8s_instance_types: tuple[str, ...] = DEFAULT_K8S_INSTANCE_TYPES
    allowed_computes: tuple[str, ...] = ()
    max_instance_count: int = DEFAULT_MAX_INSTANCE_COUNT
    max_cpu_cores: float = 2.0
    max_memory_gb: float = 4.0
    model_pattern: re.Pattern[str] = re.compile(".*")
    endpoint_pattern: re.Pattern[str] = re.compile(".*")
    required_tags: tuple[RequiredTag, ...] = ()
    workspace: WorkspaceRef | None = None
    order_hold_s: float = 3600.0

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> DeployPolicy:
        """Build and validate from a mapping such as os.environ (every problem at once)."""
        reader = SettingsReader(env)
        targets = tuple(t.lower() for t in reader.items(ALLOWED_TARGETS, ("managed",)))
        for target in targets:
            if target not in TARGETS:
                reader.problem(ALLOWED_TARGETS,
                               f"{target!r} is not a target; use {', '.join(TARGETS)}")
        policy = cls(
            allowed_targets=tuple(t for t in targets if t in TARGETS),
            allowed_instance_types=reader.items(ALLOWED_INSTANCE_TYPES, DEFAULT_INSTANCE_TYPES),
            allowed_k8s_instance_types=reader.items(ALLOWED_K8S_INSTANCE_TYPES,
                                                    DEFAULT_K8S_INSTANCE_TYPES),
            allowed_computes=reader.items(ALLOWED_COMPUTES),
            max_instance_count=reader.integer(MAX_INSTANCE_COUNT, DEFAULT_MAX_INSTANCE_COUNT,
                                              minimum=1, maximum=100),
            max_cpu_cores=reader.number(MAX_CPU_CORES, 2.0, minimum=0.1, maximum=64.0),
            max_memory_gb=reader.number(MAX_MEMORY_GB, 4.0, minimum=0.1, maximum=512.0),
            model_pattern=reader.pattern(MODEL_PATTERN, ".*"),
            endpoint_pattern=reader.pattern(ENDPOINT_PATTERN, ".*"),
            required_tags=_required_tags(reader),
            workspace=_workspace(reader),
            order_hold_s=reader.number(ORDER_HOLD_S, 3600.0, minimum=0.0, maximum=7 * 86400.0),
        )
        reader.raise_if_invalid()
        return policy

    def instance_types_for(self, target: str) -> tuple[str, ...]:
        """The instance types allowed for a target (managed SKUs or Kubernetes instance types)."""
        return self.allowed_k8s_instance_types if target == "kubernetes" else \
            self.allowed_instance_types

    @staticmethod
    def instance_types_setting(target: str) -> str:
        """The setting that bounds instance types for a target."""
        return ALLOWED_K8S_INSTANCE_TYPES if target == "kubernetes" else ALLOWED_INSTANCE_TYPES


def _required_tags(reader: SettingsReader) -> tuple[RequiredTag, ...]:
    required: list[RequiredTag] = []
    for item in reader.items(REQUIRED_TAGS):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not _TAG_NAME.match(name):
            # Event Grid advanced-filter keys cannot contain dots, so neither can our tag names.
            reader.problem(REQUIRED_TAGS, f"{name!r} is not a tag name (letters, digits, _ and -)")
            continue
        required.append(RequiredTag(name, value.strip() if sep else None))
    return tuple(required)


def _workspace(reader: SettingsReader) -> WorkspaceRef | None:
    raw = reader.text(WORKSPACE)
    if not raw:
        return None
    try:
        return WorkspaceRef.from_topic(raw)
    except InvalidEvent:
        reader.problem(WORKSPACE, "must be a workspace resource id: /subscriptions/{id}/"
                                  "resourceGroups/{rg}/providers/"
                                  "Microsoft.MachineLearningServices/workspaces/{name}")
        return None
