"""The health function's answer: is every setting of every concern valid, is the ledger reachable."""

from __future__ import annotations

import json

from handlers.errors import AmlEventsError
from handlers.ledger.settings import LedgerSettings
from handlers.runtime.dispatch import default_dispatcher
from handlers.runtime.settings import validate_all


def health_response() -> tuple[int, str]:
    """(HTTP status, JSON body); 503 names each invalid setting, never its value or a secret."""
    dispatcher = default_dispatcher()
    problems = [(name, _without_value(message, dispatcher.env.get(name, "")))
                for name, message in validate_all(dispatcher.cache)]
    if problems:
        return 503, json.dumps({
            "status": "unhealthy",
            "settings": [{"setting": name, "problem": message} for name, message in problems],
            "error": "; ".join(f"setting {name}: {message}" for name, message in problems)})
    try:
        ctx = dispatcher.context()
        ctx.ledger.entries(limit=1)
    except AmlEventsError as exc:
        return 503, json.dumps({"status": "unhealthy", "error": str(exc)})
    except Exception as exc:  # noqa: BLE001 - a health probe reports, it does not crash
        return 503, json.dumps({"status": "unhealthy", "error": type(exc).__name__})
    settings = ctx.settings
    return 200, json.dumps({"status": "ok", "dry_run": settings.dry_run,
                            "dry_run_by_concern": dict(settings.dry_run_by_concern),
                            "ledger": ctx.settings_of(LedgerSettings.from_mapping).backend,
                            "allowed_topics": len(settings.allowed_topics)})


def _without_value(message: str, value: str) -> str:
    """The problem without the setting's value: health is anonymous, values may be secrets."""
    value = value.strip()
    if not value:
        return message
    for shown in (repr(value), value):
        message = message.replace(f"got {shown}", "got another value")
    return message.replace(value, "…") if len(value) >= 6 else message
