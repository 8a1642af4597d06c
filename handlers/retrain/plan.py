"""What retraining decides: one retraining run for one drift monitor or one model-monitor breach."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.events.types import Violation
from handlers.retrain.settings import (
    DEFAULT_TARGET,
    ROUTES,
    BatchEndpointTarget,
    ComponentTarget,
    DataFactoryTarget,
    RetrainTarget,
)

DRIFT_SOURCE = "DatasetDriftDetected"
BREACH_SOURCE = "model monitor breach"
_FEATURES_SHOWN = 5


@dataclass(frozen=True)
class BreachFacts:
    """The v2 model-monitor breach a plan acts on: what breached, and where to confirm it."""

    signal: str
    monitor: str
    monitoring_run_id: str
    topic: str  # the workspace whose monitoring run failed (the event's topic)
    violations: tuple[Violation, ...]

    @property
    def features(self) -> tuple[str, ...]:
        """The features that breached, each once."""
        return tuple(dict.fromkeys(v.feature for v in self.violations if v.feature))

    def describe(self) -> str:
        """'signal S (features a, b, c, +2 more)'."""
        features = self.features
        shown = ", ".join(features[:_FEATURES_SHOWN])
        if len(features) > _FEATURES_SHOWN:
            shown += f", +{len(features) - _FEATURES_SHOWN} more"
        return f"signal {self.signal}" + (f" (features {shown})" if shown else "")

    def as_dict(self) -> dict[str, Any]:
        """For the ledger's detail."""
        return {"signal": self.signal, "monitor": self.monitor,
                "monitoring_run_id": self.monitoring_run_id, "features": list(self.features),
                "violations": [v.describe() for v in self.violations]}


@dataclass(frozen=True)
class RetrainPlan:
    """Start one retraining run (Data Factory pipeline, Azure ML pipeline job or batch job).

    `coefficient`/`threshold` are v1 drift's; a breach carries `breach` instead (and a threshold
    only when the operator set one for its signal). `job_name` is the Azure ML job's name, derived
    from the event: a redelivery finds the job it already submitted by that name.
    """

    monitor: str
    monitor_id: str
    drift_run_id: str
    coefficient: float | None
    threshold: float | None
    target: RetrainTarget
    parameters: Mapping[str, Any]
    request_id: str
    request_parameter: str
    placeholder: bool = False
    breach: BreachFacts | None = None
    event_id: str = ""
    job_name: str = ""
    experiment: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    confirmation: str = ""  # set by the live adapter when it checked the breach

    @property
    def monitor_key(self) -> str:
        """What identifies the monitor for pile-up checks and coalescing.

        v1: the drift monitor's id, else its name (unchanged: existing ledger state keeps
        working). A breach: its workspace and monitor (else signal), so the signals of one
        monitor share one run.
        """
        if self.breach is not None:
            return f"breach:{self.breach.topic.strip().lower()}/{self.monitor.strip().lower()}"
        return self.monitor_id or self.monitor

    @property
    def source(self) -> str:
        """Which event source of drift this plan acts on."""
        return BREACH_SOURCE if self.breach is not None else DRIFT_SOURCE

    def reason(self) -> str:
        """Why it retrains: 'drift monitor M (drift 0.835 >= 0.300)' or 'model monitor breach …'."""
        if self.breach is not None:
            return f"model monitor breach of {self.breach.describe()}"
        line = f"drift monitor {self.monitor}"
        if self.coefficient is not None and self.threshold is not None:
            line += f" (drift {self.coefficient:.3f} >= {self.threshold:.3f})"
        return line

    def summary(self) -> str:
        """One line for the ledger; a breach leads with what breached (the ledger table shows
        the line's start)."""
        target = self.target
        if isinstance(target, ComponentTarget):
            action = (f"submit Azure ML pipeline job {self.job_name} from component "
                      f"{target.component}:{target.version or 'latest'} in workspace "
                      f"{target.workspace}")
        elif isinstance(target, BatchEndpointTarget):
            action = (f"invoke Azure ML batch endpoint {target.endpoint} in workspace "
                      f"{target.workspace} (job {self.job_name})")
        else:
            action = f"start Data Factory pipeline {target.pipeline} in factory {target.factory}"
        if self.breach is not None:
            line = f"retrain on breach of {self.breach.describe()}: {action}"
        else:
            line = f"{action} for {self.reason()}"
        if self.placeholder:
            line += f" [placeholder target: set {ROUTES} or {DEFAULT_TARGET}]"
        return line

    def as_dict(self) -> Mapping[str, Any]:
        """Details for the ledger."""
        details: dict[str, Any] = {
            "monitor": self.monitor, "monitor_id": self.monitor_id,
            "drift_run_id": self.drift_run_id, "coefficient": self.coefficient,
            "threshold": self.threshold, "target": self.target.as_dict(),
            "parameters": dict(self.parameters), "request_id": self.request_id,
            "placeholder": self.placeholder}
        if self.breach is not None:
            details.update(source=self.source, breach=self.breach.as_dict())
        if not isinstance(self.target, DataFactoryTarget):
            details.update(job_name=self.job_name, experiment=self.experiment)
        if self.confirmation:
            details["breach_confirmation"] = self.confirmation
        return details
