"""Examples for muxserver.handlers.http: what each request gives and what each response sends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from muxserver.handlers.base import (
    NEED_DATA,
    PAUSED,
    Close,
    EndOfInput,
    Event,
    HandlerMisuseError,
    NeedData,
    Paused,
    ProtocolError,
    Send,
)
from muxserver.handlers.http import (
    CONTINUE,
    HTTPHandler,
    HTTPProtocolError,
    HTTPRequest,
    HTTPResponse,
    HTTPState,
)

GET = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"


def events(handler: HTTPHandler, data: bytes = b"", *, eof: bool = False) -> list[object]:
    """Feed ``data`` (and EOF), then pull until NEED_DATA or PAUSED, which ends the list."""
    if data:
        handler.receive_data(data)
    if eof:
        handler.receive_data(b"")
    out: list[object] = []
    while True:
        event: Event | NeedData | Paused = handler.next_event()
        out.append(event)
        if event is NEED_DATA or event is PAUSED:
            return out


def error_of(data: bytes, **limits: int) -> HTTPProtocolError:
    """The error ``data`` (then EOF) raises on a fresh handler, which must be raised again."""
    handler = HTTPHandler(**limits)
    handler.receive_data(data)
    handler.receive_data(b"")
    with pytest.raises(HTTPProtocolError) as info:
        while handler.next_event() is not NEED_DATA:
            pass
    with pytest.raises(HTTPProtocolError) as again:
        handler.next_event()
    assert again.value is info.value
    assert handler.state is HTTPState.ERROR
    return info.value


def status_of(data: bytes, **limits: int) -> int:
    return error_of(data, **limits).status


# --- requests ----------------------------------------------------------------------------


def test_a_simple_get_is_one_request_event() -> None:
    handler = HTTPHandler()
    (request, need) = events(handler, GET)
    assert need is NEED_DATA
    assert request == HTTPRequest(b"GET", b"/", b"1.1", [(b"host", b"example.org")], b"", True)
    assert isinstance(request, HTTPRequest)
    assert request.header("HOST") == b"example.org"
    assert request.header(b"missing") is None
    assert request.header_values("host") == [b"example.org"]
    assert handler.pending == 1
    assert handler.buffered == 0


def test_header_names_are_lower_cased_and_values_stripped_of_whitespace() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-Thing:  \tsome value\t \r\nEmpty:\r\n\r\n"
    (request, _) = events(HTTPHandler(), data)
    assert isinstance(request, HTTPRequest)
    assert request.headers == [(b"host", b"h"), (b"x-thing", b"some value"), (b"empty", b"")]


def test_a_content_length_body_is_delivered_whole() -> None:
    handler = HTTPHandler()
    head = b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
    assert events(handler, head + b"hel") == [NEED_DATA]
    assert handler.state is HTTPState.BODY
    (request, _) = events(handler, b"lo")
    assert isinstance(request, HTTPRequest)
    assert request.body == b"hello"


def test_a_chunked_body_is_reassembled_with_extensions_ignored_and_trailers_kept() -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;name=value;flag;q="a \\"b\\""\r\nhello\r\n1\r\n \r\n'
        b"A\r\n0123456789\r\n0\r\nChecksum: abc\r\n\r\n"
    )
    (request, _) = events(HTTPHandler(), data)
    assert isinstance(request, HTTPRequest)
    assert request.body == b"hello 0123456789"
    assert request.trailers == [(b"checksum", b"abc")]


def test_leading_empty_lines_before_a_request_are_ignored() -> None:
    (request, _) = events(HTTPHandler(), b"\r\n\r\n" + GET)
    assert isinstance(request, HTTPRequest)


def test_pipelined_requests_are_delivered_in_order_up_to_max_pending() -> None:
    handler = HTTPHandler(max_pending=2)
    got = events(handler, GET.replace(b"/", b"/1", 1) + GET.replace(b"/", b"/2", 1) + GET)
    assert [e.target for e in got if isinstance(e, HTTPRequest)] == [b"/1", b"/2"]
    assert got[-1] is PAUSED
    assert handler.next_event() is PAUSED
    handler.send(b"one")
    (third, need) = events(handler)
    assert isinstance(third, HTTPRequest) and third.target == b"/"
    assert need is PAUSED


def test_connection_close_is_followed_by_close_and_later_bytes_are_ignored() -> None:
    handler = HTTPHandler()
    data = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n" + GET
    (request, close, need) = events(handler, data)
    assert isinstance(request, HTTPRequest) and not request.keep_alive
    assert close == Close()
    assert need is NEED_DATA
    assert handler.state is HTTPState.CLOSED
    handler.receive_data(GET)
    assert handler.buffered == 0
    assert handler.send(b"x").endswith(b"Connection: close\r\n\r\nx")


def test_http_10_closes_unless_it_asks_for_keep_alive() -> None:
    (request, close, _) = events(HTTPHandler(), b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(request, HTTPRequest) and request.http_version == b"1.0"
    assert close == Close()
    handler = HTTPHandler()
    (request, _) = events(handler, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert isinstance(request, HTTPRequest) and request.keep_alive
    assert b"\r\nConnection: keep-alive\r\n" in handler.send(HTTPResponse(body=b"hi"))


def test_expect_100_continue_sends_continue_before_the_body_is_read() -> None:
    handler = HTTPHandler()
    head = b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n"
    assert events(handler, head) == [Send(CONTINUE), NEED_DATA]
    (request, _) = events(handler, b"ok")
    assert isinstance(request, HTTPRequest) and request.body == b"ok"


def test_expect_100_continue_is_not_sent_for_an_empty_body_or_http_10() -> None:
    empty = b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n"
    assert isinstance(events(HTTPHandler(), empty)[0], HTTPRequest)
    old = b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx"
    assert isinstance(events(HTTPHandler(), old)[0], HTTPRequest)


def test_end_of_input_between_requests_is_end_of_input() -> None:
    handler = HTTPHandler()
    assert events(handler, GET, eof=True)[1:] == [EndOfInput(), NEED_DATA]
    assert handler.state is HTTPState.CLOSED
    with pytest.raises(HandlerMisuseError):
        handler.receive_data(b"more")


def test_end_of_input_in_the_middle_of_a_request_is_a_400() -> None:
    assert status_of(GET[:-1]) == 400
    assert status_of(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab") == 400


def test_a_request_answered_with_close_ends_the_connection_and_drops_later_answers() -> None:
    handler = HTTPHandler()
    got = events(handler, GET + GET)
    assert len(got) == 3
    reply = handler.send(HTTPResponse(200, [("Connection", "close")], b"bye"))
    assert b"Connection: close\r\n" in reply
    assert handler.next_event() == Close()
    assert handler.send(b"second") == b""
    assert handler.next_event() is NEED_DATA


# --- errors, limits, smuggling -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
        (b"GET / http/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1\r\nHost: h\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (b"GET / HTTP/3\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / HTTP/1.1\nHost: h\n\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400),  # bare CR
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n", 400),
    ],
)
def test_malformed_heads_get_the_right_status(data: bytes, status: int) -> None:
    assert status_of(data) == status


SMUGGLING = [
    b"Content-Length: 3\r\nTransfer-Encoding: chunked",
    b"Transfer-Encoding: chunked\r\nContent-Length: 3",
    b"Transfer-Encoding: chunked, identity",
    b"Transfer-Encoding: identity",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    b"Transfer-Encoding: chunked, chunked",
    b"Transfer-Encoding: xchunked",
    b"Transfer-Encoding: chunked;q=1",
    b"Transfer-Encoding: \x0bchunked",
    b"Transfer-Encoding:",
    b"Transfer-Encoding : chunked",
    b"Transfer-Encoding:\r\n chunked",
    b"Content-Length: 3\r\nContent-Length: 4",
    b"Content-Length: 3, 4",
    b"Content-Length: 3,",
    b"Content-Length: +3",
    b"Content-Length: -3",
    b"Content-Length: 0x3",
    b"Content-Length: 3 3",
    b"Content-Length: 3.0",
    b"Content-Length: \xd9\xa3",  # Arabic-Indic three: int() would accept it
    b"Content-Length: \xef\xbc\x93",  # fullwidth three
]


@pytest.mark.parametrize("fields", SMUGGLING)
def test_ambiguous_framing_is_rejected(fields: bytes) -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert status_of(data) == 400


def test_an_unimplemented_transfer_coding_before_chunked_is_501() -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    assert status_of(data) == 501


def test_transfer_encoding_in_http_10_is_rejected() -> None:
    data = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert status_of(data) == 400


def test_repeated_equal_content_lengths_are_accepted() -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\nContent-Length: 003\r\n\r\nabc"
    (request, _) = events(HTTPHandler(), data)
    assert isinstance(request, HTTPRequest) and request.body == b"abc"


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "chunks",
    [
        b"0x3\r\nabc\r\n0\r\n\r\n",
        b"+3\r\nabc\r\n0\r\n\r\n",
        b"-3\r\nabc\r\n0\r\n\r\n",
        b" 3\r\nabc\r\n0\r\n\r\n",
        b"3 \r\nabc\r\n0\r\n\r\n",
        b"\t3\r\nabc\r\n0\r\n\r\n",
        b"3 ;x\r\nabc\r\n0\r\n\r\n",
        b"3;\r\nabc\r\n0\r\n\r\n",
        b"3;x=\r\nabc\r\n0\r\n\r\n",
        b"3;x=\x01\r\nabc\r\n0\r\n\r\n",
        b'3;x="a\r\nabc\r\n0\r\n\r\n',
        b"g\r\nabc\r\n0\r\n\r\n",
        b"\r\nabc\r\n0\r\n\r\n",
        b"00000000000000003\r\nabc\r\n0\r\n\r\n",  # 17 digits
        b"3\nabc\r\n0\r\n\r\n",
        b"3\r\nabcXX0\r\n\r\n",  # CVE-2025-43859: data not followed by CRLF
        b"3\r\nabc\n0\r\n\r\n",
        b"3\r\nabc\r\n0\r\nX : y\r\n\r\n",
        b"3\r\nabc\r\n0\r\n folded\r\n\r\n",
    ],
)
def test_bad_chunk_framing_is_rejected(chunks: bytes) -> None:
    assert status_of(CHUNKED_HEAD + chunks) == 400


def test_a_16_digit_chunk_size_with_leading_zeros_is_fine() -> None:
    (request, _) = events(HTTPHandler(), CHUNKED_HEAD + b"0000000000000003\r\nabc\r\n0\r\n\r\n")
    assert isinstance(request, HTTPRequest) and request.body == b"abc"


def test_limits_give_414_431_and_413() -> None:
    assert status_of(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n", max_request_line=50) == 414
    # The limit fires before the line is complete, so an endless line is refused early.
    assert status_of(b"GET /" + b"a" * 100, max_request_line=50) == 414
    many = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 5 + b"\r\n"
    assert status_of(many, max_header_count=5) == 431
    assert status_of(many, max_header_size=20) == 431
    assert status_of(many[:-2] + b"X: " + b"y" * 100, max_header_size=50) == 431
    big = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"
    assert status_of(big, max_body_size=10) == 413
    huge = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"
    assert status_of(huge) == 413
    chunked = CHUNKED_HEAD + b"6\r\nabcdef\r\n5\r\n"
    assert status_of(chunked, max_body_size=10) == 413
    assert status_of(CHUNKED_HEAD + b"1" * 20, max_chunk_line=10) == 400
    trailers = CHUNKED_HEAD + b"0\r\n" + b"X: y\r\n" * 10
    assert status_of(trailers, max_header_size=40) == 431


def test_a_request_line_exactly_at_the_limit_is_accepted() -> None:
    line = b"GET /" + b"a" * 10 + b" HTTP/1.1"
    data = line + b"\r\nHost: h\r\n\r\n"
    (request, _) = events(HTTPHandler(max_request_line=len(line)), data)
    assert isinstance(request, HTTPRequest)
    assert status_of(data, max_request_line=len(line) - 1) == 414


def test_error_replies_are_complete_responses_that_close() -> None:
    error = error_of(b"GET / HTTP/1.1\r\n\r\n")
    assert isinstance(error, ProtocolError)
    assert error.reply is not None
    head, _, body = error.reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head


def test_input_after_an_error_is_dropped() -> None:
    handler = HTTPHandler()
    handler.receive_data(b"BAD\r\n\r\n")
    with pytest.raises(HTTPProtocolError):
        handler.next_event()
    handler.receive_data(b"x" * 1000)
    assert handler.buffered == 0


# --- responses -------------------------------------------------------------------------------


def answered(request: bytes, response: object, **limits: int) -> bytes:
    handler = HTTPHandler(**limits)
    got = events(handler, request)
    assert isinstance(got[0], HTTPRequest)
    return handler.send(response)


def test_bytes_str_and_none_are_convenient_responses() -> None:
    assert answered(GET, b"hi") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert answered(GET, "é") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 2\r\n\r\n\xc3\xa9"
    )
    assert answered(GET, None) == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_the_bytes_fast_path_matches_the_general_encoder() -> None:
    fast = answered(GET, b"body")
    general = answered(GET, HTTPResponse(200, [(b"Content-Type", b"text/plain")], b"body"))
    assert fast == general


def test_an_http_response_carries_status_reason_headers_and_length() -> None:
    reply = answered(GET, HTTPResponse(404, [("X-A", "1")], b"nope"))
    assert reply == b"HTTP/1.1 404 Not Found\r\nX-A: 1\r\nContent-Length: 4\r\n\r\nnope"
    custom = answered(GET, HTTPResponse(599, reason="Odd"))
    assert custom.startswith(b"HTTP/1.1 599 Odd\r\n")


def test_an_iterable_body_is_chunked_for_http_11() -> None:
    reply = answered(GET, HTTPResponse(200, body=iter([b"ab", b"", b"cde"])))
    assert reply == (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
    )


def test_an_iterable_body_is_close_delimited_for_http_10() -> None:
    handler = HTTPHandler()
    events(handler, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nX: 1\r\n\r\n" + GET)
    reply = handler.send(HTTPResponse(200, body=[b"ab", b"cd"]))
    assert reply == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabcd"
    assert handler.next_event() == Close()


def test_head_responses_have_headers_but_no_body() -> None:
    head = GET.replace(b"GET", b"HEAD")
    assert answered(head, b"hello") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    )
    declared = HTTPResponse(200, [("Content-Length", "99")])
    assert answered(head, declared) == b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"

    def never() -> Iterator[bytes]:
        raise AssertionError("a HEAD response must not consume its body")
        yield b""  # pragma: no cover

    assert answered(head, HTTPResponse(body=never())) == b"HTTP/1.1 200 OK\r\n\r\n"


def test_304_may_carry_the_content_length_of_the_get() -> None:
    reply = answered(GET, HTTPResponse(304, [("Content-Length", "10")]))
    assert reply == b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"


def test_encode_error_answers_500_without_the_exception_text() -> None:
    handler = HTTPHandler()
    events(handler, GET)
    reply = handler.encode_error(RuntimeError("secret"))
    assert reply is not None
    assert reply.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"secret" not in reply
    assert handler.pending == 0


@pytest.mark.parametrize(
    "response",
    [
        HTTPResponse(101),
        HTTPResponse(99),
        HTTPResponse(1000),
        HTTPResponse(200, [("X", "a\r\nSet-Cookie: evil")]),
        HTTPResponse(200, [("X\r\n", "a")]),
        HTTPResponse(200, [("X", "\u20ac")]),
        HTTPResponse(200, reason="OK\r\nX: y"),
        HTTPResponse(200, [("Transfer-Encoding", "chunked")]),
        HTTPResponse(200, [("Content-Length", "3")], b"four"),
        HTTPResponse(200, [("Content-Length", "x")], b"four"),
        HTTPResponse(200, [("Content-Length", "3")], [b"abc"]),
        HTTPResponse(204, body=b"x"),
        HTTPResponse(304, body=[b"x"]),
        HTTPResponse(200, body=["text"]),  # type: ignore[list-item]
        12,
    ],
)
def test_invalid_responses_are_the_callers_fault(response: object) -> None:
    handler = HTTPHandler()
    events(handler, GET)
    with pytest.raises(HandlerMisuseError):
        handler.send(response)


def test_send_without_a_request_is_misuse() -> None:
    with pytest.raises(HandlerMisuseError):
        HTTPHandler().send(b"x")


def test_bad_limits_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="limits"):
        HTTPHandler(max_request_line=0)
    with pytest.raises(ValueError, match="max_pending"):
        HTTPHandler(max_pending=0)
