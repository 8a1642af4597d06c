"""Storm control, as pure functions over one channel's window state (kept in the ledger).

A hyperparameter sweep can fail thousands of child runs at once. Each channel sends at most
`max_messages` per window (digests included); the rest are *held*: counted per group
("failed runs in experiment X") and, once the window has closed, turned into one pending digest
that the next message (or a timer's flush) sends first. Every function takes the current state
(None when absent) and returns the new state: they run inside `Ledger.update_state`, which may
call them more than once when writers race, so they must stay pure.

State: {"window_start": s, "sent": n, "held": {label: {"count", "runs", "link"}},
        "pending": [{"id", "start", "end", "groups", "lease", "lease_until"}],
        "verdict": {"token", "kind": "send"|"hold", "window_start", "held"}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handlers.notify.message import Digest, DigestGroup

SAMPLE_RUNS = 3  # run ids a digest names per group, so people can start somewhere
SEND = "send"
HOLD = "hold"


@dataclass(frozen=True)
class StormPolicy:
    """At most `max_messages` per channel per `window_s` seconds."""

    max_messages: int
    window_s: float


def _copy(state: Mapping[str, Any]) -> dict[str, Any]:
    """A copy deep enough for the changes below (deepcopy is too slow for a storm)."""
    new = dict(state)
    new["held"] = {label: {**group, "runs": list(group.get("runs", []))}
                   for label, group in (state.get("held") or {}).items()}
    new["pending"] = [dict(item) for item in state.get("pending") or []]
    return new


def _fresh(now: float) -> dict[str, Any]:
    return {"window_start": now, "sent": 0, "held": {}, "pending": []}


def _rolled(state: Mapping[str, Any] | None, now: float, policy: StormPolicy) -> dict[str, Any]:
    """The state with a closed window replaced by a new one (its held part made pending)."""
    if state is None:
        return _fresh(now)
    new = _copy(state)
    start = float(new.get("window_start", 0.0))
    if now < start + policy.window_s:
        return new
    held = new.get("held") or {}
    pending = list(new.get("pending") or [])
    fresh = _fresh(now)
    if held:
        pending.append({"id": f"{int(start * 1000)}", "start": start,
                        "end": start + policy.window_s, "groups": held, "lease": "",
                        "lease_until": 0.0})
        fresh["sent"] = 1  # the digest is a message of the new window
    fresh["pending"] = pending
    return fresh


def admit(state: Mapping[str, Any] | None, *, now: float, policy: StormPolicy, label: str,
          run_id: str, link: str, token: str) -> dict[str, Any]:
    """Count one message: send it while the window has room, else hold it for the digest."""
    new = _rolled(state, now, policy)
    if new["sent"] < policy.max_messages:
        new["sent"] += 1
        kind = SEND
    else:
        group = new["held"].setdefault(label, {"count": 0, "runs": [], "link": link})
        group["count"] += 1
        if run_id and len(group["runs"]) < SAMPLE_RUNS:
            group["runs"].append(run_id)
        kind = HOLD
    new["verdict"] = {"token": token, "kind": kind, "window_start": new["window_start"],
                      "held": sum(g["count"] for g in new["held"].values())}
    return new


def flush(state: Mapping[str, Any] | None, *, now: float,
          policy: StormPolicy) -> dict[str, Any] | None:
    """Close a window that has ended with notifications held (None: nothing to close)."""
    if state is None or not state.get("held"):
        return None
    if now < float(state.get("window_start", 0.0)) + policy.window_s:
        return None
    return _rolled(state, now, policy)


def lease(state: Mapping[str, Any] | None, *, now: float, token: str,
          lease_s: float) -> dict[str, Any] | None:
    """Take every pending digest nobody holds (or whose holder died) for `token`."""
    if state is None:
        return None
    new = _copy(state)
    taken = False
    for item in new.get("pending") or []:
        if float(item.get("lease_until", 0.0)) <= now:
            item["lease"], item["lease_until"] = token, now + lease_s
            taken = True
    return new if taken else None


def leased_by(state: Mapping[str, Any] | None, token: str, channel: str) -> list[Digest]:
    """The pending digests `token` holds, ready to send."""
    if state is None:
        return []
    return [to_digest(item, channel) for item in state.get("pending") or []
            if item.get("lease") == token]


def pending_count(state: Mapping[str, Any] | None) -> int:
    """How many digests wait to be sent."""
    return len(state.get("pending") or []) if state else 0


def held_count(state: Mapping[str, Any] | None) -> int:
    """How many notifications the open window holds."""
    if not state:
        return 0
    return sum(int(group["count"]) for group in (state.get("held") or {}).values())


def _item_id(digest: Digest) -> str:
    return digest.id.removeprefix(f"digest-{digest.channel}-")


def complete(state: Mapping[str, Any] | None, digest: Digest) -> dict[str, Any] | None:
    """Forget a digest once it is sent."""
    if state is None:
        return None
    new = _copy(state)
    new["pending"] = [p for p in new.get("pending") or [] if p["id"] != _item_id(digest)]
    return new


def release(state: Mapping[str, Any] | None, digest: Digest,
            token: str) -> dict[str, Any] | None:
    """Give a digest back after a failed send, so the next message or flush tries again."""
    if state is None:
        return None
    new = _copy(state)
    for item in new.get("pending") or []:
        if item["id"] == _item_id(digest) and item.get("lease") == token:
            item["lease"], item["lease_until"] = "", 0.0
    return new


def to_digest(item: Mapping[str, Any], channel: str) -> Digest:
    """A pending state item as a Digest (biggest groups first)."""
    groups = sorted(((label, g) for label, g in item["groups"].items()),
                    key=lambda pair: (-int(pair[1]["count"]), pair[0]))
    return Digest(id=f"digest-{channel}-{item['id']}", channel=channel,
                  window_start_s=float(item["start"]), window_end_s=float(item["end"]),
                  groups=tuple(DigestGroup(label, int(g["count"]), tuple(g.get("runs", ())),
                                           str(g.get("link", ""))) for label, g in groups))
