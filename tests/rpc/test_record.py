"""Record marking: same records for any chunking and any fragmentation; limits; framing."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxserver.handlers.base import (
    NEED_DATA,
    EndOfInput,
    Event,
    HandlerMisuseError,
    ProtocolError,
)
from muxserver.rpc.message import AcceptStat, decode_reply, encode_call
from muxserver.rpc.record import RecordMarkingHandler, RecordState, RPCRecord, frame_record


def fragment(message: bytes, cuts: list[int]) -> bytes:
    """Record-mark ``message`` as fragments split at the (sorted, deduplicated) ``cuts``."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(message)}), len(message)]
    out = b""
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        last = 0x8000_0000 if index == len(bounds) - 2 else 0
        out += struct.pack(">I", last | (end - start)) + message[start:end]
    return out


def chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split ``data`` at ``cuts``; empty pieces are left out (``b""`` means end of input)."""
    bounds = [0, *sorted(c for c in cuts if 0 <= c <= len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def run(handler: RecordMarkingHandler, chunks: list[bytes], eof: bool = True) -> list[Event]:
    """Feed ``chunks`` (then EOF) and collect every event, answering each record."""
    events: list[Event] = []
    feeds: list[bytes] = [*chunks, b""] if eof else list(chunks)
    for data in feeds:
        handler.receive_data(data)
        while (event := handler.next_event()) is not NEED_DATA:
            assert isinstance(event, Event)
            events.append(event)
            if isinstance(event, RPCRecord):
                handler.send(None)
            if isinstance(event, EndOfInput):
                return events
    return events


messages = st.lists(st.binary(max_size=40), min_size=0, max_size=5)


@given(
    messages=messages,
    fragment_cuts=st.lists(st.lists(st.integers(0, 40), max_size=4), min_size=5, max_size=5),
    chunk_cuts=st.lists(st.integers(0, 400), max_size=12),
)
def test_any_chunking_and_fragmentation_gives_the_same_records(
    messages: list[bytes], fragment_cuts: list[list[int]], chunk_cuts: list[int]
) -> None:
    stream = b"".join(fragment(m, cuts) for m, cuts in zip(messages, fragment_cuts, strict=False))
    events = run(RecordMarkingHandler(), chunk(stream, chunk_cuts))
    assert events == [*(RPCRecord(m) for m in messages), EndOfInput()]


@given(data=st.binary(max_size=30), chunk_cuts=st.lists(st.integers(0, 40), max_size=8))
def test_one_byte_at_a_time_equals_all_at_once(data: bytes, chunk_cuts: list[int]) -> None:
    stream = frame_record(data, max_fragment=3) + frame_record(data[::-1])
    expected = run(RecordMarkingHandler(), [stream])
    assert run(RecordMarkingHandler(), [bytes([b]) for b in stream]) == expected
    assert run(RecordMarkingHandler(), chunk(stream, chunk_cuts)) == expected
    assert expected == [RPCRecord(data), RPCRecord(data[::-1]), EndOfInput()]


@given(
    sizes=st.lists(st.integers(0, 30), min_size=1, max_size=4),
    chunk_cuts=st.lists(st.integers(0, 200), max_size=10),
)
def test_the_size_limit_fires_at_the_same_record_under_any_chunking(
    sizes: list[int], chunk_cuts: list[int]
) -> None:
    limit = 20
    stream = b"".join(fragment(b"x" * n, [n // 2]) for n in sizes)
    records_before = (
        sizes.index(next(n for n in sizes if n > limit)) if max(sizes) > limit else None
    )
    handler = RecordMarkingHandler(max_record_size=limit)
    if records_before is None:
        assert len(run(handler, chunk(stream, chunk_cuts))) == len(sizes) + 1
        return
    with pytest.raises(ProtocolError) as info:
        run(handler, chunk(stream, chunk_cuts))
    assert info.value.reply is None
    assert handler.state is RecordState.ERROR
    assert handler.pending == 0  # every earlier record was delivered and answered
    with pytest.raises(ProtocolError):  # sticky
        handler.next_event()


def test_a_declared_fragment_over_the_limit_fails_before_its_bytes_arrive() -> None:
    handler = RecordMarkingHandler(max_record_size=100)
    handler.receive_data(struct.pack(">I", 0x8000_0000 | 101))
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        handler.next_event()


def test_fragments_add_up_towards_the_limit() -> None:
    handler = RecordMarkingHandler(max_record_size=10)
    handler.receive_data(fragment(b"a" * 11, [6]))
    with pytest.raises(ProtocolError):
        handler.next_event()


def test_pipelined_records_are_all_delivered_without_waiting_for_replies() -> None:
    handler = RecordMarkingHandler()
    handler.receive_data(frame_record(b"one") + frame_record(b"two") + frame_record(b"three"))
    assert [handler.next_event() for _ in range(4)] == [
        RPCRecord(b"one"),
        RPCRecord(b"two"),
        RPCRecord(b"three"),
        NEED_DATA,
    ]
    assert handler.pending == 3
    assert handler.state is RecordState.IDLE


def test_end_of_input_mid_record_is_a_protocol_error() -> None:
    handler = RecordMarkingHandler()
    handler.receive_data(frame_record(b"abcdef")[:-2])
    assert handler.next_event() is NEED_DATA
    assert handler.state is RecordState.RECEIVING
    assert handler.buffered == 4
    handler.receive_data(b"")
    with pytest.raises(ProtocolError, match="middle"):
        handler.next_event()


def test_end_of_input_mid_header_is_a_protocol_error() -> None:
    handler = RecordMarkingHandler()
    handler.receive_data(b"\x80\0")
    handler.receive_data(b"")
    with pytest.raises(ProtocolError):
        handler.next_event()


def test_end_of_input_between_records_ends_cleanly() -> None:
    handler = RecordMarkingHandler()
    handler.receive_data(b"")
    assert handler.next_event() == EndOfInput()
    assert handler.state is RecordState.CLOSED
    assert handler.next_event() is NEED_DATA
    with pytest.raises(HandlerMisuseError):
        handler.receive_data(b"more")


def test_send_frames_a_reply_as_one_last_fragment_and_none_sends_nothing() -> None:
    handler = RecordMarkingHandler()
    handler.receive_data(frame_record(b"a") + frame_record(b"b"))
    handler.next_event()
    handler.next_event()
    assert handler.send(b"reply") == b"\x80\0\0\x05reply"
    assert handler.send(None) == b""
    with pytest.raises(HandlerMisuseError):
        handler.send(b"nobody asked")


def test_encode_error_answers_a_call_with_system_err_for_its_xid() -> None:
    handler = RecordMarkingHandler()
    handler.receive_data(frame_record(encode_call(0xABC, 1, 2, 3)) + frame_record(b"junk"))
    handler.next_event()
    handler.next_event()
    framed = handler.encode_error(RuntimeError("service bug"))
    assert framed is not None
    reply = decode_reply(framed[4:])
    assert (reply.xid, reply.accept_stat) == (0xABC, AcceptStat.SYSTEM_ERR)
    assert handler.encode_error(RuntimeError("again")) is None  # not a call: close instead


def test_frame_record_splits_into_fragments_the_handler_reassembles() -> None:
    message = bytes(range(50))
    framed = frame_record(message, max_fragment=7)
    assert len(framed) == 50 + 4 * 8
    assert run(RecordMarkingHandler(), [framed])[0] == RPCRecord(message)
    with pytest.raises(ValueError):
        frame_record(b"", max_fragment=0)
