"""Settings for local runs: embedded defaults, then local.settings.json `Values`, then the environment.

The defaults make a fresh clone work with no settings at all (dry-run on, the documented sample
events' topic allowed, notifications to a local folder outbox, since a dry run checks the
channels as the live run would). They apply to the local tools only: the deployed app has no default
topic and refuses every event until AMLEVENTS_ALLOWED_TOPICS is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from handlers.notify.settings import OUTBOX_DIR
from handlers.runtime.settings import ALLOWED_TOPICS, DRY_RUN

SAMPLE_TOPIC = ("/subscriptions/{subscription-id}/resourceGroups/{resource-group-name}"
                "/providers/Microsoft.MachineLearningServices/workspaces/{workspace-name}")
HOST_KEY = "AMLEVENTS_HOST_KEY"
LOCAL_DEFAULTS: Mapping[str, str] = {ALLOWED_TOPICS: SAMPLE_TOPIC, DRY_RUN: "true",
                                     OUTBOX_DIR: ".amlevents/outbox"}


class LocalSettingsError(ValueError):
    """local.settings.json exists but cannot be used; names the file and the problem."""


def read_local_settings(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json file (as `func start` reads them)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LocalSettingsError(f"{path}: cannot be read as JSON: {exc}") from exc
    values = document.get("Values", {}) if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise LocalSettingsError(f"{path}: 'Values' must be an object")
    return {str(k): str(v) for k, v in values.items() if not str(k).startswith("//")}


def local_env(root: Path | str = ".", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Defaults, overlaid by local.settings.json (if present), overlaid by the environment."""
    env = dict(LOCAL_DEFAULTS)
    settings_file = Path(root) / "local.settings.json"
    if settings_file.exists():
        env.update(read_local_settings(settings_file))
    env.update(os.environ if environ is None else environ)
    return env
