"""One event, several concerns: each acts once, in its own ledger row; any retry redelivers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from handlers.ledger.ledger import event_key
from handlers.outcome import Outcome
from handlers.runtime import routing
from handlers.runtime.dispatch import Dispatcher, DispatchResult
from handlers.runtime.routing import ON_MODEL_REGISTERED, concern_key, concern_of

Sample = Callable[[str], dict[str, Any]]


@pytest.fixture
def notify_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route ModelRegistered to the notify concern as well (as a CI/CD rule would add cicd)."""
    monkeypatch.setattr(routing, "EXTRA_CONCERNS", (("notify", lambda event, ctx: True),))


def test_each_concern_gets_its_own_row_and_acts_once(
        notify_too: None, make_dispatcher: Callable[..., Dispatcher], sample: Sample) -> None:
    dispatcher = make_dispatcher()
    raw = sample("model_registered")
    raw["data"]["ModelTags"] = {"deploy": "true"}
    first = dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)
    assert first.outcome is Outcome.PLANNED and len(first.also) == 1
    assert first.also[0].outcome is Outcome.SKIPPED  # notify: ModelRegistered does not notify
    key = event_key(raw["topic"], raw["eventType"], raw["id"])
    assert first.key == key and first.also[0].key == f"{key}-notify"
    assert [e.key for e in dispatcher.ledger.entries()] == [key, f"{key}-notify"]
    again = dispatcher.dispatch(raw, function=ON_MODEL_REGISTERED)
    assert again.duplicate and all(other.duplicate for other in again.also)


def test_a_retry_in_any_concern_makes_the_event_redelivered() -> None:
    done = DispatchResult("k", "id", "t", Outcome.DONE, "deployed", "")
    retry = DispatchResult("k-notify", "id", "t", Outcome.RETRY, "will retry", "")
    assert not done.should_retry
    assert replace(done, also=(retry,)).should_retry
    assert not replace(done, also=(replace(retry, outcome=Outcome.SKIPPED),)).should_retry


def test_keys_and_concerns_round_trip() -> None:
    kind = "Microsoft.MachineLearningServices.ModelRegistered"
    assert concern_key("k", "deploy", kind) == "k" and concern_of("k", kind) == "deploy"
    assert concern_key("k", "notify", kind) == "k-notify"
    assert concern_of("k-notify", kind) == "notify"
