"""The app's function names: a module of its own so function_app.py can register the triggers
without importing the dispatcher and every concern (they load on the first event: cold start)."""

from __future__ import annotations

ON_MODEL_REGISTERED = "on_model_registered"
ON_DRIFT_DETECTED = "on_drift_detected"
ON_RUN_STATUS = "on_run_status"
ON_ML_EVENT = "on_ml_event"
