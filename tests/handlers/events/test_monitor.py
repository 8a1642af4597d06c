"""v2 model-monitor breaches: the run tag a failed monitoring run carries, typed (pure parsing)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from handlers.events import parse as ev
from handlers.events.monitor import MAX_VIOLATIONS, monitor_of, parse_breach
from handlers.events.types import Violation

Sample = Callable[[str], dict[str, Any]]
SIGNAL = "credit_card_fraud_monitor_data_drift"
HEAD = (f"The signal '{SIGNAL}' has failed due to one or more features violating metric "
        "thresholds.\nThe feature names and their corresponding computed metric values violating "
        "the threshold are \n")
AGE = {"group": "age", "metric_value": 0.41, "metric_name": "jensen_shannon_distance",
       "threshold_value": 0.1}
ACCURACY = {"group": "", "metric_value": 0.71, "metric_name": "accuracy", "threshold_value": 0.8}


def status_event(sample: Sample, tags: dict[str, Any], *, status: str = "Failed",
                 tags_key: str = "runTags", experiment: str = "credit_card_fraud_monitor"
                 ) -> ev.RunStatusChanged:
    raw = sample("model_monitor_breach")
    data = raw["data"]
    del data["runTags"]
    data[tags_key], data["runStatus"], data["experimentName"] = tags, status, experiment
    event = ev.parse_event(raw)
    assert isinstance(event, ev.RunStatusChanged)
    return event


def test_the_sample_breach_is_typed(sample: Sample) -> None:
    event = ev.parse_event(sample("model_monitor_breach"))
    assert isinstance(event, ev.RunStatusChanged) and event.is_monitor_breach
    breach = event.monitor_breach
    assert breach is not None
    assert (breach.signal, breach.monitor) == (SIGNAL, "credit_card_fraud_monitor")
    assert breach.features == ("TransactionAmount", "MerchantCategory")
    assert breach.metrics == ("jensen_shannon_distance", "pearsons_chi_squared_test")
    assert breach.violations[0] == Violation("TransactionAmount", "jensen_shannon_distance", 0.41,
                                             0.1)
    assert [v.describe() for v in breach.violations] == [
        "TransactionAmount: jensen_shannon_distance 0.41 > 0.1",
        "MerchantCategory: pearsons_chi_squared_test 0.012 < 0.05"]  # lower is the breach there


def test_the_list_is_read_as_the_monitor_writes_it_and_as_the_article_shows_it(
        sample: Sample) -> None:
    # azureml-assets: a Python list of JSON strings (Spark's toJSON().collect() in an f-string)
    written = HEAD + repr([json.dumps(AGE), json.dumps(ACCURACY)]) + "\n"
    # Microsoft's article: a JSON array
    shown = HEAD + json.dumps([AGE, ACCURACY])
    for message in (written, shown):
        breach = parse_breach(message)
        assert [(v.feature, v.metric, v.value, v.threshold) for v in breach.violations] == [
            ("age", "jensen_shannon_distance", 0.41, 0.1), ("", "accuracy", 0.71, 0.8)]
        assert breach.features == ("age",)  # a model-level metric names no feature


@pytest.mark.parametrize("tags_key", ["runTags", "RunTags", "RUNTAGS"])
def test_the_tag_is_found_in_any_casing(sample: Sample, tags_key: str) -> None:
    for tag in ("azureml_modelmonitor_threshold_breached", "AzureML_ModelMonitor_Threshold_Breached"):
        event = status_event(sample, {tag: HEAD + json.dumps([AGE])}, tags_key=tags_key)
        assert event.monitor_breach is not None and event.monitor_breach.signal == SIGNAL


def test_runs_without_the_tag_are_not_breaches(sample: Sample) -> None:
    plain = ev.parse_event(sample("run_status_changed"))
    assert isinstance(plain, ev.RunStatusChanged)
    assert plain.monitor_breach is None and not plain.is_monitor_breach
    assert status_event(sample, {"azureml_modelmonitor_threshold_breached": "  "}).monitor_breach \
        is None


def test_the_tag_on_a_run_that_is_not_failed_is_not_a_breach(sample: Sample) -> None:
    for status in ("Completed", "Running", "failed"):
        event = status_event(sample, {"azureml_modelmonitor_threshold_breached": HEAD}, status=status)
        assert event.monitor_breach is not None
        assert event.is_monitor_breach is (status == "failed")


def test_the_monitor_is_told_apart_when_it_can_be() -> None:
    assert monitor_of("fraud_monitor_data_drift", "fraud_monitor") == "fraud_monitor"
    assert monitor_of("fraud_monitor_custom_signal", "fraud_monitor") == "fraud_monitor"
    assert monitor_of("fraud_monitor_feature_attribution_drift") == "fraud_monitor"
    assert monitor_of("fraud_monitor_prediction_drift", "some-experiment") == "fraud_monitor"
    assert monitor_of("my_custom_signal", "other") == ""
    assert monitor_of("data_drift") == "" and monitor_of("") == ""


@pytest.mark.parametrize("message", [
    "", "no signal here", "The signal '' has failed", HEAD + "[not json at all",
    HEAD + '[{"group": "x", "metric_value": "NaN", "metric_name": "m", "threshold_value": 1}]',
    HEAD + '[{"group": "x", "metric_value": true, "metric_name": "m", "threshold_value": 1}]',
    HEAD + '[{"group": "x", "metric_value": 1}]', "{" * 10_000 + "}" * 10_000,
])
def test_reading_is_lenient_and_never_raises(message: str) -> None:
    breach = parse_breach(message)
    assert breach.violations == () and breach.message == message


def test_the_violations_kept_are_bounded() -> None:
    breach = parse_breach(HEAD + json.dumps([AGE] * (MAX_VIOLATIONS + 50)))
    assert len(breach.violations) == MAX_VIOLATIONS and breach.features == ("age",)


def test_a_cloud_event_breach_is_the_same_breach(sample: Sample) -> None:
    raw = sample("model_monitor_breach")
    cloud = {"specversion": "1.0", "id": raw["id"], "source": raw["topic"],
             "type": raw["eventType"], "subject": raw["subject"], "time": raw["eventTime"],
             "data": raw["data"]}
    grid_event, cloud_event = ev.parse_event(raw), ev.parse_event(cloud)
    assert isinstance(grid_event, ev.RunStatusChanged)
    assert isinstance(cloud_event, ev.RunStatusChanged)
    assert cloud_event.monitor_breach == grid_event.monitor_breach
