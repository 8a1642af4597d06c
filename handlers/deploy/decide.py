"""ModelRegistered → deploy the model when its tags ask for it ("no-code" deployment).

The tag contract (docs/tag-contract.md) is parsed here into a DeploymentPlan, bounded by the
operator's DeployPolicy. Tag names have no dots: Event Grid advanced-filter keys cannot hold
them. `decide` is pure; handler.py adds ordering through ledger state (order.py) and deploys.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from handlers.deploy.plan import SCORING_SCRIPT, DeploymentPlan
from handlers.deploy.policy import (
    ALLOWED_COMPUTES,
    ALLOWED_TARGETS,
    COMPUTE_TARGETS,
    ENDPOINT_PATTERN,
    MAX_CPU_CORES,
    MAX_INSTANCE_COUNT,
    MAX_MEMORY_GB,
    MODEL_PATTERN,
    REQUIRED_TAGS,
    TARGETS,
    V1_TARGETS,
    DeployPolicy,
)
from handlers.events.parse import ModelRegistered
from handlers.events.workspace import WorkspaceRef
from handlers.outcome import ActionResult, Outcome

DEPLOY_TAG = "deploy"
TARGET_TAG = "deploy_target"
ENDPOINT_TAG = "deploy_endpoint"
NAME_TAG = "deploy_name"
INSTANCE_TYPE_TAG = "deploy_instance_type"
INSTANCE_COUNT_TAG = "deploy_instance_count"
TRAFFIC_TAG = "deploy_traffic"
COMPUTE_TAG = "deploy_compute"
ENVIRONMENT_TAG = "deploy_environment"
SCORING_SCRIPT_TAG = "deploy_scoring_script"
CPU_CORES_TAG = "deploy_cpu_cores"
MEMORY_GB_TAG = "deploy_memory_gb"

_OPT_IN = frozenset({"true", "yes", "1"})
# Azure ML endpoint and deployment names: 3-32 chars, letter first, alphanumeric last.
_AZURE_NAME = re.compile(r"^[A-Za-z](?:[-A-Za-z0-9]{1,30})[A-Za-z0-9]$")
# A registered environment: name:version or name@latest, optionally prefixed with azureml:
_ENVIRONMENT = re.compile(r"^(?:azureml:)?[A-Za-z0-9][A-Za-z0-9_.-]*(?::[A-Za-z0-9_.-]+|@latest)$")
# ASCII digits only, and few of them: `\d` and str.isdigit() accept "²", "١" or "１", which int()
# and float() refuse, and int() refuses over 4300 digits. Longer than any sane tag value anyway.
_WHOLE = re.compile(r"[0-9]{1,6}")
_NUMBER = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
_SHOWN_MAX = 60  # how much of a refused value the refusal repeats


def shown(raw: str) -> str:
    """A tag value for a refusal: quoted, control characters escaped, long ones shortened."""
    if len(raw) <= _SHOWN_MAX:
        return repr(raw)
    return f"{raw[:_SHOWN_MAX]!r}... ({len(raw)} characters)"


@functools.lru_cache(maxsize=1024)  # pure, and the same names recur
def endpoint_name_for(model_name: str) -> str:
    """A valid endpoint name from a model name: 3–32 chars, letter first, letters/digits/hyphens."""
    name = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"m-{name}"
    return name[:32].rstrip("-").ljust(3, "0")


@functools.lru_cache(maxsize=1024)  # pure, and the same names recur
def deployment_name_for(version: str) -> str:
    """A valid deployment name from a model version: v20, v-1 (names need 3 chars), v1-2-0."""
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", version.lower())).strip("-")
    name = f"v{cleaned}" if len(cleaned) >= 2 else f"v-{cleaned or '0'}"
    return name[:32].rstrip("-")


class _Tags:
    """Reads tags case-insensitively and collects every refusal before deciding."""

    def __init__(self, tags: Mapping[str, str]) -> None:
        self.tags = {str(k).strip().lower(): str(v).strip() for k, v in tags.items()}
        self.problems: list[str] = []

    def get(self, name: str) -> str:
        return self.tags.get(name, "")

    def refuse(self, name: str, message: str) -> None:
        self.problems.append(f"tag {name}: {message}")

    def whole(self, name: str, default: int, low: int, high: int, bound: str) -> int:
        raw = self.get(name)
        if not raw:
            return default
        if not _WHOLE.fullmatch(raw) or not low <= int(raw) <= high:
            self.refuse(name, f"must be a whole number from {low} to {high}{bound}, "
                              f"got {shown(raw)}")
            return default
        return int(raw)

    def amount(self, name: str, default: float, high: float, setting: str) -> float:
        raw = self.get(name)
        if not raw:
            return min(default, high)
        if not _NUMBER.fullmatch(raw) or not 0 < float(raw) <= high:
            self.refuse(name, f"must be a number above 0 and at most {high:g} "
                              f"(limit {setting}), got {shown(raw)}")
            return min(default, high)
        return float(raw)


def _choose(tags: _Tags, name: str, allowed: tuple[str, ...], setting: str, what: str) -> str:
    """A tag value from an operator list (case-insensitive; the list's spelling is used)."""
    raw = tags.get(name)
    if not allowed:
        tags.refuse(name, f"no {what} is allowed: set {setting}")
        return ""
    if not raw:
        return allowed[0]
    for item in allowed:
        if item.lower() == raw.lower():
            return item
    tags.refuse(name, f"{shown(raw)} is not allowed by {setting} (allowed: {', '.join(allowed)})")
    return allowed[0]


def _name(tags: _Tags, name: str, default: str) -> str:
    raw = tags.get(name)
    if raw and not _AZURE_NAME.match(raw):
        tags.refuse(name, f"{shown(raw)} is not a valid name: 3-32 characters, a letter first, "
                          "letters, digits and hyphens, ending with a letter or digit")
    return raw or default


def _target(tags: _Tags, policy: DeployPolicy) -> str:
    target = tags.get(TARGET_TAG).lower() or "managed"
    if target not in TARGETS:
        tags.refuse(TARGET_TAG,
                    f"must be one of {', '.join(TARGETS)}, got {shown(tags.get(TARGET_TAG))}")
        return "managed"
    if target not in policy.allowed_targets:
        allowed = ", ".join(policy.allowed_targets) or "none"
        tags.refuse(TARGET_TAG,
                    f"{shown(target)} is not allowed by {ALLOWED_TARGETS} (allowed: {allowed})")
    return target


def _scoring(tags: _Tags, target: str) -> tuple[str, str]:
    environment, script = tags.get(ENVIRONMENT_TAG), tags.get(SCORING_SCRIPT_TAG)
    if target in V1_TARGETS and (environment or script):
        tags.refuse(ENVIRONMENT_TAG if environment else SCORING_SCRIPT_TAG,
                    "is supported for managed and kubernetes targets only; aci and aks deploy "
                    "models registered with a framework (no scoring script)")
        return "", ""
    if bool(environment) != bool(script):
        missing, given = ((SCORING_SCRIPT_TAG, ENVIRONMENT_TAG) if environment
                          else (ENVIRONMENT_TAG, SCORING_SCRIPT_TAG))
        tags.refuse(missing, f"is required together with {given} "
                             "(MLflow models deploy with neither)")
    if environment and not _ENVIRONMENT.match(environment):
        tags.refuse(ENVIRONMENT_TAG, f"must be a registered environment as name:version or "
                                     f"name@latest, got {shown(environment)}")
    if script and not SCORING_SCRIPT.match(script):
        tags.refuse(SCORING_SCRIPT_TAG, f"must be code-asset:version/path/to/script.py, "
                                        f"got {shown(script)}")
    return environment, script


def _gates(event: ModelRegistered, tags: _Tags, policy: DeployPolicy, endpoint: str) -> None:
    """The operator's name patterns and required tags."""
    if not policy.model_pattern.fullmatch(event.model_name):
        tags.problems.append(f"model {shown(event.model_name)} does not match {MODEL_PATTERN} "
                             f"({policy.model_pattern.pattern})")
    if not policy.endpoint_pattern.fullmatch(endpoint):
        tags.refuse(ENDPOINT_TAG, f"endpoint {shown(endpoint)} does not match {ENDPOINT_PATTERN} "
                                  f"({policy.endpoint_pattern.pattern})")
    for required in policy.required_tags:
        if not required.satisfied_by(tags.tags):
            tags.refuse(required.name, f"{REQUIRED_TAGS} requires {required}, got "
                                       f"{shown(tags.get(required.name.lower()) or 'absent')}")


def decide(event: ModelRegistered, policy: DeployPolicy) -> DeploymentPlan | ActionResult:
    """A plan when the tags opt in and stay within the policy; else a skip or a refusal."""
    tags = _Tags(event.model_tags)
    opt_in = tags.get(DEPLOY_TAG)
    if opt_in.lower() not in _OPT_IN:
        given = shown(opt_in) if opt_in else "absent"
        return ActionResult.skipped(f"tag {DEPLOY_TAG} is {given}; set {DEPLOY_TAG}=true to deploy")
    workspace = policy.workspace or WorkspaceRef.from_topic(event.envelope.topic)
    target = _target(tags, policy)
    endpoint = _name(tags, ENDPOINT_TAG, endpoint_name_for(event.model_name))
    deployment = _name(tags, NAME_TAG, deployment_name_for(event.model_version))
    _gates(event, tags, policy, endpoint)
    managed_like = target not in V1_TARGETS
    instance_type = _choose(tags, INSTANCE_TYPE_TAG, policy.instance_types_for(target),
                            policy.instance_types_setting(target), "instance type") \
        if managed_like else ""
    count = tags.whole(INSTANCE_COUNT_TAG, 1, 1, policy.max_instance_count,
                       f" (limit {MAX_INSTANCE_COUNT})")
    traffic = tags.whole(TRAFFIC_TAG, 100, 0, 100, "")
    if not managed_like and traffic != 100:
        tags.refuse(TRAFFIC_TAG,
                    f"canary traffic needs a managed or kubernetes target, not {target}")
    compute = _choose(tags, COMPUTE_TAG, policy.allowed_computes, ALLOWED_COMPUTES, "compute") \
        if target in COMPUTE_TARGETS else ""
    environment, script = _scoring(tags, target)
    cpu = tags.amount(CPU_CORES_TAG, 1.0, policy.max_cpu_cores, MAX_CPU_CORES) \
        if not managed_like else 0.0
    memory = tags.amount(MEMORY_GB_TAG, 2.0, policy.max_memory_gb, MAX_MEMORY_GB) \
        if not managed_like else 0.0
    if tags.problems:
        return ActionResult(Outcome.REFUSED, "refused", "; ".join(tags.problems))
    return DeploymentPlan(
        workspace=workspace, model_name=event.model_name, model_version=event.model_version,
        target=target, endpoint=endpoint, deployment=deployment, instance_type=instance_type,
        instance_count=count, traffic=traffic, compute=compute, environment=environment,
        scoring_script=script, cpu_cores=cpu, memory_gb=memory, tags=dict(event.model_tags))
