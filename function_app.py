"""amlevents: Azure ML workspace events (via Event Grid) → deployments, retraining, notifications.

Thin on purpose: each trigger hands its event to handlers.runtime.dispatch. Importing this module
loads only azure.functions and the function names: the dispatcher and the concerns load on the
first invocation, and the Azure SDKs on the first call that needs them (cold start).
"""

from __future__ import annotations

import azure.functions as func

from handlers.runtime.function_names import (
    ON_DRIFT_DETECTED,
    ON_ML_EVENT,
    ON_MODEL_REGISTERED,
    ON_RUN_STATUS,
)

app = func.FunctionApp()


@app.function_name(ON_MODEL_REGISTERED)
@app.event_grid_trigger(arg_name="event")
def on_model_registered(event: func.EventGridEvent) -> None:
    """ModelRegistered → tag-driven deployment."""
    from handlers.runtime.dispatch import handle_trigger

    handle_trigger(event, ON_MODEL_REGISTERED)


@app.function_name(ON_DRIFT_DETECTED)
@app.event_grid_trigger(arg_name="event")
def on_drift_detected(event: func.EventGridEvent) -> None:
    """DatasetDriftDetected → retraining pipeline run."""
    from handlers.runtime.dispatch import handle_trigger

    handle_trigger(event, ON_DRIFT_DETECTED)


@app.function_name(ON_RUN_STATUS)
@app.event_grid_trigger(arg_name="event")
def on_run_status(event: func.EventGridEvent) -> None:
    """RunStatusChanged / RunCompleted → notifications."""
    from handlers.runtime.dispatch import handle_trigger

    handle_trigger(event, ON_RUN_STATUS)


@app.function_name(ON_ML_EVENT)
@app.event_grid_trigger(arg_name="event")
def on_ml_event(event: func.EventGridEvent) -> None:
    """Any Azure ML event, routed by type (one subscription for everything)."""
    from handlers.runtime.dispatch import handle_trigger

    handle_trigger(event, ON_ML_EVENT)


@app.function_name("notify_digests")
@app.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False)
def notify_digests(timer: func.TimerRequest) -> None:
    """Every minute: send the storm-control digests whose window has closed."""
    from handlers.notify.handler import flush_digests
    from handlers.runtime.dispatch import default_dispatcher

    flush_digests(default_dispatcher().context())


@app.function_name("ledger_prune")
@app.timer_trigger(schedule="0 17 3 * * *", arg_name="timer", run_on_startup=False)
def ledger_prune(timer: func.TimerRequest) -> None:
    """Daily: delete ledger rows older than AMLEVENTS_LEDGER_RETENTION_DAYS (never a live claim)."""
    from handlers.runtime.maintenance import prune_ledger

    prune_ledger()


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness and settings check for probes and humans."""
    from handlers.runtime.health import health_response

    status, body = health_response()
    return func.HttpResponse(body, status_code=status, mimetype="application/json")
