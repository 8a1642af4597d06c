"""The exception tree (handlers/errors.py): each error names what is at fault."""

from __future__ import annotations

from handlers.errors import (
    AmlEventsError,
    InvalidEvent,
    PermanentError,
    PolicyRefused,
    RetryableError,
    RetryLater,
    SettingError,
)


def test_an_invalid_event_names_its_first_field_and_carries_every_problem() -> None:
    one = InvalidEvent("data.runId", "is required")
    assert (one.field, one.message, one.problems) == (
        "data.runId", "is required", (("data.runId", "is required"),))
    assert str(one) == "data.runId: is required"
    many = InvalidEvent.from_problems([("subject", "is required"), ("data", "must be an object")])
    assert (many.field, many.message) == ("subject", "is required")
    assert many.problems == (("subject", "is required"), ("data", "must be an object"))
    assert str(many) == "subject: is required; data: must be an object"


def test_a_setting_error_names_every_setting_at_fault() -> None:
    error = SettingError("A", "is required but not set", problems=(
        ("A", "is required but not set"), ("B", "must be a number, got 'x'")))
    assert (error.setting, error.message) == ("A", "is required but not set")
    assert str(error) == ("setting A: is required but not set; "
                          "setting B: must be a number, got 'x'")
    alone = SettingError("C", "must be true or false")
    assert alone.problems == (("C", "must be true or false"),)
    assert str(alone) == "setting C: must be true or false"


def test_a_refusal_names_the_tag_and_a_retry_keeps_its_delay() -> None:
    refused = PolicyRefused("tags.deploy_instance_count", "exceeds the maximum 4")
    assert (refused.field, refused.message, str(refused)) == (
        "tags.deploy_instance_count", "exceeds the maximum 4",
        "tags.deploy_instance_count: exceeds the maximum 4")
    throttled = RetryableError("HTTP 429", retry_after_s=30.0)
    assert (str(throttled), throttled.retry_after_s) == ("HTTP 429", 30.0)
    assert RetryableError("timeout").retry_after_s is None
    assert isinstance(RetryLater("again"), RetryableError)
    assert all(issubclass(kind, AmlEventsError) for kind in (
        InvalidEvent, SettingError, PolicyRefused, PermanentError, RetryableError))
