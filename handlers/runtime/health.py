"""The health function's answer: are the settings valid and is the ledger reachable."""

from __future__ import annotations

import json

from handlers.errors import AmlEventsError
from handlers.runtime.dispatch import default_dispatcher


def health_response() -> tuple[int, str]:
    """(HTTP status, JSON body); 503 names what is wrong, never a secret."""
    dispatcher = default_dispatcher()
    try:
        ctx = dispatcher.context()
        ctx.ledger.entries(limit=1)
    except AmlEventsError as exc:
        return 503, json.dumps({"status": "unhealthy", "error": str(exc)})
    except Exception as exc:  # noqa: BLE001 - a health probe reports, it does not crash
        return 503, json.dumps({"status": "unhealthy", "error": type(exc).__name__})
    return 200, json.dumps({"status": "ok", "dry_run": ctx.settings.dry_run,
                            "ledger": ctx.settings.ledger_backend,
                            "allowed_topics": len(ctx.settings.allowed_topics)})
