"""Properties of muxserver.handlers.http: the four fuzzing oracles, h11 as a reference, and a
state machine for a keep-alive connection.

The oracles (DESIGN "Lessons"): the same events for every chunking; only ProtocolError escapes;
limits fire the same way under any chunking (small limits make them fire often here); and the
handler is at least as strict as h11, the reference parser, and agrees with it on valid input.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import h11
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from muxserver.handlers.base import NEED_DATA, PAUSED, Close, EndOfInput, ProtocolError, Send
from muxserver.handlers.http import (
    CONTINUE,
    TRANSITIONS,
    HTTPHandler,
    HTTPRequest,
    HTTPResponse,
    HTTPState,
)
from muxserver.testing.properties import assert_chunking_invariant, check_only_protocol_errors
from muxserver.testing.protocols import http_requests, http_streams
from muxserver.testing.strategies import chunkings, mutations, split


def small_limits() -> HTTPHandler:
    """A handler whose limits the generated requests reach often."""
    return HTTPHandler(
        max_request_line=30,
        max_header_size=90,
        max_header_count=5,
        max_body_size=20,
        max_chunk_line=10,
        max_pending=2,
    )


SOME_BYTES = st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b";", b"0", b"a", b"\x00"])
noise = st.lists(SOME_BYTES | st.binary(max_size=4), max_size=30).map(b"".join)


def answer(request: Any, peer: Any) -> Any:
    """A service that exercises every kind of response (the reactor answers inline here)."""
    assert isinstance(request, HTTPRequest)
    kind = len(request.target) % 4
    if kind == 0:
        return request.body
    if kind == 1:
        return HTTPResponse(201, [("X-Len", str(len(request.body)))], iter([request.body, b"!"]))
    if kind == 2:
        return None
    raise RuntimeError("service failed")


# --- oracle (a) and the direct oracle: chunking invariance, expected events -------------------


@given(st.data())
def test_valid_requests_give_the_expected_events_under_any_chunking(data: st.DataObject) -> None:
    raw, expected = data.draw(http_streams())
    chunks = data.draw(chunkings(raw))
    handler = HTTPHandler()
    got: list[Any] = []
    for chunk in chunks:
        if chunk:  # an empty read is not end of input
            handler.receive_data(chunk)
        while (event := handler.next_event()) is not NEED_DATA:
            assert event is not PAUSED
            got.append(event)
            if isinstance(event, HTTPRequest):
                handler.send(b"")
    assert got == expected
    assert_chunking_invariant(HTTPHandler, raw, chunks, service=answer)


@given(st.data())
def test_events_and_errors_do_not_depend_on_chunking_even_at_the_limits(
    data: st.DataObject,
) -> None:
    raw, _ = data.draw(http_streams())
    damaged = data.draw(st.one_of(st.just(raw), mutations(raw), noise))
    assert_chunking_invariant(small_limits, damaged, data.draw(chunkings(damaged)), service=answer)
    assert_chunking_invariant(small_limits, damaged, data.draw(chunkings(damaged)))


# --- oracle (b): only ProtocolError escapes; memory stays within the limits --------------------


def bound(handler: HTTPHandler) -> int:
    """The most a handler may hold while it waits for data (see its module docstring)."""
    head = handler.max_request_line + 2 + handler.max_header_size
    body = handler.max_body_size + max(handler.max_chunk_line + 1, handler.max_header_size, 2)
    return max(head, body)


@given(st.data())
def test_damaged_input_raises_only_protocol_errors_and_memory_stays_bounded(
    data: st.DataObject,
) -> None:
    raw, _ = data.draw(http_streams())
    damaged = data.draw(st.one_of(mutations(raw, max_edits=8), noise, st.binary(max_size=200)))
    chunks = data.draw(chunkings(damaged))
    for factory in (HTTPHandler, small_limits):
        check_only_protocol_errors(factory, damaged, chunks, service=answer)
        handler = factory()
        try:
            for chunk in chunks:
                if chunk:
                    handler.receive_data(chunk)
                while (event := handler.next_event()) not in (NEED_DATA, PAUSED):
                    if isinstance(event, HTTPRequest):
                        handler.send(b"ok")
                assert handler.buffered <= bound(handler)
        except ProtocolError:
            assert handler.buffered == 0


def test_scanning_a_large_head_byte_by_byte_stays_linear() -> None:
    # 30 KB of headers a byte at a time: quadratic rescanning would take seconds here.
    data = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-Filler: " + b"a" * 30_000 + b"\r\n\r\n"
    handler = HTTPHandler()
    for i in range(len(data)):
        handler.receive_data(data[i : i + 1])
        event = handler.next_event()
    assert isinstance(event, HTTPRequest)


# --- oracle (d): h11 as the reference ------------------------------------------------------------

Parsed = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]], bytes, list[tuple[bytes, bytes]]]


def h11_reads(data: bytes) -> tuple[list[Parsed], bool]:
    """The requests h11 (as a server) reads from ``data`` then EOF, and whether it rejected it."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")
    out: list[Parsed] = []
    head: Any = None
    body: list[bytes] = []
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                head, body = event, []
            elif isinstance(event, h11.Data):
                body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                fields = [(n, v) for n, v in head.headers]
                trailers = [(n, v) for n, v in event.headers]
                out.append(
                    (head.method, head.target, head.http_version, fields, b"".join(body), trailers)
                )
                conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return out, False
                conn.start_next_cycle()
            else:
                return out, False  # ConnectionClosed (or NEED_DATA/PAUSED, which EOF precludes)
    except h11.RemoteProtocolError:
        return out, True


def our_reads(data: bytes) -> tuple[list[Parsed], bool]:
    """The same for HTTPHandler."""
    handler = HTTPHandler()
    if data:
        handler.receive_data(data)
    handler.receive_data(b"")
    out: list[Parsed] = []
    try:
        while (event := handler.next_event()) is not NEED_DATA:
            if isinstance(event, HTTPRequest):
                out.append(
                    (
                        event.method,
                        event.target,
                        event.http_version,
                        event.headers,
                        event.body,
                        event.trailers,
                    )
                )
                handler.send(b"")
    except ProtocolError:
        return out, True
    return out, False


@given(http_streams(blank_lines=False))
def test_valid_requests_parse_as_h11_parses_them(stream: tuple[bytes, list[Any]]) -> None:
    raw, _ = stream
    ours, our_error = our_reads(raw)
    theirs, their_error = h11_reads(raw)
    assert not our_error and not their_error
    # h11 never keeps an HTTP/1.0 connection alive, so it may stop earlier.
    assert theirs and theirs == ours[: len(theirs)]


def accepted_by_design(data: bytes) -> bool:
    """Input h11 rejects and we accept on purpose: empty lines before a request line."""
    return data.startswith(b"\r\n") or b"\r\n\r\n\r\n" in data


@given(st.data())
def test_damaged_requests_are_rejected_whenever_h11_rejects_them(data: st.DataObject) -> None:
    raw, _ = data.draw(http_streams(blank_lines=False))
    damaged = data.draw(mutations(raw))
    ours, our_error = our_reads(damaged)
    theirs, their_error = h11_reads(damaged)
    if their_error and not our_error:
        assert accepted_by_design(damaged), f"h11 rejects, we accept: {damaged!r}"
    n = min(len(ours), len(theirs))
    assert ours[:n] == theirs[:n] or accepted_by_design(damaged)


STRICTER_THAN_H11 = [
    b"GET / HTTP/1.1\nHost: h\n\n",  # bare LF (h11 accepts it)
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",  # obs-fold (h11 unfolds)
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;\x01\r\na\r\n0\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
]
BOTH_REJECT = [
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: \x00\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\nab",
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\na\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX0\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n\r",
]


def test_known_inputs_are_rejected_at_least_as_strictly_as_h11() -> None:
    for data in STRICTER_THAN_H11:
        assert our_reads(data)[1], data
        assert not h11_reads(data)[1], f"h11 now rejects {data!r}: move it to BOTH_REJECT"
    for data in BOTH_REJECT:
        assert our_reads(data)[1] and h11_reads(data)[1], data


def test_the_one_deliberate_leniency_is_empty_lines_before_the_request_line() -> None:
    data = b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"
    assert our_reads(data) == ([(b"GET", b"/", b"1.1", [(b"host", b"h")], b"", [])], False)
    assert h11_reads(data)[1]  # RFC 9112 section 2.2 says a server SHOULD ignore it


# --- a keep-alive connection as a state machine ---------------------------------------------------


def read_response(data: bytes, head_request: bool) -> tuple[int, dict[bytes, bytes], bytes]:
    """Parse one of our responses with h11 as the client: status, headers, body."""
    client = h11.Connection(h11.CLIENT)
    method = b"HEAD" if head_request else b"GET"
    client.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")
    response = client.next_event()
    assert isinstance(response, h11.Response), response
    body = b""
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data), event
        body += event.data
    return response.status_code, dict(response.headers), body


def reachable(start: HTTPState) -> set[HTTPState]:
    """``start`` and every state reachable from it through TRANSITIONS."""
    seen, todo = {start}, [start]
    while todo:
        for after in TRANSITIONS[todo.pop()] - seen:
            seen.add(after)
            todo.append(after)
    return seen


def test_the_transition_table_covers_every_state_and_ends_in_closed_or_error() -> None:
    assert set(TRANSITIONS) == set(HTTPState)
    for state in HTTPState:
        assert reachable(state) & {HTTPState.CLOSED, HTTPState.ERROR}


class KeepAliveConnection(RuleBasedStateMachine):
    """Feed requests, pull events, answer them, end: the handler's lifecycle stays coherent."""

    def __init__(self) -> None:
        super().__init__()
        self.handler = HTTPHandler(max_pending=3)
        self.fed: deque[HTTPRequest] = deque()  # fed, not yet delivered
        self.delivered: deque[HTTPRequest] = deque()  # delivered, not yet answered
        self.ending = False  # a Close is due
        self.ended = False  # Close or EndOfInput returned
        self.dropping = False
        self.eof_fed = False  # end of input may come once (a paused handler has not ended yet)
        self.previous = self.handler.state

    def pull(self) -> None:
        while (event := self.handler.next_event()) not in (NEED_DATA, PAUSED):
            assert not self.ended, f"{event!r} after the end"
            if isinstance(event, Send):
                assert event == Send(CONTINUE)
                assert self.fed[0].header(b"expect") == b"100-continue"
            elif isinstance(event, HTTPRequest):
                assert event == self.fed.popleft()
                self.delivered.append(event)
                if not event.keep_alive:
                    self.ending = True
            else:
                assert event in (Close(), EndOfInput())
                assert event == EndOfInput() or self.ending
                self.ended = True
            self.check_transition()
        if event is PAUSED:
            assert self.handler.pending == self.handler.max_pending
        self.check_transition()

    def check_transition(self) -> None:
        # One next_event() may take several steps (CHUNK_SIZE -> TRAILERS -> IDLE), so the
        # observed change must be a path in the table, not necessarily one edge.
        state = self.handler.state
        assert state in reachable(self.previous)
        self.previous = state

    @precondition(lambda self: not self.ending and not self.ended and not self.eof_fed)
    @rule(request=http_requests(version=b"1.1"), cuts=st.lists(st.integers(0, 200), max_size=3))
    def feed_request(self, request: tuple[bytes, HTTPRequest], cuts: list[int]) -> None:
        raw, expected = request
        self.fed.append(expected)
        if not expected.keep_alive:
            self.ending = True
        for chunk in split(raw, cuts):
            if chunk:
                self.handler.receive_data(chunk)
            self.pull()

    @precondition(lambda self: not self.ending and not self.ended and not self.eof_fed)
    @rule(request=http_requests(closing=True))
    def feed_closing_request(self, request: tuple[bytes, HTTPRequest]) -> None:
        self.fed.append(request[1])
        self.ending = True
        self.handler.receive_data(request[0])
        self.pull()

    @precondition(lambda self: bool(self.delivered))
    @rule(kind=st.sampled_from(["bytes", "chunks", "str", "none", "error", "close"]))
    def answer(self, kind: str) -> None:
        request = self.delivered.popleft()
        response: Any = {
            "bytes": b"hello",
            "chunks": HTTPResponse(200, body=iter([b"hel", b"lo"])),
            "str": "hello",
            "none": None,
            "close": HTTPResponse(200, [("Connection", "close")], b"hello"),
        }.get(kind)
        data = (
            self.handler.encode_error(RuntimeError())
            if kind == "error"
            else self.handler.send(response)
        )
        assert data is not None
        if self.dropping:
            assert data == b""
        else:
            status, headers, body = read_response(data, request.method == b"HEAD")
            assert status == {"none": 204, "error": 500}.get(kind, 200)
            if kind not in ("none", "error") and request.method != b"HEAD":
                assert body == b"hello"
            closes = kind == "close" or not request.keep_alive
            assert (headers.get(b"connection") == b"close") == closes
            if closes:
                self.dropping = True
                self.ending = self.ending or not self.ended
        self.pull()

    @precondition(lambda self: not self.ended and not self.fed and not self.eof_fed)
    @rule()
    def end_of_input(self) -> None:
        self.eof_fed = True
        self.handler.receive_data(b"")
        self.pull()
        assert self.ended or self.handler.pending == self.handler.max_pending

    @rule()
    def pull_again(self) -> None:
        self.pull()

    @invariant()
    def limits_hold(self) -> None:
        assert self.handler.pending <= self.handler.max_pending
        assert self.handler.buffered <= bound(self.handler)
        assert isinstance(self.handler.state, HTTPState)


KeepAliveConnection.TestCase.settings = settings(max_examples=50, stateful_step_count=20)
test_keep_alive_connection = KeepAliveConnection.TestCase
