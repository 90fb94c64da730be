"""Specification of muxserver.handlers.lines: one request per line, one line per answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxserver.handlers.base import (
    NEED_DATA,
    EndOfInput,
    Event,
    HandlerMisuseError,
    HandlerState,
    ProtocolError,
)
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.testing import split
from tests.handlers.support import run


def lines(*items: bytes) -> list[Event]:
    return [LineRequest(item) for item in items]


def test_each_line_becomes_a_request_without_its_delimiter_or_carriage_return() -> None:
    assert run(LineHandler(), [b"hello\r\nworld\n\n"]) == (
        [*lines(b"hello", b"world", b""), EndOfInput()],
        None,
    )


def test_the_delimiter_is_configurable_and_carriage_returns_can_be_kept() -> None:
    handler = LineHandler(delimiter=b"\r\n", strip_cr=False)
    assert run(handler, [b"a\nb\r\r\n"]) == ([*lines(b"a\nb\r"), EndOfInput()], None)


def test_a_trailing_partial_line_is_the_last_request_at_end_of_input() -> None:
    assert run(LineHandler(), [b"one\ntwo\r"]) == ([*lines(b"one", b"two"), EndOfInput()], None)


def test_after_end_of_input_there_are_no_more_events_and_no_more_input() -> None:
    handler = LineHandler()
    handler.receive_data(b"")
    assert handler.next_event() == EndOfInput()
    assert handler.next_event() is NEED_DATA
    assert handler.state is HandlerState.CLOSED
    with pytest.raises(HandlerMisuseError):
        handler.receive_data(b"late\n")


def test_an_over_long_line_is_a_protocol_error_with_a_short_reply() -> None:
    handler = LineHandler(max_line_length=4)
    handler.receive_data(b"1234\n12345")
    assert handler.next_event() == LineRequest(b"1234")
    with pytest.raises(ProtocolError) as caught:
        handler.next_event()
    assert caught.value.reply == b"line too long\n"


def test_the_protocol_error_is_sticky_and_later_input_is_discarded() -> None:
    handler = LineHandler(max_line_length=2, too_long_reply=b"-ERR line too long\r\n")
    handler.receive_data(b"abc")
    with pytest.raises(ProtocolError) as first:
        handler.next_event()
    handler.receive_data(b"more")
    with pytest.raises(ProtocolError) as again:
        handler.next_event()
    assert again.value is first.value
    assert first.value.reply == b"-ERR line too long\r\n"
    assert handler.state is HandlerState.ERROR
    assert handler.buffered == 0


def test_an_over_long_line_can_close_without_a_reply() -> None:
    outcome = run(LineHandler(max_line_length=1, too_long_reply=None), [b"ab"])
    assert outcome == ([], ("line longer than 1 bytes", None))


def test_an_over_long_partial_line_at_end_of_input_is_refused_too() -> None:
    outcome = run(LineHandler(max_line_length=3, delimiter=b"\r\n"), [b"abcd"])
    assert outcome[1] is not None


def test_answers_are_lines_and_none_writes_nothing() -> None:
    handler = LineHandler(delimiter=b"\r\n")
    handler.receive_data(b"a\r\nb\r\nc\r\nd\r\n")
    for _ in range(4):
        handler.next_event()
    assert handler.send(b"bytes") == b"bytes\r\n"
    assert handler.send("caf\u00e9") == b"caf\xc3\xa9\r\n"
    assert handler.send(None) == b""
    assert handler.send(["one", b"two"]) == b"one\r\ntwo\r\n"
    with pytest.raises(HandlerMisuseError, match="no unanswered request"):
        handler.send(b"extra")


def test_pushed_messages_are_lines_that_answer_nothing() -> None:
    handler = LineHandler()
    assert handler.encode_push("news") == b"news\n"
    assert handler.unanswered == 0


def test_an_answer_of_the_wrong_type_is_the_callers_mistake() -> None:
    handler = LineHandler()
    handler.receive_data(b"q\n")
    handler.next_event()
    with pytest.raises(HandlerMisuseError, match="bytes, str, None"):
        handler.send(42)


def test_the_state_follows_the_connection() -> None:
    handler = LineHandler()
    assert handler.state is HandlerState.IDLE
    handler.receive_data(b"par")
    assert handler.state is HandlerState.RECEIVING
    handler.receive_data(b"t\n")
    handler.next_event()
    assert handler.state is HandlerState.WAITING
    handler.send(b"ok")
    assert handler.state is HandlerState.IDLE


def test_bad_configuration_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="non-empty delimiter"):
        LineHandler(delimiter=b"")
    with pytest.raises(ValueError, match="max_line_length"):
        LineHandler(max_line_length=-1)


line_streams = st.lists(
    st.sampled_from([b"GET x", b"", b"\r", b"a\rb", b"long line here", b"\n", b"\r\n", b"z"]),
    max_size=12,
).map(b"".join)


@given(
    data=line_streams,
    cuts=st.lists(st.integers(0, 200), max_size=20),
    max_len=st.integers(0, 16),
    delimiter=st.sampled_from([b"\n", b"\r\n"]),
)
def test_events_and_limit_errors_do_not_depend_on_chunking(
    data: bytes, cuts: list[int], max_len: int, delimiter: bytes
) -> None:
    def make() -> LineHandler:
        return LineHandler(max_line_length=max_len, delimiter=delimiter)

    expected = run(make(), [data])
    assert run(make(), split(data, cuts)) == expected
    assert run(make(), [data[i : i + 1] for i in range(len(data))]) == expected


@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=20))
def test_random_input_raises_only_protocol_errors_and_stays_within_the_limit(
    data: bytes, cuts: list[int]
) -> None:
    handler = LineHandler(max_line_length=10, delimiter=b"\r\n")
    try:
        for chunk in split(data, cuts):
            if chunk:
                handler.receive_data(chunk)
            while handler.next_event() is not NEED_DATA:
                pass
            assert handler.buffered <= 10 + 1
    except ProtocolError:
        pass
