"""HTTP/1.1 server side: :class:`HTTPHandler` turns request bytes into events, responses into bytes.

Theory of operation
-------------------
The handler follows the contract in :mod:`muxserver.handlers.base`. It finds message
boundaries in its receive buffer; :mod:`~muxserver.handlers.http_parse` gives each complete
piece its meaning and :mod:`~muxserver.handlers.http_response` frames the answers.

The rules:

1. *Whole requests.* A request is delivered once its head and its whole body have arrived, as
   one :class:`HTTPRequest`. Bodies are framed by Content-Length or chunked; anything else
   has no body. A body above ``max_body_size`` is refused with 413 before it is read.
2. *Pipelining.* The handler parses ahead and delivers further requests before the earlier
   ones are answered, up to ``max_pending`` unanswered requests; then ``next_event()`` says
   :data:`PAUSED` until ``send()`` answers one. Together with the size limits this bounds the
   memory a connection holds (about ``max_pending * max_body_size`` plus one head).
3. *The end of a connection.* A request that ends the connection (``Connection: close``, or
   HTTP/1.0 without keep-alive) is followed by :class:`Close`; bytes after it are dropped. A
   response that ends it (the service said ``Connection: close``, or a close-delimited body)
   makes the next ``next_event()`` return :class:`Close`, and requests already delivered
   after it get no response (``send()`` returns ``b""``; RFC 9112 section 9.6). End of input
   between requests is :class:`EndOfInput`; in the middle of one it is a 400. After
   ``Close`` or ``EndOfInput`` every call returns :data:`NEED_DATA` and input is dropped.
4. *Errors.* Bad input raises :class:`HTTPProtocolError` (a ``ProtocolError``) whose
   ``reply`` is a full error response with ``Connection: close`` and whose ``status`` is its
   code; it is raised again on every later call. The driver writes the reply after the
   responses to requests delivered before the error, then closes.
5. *100-continue.* An HTTP/1.1 request with ``Expect: 100-continue`` and a non-empty body
   yields ``Send(b"HTTP/1.1 100 Continue\\r\\n\\r\\n")`` as soon as its head is parsed, always:
   whether part of the body had already arrived depends on how the bytes were split, and
   the contract wants the same events for every split. RFC 9110 section 10.1.1 lets a
   server send it even when the body is already on its way.
6. *Line ends are strictly CRLF.* RFC 9112 section 2.2 lets a recipient accept a bare LF (h11
   and http.server do); we answer 400 instead. Smuggling attacks live in the places where
   two parsers disagree about where a line ends, and every real client sends CRLF. A bare
   LF at the end of the request line is reported at once (so a hand-typed ``nc`` request
   gets a 400, not a hang); one inside the field section is caught when the section ends.
   Chunk framing is strict the same way (the CRLF after chunk data is checked: h11's
   CVE-2025-43859). Empty lines (CRLF) before a request line are skipped (section 2.2).
7. *Limits do not depend on chunking (h11#182).* Every check is a function of the bytes
   received so far, made in the same order whether they came at once or a byte at a time:
   request line length (414) as soon as more than ``max_request_line + 1`` bytes have no LF,
   then the request line (400/505) as soon as it is complete, then the field section size
   (431) as soon as more than ``max_header_size`` bytes of it have no end, then the rest.
8. *Linear scanning.* Each search for a delimiter starts where the last one gave up (the
   ``_scan`` offset), and consumed bytes leave the front of a ``bytearray`` (amortised O(1)
   in CPython), so a request costs O(its size) however it is split.

The states, what each reads, and where it goes (``TRANSITIONS`` is this table as data):

==============  ===============================  ==========================================
state           reads                            next
==============  ===============================  ==========================================
IDLE            a request head                   IDLE, BODY, CHUNK_SIZE, CLOSING, CLOSED
BODY            Content-Length bytes             IDLE, CLOSING
CHUNK_SIZE      a chunk-size line                CHUNK_DATA, TRAILERS
CHUNK_DATA      chunk data and its CRLF          CHUNK_SIZE
TRAILERS        the trailer section              IDLE, CLOSING
CLOSING         nothing: returns Close           CLOSED
CLOSED          nothing: returns NEED_DATA       (final)
ERROR           nothing: raises again            (final)
==============  ===============================  ==========================================

Any reading state may also go to ERROR (bad input) or CLOSING (a response closed the
connection); IDLE goes to CLOSED on end of input.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final

from muxserver.handlers.base import (
    NEED_DATA,
    PAUSED,
    Close,
    EndOfInput,
    Event,
    Handler,
    HandlerMisuseError,
    NeedData,
    Paused,
    Request,
    Send,
)
from muxserver.handlers.http_parse import (
    CHUNKED,
    HTTPProtocolError,
    frame_request,
    http_error,
    parse_chunk_size,
    parse_fields,
    parse_request_line,
)
from muxserver.handlers.http_response import HTTPResponse, encode_response

__all__ = [
    "CONTINUE",
    "TRANSITIONS",
    "HTTPHandler",
    "HTTPProtocolError",
    "HTTPRequest",
    "HTTPResponse",
    "HTTPState",
]

CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim response sent (as a :class:`Send` event) for ``Expect: 100-continue``."""


class HTTPState(enum.Enum):
    """Where an :class:`HTTPHandler` stands; see the table in the module docstring."""

    IDLE = "idle"
    """Waiting for a request head (possibly part of one is buffered)."""
    BODY = "body"
    """Reading a Content-Length body."""
    CHUNK_SIZE = "chunk size"
    """Reading a chunk-size line of a chunked body."""
    CHUNK_DATA = "chunk data"
    """Reading the data of one chunk and the CRLF after it."""
    TRAILERS = "trailers"
    """Reading the trailer section after the last chunk."""
    CLOSING = "closing"
    """The connection ends after the responses so far; the next event is Close."""
    CLOSED = "closed"
    """Close or EndOfInput was returned; nothing more will be produced."""
    ERROR = "error"
    """An HTTPProtocolError was raised; it is raised again on every call."""


_S = HTTPState
TRANSITIONS: Final[dict[HTTPState, frozenset[HTTPState]]] = {
    _S.IDLE: frozenset({_S.BODY, _S.CHUNK_SIZE, _S.CLOSING, _S.CLOSED, _S.ERROR}),
    _S.BODY: frozenset({_S.IDLE, _S.CLOSING, _S.ERROR}),
    _S.CHUNK_SIZE: frozenset({_S.CHUNK_DATA, _S.TRAILERS, _S.CLOSING, _S.ERROR}),
    _S.CHUNK_DATA: frozenset({_S.CHUNK_SIZE, _S.CLOSING, _S.ERROR}),
    _S.TRAILERS: frozenset({_S.IDLE, _S.CLOSING, _S.ERROR}),
    _S.CLOSING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
    _S.ERROR: frozenset(),
}
"""Which state may follow which (staying in the same state is always allowed)."""

# The states the hot path names, bound once: an enum member lookup costs as much as a call.
_IDLE: Final = HTTPState.IDLE
_CLOSED: Final = HTTPState.CLOSED


class HTTPRequest(Request):
    """A complete HTTP request.

    ``method``, ``target`` and ``http_version`` (``b"1.1"``, ``b"1.0"``) are the bytes of the
    request line; ``headers`` are ``(name, value)`` pairs in arrival order with lower-cased
    names; ``body`` is the whole (de-chunked) body; ``trailers`` are the trailer fields of a
    chunked body, like ``headers``. ``keep_alive`` is false when the connection ends after
    this request's response.
    """

    __slots__ = ("body", "headers", "http_version", "keep_alive", "method", "target", "trailers")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        keep_alive: bool = True,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.trailers = trailers if trailers is not None else []

    def header(self, name: bytes | str, default: bytes | None = None) -> bytes | None:
        """The value of the first header called ``name`` (any case), or ``default``."""
        key = (name.encode("latin-1") if isinstance(name, str) else name).lower()
        for field, value in self.headers:
            if field == key:
                return value
        return default

    def header_values(self, name: bytes | str) -> list[bytes]:
        """Every value of the headers called ``name`` (any case), in order."""
        key = (name.encode("latin-1") if isinstance(name, str) else name).lower()
        return [value for field, value in self.headers if field == key]

    def __eq__(self, other: object) -> bool:
        if type(other) is not HTTPRequest:
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in HTTPRequest.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        trailers = f", trailers={self.trailers!r}" if self.trailers else ""
        return (
            f"HTTPRequest({self.method!r}, {self.target!r}, {self.http_version!r}, "
            f"{self.headers!r}, body={self.body!r}, keep_alive={self.keep_alive}{trailers})"
        )


class _More:
    """Private sentinel: the state changed, run the next state's reader (avoids recursion)."""


_MORE: Final = _More()
_Result = Event | NeedData | Paused | _More
_PLAIN: Final = [(b"Content-Type", b"text/plain")]
_PLAIN_UTF8: Final = [(b"Content-Type", b"text/plain; charset=utf-8")]


class HTTPHandler(Handler):
    """The server side of one HTTP/1.1 connection (sans-IO).

    Args:
        max_request_line: longest request line, CRLF excluded (414 beyond it).
        max_header_size: largest field section in bytes, CRLFs and the empty line included
            (431 beyond it); the same limit applies to the trailer section.
        max_header_count: most header (or trailer) lines (431 beyond it).
        max_body_size: largest body, declared or de-chunked (413 beyond it).
        max_chunk_line: longest chunk-size line with its extensions (400 beyond it).
        max_pending: most delivered requests without a response before ``next_event()``
            returns :data:`PAUSED`.

    ``send()`` accepts an :class:`HTTPResponse`, ``bytes`` (200 text/plain), ``str``
    (200 text/plain; charset=utf-8) or ``None`` (204 No Content).
    """

    __slots__ = (
        "_body",
        "_buf",
        "_current",
        "_discard",
        "_dropping",
        "_eof",
        "_error",
        "_line",
        "_line_end",
        "_remaining",
        "_scan",
        "_state",
        "_waiting",
        "max_body_size",
        "max_chunk_line",
        "max_header_count",
        "max_header_size",
        "max_pending",
        "max_request_line",
    )

    def __init__(
        self,
        *,
        max_request_line: int = 8190,
        max_header_size: int = 32768,
        max_header_count: int = 100,
        max_body_size: int = 1 << 20,
        max_chunk_line: int = 4096,
        max_pending: int = 8,
    ) -> None:
        if min(max_request_line, max_header_size, max_header_count, max_chunk_line) < 1:
            raise ValueError("HTTPHandler limits must be positive")
        if max_pending < 1 or max_body_size < 0:
            raise ValueError("max_pending must be >= 1 and max_body_size >= 0")
        self.max_request_line = max_request_line
        self.max_header_size = max_header_size
        self.max_header_count = max_header_count
        self.max_body_size = max_body_size
        self.max_chunk_line = max_chunk_line
        self.max_pending = max_pending
        self._buf = bytearray()
        self._scan = 0  # where the next delimiter search starts
        self._line_end = -1  # index of the request line's LF once seen in a partial head
        self._line: tuple[bytes, bytes, bytes, bool] | None = None  # that line, parsed
        self._state = HTTPState.IDLE
        self._eof = False
        self._discard = False  # input is no longer wanted (closing, closed or failed)
        self._dropping = False  # a response closed the connection: later ones are dropped
        self._error: HTTPProtocolError | None = None
        self._waiting: list[HTTPRequest] = []  # delivered, unanswered; a list stays small
        self._current: HTTPRequest | None = None  # request whose body is being read
        self._remaining = 0  # bytes of the current body or chunk still to come
        self._body: bytearray | None = None  # de-chunked body so far

    @property
    def state(self) -> HTTPState:
        """Where the connection stands."""
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes received and not yet delivered (raw input plus a partial chunked body)."""
        return len(self._buf) + (len(self._body) if self._body is not None else 0)

    @property
    def pending(self) -> int:
        """Requests delivered by ``next_event()`` and not yet answered by ``send()``."""
        return len(self._waiting)

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the client; ``b""`` means end of input.

        Raises:
            HandlerMisuseError: if called after end of input.
        """
        if self._eof:
            raise HandlerMisuseError("receive_data() called after end of input (b'')")
        if not data:
            self._eof = True
        elif not self._discard:
            self._buf += data

    def next_event(self) -> Event | NeedData | Paused:
        """Return the next :class:`HTTPRequest`, :class:`Send`, :class:`Close` or
        :class:`EndOfInput`, or :data:`NEED_DATA` / :data:`PAUSED`.

        Raises:
            HTTPProtocolError: the input is not a valid request (sticky).
        """
        # hot path: one check and one reader call per request without a body
        if self._error is not None:
            raise self._error
        state = self._state
        if state is _IDLE:
            if len(self._waiting) >= self.max_pending:
                return PAUSED
            if not self._buf and not self._eof:
                return NEED_DATA  # the pull that follows every request on a keep-alive connection
        try:
            event = self._read_head() if state is _IDLE else _READERS[state](self)
            while event is _MORE:
                event = _READERS[self._state](self)
            if event is NEED_DATA and self._eof and self._state is not _CLOSED:
                if self._state is not _IDLE or self._buf:
                    raise http_error(400, "connection closed in the middle of a request")
                self._state = HTTPState.CLOSED
                return EndOfInput()
        except HTTPProtocolError as exc:
            self._error = exc
            self._state = HTTPState.ERROR
            self._discard = True
            self._buf = bytearray()
            self._body = None
            raise
        assert not isinstance(event, _More)
        return event

    def send(self, response: Any) -> bytes:
        """Encode the answer to the oldest unanswered request and return the bytes to write.

        Returns ``b""`` if an earlier response already closed the connection.

        Raises:
            HandlerMisuseError: no request is waiting, or the response is invalid (see
                :mod:`~muxserver.handlers.http_response`).
        """
        if not self._waiting:
            raise HandlerMisuseError("send() called with no request waiting for an answer")
        request = self._waiting.pop(0)
        if self._dropping:
            return b""
        is_http11 = request.http_version != b"1.0"
        is_head = request.method == b"HEAD"
        if type(response) is bytes and request.keep_alive and is_http11 and not is_head:
            # Hot path: what encode_response() gives for HTTPResponse(200, _PLAIN, response).
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                % (
                    len(response),
                    response,
                )
            )
        if not isinstance(response, HTTPResponse):
            response = _coerce(response)
        data, close = encode_response(response, is_head, is_http11, not request.keep_alive)
        if close:
            self._dropping = True
            if self._state not in (HTTPState.CLOSED, HTTPState.ERROR):
                self._state = HTTPState.CLOSING
                self._discard = True
                self._buf = bytearray()
                self._body = None
        return data

    def encode_error(self, error: BaseException) -> bytes | None:
        """Answer the oldest unanswered request with 500 Internal Server Error.

        The exception's text is not sent (it may hold secrets); the driver logs it.
        """
        body = b"500 Internal Server Error\n"
        return self.send(HTTPResponse(500, _PLAIN_UTF8, body))

    # -- readers: one per state, each returns an event, NEED_DATA or _MORE ------------------

    def _read_head(self) -> _Result:
        buf = self._buf
        if not buf:
            return NEED_DATA
        while buf.startswith(b"\r\n"):  # RFC 9112 section 2.2: empty lines before a request
            del buf[:2]
            self._scan = 0
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            return self._head_incomplete()
        lf = self._line_end
        if lf < 0:
            lf = buf.find(b"\n", 0, end + 2)
            line = self._request_line(lf)
        else:
            assert self._line is not None
            line = self._line
            self._line_end = -1
            self._line = None
        if end + 3 - lf > self.max_header_size:
            raise http_error(431, "header section too large")
        # end < lf means no header lines: the blank line follows the request line directly.
        fields = parse_fields(bytes(buf[lf + 1 : end]), self.max_header_count) if end > lf else []
        del buf[: end + 4]
        self._scan = 0
        method, target, version, is_http11 = line
        length, keep_alive, expect = frame_request(fields, is_http11, self.max_body_size)
        request = HTTPRequest(method, target, version, fields, b"", keep_alive)
        if length == 0:
            return self._deliver(request)
        self._current = request
        if length == CHUNKED:
            self._body = bytearray()
            self._state = HTTPState.CHUNK_SIZE
        else:
            self._remaining = length
            self._state = HTTPState.BODY
        return Send(CONTINUE) if expect and is_http11 else _MORE

    def _head_incomplete(self) -> _Result:
        buf = self._buf
        size = len(buf)
        lf = self._line_end
        if lf < 0:
            lf = buf.find(b"\n", self._scan)
            if lf < 0:
                if size > self.max_request_line + 1:
                    raise http_error(414, "request line too long")
                self._scan = max(0, size - 3)
                return NEED_DATA
            self._line = self._request_line(lf)
            self._line_end = lf
        if size - lf - 1 > self.max_header_size:
            raise http_error(431, "header section too large")
        self._scan = max(lf - 1, size - 3)
        return NEED_DATA

    def _request_line(self, lf: int) -> tuple[bytes, bytes, bytes, bool]:
        if lf > self.max_request_line + 1:
            raise http_error(414, "request line too long")
        if lf == 0 or self._buf[lf - 1] != 13:
            raise http_error(400, "request line must end with CRLF")
        return parse_request_line(bytes(self._buf[: lf - 1]))

    def _read_body(self) -> _Result:
        need = self._remaining
        buf = self._buf
        if len(buf) < need:
            return NEED_DATA
        request = self._current
        assert request is not None
        request.body = bytes(buf[:need])
        del buf[:need]
        return self._deliver(request)

    def _read_chunk_size(self) -> _Result:
        buf = self._buf
        lf = buf.find(b"\n", self._scan)
        if lf < 0:
            if len(buf) > self.max_chunk_line + 1:
                raise http_error(400, "chunk size line too long")
            self._scan = len(buf)
            return NEED_DATA
        if lf > self.max_chunk_line + 1:
            raise http_error(400, "chunk size line too long")
        if lf == 0 or buf[lf - 1] != 13:
            raise http_error(400, "chunk size line must end with CRLF")
        size = parse_chunk_size(bytes(buf[: lf - 1]))
        del buf[: lf + 1]
        self._scan = 0
        assert self._body is not None
        if len(self._body) + size > self.max_body_size:
            raise http_error(413, "request body too large")
        self._remaining = size
        self._state = HTTPState.CHUNK_DATA if size else HTTPState.TRAILERS
        return _MORE

    def _read_chunk_data(self) -> _Result:
        need = self._remaining
        buf = self._buf
        if len(buf) < need + 2:
            return NEED_DATA
        if buf[need : need + 2] != b"\r\n":
            raise http_error(400, "chunk data must be followed by CRLF")
        assert self._body is not None
        self._body += buf[:need]
        del buf[: need + 2]
        self._state = HTTPState.CHUNK_SIZE
        return _MORE

    def _read_trailers(self) -> _Result:
        buf = self._buf
        trailers: list[tuple[bytes, bytes]] = []
        if buf.startswith(b"\r\n"):
            del buf[:2]
        else:
            end = buf.find(b"\r\n\r\n", self._scan)
            if end < 0:
                if len(buf) > self.max_header_size:
                    raise http_error(431, "trailer section too large")
                self._scan = max(0, len(buf) - 3)
                return NEED_DATA
            if end + 4 > self.max_header_size:
                raise http_error(431, "trailer section too large")
            trailers = parse_fields(bytes(buf[:end]), self.max_header_count)
            del buf[: end + 4]
            self._scan = 0
        request = self._current
        assert request is not None and self._body is not None
        request.body = bytes(self._body)
        request.trailers = trailers
        self._body = None
        return self._deliver(request)

    def _deliver(self, request: HTTPRequest) -> HTTPRequest:
        self._current = None
        self._waiting.append(request)
        if request.keep_alive:
            self._state = _IDLE
        else:
            self._state = HTTPState.CLOSING
            self._discard = True
            self._buf = bytearray()
        return request

    def _emit_close(self) -> _Result:
        self._state = HTTPState.CLOSED
        return Close()

    def _closed(self) -> _Result:
        return NEED_DATA


def _coerce(response: object) -> HTTPResponse:
    # The conveniences of send(): bytes and str are 200 text/plain, None is 204.
    if response is None:
        return HTTPResponse(204)
    if isinstance(response, (bytes, bytearray, memoryview)):
        return HTTPResponse(200, _PLAIN, bytes(response))
    if isinstance(response, str):
        return HTTPResponse(200, _PLAIN_UTF8, response.encode())
    raise HandlerMisuseError(
        f"HTTPHandler cannot send {type(response).__name__}: return an HTTPResponse, "
        "bytes, str or None"
    )


def _unreachable(handler: HTTPHandler) -> _Result:
    raise AssertionError("next_event() raises before reading in the ERROR state")


_READERS: Final[dict[HTTPState, Callable[[HTTPHandler], _Result]]] = {
    HTTPState.IDLE: HTTPHandler._read_head,
    HTTPState.BODY: HTTPHandler._read_body,
    HTTPState.CHUNK_SIZE: HTTPHandler._read_chunk_size,
    HTTPState.CHUNK_DATA: HTTPHandler._read_chunk_data,
    HTTPState.TRAILERS: HTTPHandler._read_trailers,
    HTTPState.CLOSING: HTTPHandler._emit_close,
    HTTPState.CLOSED: HTTPHandler._closed,
    HTTPState.ERROR: _unreachable,
}
