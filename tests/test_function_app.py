"""function_app.py stays thin: the right functions, and no heavy SDK imported at start."""

from __future__ import annotations

import os
import subprocess
import sys

import function_app
from amlevents.host.server import load_functions

HEAVY = ("azure.ai.ml", "azureml", "azure.mgmt", "azure.identity", "azure.data.tables",
         "azure.communication", "azure.core", "azure.monitor", "opentelemetry")


def test_one_event_grid_trigger_per_concern_and_health() -> None:
    loaded = load_functions(function_app.app)
    assert set(loaded.event_grid) == {"on_model_registered", "on_drift_detected",
                                      "on_run_status", "on_ml_event"}
    assert set(loaded.http_routes) == {"health"}


def test_importing_the_app_imports_no_azure_sdk() -> None:
    code = ("import sys, function_app; "
            f"print([m for m in sys.modules if m.startswith({HEAVY!r})])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_importing_the_app_with_telemetry_configured_imports_no_opentelemetry() -> None:
    # Application Insights is configured on the first event, never at import (cold start).
    code = ("import sys, function_app; "
            f"print([m for m in sys.modules if m.startswith({HEAVY!r})])")
    env = {**os.environ, "APPLICATIONINSIGHTS_CONNECTION_STRING":
           "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
           "IngestionEndpoint=http://127.0.0.1:9/"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60, env=env)
    assert result.stdout.strip() == "[]"


def test_importing_the_app_loads_only_the_function_names() -> None:
    # The dispatcher and the concerns load on the first invocation (cold start).
    code = ("import sys, function_app; "
            "print(sorted(m for m in sys.modules if m.startswith('handlers.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "['handlers.runtime', 'handlers.runtime.function_names']"
