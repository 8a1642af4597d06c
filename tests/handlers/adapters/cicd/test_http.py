"""How the CI/CD services' HTTP answers are read: JSON or the start of the text, headers' names
lower-cased, undecodable bytes replaced, an oversized answer refused, errors named briefly."""

from __future__ import annotations

import io
import ssl

import pytest

from handlers.adapters.cicd import http
from handlers.adapters.cicd.http import MAX_ANSWER_BYTES, Answer
from handlers.errors import RetryableError


def test_a_json_answer_is_parsed_and_header_names_lower_cased() -> None:
    answer = http._answer(201, {"Content-Type": "application/json", "X-RateLimit-Remaining": "9"},
                          io.BytesIO(b'{"id": 7, "name": "run"}'))
    assert answer == Answer(201, {"content-type": "application/json",
                                  "x-ratelimit-remaining": "9"}, {"id": 7, "name": "run"}, "")


def test_no_body_and_no_stream_are_an_empty_answer() -> None:
    assert http._answer(204, None, None) == Answer(204, {}, None, "")
    assert http._answer(204, {}, io.BytesIO(b"  \n ")) == Answer(204, {}, None, "")


def test_a_body_that_is_not_json_keeps_its_first_300_characters_on_one_line() -> None:
    page = b"<html>\n  <body>Sign   in</body>\n</html>" + b" x" * 400
    answer = http._answer(200, {}, io.BytesIO(page))
    expected = " ".join(page.decode().split())[:300]
    assert answer == Answer(200, {}, None, expected)
    assert answer.text.startswith("<html> <body>Sign in</body> </html> x x") and len(answer.text) == 300


def test_bytes_that_are_not_utf8_are_replaced_not_fatal() -> None:
    # a proxy's error page in Latin-1: read, with the replacement character where bytes break
    answer = http._answer(502, {}, io.BytesIO(b"Bad gateway \xff\xfe here"))
    assert answer == Answer(502, {}, None, "Bad gateway \ufffd\ufffd here")
    assert http._answer(200, {}, io.BytesIO(b'{"a": "\xff"}')).body == {"a": "\ufffd"}


def test_an_answer_over_the_limit_is_refused_at_the_limit_plus_one() -> None:
    class Stream:
        asked: list[int] = []

        def read(self, size: int) -> bytes:
            self.asked.append(size)
            return b" " * size

    stream = Stream()
    with pytest.raises(RetryableError) as caught:
        http._answer(200, {}, stream)
    assert str(caught.value) == f"an answer over {MAX_ANSWER_BYTES} bytes (HTTP 200)"
    assert stream.asked == [MAX_ANSWER_BYTES + 1]
    # exactly the limit is read whole (blank here: no body)
    assert http._answer(200, {}, io.BytesIO(b" " * MAX_ANSWER_BYTES)) == Answer(200, {}, None, "")


@pytest.mark.parametrize(("status", "ok"), [(199, False), (200, True), (204, True), (299, True),
                                            (300, False), (404, False)])
def test_ok_means_2xx(status: int, ok: bool) -> None:
    assert Answer(status).ok is ok


def test_reasons_name_the_error_type_and_the_os_message_only() -> None:
    assert http._reason(ConnectionRefusedError(111, "Connection refused")) == \
        "ConnectionRefusedError: Connection refused"
    assert http._reason(TimeoutError()) == "TimeoutError"
    assert http._reason(ssl.SSLError("bad handshake")) == "SSLError"
    assert http._reason("x" * 300) == "x" * 200


def test_an_error_that_is_not_an_os_error_is_named_by_its_type() -> None:
    # e.g. http.client.IncompleteRead: no strerror to read
    assert http._reason(ValueError("half an answer")) == "ValueError"
    assert http._reason(OSError()) == "OSError"
