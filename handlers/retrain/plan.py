"""What retraining decides: one pipeline run for one drift monitor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers.retrain.settings import DEFAULT_TARGET, ROUTES, DataFactoryTarget


@dataclass(frozen=True)
class RetrainPlan:
    """Start one retraining pipeline run for a drift monitor."""

    monitor: str
    monitor_id: str
    drift_run_id: str
    coefficient: float
    threshold: float
    target: DataFactoryTarget
    parameters: Mapping[str, Any]
    request_id: str
    request_parameter: str
    placeholder: bool = False

    @property
    def monitor_key(self) -> str:
        """What identifies the monitor for pile-up checks: its id, else its name."""
        return self.monitor_id or self.monitor

    def summary(self) -> str:
        """One line for the ledger."""
        line = (f"start Data Factory pipeline {self.target.pipeline} in factory "
                f"{self.target.factory} for drift monitor {self.monitor} "
                f"(drift {self.coefficient:.3f} >= {self.threshold:.3f})")
        if self.placeholder:
            line += f" [placeholder target: set {ROUTES} or {DEFAULT_TARGET}]"
        return line

    def as_dict(self) -> Mapping[str, Any]:
        """Details for the ledger."""
        return {"monitor": self.monitor, "monitor_id": self.monitor_id,
                "drift_run_id": self.drift_run_id, "coefficient": self.coefficient,
                "threshold": self.threshold, "target": self.target.as_dict(),
                "parameters": dict(self.parameters), "request_id": self.request_id,
                "placeholder": self.placeholder}
