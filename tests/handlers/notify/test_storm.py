"""Storm control as pure state changes: windows, holding, digests, leases."""

from __future__ import annotations

from typing import Any

from handlers.notify import storm

POLICY = storm.StormPolicy(max_messages=2, window_s=60.0)


def admit(state: Any, now: float, label: str = "failed runs in experiment X",
          run: str = "r") -> dict[str, Any]:
    return storm.admit(state, now=now, policy=POLICY, label=label, run_id=run,
                       link=f"https://l/{run}", token="t")


def test_sends_up_to_the_limit_then_holds_by_group() -> None:
    state = None
    kinds = []
    for n in range(6):
        state = admit(state, float(n), "A" if n % 2 else "B", f"r{n}")
        kinds.append(state["verdict"]["kind"])
    assert kinds == ["send", "send", "hold", "hold", "hold", "hold"]
    assert state["held"] == {"A": {"count": 2, "runs": ["r3", "r5"], "link": "https://l/r3"},
                             "B": {"count": 2, "runs": ["r2", "r4"], "link": "https://l/r2"}}
    assert storm.held_count(state) == 4 and storm.pending_count(state) == 0


def test_a_closed_window_becomes_a_pending_digest_that_takes_a_slot() -> None:
    state = admit(admit(admit(None, 0.0), 1.0), 2.0)
    state = admit(state, 60.0)
    assert state["window_start"] == 60.0 and state["sent"] == 2  # digest + this message
    assert state["verdict"]["kind"] == "send"
    (pending,) = state["pending"]
    assert (pending["start"], pending["end"]) == (0.0, 60.0)
    assert admit(state, 61.0)["verdict"]["kind"] == "hold"


def test_an_empty_window_closes_without_a_digest() -> None:
    state = admit(admit(None, 0.0), 100.0)
    assert state["pending"] == [] and state["sent"] == 1


def test_lease_complete_and_release() -> None:
    state = admit(admit(admit(None, 0.0), 1.0), 2.0)
    state = storm.flush(state, now=70.0, policy=POLICY)
    assert state is not None and storm.pending_count(state) == 1
    leased = storm.lease(state, now=70.0, token="me", lease_s=30.0)
    assert storm.lease(leased, now=71.0, token="other", lease_s=30.0) is None  # held by me
    (digest,) = storm.leased_by(leased, "me", "slack")
    assert digest.id == "digest-slack-0" and digest.total == 1
    released = storm.release(leased, digest, "me")
    assert storm.lease(released, now=71.0, token="other", lease_s=30.0) is not None
    assert storm.pending_count(storm.complete(leased, digest)) == 0
    # a holder that died: its lease expires
    assert storm.lease(leased, now=101.0, token="other", lease_s=30.0) is not None


def test_flush_does_nothing_while_open_or_when_nothing_is_held() -> None:
    state = admit(admit(admit(None, 0.0), 1.0), 2.0)
    assert storm.flush(state, now=59.0, policy=POLICY) is None
    assert storm.flush(admit(None, 0.0), now=100.0, policy=POLICY) is None
    assert storm.flush(None, now=100.0, policy=POLICY) is None


def test_changes_do_not_mutate_their_input() -> None:
    state = admit(admit(admit(None, 0.0), 1.0), 2.0)
    snapshot = repr(state)
    admit(state, 3.0)
    admit(state, 90.0)
    storm.lease(storm.flush(state, now=90.0, policy=POLICY), now=90.0, token="x", lease_s=1.0)
    assert repr(state) == snapshot


def test_windows_closing_one_after_another_keep_every_pending_digest() -> None:
    # GIVEN a storm over two windows, each holding messages back, and no digest sent yet
    state = admit(admit(admit(None, 0.0), 1.0), 2.5)  # window 0: one held
    state = admit(admit(state, 60.0), 61.5)  # window 60: the digest and this one sent
    state = admit(state, 62.0)  # held
    # WHEN the second window closes too
    state = admit(state, 130.0)
    # THEN both digests are pending, each named by its window's start (ms), oldest first
    assert [(p["id"], p["start"], p["end"]) for p in state["pending"]] == [
        ("0", 0.0, 60.0), ("60000", 60.0, 120.0)]
    assert storm.pending_count(state) == 2


def test_a_hold_verdict_says_which_window_and_how_many_are_held() -> None:
    state = admit(admit(admit(None, 10.0), 11.0), 12.0)
    assert state["verdict"] == {"token": "t", "kind": "hold", "window_start": 10.0, "held": 1}
    state = admit(state, 13.0, "other group")
    assert state["verdict"] == {"token": "t", "kind": "hold", "window_start": 10.0, "held": 2}
