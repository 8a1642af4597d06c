"""CoreSettings: the allow-list, dry run per concern, the claim timeout (defaults and limits)."""

from __future__ import annotations

import time

import pytest

from handlers.errors import SettingError
from handlers.ledger.ledger import EventFacts
from handlers.runtime.dispatch import Dispatcher
from handlers.runtime.settings import CLAIM_TIMEOUT_S, CoreSettings


def test_the_default_claim_timeout_is_ten_minutes() -> None:
    assert CoreSettings.from_mapping({}).claim_timeout_s == 600.0


def test_a_claim_held_by_a_dead_worker_is_taken_over_after_the_default_timeout(
        base_env: dict[str, str]) -> None:
    # GIVEN a delivery that claimed an event and never finished (its worker died)
    now = [time.time()]
    dispatcher = Dispatcher(base_env, clock=lambda: now[0])
    ledger = dispatcher.context().ledger
    facts = EventFacts(key="k", event_id="e", event_type="t", subject="s", topic="/t",
                       function="on_ml_event")
    assert ledger.claim(facts).status == "claimed"
    # THEN it is busy for 600 s, and taken over after
    now[0] += 599
    assert ledger.claim(facts).status == "busy"
    now[0] += 2
    assert ledger.claim(facts).status == "claimed"


@pytest.mark.parametrize("value", ["0", "0.5", "86401", "ten", "-5"])
def test_a_claim_timeout_out_of_range_is_named(value: str) -> None:
    with pytest.raises(SettingError) as caught:
        CoreSettings.from_mapping({CLAIM_TIMEOUT_S: value})
    assert caught.value.setting == CLAIM_TIMEOUT_S
