"""Specification of muxserver.handlers.resp: RESP2 commands in, RESP2 replies out."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from muxserver.handlers.base import (
    NEED_DATA,
    PAUSED,
    EndOfInput,
    HandlerMisuseError,
    HandlerState,
    ProtocolError,
)
from muxserver.handlers.resp import (
    NULL_ARRAY,
    OK,
    Command,
    RespError,
    RespHandler,
    SimpleString,
    encode,
    encode_command,
)
from muxserver.testing import split
from tests.handlers.support import run


def commands(*arg_lists: list[bytes]) -> list[Any]:
    return [Command(args) for args in arg_lists]


# ---- parsing ------------------------------------------------------------------------------------


def test_a_multibulk_array_becomes_a_command_with_an_upper_cased_name() -> None:
    handler = RespHandler()
    handler.receive_data(b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n")
    event = handler.next_event()
    assert event == Command([b"get", b"k"])
    assert isinstance(event, Command)
    assert event.name == "GET"


def test_an_inline_command_is_split_on_whitespace() -> None:
    assert run(RespHandler(), [b"PING\r\nSET  k\tv\n"]) == (
        [*commands([b"PING"]), Command([b"SET", b"k", b"v"]), EndOfInput()],
        None,
    )


def test_empty_commands_produce_nothing() -> None:
    stream = b"*0\r\n*-1\r\n\r\n\n  \r\n*1\r\n$4\r\nPING\r\n"
    assert run(RespHandler(), [stream]) == ([*commands([b"PING"]), EndOfInput()], None)


def test_pipelined_commands_are_all_produced_before_any_answer() -> None:
    handler = RespHandler()
    handler.receive_data(b"".join(encode_command([b"INCR", b"n%d" % i]) for i in range(100)))
    events = []
    while (event := handler.next_event()) is not NEED_DATA:
        assert event is not PAUSED
        events.append(event)
    assert events == [Command([b"INCR", b"n%d" % i]) for i in range(100)]
    assert handler.unanswered == 100
    assert handler.state is HandlerState.WAITING


def test_a_command_resumed_in_a_joined_buffer_still_has_bytes_arguments() -> None:
    handler = RespHandler()
    handler.receive_data(b"*")
    assert handler.next_event() is NEED_DATA
    handler.receive_data(b"1\r\n$4\r\nPING\r\n")
    event = handler.next_event()
    assert isinstance(event, Command)
    assert type(event.args[0]) is bytes


def test_a_partial_command_at_end_of_input_is_dropped() -> None:
    assert run(RespHandler(), [b"PING\r\n*2\r\n$3\r\nGET\r\n"]) == (
        [*commands([b"PING"]), EndOfInput()],
        None,
    )
    assert run(RespHandler(), [b"PING"]) == ([EndOfInput()], None)


def protocol_error(detail: str) -> tuple[str, bytes]:
    return f"Protocol error: {detail}", b"-ERR Protocol error: %s\r\n" % detail.encode()


@pytest.mark.parametrize(
    ("stream", "limits", "detail"),
    [
        (b"*abc\r\n", {}, "invalid multibulk length"),
        (b"*4\r\n", {"max_multibulk_length": 3}, "invalid multibulk length"),
        (b"*1\r\n$-1\r\n", {}, "invalid bulk length"),
        (b"*1\r\n$x\r\n", {}, "invalid bulk length"),
        (b"*1\r\n$4\r\n", {"max_bulk_length": 3}, "invalid bulk length"),
        (b"*1\r\nx", {}, "expected '$', got 'x'"),
        (b"*1\r\n\x00", {}, "expected '$', got '\\x00'"),
        (b"*1\r\n\r\n", {}, "expected '$', got '\\x0d'"),
        (b"PING PING PING", {"max_inline_length": 8}, "too big inline request"),
        (b"*1111111111", {"max_inline_length": 8}, "too big mbulk count string"),
        (b"*1\r\n$1111111111", {"max_inline_length": 8}, "too big bulk count string"),
        (b"*1\r\n$3\r\nabcXY", {}, "expected CRLF after bulk string"),
        # Strictness: int() would accept all of these; Redis's string2ll does not.
        (b"*+1\r\n", {}, "invalid multibulk length"),
        (b"* 1\r\n", {}, "invalid multibulk length"),
        (b"*1_0\r\n", {}, "invalid multibulk length"),
        (b"*01\r\n", {}, "invalid multibulk length"),
        (b"*-0\r\n", {}, "invalid multibulk length"),
        (b"*\r\n", {}, "invalid multibulk length"),
        (b"*99999999999999999999\r\n", {}, "invalid multibulk length"),
        (b"*1\r\n$03\r\nabc\r\n", {}, "invalid bulk length"),
        (b"*1\r\n$\xd9\xa3\r\nabc\r\n", {}, "invalid bulk length"),
    ],
)
def test_bad_input_is_answered_as_redis_answers_it(
    stream: bytes, limits: dict[str, int], detail: str
) -> None:
    whole = run(RespHandler(**limits), [stream])
    bytewise = run(RespHandler(**limits), [stream[i : i + 1] for i in range(len(stream))])
    assert whole == bytewise == ([], protocol_error(detail))


def test_a_protocol_error_is_sticky_and_frees_the_buffer() -> None:
    handler = RespHandler()
    handler.receive_data(b"*x\r\n" + b"junk" * 100)
    with pytest.raises(ProtocolError) as first:
        handler.next_event()
    with pytest.raises(ProtocolError) as again:
        handler.next_event()
    assert again.value is first.value
    assert handler.state is HandlerState.ERROR
    assert handler.buffered == 0


def test_limits_at_exactly_the_maximum_are_accepted() -> None:
    # An inline command's length counts its optional \r: b"PING\r" is 5 bytes.
    handler = RespHandler(max_multibulk_length=2, max_bulk_length=3, max_inline_length=5)
    stream = b"*2\r\n$3\r\nabc\r\n$0\r\n\r\nPING\r\n"
    assert run(handler, [stream]) == (
        [Command([b"abc", b""]), Command([b"PING"]), EndOfInput()],
        None,
    )


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="limits"):
        RespHandler(max_bulk_length=-1)


# ---- encoding -----------------------------------------------------------------------------------


class Colour(enum.IntEnum):
    RED = 7


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (OK, b"+OK\r\n"),
        (SimpleString("QUEUED"), b"+QUEUED\r\n"),
        (RespError("ERR unknown command"), b"-ERR unknown command\r\n"),
        (RespError("WRONGTYPE bad\r\nthing"), b"-WRONGTYPE bad  thing\r\n"),
        (0, b":0\r\n"),
        (-12, b":-12\r\n"),
        (10**20, b":100000000000000000000\r\n"),
        (True, b":1\r\n"),
        (False, b":0\r\n"),
        (Colour.RED, b":7\r\n"),
        (b"", b"$0\r\n\r\n"),
        (b"hi\r\n", b"$4\r\nhi\r\n\r\n"),
        (bytearray(b"ab"), b"$2\r\nab\r\n"),
        (memoryview(b"abc"), b"$3\r\nabc\r\n"),
        ("caf\u00e9", b"$5\r\ncaf\xc3\xa9\r\n"),
        (1.5, b"$3\r\n1.5\r\n"),
        (None, b"$-1\r\n"),
        (NULL_ARRAY, b"*-1\r\n"),
        ([], b"*0\r\n"),
        ([b"a", None, 1], b"*3\r\n$1\r\na\r\n$-1\r\n:1\r\n"),
        ((OK, [[], (NULL_ARRAY,)]), b"*2\r\n+OK\r\n*2\r\n*0\r\n*1\r\n*-1\r\n"),
        (b"x" * 2000, b"$2000\r\n" + b"x" * 2000 + b"\r\n"),
        ([1] * 1500, b"*1500\r\n" + b":1\r\n" * 1500),
    ],
)
def test_every_reply_type_has_its_resp2_encoding(value: Any, expected: bytes) -> None:
    assert encode(value) == expected


def test_a_simple_string_cannot_hold_a_line_break() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        SimpleString("a\r\nb")


def test_a_value_without_an_encoding_is_the_callers_mistake_and_stays_unanswered() -> None:
    handler = RespHandler()
    handler.receive_data(b"PING\r\n")
    handler.next_event()
    with pytest.raises(HandlerMisuseError, match="cannot encode object"):
        handler.send([object()])
    assert handler.unanswered == 1
    assert handler.encode_error(KeyError()) == b"-ERR KeyError\r\n"
    assert handler.unanswered == 0
    with pytest.raises(HandlerMisuseError):
        handler.send(OK)


def test_a_failed_service_is_answered_with_a_one_line_err() -> None:
    handler = RespHandler()
    handler.receive_data(b"GET\r\n")
    handler.next_event()
    assert handler.encode_error(ValueError("no\r\nway")) == b"-ERR no  way\r\n"


def test_pushed_messages_are_encoded_like_replies() -> None:
    assert RespHandler().encode_push(["message", b"ch", b"hi"]) == (
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
    )


def reference_encode(value: Any) -> bytes:
    """A deliberately naive RESP2 encoder: the oracle for the fast one."""
    if value is None:
        return b"$-1\r\n"
    if value is NULL_ARRAY:
        return b"*-1\r\n"
    if isinstance(value, SimpleString):
        return b"+" + value.encode() + b"\r\n"
    if isinstance(value, RespError):
        return b"-" + value.encode() + b"\r\n"
    if isinstance(value, bool):
        return b":1\r\n" if value else b":0\r\n"
    if isinstance(value, int):
        return b":" + str(value).encode() + b"\r\n"
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"$" + str(len(value)).encode() + b"\r\n" + value + b"\r\n"
    return b"*" + str(len(value)).encode() + b"\r\n" + b"".join(map(reference_encode, value))


replies = st.recursive(
    st.none()
    | st.just(NULL_ARRAY)
    | st.booleans()
    | st.integers()
    | st.binary(max_size=20)
    | st.text(max_size=10)
    | st.text(max_size=10).filter(lambda t: "\r" not in t and "\n" not in t).map(SimpleString)
    | st.text(max_size=10).map(RespError),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children),
    max_leaves=12,
)


@given(value=replies)
def test_the_encoder_agrees_with_a_naive_reference(value: Any) -> None:
    assert encode(value) == reference_encode(value)


# ---- properties of the parser -------------------------------------------------------------------

arguments = st.lists(st.binary(max_size=12), min_size=1, max_size=5)


@given(arg_lists=st.lists(arguments, max_size=6), cuts=st.lists(st.integers(0, 300)))
def test_an_encoded_command_parses_back_to_its_arguments(
    arg_lists: list[list[bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_command(args) for args in arg_lists)
    expected = ([*commands(*arg_lists), EndOfInput()], None)
    assert run(RespHandler(), [stream]) == expected
    assert run(RespHandler(), split(stream, cuts)) == expected


def test_str_and_int_arguments_are_encoded_as_clients_send_them() -> None:
    assert encode_command(["SET", b"k", 10]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n10\r\n"


fragments = st.sampled_from(
    [
        b"*1\r\n$4\r\nPING\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n",
        b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n",  # a payload holding a CRLF
        b"*2\r\n$4\r\nECHO\r\n$1100\r\n" + b"v" * 1100 + b"\r\n",  # past the header cache
        b"*2\r\n$04\r\nECHO\r\n$1\r\nx\r\n",  # not canonical: the step path's to judge
        b"PING\r\n",
        b"ECHO hi there\n",
        b"*0\r\n",
        b"\r\n",
        b"*",
        b"$",
        b"\r",
        b"\n",
        b"5",
        b"-1",
        b"x",
        b"*99\r\n",
    ]
)
limits = st.fixed_dictionaries(
    {
        "max_multibulk_length": st.integers(0, 4),
        "max_bulk_length": st.integers(0, 12) | st.just(512 * 1024 * 1024),
        # small limits to hit them; the default to exercise the batch path (off below 20)
        "max_inline_length": st.integers(1, 16) | st.just(64 * 1024),
    }
)


@given(
    parts=st.lists(fragments | st.binary(max_size=4), max_size=12),
    limits=limits,
    cuts=st.lists(st.integers(0, 200), max_size=20),
)
def test_events_and_errors_do_not_depend_on_chunking(
    parts: list[bytes], limits: dict[str, int], cuts: list[int]
) -> None:
    stream = b"".join(parts)
    expected = run(RespHandler(**limits), [stream])
    assert run(RespHandler(**limits), split(stream, cuts)) == expected
    assert run(RespHandler(**limits), [stream[i : i + 1] for i in range(len(stream))]) == expected


def test_the_batch_path_cuts_a_long_pipeline_across_its_split_windows() -> None:
    # 16 KiB windows: 2,000 commands of 41 bytes cross several, some mid-command
    arg_lists = [[b"SET", b"key:%06d" % i, b"v" * (i % 7)] for i in range(2000)]
    stream = b"".join(encode_command(args) for args in arg_lists)
    assert len(stream) > 3 * 16 * 1024
    expected = ([*commands(*arg_lists), EndOfInput()], None)
    assert run(RespHandler(), [stream]) == expected
    assert run(RespHandler(), [stream[:50_001], stream[50_001:]]) == expected


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, where, byte in edits:
        if not buffer:
            buffer.append(byte)
            continue
        at = where % len(buffer)
        if kind == 0:
            buffer[at] = byte
        elif kind == 1:
            buffer.insert(at, byte)
        else:
            del buffer[at]
    return bytes(buffer)


@given(
    arg_lists=st.lists(arguments, min_size=1, max_size=4),
    edits=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255))),
    limits=limits,
    cuts=st.lists(st.integers(0, 200), max_size=20),
)
def test_mutated_input_raises_only_protocol_errors_and_stays_within_the_limits(
    arg_lists: list[list[bytes]],
    edits: list[tuple[int, int, int]],
    limits: dict[str, int],
    cuts: list[int],
) -> None:
    stream = mutate(b"".join(encode_command(args) for args in arg_lists), edits)
    bound = max(limits["max_inline_length"], limits["max_bulk_length"]) + 1
    handler = RespHandler(**limits)
    try:
        for chunk in split(stream, cuts):
            if chunk:
                handler.receive_data(chunk)
            while handler.next_event() is not NEED_DATA:
                pass
            assert handler.buffered <= bound
    except ProtocolError as exc:
        assert exc.reply is not None
        assert exc.reply.startswith(b"-ERR Protocol error: ")
        assert exc.reply.count(b"\r\n") == 1


# ---- the handler as a state machine -------------------------------------------------------------


class RespConversation(RuleBasedStateMachine):
    """A client queues commands, the bytes arrive in arbitrary pieces, the server answers."""

    def __init__(self) -> None:
        super().__init__()
        self.handler = RespHandler()
        self.stream = b""
        self.fed = 0
        self.ends: list[int] = []
        self.sent: list[list[bytes]] = []
        self.pulled = 0
        self.answered = 0

    @rule(args=arguments)
    def client_queues_a_multibulk_command(self, args: list[bytes]) -> None:
        self.stream += encode_command(args)
        self.ends.append(len(self.stream))
        self.sent.append(args)

    @rule(words=st.lists(st.text("abcXYZ", min_size=1, max_size=5), min_size=1, max_size=3))
    def client_queues_an_inline_command(self, words: list[str]) -> None:
        self.stream += " ".join(words).encode() + b"\r\n"
        self.ends.append(len(self.stream))
        self.sent.append([word.encode() for word in words])

    @precondition(lambda self: self.fed < len(self.stream))
    @rule(size=st.integers(1, 40))
    def bytes_arrive(self, size: int) -> None:
        chunk = self.stream[self.fed : self.fed + size]
        self.handler.receive_data(chunk)
        self.fed += len(chunk)

    @rule()
    def server_pulls_an_event(self) -> None:
        event = self.handler.next_event()
        if self.pulled < len(self.ends) and self.ends[self.pulled] <= self.fed:
            assert event == Command(self.sent[self.pulled])
            self.pulled += 1
        else:
            assert event is NEED_DATA

    @precondition(lambda self: self.answered < self.pulled)
    @rule(reply=replies)
    def server_answers(self, reply: Any) -> None:
        assert self.handler.send(reply) == reference_encode(reply)
        self.answered += 1

    @invariant()
    def the_handler_counts_unanswered_commands(self) -> None:
        assert self.handler.unanswered == self.pulled - self.answered

    @invariant()
    def nothing_pulled_is_still_buffered(self) -> None:
        consumed_at_least = self.ends[self.pulled - 1] if self.pulled else 0
        assert self.handler.buffered <= self.fed - consumed_at_least

    @invariant()
    def the_state_matches_the_conversation(self) -> None:
        state = self.handler.state
        if self.handler.buffered:
            assert state is HandlerState.RECEIVING
        elif self.pulled > self.answered:
            assert state in (HandlerState.WAITING, HandlerState.RECEIVING)
        else:
            assert state in (HandlerState.IDLE, HandlerState.RECEIVING)


TestRespConversation = RespConversation.TestCase
