"""What tag-driven deployment decides: one model version to one endpoint of one workspace."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from handlers.events.workspace import WorkspaceRef

# A scoring script inside a registered code asset: code-name:version/path/to/score.py
SCORING_SCRIPT = re.compile(
    r"^(?:azureml:)?(?P<code>[A-Za-z0-9][A-Za-z0-9_.-]*:[A-Za-z0-9_.-]+)/(?P<path>[^\s]+\.py)$")


@dataclass(frozen=True)
class DeploymentPlan:
    """Deploy one model version to one endpoint of one workspace."""

    workspace: WorkspaceRef
    model_name: str
    model_version: str
    target: str
    endpoint: str
    deployment: str
    instance_type: str = ""
    instance_count: int = 1
    traffic: int = 100
    compute: str = ""
    environment: str = ""
    scoring_script: str = ""
    cpu_cores: float = 0.0
    memory_gb: float = 0.0
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def code(self) -> str:
        """The code asset (name:version) holding the scoring script, or ''."""
        match = SCORING_SCRIPT.match(self.scoring_script)
        return match["code"] if match else ""

    @property
    def script_path(self) -> str:
        """The scoring script's path inside its code asset, or ''."""
        match = SCORING_SCRIPT.match(self.scoring_script)
        return match["path"] if match else ""

    def summary(self) -> str:
        """One line for the ledger."""
        return (f"deploy {self.model_name}:{self.model_version} to {self.target} endpoint "
                f"{self.endpoint} as {self.deployment} ({self.traffic}% traffic)")

    def as_dict(self) -> Mapping[str, Any]:
        """Details for the ledger (no secrets: tags are the model's own, names only)."""
        details = asdict(self)
        details["workspace"] = self.workspace.resource_id
        return details
