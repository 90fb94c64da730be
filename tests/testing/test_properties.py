"""Tests for muxserver.testing.properties: the oracles pass good handlers and catch bad ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from muxserver.handlers.base import (
    NEED_DATA,
    Close,
    EndOfInput,
    Event,
    NeedData,
    Paused,
    PeerUpdate,
    ProtocolError,
    Send,
)
from muxserver.testing import (
    ContractViolationError,
    assert_chunking_invariant,
    check_contract,
    check_grammar,
    check_only_protocol_errors,
    chunkings,
    default_key,
    drive,
    mutations,
    normalise,
    split,
)
from tests.testing import ChunkCountingHandler, Command, TinyHandler, echo

STREAM = b"AUTH ann\none\nSLOW\ntwo\nthree\nQUIT\n"


@given(chunkings(STREAM))
def test_tiny_handler_is_chunking_invariant(chunks: list[bytes]) -> None:
    trace = assert_chunking_invariant(TinyHandler, STREAM, chunks, service=echo)
    assert trace[-1] == "Close()"


def test_the_invariance_check_catches_a_chunking_dependent_handler() -> None:
    with pytest.raises(AssertionError, match="events depend on chunking"):
        assert_chunking_invariant(ChunkCountingHandler, b"ab\n", split(b"ab\n", [1]))


def test_the_invariance_check_fails_under_hypothesis_too() -> None:
    @settings(derandomize=True, database=None)
    @given(chunkings(b"abc\ndef\n"))
    def check(chunks: list[bytes]) -> None:
        assert_chunking_invariant(ChunkCountingHandler, b"abc\ndef\n", chunks)

    with pytest.raises(AssertionError):
        check()


def test_chunks_must_join_to_the_data() -> None:
    with pytest.raises(ValueError, match="join"):
        assert_chunking_invariant(TinyHandler, b"abc\n", [b"ab"])


def test_adjacent_sends_are_merged_before_comparing() -> None:
    trace: list[Event | ProtocolError] = [Send(b"a"), Send(b"b"), Close(), Send(b"c")]
    assert normalise(trace) == ["Send(b'ab')", "Close()", "Send(b'c')"]
    assert normalise(trace, key=type) == [Send, Close, Send]


def test_default_key_ignores_object_addresses() -> None:
    class Plain(Event):
        def __init__(self, value: int) -> None:
            self.value = value

    assert default_key(Plain(1)) == default_key(Plain(1))
    assert default_key(Plain(1)) != default_key(Plain(2))
    assert default_key(ProtocolError("x", b"r")) == default_key(ProtocolError("x", b"r"))


def test_errors_are_part_of_the_compared_trace() -> None:
    trace = assert_chunking_invariant(TinyHandler, b"a\nBAD\n", [b"a\nB", b"AD\n"])
    assert trace[-1][0] == "ProtocolError"


@given(mutations(STREAM))
def test_mutated_input_raises_only_protocol_errors(data: bytes) -> None:
    check_only_protocol_errors(TinyHandler, data, service=echo)


class CrashingHandler(TinyHandler):
    """Deliberately wrong: an IndexError escapes on an empty line."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.buffer.startswith(b"\n"):
            raise IndexError("deliberate bug")
        return super().next_event()


def test_only_protocol_errors_check_catches_other_exceptions() -> None:
    with pytest.raises(AssertionError, match="IndexError escaped") as caught:
        check_only_protocol_errors(CrashingHandler, b"\n")
    assert isinstance(caught.value.__cause__, IndexError)
    check_only_protocol_errors(CrashingHandler, b"BAD\n")


def test_grammar_allows_an_end_only_at_the_end() -> None:
    check_grammar([Send(b"x"), PeerUpdate({}), Command(b"a"), EndOfInput()])
    check_grammar([Command(b"a"), ProtocolError("bad")])
    for end in (EndOfInput(), Close(), ProtocolError("bad")):
        with pytest.raises(ContractViolationError, match="follows"):
            check_grammar([end, Command(b"late")])


def test_grammar_rejects_sentinels_and_malformed_events() -> None:
    with pytest.raises(ContractViolationError, match="not an Event"):
        check_grammar([NEED_DATA])  # type: ignore[list-item]
    with pytest.raises(ContractViolationError, match=r"Send\.data"):
        check_grammar([Send("text")])  # type: ignore[arg-type]
    with pytest.raises(ContractViolationError, match="dict"):
        check_grammar([PeerUpdate([("k", 1)])])  # type: ignore[arg-type]


class ChattyAfterEnd(TinyHandler):
    """Deliberately wrong: keeps producing events after EndOfInput."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.done:
            return Send(b"still here\n")
        return super().next_event()


class ForgetfulError(TinyHandler):
    """Deliberately wrong: its ProtocolError is not sticky."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.error is not None:
            self.error = None
            return NEED_DATA
        return super().next_event()


def test_contract_check_probes_the_handler_after_the_end() -> None:
    check_contract(drive(TinyHandler, [b"a\n"], service=echo))
    with pytest.raises(ContractViolationError, match="after EndOfInput"):
        check_contract(drive(ChattyAfterEnd, [b"a\n"], service=echo))
    with pytest.raises(ContractViolationError, match="not sticky"):
        check_contract(drive(ForgetfulError, [b"BAD\n"]))
