"""Specification of muxserver.handlers.echo: every byte received comes back, in order."""

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
    Send,
)
from muxserver.handlers.echo import EchoHandler
from muxserver.testing import split
from tests.handlers.support import run


def merge_sends(events: list[Event]) -> list[Event]:
    """Join adjacent Send events: the normal form in which echo is chunking-invariant."""
    merged: list[Event] = []
    for event in events:
        if isinstance(event, Send) and merged and isinstance(merged[-1], Send):
            merged[-1] = Send(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def test_each_chunk_received_is_sent_back() -> None:
    handler = EchoHandler()
    handler.receive_data(b"hello")
    assert handler.next_event() == Send(b"hello")
    assert handler.next_event() is NEED_DATA
    handler.receive_data(b" world")
    assert handler.next_event() == Send(b" world")


def test_end_of_input_follows_the_last_echo() -> None:
    assert run(EchoHandler(), [b"ab", b"cd"]) == ([Send(b"ab"), Send(b"cd"), EndOfInput()], None)


def test_there_is_never_a_request_to_answer() -> None:
    handler = EchoHandler()
    handler.receive_data(b"x")
    handler.next_event()
    assert handler.unanswered == 0
    with pytest.raises(HandlerMisuseError, match="nothing to answer"):
        handler.send(b"x")


def test_the_state_shows_unechoed_bytes_and_the_end() -> None:
    handler = EchoHandler()
    assert handler.state is HandlerState.IDLE
    handler.receive_data(b"x")
    assert handler.state is HandlerState.RECEIVING
    assert handler.buffered == 1
    handler.next_event()
    assert handler.state is HandlerState.IDLE
    handler.receive_data(b"")
    handler.next_event()
    assert handler.state is HandlerState.CLOSED


@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=20))
def test_echo_is_chunking_invariant_once_adjacent_sends_are_merged(
    data: bytes, cuts: list[int]
) -> None:
    events, error = run(EchoHandler(), split(data, cuts))
    assert error is None
    expected = [Send(data), EndOfInput()] if data else [EndOfInput()]
    assert merge_sends(events) == expected
