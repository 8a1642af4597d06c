"""Application Insights through the Azure Monitor OpenTelemetry distro, and Azure SDK tracing.

The only module that imports the distro (`azure-monitor-opentelemetry`) or azure-core's tracing
settings; handlers/runtime/telemetry.py calls it on the first event, and only when
APPLICATIONINSIGHTS_CONNECTION_STRING is set (cold start: nothing here is imported before).
"""

from __future__ import annotations

import os
import threading

APP_INSIGHTS_CONNECTION = "APPLICATIONINSIGHTS_CONNECTION_STRING"
LOGGER = "amlevents"  # the logger (and its children) whose records become App Insights traces

_lock = threading.Lock()
_configured = False


def configure_azure_monitor(connection_string: str) -> bool:
    """Export traces, metrics and the `amlevents` logs to Application Insights, once per process.

    The distro sets the global tracer and meter providers and turns on azure-core tracing, so the
    Azure SDK calls made while an event is handled become child spans of its span. False when it
    was configured already.
    """
    global _configured
    with _lock:
        if _configured:
            return False
        from azure.monitor.opentelemetry import configure_azure_monitor as configure

        # The distro's default detectors include azure_vm, which probes the VM metadata service
        # (169.254.169.254) at start: a Function App is not a VM, so only App Service's is asked.
        os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_app_service")

        # Only our loggers: the Functions host already ships the worker's log lines, and the
        # web-framework instrumentations have nothing to trace in this app.
        configure(connection_string=connection_string, logger_name=LOGGER,
                  instrumentation_options={name: {"enabled": False} for name in (
                      "django", "fastapi", "flask", "psycopg2")})
        _configured = True
        return True


def enable_sdk_tracing() -> None:
    """Make azure-core trace every SDK call with OpenTelemetry (the global tracer provider).

    What the distro does for itself; called when telemetry is enabled without it (tests that
    export to memory).
    """
    from azure.core.settings import settings
    from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan

    settings.tracing_implementation = OpenTelemetrySpan


def disable_sdk_tracing() -> None:
    """Stop tracing Azure SDK calls (tests)."""
    from azure.core.settings import settings

    settings.tracing_implementation = None
