"""Storm control as pure state changes: windows, holding, digests, leases."""

from __future__ import annotations

import copy
from typing import Any

from handlers.notify import storm
from handlers.notify.message import Digest, DigestGroup

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


# --- whole states: every function's result compared as stored in the ledger ---------------------

def held_state() -> dict[str, Any]:
    """Window 0 with one sent... two sent, then B held once and A held twice (A first)."""
    state = admit(admit(None, 0.0, "A", "r0"), 1.0, "A", "r1")
    state = admit(admit(state, 2.0, "B", "rb"), 3.0, "A", "ra1")
    return admit(state, 4.0, "A", "ra2")


def test_the_first_message_opens_a_window_whole() -> None:
    assert admit(None, 5.0) == {
        "window_start": 5.0, "sent": 1, "held": {}, "pending": [],
        "verdict": {"token": "t", "kind": "send", "window_start": 5.0, "held": 0}}


def test_a_group_keeps_three_sample_runs_and_skips_empty_run_ids() -> None:
    state = admit(admit(None, 0.0), 1.0)
    for n, run in enumerate(["", "r1", "r2", "r3", "r4"]):
        state = admit(state, 2.0 + n, run=run)
    assert state["held"] == {"failed runs in experiment X": {
        "count": 5, "runs": ["r1", "r2", "r3"], "link": "https://l/"}}
    assert storm.held_count(state) == 5


def test_a_window_closes_exactly_at_its_end() -> None:
    state = held_state()
    still_open = admit(state, 59.999, "C", "rc")
    assert still_open["window_start"] == 0.0 and still_open["verdict"]["kind"] == "hold"
    closed = admit(state, 60.0, "C", "rc")
    assert closed == {
        "window_start": 60.0, "sent": 2, "held": {},
        "pending": [{"id": "0", "start": 0.0, "end": 60.0, "lease": "", "lease_until": 0.0,
                     "groups": {"B": {"count": 1, "runs": ["rb"], "link": "https://l/rb"},
                                "A": {"count": 2, "runs": ["ra1", "ra2"],
                                      "link": "https://l/ra1"}}}],
        "verdict": {"token": "t", "kind": "send", "window_start": 60.0, "held": 0}}


def test_a_pending_digest_is_named_by_its_window_start_in_milliseconds() -> None:
    state = admit(admit(admit(None, 1.2345), 2.0), 3.0)
    (pending,) = storm.flush(state, now=100.0, policy=POLICY)["pending"]  # type: ignore[index]
    assert (pending["id"], pending["start"], pending["end"]) == ("1234", 1.2345, 61.2345)


def test_flush_closes_a_window_exactly_at_its_end_whole() -> None:
    state = held_state()
    assert storm.flush(state, now=59.999, policy=POLICY) is None
    assert storm.flush(state, now=60.0, policy=POLICY) == {
        "window_start": 60.0, "sent": 1, "held": {},
        "pending": [{"id": "0", "start": 0.0, "end": 60.0, "lease": "", "lease_until": 0.0,
                     "groups": state["held"]}]}  # the last verdict is the closed window's
    assert storm.flush({"held": {"A": {"count": 1}}}, now=60.0, policy=POLICY) is not None


def test_a_lease_takes_every_free_pending_digest_whole() -> None:
    state = storm.flush(held_state(), now=60.0, policy=POLICY)
    leased = storm.lease(state, now=61.0, token="me", lease_s=30.0)
    assert leased is not None
    assert [(p["lease"], p["lease_until"]) for p in leased["pending"]] == [("me", 91.0)]
    assert {k: v for k, v in leased.items() if k != "pending"} == {
        k: v for k, v in state.items() if k != "pending"}  # type: ignore[union-attr]
    # a lease is held up to its end, and free from then on
    assert storm.lease(leased, now=90.999, token="other", lease_s=30.0) is None
    taken = storm.lease(leased, now=91.0, token="other", lease_s=5.0)
    assert taken is not None and [(p["lease"], p["lease_until"]) for p in taken["pending"]] == [
        ("other", 96.0)]
    assert storm.lease(None, now=0.0, token="me", lease_s=1.0) is None
    assert storm.lease({"window_start": 0.0}, now=0.0, token="me", lease_s=1.0) is None


def two_pending() -> dict[str, Any]:
    """Two closed windows' digests, the first leased by "me", the second by "other"."""
    state = admit(admit(admit(None, 0.0, "A", "r0"), 1.0), 2.0, "A", "ra")
    state = admit(admit(admit(state, 60.0), 61.0), 62.0, "B", "rb")  # digest 0 pending; B held
    state = admit(state, 130.0)  # digest 60000 pending too
    state["pending"][0].update(lease="me", lease_until=200.0)
    state["pending"][1].update(lease="other", lease_until=200.0)
    return state


def test_leased_by_gives_only_the_token_s_digests_whole() -> None:
    state = two_pending()
    assert storm.leased_by(state, "me", "teams") == [Digest(
        id="digest-teams-0", channel="teams", window_start_s=0.0, window_end_s=60.0,
        groups=(DigestGroup("A", 1, ("ra",), "https://l/ra"),))]
    assert [d.id for d in storm.leased_by(state, "other", "slack")] == ["digest-slack-60000"]
    assert storm.leased_by(state, "nobody", "slack") == []
    assert storm.leased_by(None, "me", "slack") == []


def test_complete_forgets_only_the_digest_sent() -> None:
    state = two_pending()
    (digest,) = storm.leased_by(state, "me", "teams")
    done = storm.complete(state, digest)
    assert done is not None and [p["id"] for p in done["pending"]] == ["60000"]
    assert done["pending"][0] == state["pending"][1]
    assert storm.complete(None, digest) is None


def test_release_frees_only_the_token_s_own_digest() -> None:
    state = two_pending()
    (mine,) = storm.leased_by(state, "me", "teams")
    (theirs,) = storm.leased_by(state, "other", "teams")
    released = storm.release(state, mine, "me")
    assert released is not None
    assert [(p["id"], p["lease"], p["lease_until"]) for p in released["pending"]] == [
        ("0", "", 0.0), ("60000", "other", 200.0)]
    # another holder's digest stays leased
    kept = storm.release(state, theirs, "me")
    assert kept is not None and kept["pending"] == state["pending"]
    assert storm.release(None, mine, "me") is None


def test_a_digest_lists_the_biggest_groups_first_then_by_label() -> None:
    item = {"id": "42", "start": 10, "end": 70, "groups": {
        "b": {"count": 2, "runs": ["r1"], "link": "https://l/b"},
        "a": {"count": 2, "runs": [], "link": "https://l/a"},
        "c": {"count": 5}}}
    assert storm.to_digest(item, "webhook") == Digest(
        id="digest-webhook-42", channel="webhook", window_start_s=10.0, window_end_s=70.0,
        groups=(DigestGroup("c", 5, (), ""), DigestGroup("a", 2, (), "https://l/a"),
                DigestGroup("b", 2, ("r1",), "https://l/b")))


def test_counts_of_absent_or_empty_states_are_zero() -> None:
    assert storm.pending_count(None) == 0 and storm.pending_count({}) == 0
    assert storm.pending_count({"pending": None}) == 0
    assert storm.held_count(None) == 0 and storm.held_count({}) == 0
    assert storm.held_count({"held": None}) == 0
    assert storm.held_count({"held": {"a": {"count": "2"}, "b": {"count": 3}}}) == 5


def test_a_copy_is_deep_enough_to_leave_the_input_alone() -> None:
    # GIVEN a stored state whose held group has room for more sample runs
    state = admit(admit(admit(None, 0.0), 1.0), 2.0, run="r1")
    state["pending"] = [{"id": "x", "start": 0.0, "end": 1.0, "groups": {}, "lease": "",
                         "lease_until": 0.0}]
    snapshot = copy.deepcopy(state)
    # WHEN more are held and the pending digest leased
    admit(state, 3.0, run="r2")
    storm.lease(state, now=5.0, token="me", lease_s=1.0)
    # THEN the stored state is as it was
    assert state == snapshot
