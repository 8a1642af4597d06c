"""Keeping the ledger tidy: the daily prune the `ledger_prune` timer runs."""

from __future__ import annotations

import logging

from handlers.ledger.settings import retention_days
from handlers.runtime.dispatch import Dispatcher, default_dispatcher

log = logging.getLogger("amlevents")

DAY_S = 86_400.0


def prune_ledger(dispatcher: Dispatcher | None = None) -> int:
    """Delete rows not updated for the retention period (AMLEVENTS_LEDGER_RETENTION_DAYS)."""
    dispatcher = dispatcher or default_dispatcher()
    days = retention_days(dispatcher.env)
    deleted = dispatcher.ledger.prune(older_than_s=days * DAY_S)
    log.info("ledger prune: %d row(s) older than %d days deleted", deleted, days)
    return deleted
