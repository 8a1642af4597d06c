"""Bad input: hypothesis-generated payloads through the HTTP host never get a 5xx or crash it."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.events.parse import ML_EVENT_TYPES
from handlers.runtime.routing import FUNCTION_EVENT_TYPES
from tests.conftest import SAMPLE_TOPIC, load_sample
from tests.reliability.conftest import Figures, Host

EXAMPLES = 500
FUNCTIONS = sorted(FUNCTION_EVENT_TYPES)
SAMPLES = ("model_registered", "model_deployed", "run_completed", "run_status_changed",
           "dataset_drift_detected")

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=40))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=20)
huge_text = st.integers(100_000, 1_500_000).map(lambda n: "x" * n)
lone_surrogate = st.sampled_from(["\ud800", "a\udfffb", "\udbff\udc00\ud834"])


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


def deep_text(depth: int) -> bytes:
    """Valid JSON nested `depth` levels (built as text: too deep for json.dumps)."""
    return b'{"data":' * (depth // 2) + b"[" * (depth - depth // 2) + b"1" + \
        b"]" * (depth - depth // 2) + b"}" * (depth // 2)


deep = st.integers(50, 600).map(nested)  # as deep as json.dumps (building the body) allows
field_values = junk | huge_text | lone_surrogate | deep


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A documented sample with some keys dropped or replaced, or its data made junk."""
    event = load_sample(draw(st.sampled_from(SAMPLES)))
    event["id"] = draw(st.text(min_size=1, max_size=30) | st.uuids().map(str))
    for key in draw(st.lists(st.sampled_from(sorted(event)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del event[key]
        else:
            event[key] = draw(field_values)
    if isinstance(event.get("data"), dict):
        for key in draw(st.lists(st.sampled_from(sorted(event["data"]) or ["x"]), max_size=3)):
            event["data"][key] = draw(field_values)
    if draw(st.booleans()):
        event["eventType"] = draw(st.sampled_from(ML_EVENT_TYPES) | st.text(max_size=20))
    event["topic"] = draw(st.just(SAMPLE_TOPIC) | st.text(max_size=30))
    return event


def encode(value: Any) -> bytes:
    # surrogatepass: lone surrogates are valid JSON escapes but invalid UTF-8 when raw
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.binary(max_size=300),                                        # not JSON at all
    st.binary(min_size=1, max_size=50).map(lambda b: b'{"id": "' + b + b'\xff\xfe"}'),  # bad UTF-8
    junk.map(encode),                                               # any JSON value
    st.lists(junk | envelopes(), min_size=1, max_size=8).map(encode),  # arrays of mixed junk
    envelopes().map(encode),                                        # one mangled envelope
    st.lists(envelopes(), min_size=1, max_size=5).map(encode),      # a batch of them
    deep.map(encode),                                               # deep nesting
    st.integers(600, 200_000).map(deep_text),                       # deeper than json allows
)


def test_hypothesis_payloads_get_202_or_a_clear_4xx(
        start_host: Callable[..., Host], base_env: dict[str, str], figures: Figures,
        caplog: pytest.LogCaptureFixture) -> None:
    host = start_host(base_env)
    statuses: Counter[int] = Counter()
    caplog.set_level(logging.ERROR)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies, function=st.sampled_from(FUNCTIONS))
    def deliver(body: bytes, function: str) -> None:
        status, reply = host.post(function, body)
        statuses[status] += 1
        # 500: only for events azure-functions' converter cannot decode (e.g. an eventTime it
        # cannot parse): the worker fails those invocations, so Event Grid redelivers them.
        undecodable = status == 500 and all(
            f["error"].startswith("EventDecodeError: ") for f in reply.get("failed", [None]))
        assert status == 202 or 400 <= status < 500 or undecodable, (status, reply, body[:300])
        if status != 202:
            assert isinstance(reply, dict) and isinstance(reply.get("error"), str) \
                and reply["error"], reply

    deliver()
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert host.health() == 200
    assert crashes == [], [r.getMessage()[:300] for r in crashes]
    tried = sum(statuses.values())
    assert tried >= EXAMPLES * 0.9
    figures.record("bad input", f"{tried} hypothesis payloads through the HTTP host -> "
                                f"{statuses[202]} answered 202 (recorded invalid/skipped/refused), "
                                f"{tried - statuses[202] - statuses[500]} answered 4xx with a "
                                f"JSON error, {statuses[500]} answered 500 because the worker's "
                                f"converter cannot decode them ({dict(sorted(statuses.items()))}), "
                                f"{len(crashes)} "
                                "crashes; health 200 after")
