"""The v2 model-monitor breach a RunStatusChanged carries in its run tags (pure, no I/O).

A model monitor (`az ml schedule` with a `monitor_definition`) whose signal breaches a threshold
fails its monitoring run and tags it (azureml-assets, model_monitor_evaluate_metrics_threshold):

    azureml_modelmonitor_threshold_breached =
      The signal 'credit_card_fraud_monitor_data_drift' has failed due to one or more features
      violating metric thresholds.
      The feature names and their corresponding computed metric values violating the threshold are
      ['{"group":"age","metric_value":0.41,"metric_name":"jensen_shannon_distance","threshold_value":0.1}']

The list is written by Spark's `toJSON().collect()` inside a Python f-string (a list of JSON
strings); Microsoft's article shows it as a JSON array. Both are read: every flat `{...}` object is
parsed on its own, so neither quoting matters. Reading is lenient (a message whose signal or list
cannot be read still marks a breach), bounded (MAX_VIOLATIONS, MAX_MESSAGE_CHARS), and never raises.
https://learn.microsoft.com/azure/machine-learning/how-to-monitor-model-performance
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from handlers.events.types import MonitorBreach, Violation

MONITOR_BREACH_TAG = "azureml_modelmonitor_threshold_breached"
# What Microsoft's article filters on (StringContains): the sentence every breach message has.
BREACH_SENTENCE = "has failed due to one or more features violating metric thresholds"
# The signal names model monitoring gives its built-in signals (reference-yaml-monitor); a quoted
# name ending in one of them after `_` names its monitor before it.
BUILTIN_SIGNALS = ("feature_attribution_drift", "generation_safety_quality",
                   "generation_tokens_statistics", "prediction_drift", "model_performance",
                   "data_quality", "data_drift")
MAX_VIOLATIONS = 100  # a breach is routed on its signal; a hundred features tell people enough
MAX_MESSAGE_CHARS = 64_000  # run tag values are bounded by run history; this bounds our regexes

_SIGNAL = re.compile(r"signal\s+'(?P<name>[^\n]{1,512}?)'\s+has\s+failed", re.IGNORECASE)
_OBJECT = re.compile(r"\{[^{}]{0,4000}\}")
_FEATURE_KEYS = ("group", "feature_name", "feature")


def breach_message(run_tags: Mapping[str, str]) -> str | None:
    """The breach tag's text (key in any case), or None when the run carries none."""
    wanted = MONITOR_BREACH_TAG.lower()
    for key, value in run_tags.items():
        if key.strip().lower() == wanted and value.strip():
            return value
    return None


def parse_breach(message: str, experiment_name: str = "") -> MonitorBreach:
    """The breach a tag describes: signal, monitor (when it can be told), violations."""
    text = message[:MAX_MESSAGE_CHARS]
    found = _SIGNAL.search(text)
    signal = found["name"].strip() if found else ""
    return MonitorBreach(signal=signal, monitor=monitor_of(signal, experiment_name),
                         violations=_violations(text[found.end():] if found else text),
                         message=message)


def monitor_of(signal: str, experiment_name: str = "") -> str:
    """The monitor's name inside a signal name `{monitor}_{signal}`, or "" when not certain.

    The monitoring run's experiment is tried first, then the built-in signal names.
    """
    lowered = signal.lower()
    experiment = experiment_name.strip()
    if experiment and lowered.startswith(experiment.lower() + "_") and \
            len(signal) > len(experiment) + 1:
        return signal[: len(experiment)]
    for builtin in BUILTIN_SIGNALS:
        if lowered.endswith("_" + builtin) and len(signal) > len(builtin) + 1:
            return signal[: -len(builtin) - 1]
    return ""


def _violations(text: str) -> tuple[Violation, ...]:
    found: list[Violation] = []
    for match in _OBJECT.finditer(text):
        violation = _violation(match.group(0))
        if violation is not None:
            found.append(violation)
            if len(found) >= MAX_VIOLATIONS:
                break
    return tuple(found)


def _violation(raw: str) -> Violation | None:
    try:
        item = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(item, dict):
        return None
    lowered = {str(key).lower(): value for key, value in item.items()}
    value, threshold = _number(lowered.get("metric_value")), _number(lowered.get("threshold_value"))
    metric = lowered.get("metric_name")
    if value is None or threshold is None or not isinstance(metric, str):
        return None
    feature = next((lowered[k] for k in _FEATURE_KEYS if isinstance(lowered.get(k), str)), "")
    return Violation(feature=feature[:256], metric=metric[:128], value=value, threshold=threshold)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
