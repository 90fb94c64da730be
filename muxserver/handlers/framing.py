"""Framing helpers shared by the protocol handlers: one receive buffer, several ways to cut it.

Theory of operation
-------------------
A :class:`FrameReader` is the receive buffer of one connection. The handler ``feed()``s it the
bytes that arrived and then asks for the next record in whatever framing the protocol is in at
that moment -- the roles of asynchat's ``set_terminator`` and Twisted's ``LineReceiver`` /
``IntNStringReceiver``, but pull-style:

* :meth:`~FrameReader.read_until` -- a record ended by a delimiter (a line);
* :meth:`~FrameReader.read_exactly` -- a fixed number of bytes (a counted body);
* :meth:`~FrameReader.read_length_prefixed` -- a 1/2/4/8-byte length header, then the body;
* :meth:`~FrameReader.read_netstring` -- ``5:hello,``.

Every ``read_*`` either consumes one whole record and returns it, or consumes nothing and
returns ``None`` (not enough bytes yet). Because a failed read leaves the buffer untouched, a
protocol may switch framing between any two records on the same buffer: a header line, then a
body of N bytes, then lines again.

Limits. A record longer than its ``max_len`` raises :class:`FrameTooLongError`, and it does so the
same way however the bytes were chunked: the check runs on every call while the record is
incomplete (counting only bytes that are certainly part of the record) *and* when it completes.
Input that cannot be a valid frame raises :class:`MalformedFrameError`. Both are
:class:`FramingError`; handlers turn them into :class:`~muxserver.handlers.base.ProtocolError`.

Handlers. :class:`FramedHandler` is the skeleton the framed protocols (lines, echo, RESP)
share: it owns the reader and implements the contract's bookkeeping -- end of input, the
sticky error state, counting unanswered requests, the state enum -- so a concrete protocol
only says how to cut the next request out of the buffer (``_parse``) and what a partial one
means at end of input (``_parse_eof``).

Costs. Scanning for a delimiter is linear in the bytes received: a search memo remembers how far
the last unsuccessful search got, so a long line fed one byte at a time is not rescanned. The
buffer is never grown with ``bytes +=``. While the unread bytes all come from the latest chunk
the buffer *is* that chunk (a ``bytes``, so records are sliced from it with one copy and no
buffer copy at all); when a partial record must be joined with the next chunk it becomes a
``bytearray`` with a start offset, compacted only once at least half of it has been consumed,
so every byte is moved a bounded number of times.
"""

from __future__ import annotations

from typing import Final, Literal

from muxserver.handlers.base import (
    NEED_DATA,
    EndOfInput,
    Event,
    Handler,
    HandlerMisuseError,
    HandlerState,
    NeedData,
    Paused,
    ProtocolError,
    Request,
)

__all__ = [
    "FrameReader",
    "FrameTooLongError",
    "FramedHandler",
    "FramingError",
    "MalformedFrameError",
]

_HEADER_SIZES: Final = frozenset((1, 2, 4, 8))
_COLON: Final = 0x3A
_COMMA: Final = 0x2C
_ZERO: Final = 0x30
_NINE: Final = 0x39
_UNLIMITED_NETSTRING_DIGITS: Final = 20


class FramingError(Exception):
    """The input cannot be framed: a peer's error, which a handler reports as a ProtocolError."""


class FrameTooLongError(FramingError):
    """A record is longer than the limit the caller set (``limit`` bytes, delimiters excluded)."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class MalformedFrameError(FramingError):
    """The bytes break the framing's syntax (a bad netstring length, a missing ``,``)."""


class FrameReader:
    """A receive buffer that hands out records in any of several framings. See the module doc.

    Invariants: ``_buf[_pos:]`` are the unread bytes; ``_buf`` is ``b""`` whenever nothing is
    unread; ``_scan`` (when ``_scan_delim`` is set and ``_scan > _pos``) is an offset in
    ``_buf`` before which ``_scan_delim`` cannot start.
    """

    __slots__ = ("_buf", "_eof", "_pos", "_scan", "_scan_delim")

    def __init__(self) -> None:
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._scan = 0
        self._scan_delim: bytes | None = None
        self._eof = False

    @property
    def buffered(self) -> int:
        """How many bytes have been fed and not yet consumed."""
        return len(self._buf) - self._pos

    @property
    def eof(self) -> bool:
        """Whether :meth:`feed_eof` has been called (buffered bytes may still be read)."""
        return self._eof

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes that arrived. An empty ``data`` changes nothing.

        Raises:
            ValueError: if called after :meth:`feed_eof` with non-empty data.
        """
        if not data:
            return
        if self._eof:
            raise ValueError("FrameReader.feed() after feed_eof(): no bytes follow end of input")
        buf = self._buf
        if not buf:
            self._buf = data if type(data) is bytes else bytes(data)
            return
        pos = self._pos
        if type(buf) is bytes:
            grown = bytearray(memoryview(buf)[pos:])
            grown += data
            self._rebase(grown, pos)
        elif isinstance(buf, bytearray):
            if pos and pos * 2 >= len(buf):
                del buf[:pos]
                self._rebase(buf, pos)
            buf += data

    def feed_eof(self) -> None:
        """Record end of input. Buffered bytes stay readable; :meth:`read_rest` takes them."""
        self._eof = True

    def _rebase(self, buf: bytes | bytearray, removed: int) -> None:
        """Install ``buf``, which is the old buffer minus its first ``removed`` bytes."""
        self._buf = buf
        self._pos = 0
        self._scan = max(self._scan - removed, 0)

    def _consume_to(self, end: int) -> None:
        """Mark everything before offset ``end`` as read."""
        if end >= len(self._buf):
            self._buf = b""
            end = 0
        self._pos = end
        self._scan = 0

    def _take(self, start: int, end: int) -> bytes:
        """Return ``_buf[start:end]`` as ``bytes`` and consume up to ``end``."""
        chunk = self._buf[start:end]
        self._consume_to(end)
        return chunk if type(chunk) is bytes else bytes(chunk)

    def view(self) -> tuple[bytes | bytearray, int]:
        """Return ``(buffer, start)``: the unread bytes are ``buffer[start:]``.

        For parsers on a hot path that cut several records in one pass (see ``resp.py``). The
        buffer is the reader's own: read it, never modify it, and do not keep it past the next
        :meth:`feed` or :meth:`advance`. Report what was parsed with :meth:`advance`.
        """
        return self._buf, self._pos

    def advance(self, n: int) -> None:
        """Consume ``n`` bytes (after parsing them through :meth:`view`).

        Raises:
            ValueError: if fewer than ``n`` bytes are buffered, or ``n`` is negative.
        """
        # hot path: once per batch of pipelined records
        end = self._pos + n
        if n < 0 or end > len(self._buf):
            raise ValueError(f"cannot advance {n} bytes: {self.buffered} buffered")
        self._consume_to(end)

    def read_until(self, delimiter: bytes, max_len: int | None = None) -> bytes | None:
        """Return the next record ended by ``delimiter``, without the delimiter, or ``None``.

        ``max_len`` caps the record's length (delimiter excluded); ``None`` means no cap.

        Raises:
            FrameTooLongError: the record is, or is certain to become, longer than ``max_len``.
        """
        buf = self._buf
        pos = self._pos
        start = pos
        if self._scan > pos and self._scan_delim == delimiter:
            start = self._scan
        found = buf.find(delimiter, start)
        if found < 0:
            # The last len(delimiter) - 1 bytes may begin the delimiter; everything before
            # them belongs to the record, so only those count against the limit.
            known = len(buf) - len(delimiter) + 1
            self._scan = known
            self._scan_delim = delimiter
            if max_len is not None and known - pos > max_len:
                raise FrameTooLongError(f"record longer than {max_len} bytes", max_len)
            return None
        if max_len is not None and found - pos > max_len:
            raise FrameTooLongError(f"record longer than {max_len} bytes", max_len)
        record = buf[pos:found]
        self._consume_to(found + len(delimiter))
        return record if type(record) is bytes else bytes(record)

    def read_exactly(self, n: int) -> bytes | None:
        """Return the next ``n`` bytes, or ``None`` while fewer are buffered.

        Raises:
            ValueError: if ``n`` is negative (a caller's mistake).
        """
        if n < 0:
            raise ValueError(f"read_exactly() needs a count >= 0, not {n}")
        pos = self._pos
        if len(self._buf) - pos < n:
            return None
        return self._take(pos, pos + n)

    def read_rest(self) -> bytes:
        """Return and consume every buffered byte (for end of input, or raw pass-through)."""
        return self._take(self._pos, len(self._buf))

    def read_length_prefixed(
        self,
        header_size: int = 4,
        *,
        byteorder: Literal["big", "little"] = "big",
        max_len: int | None = None,
    ) -> bytes | None:
        """Return the body of the next frame ``<unsigned length><body>``, or ``None``.

        ``header_size`` is 1, 2, 4 or 8 bytes, read as an unsigned integer in ``byteorder``;
        the length counts the body only. ``max_len`` caps the body (``None``: no cap).

        Raises:
            FrameTooLongError: the header announces a body longer than ``max_len`` (raised as soon
                as the header has arrived, before the body is buffered).
            ValueError: ``header_size`` is not 1, 2, 4 or 8 (a caller's mistake).
        """
        if header_size not in _HEADER_SIZES:
            raise ValueError(f"header_size must be 1, 2, 4 or 8 bytes, not {header_size}")
        buf = self._buf
        pos = self._pos
        body_start = pos + header_size
        if len(buf) < body_start:
            return None
        length = int.from_bytes(buf[pos:body_start], byteorder)
        if max_len is not None and length > max_len:
            raise FrameTooLongError(f"frame of {length} bytes exceeds {max_len}", max_len)
        if len(buf) - body_start < length:
            return None
        return self._take(body_start, body_start + length)

    def read_netstring(self, max_len: int | None = None) -> bytes | None:
        """Return the payload of the next netstring (``5:hello,`` gives ``b"hello"``), or ``None``.

        The length is ASCII decimal without leading zeros; ``max_len`` caps the payload. The
        first fault in reading order is reported, so errors do not depend on chunking.

        Raises:
            FrameTooLongError: the length has more digits than ``max_len`` or exceeds it.
            MalformedFrameError: a non-digit in the length, a leading zero, an empty length, or a
                payload not followed by ``,``.
        """
        buf = self._buf
        pos = self._pos
        max_digits = len(str(max_len)) if max_len is not None else _UNLIMITED_NETSTRING_DIGITS
        # At most max_digits + 1 bytes are examined, so this loop is bounded.
        head = buf[pos : pos + max_digits + 1]
        for index, byte in enumerate(head):
            if byte == _COLON:
                if index == 0:
                    raise MalformedFrameError("netstring has an empty length")
                length = int(head[:index])
                break
            if not _ZERO <= byte <= _NINE:
                raise MalformedFrameError(f"netstring length has a non-digit byte {byte:#04x}")
            if index == 1 and head[0] == _ZERO:
                raise MalformedFrameError("netstring length has a leading zero")
            if index == max_digits:
                limit = max_len if max_len is not None else 10**max_digits - 1
                raise FrameTooLongError(
                    f"netstring length has more than {max_digits} digits", limit
                )
        else:
            return None
        if max_len is not None and length > max_len:
            raise FrameTooLongError(f"netstring of {length} bytes exceeds {max_len}", max_len)
        body_start = pos + index + 1
        body_end = body_start + length
        if len(buf) <= body_end:
            return None
        if buf[body_end] != _COMMA:
            raise MalformedFrameError("netstring payload is not followed by ','")
        body = self._take(body_start, body_end)
        self._consume_to(self._pos + 1)
        return body


class FramedHandler(Handler):
    """A handler skeleton over a :class:`FrameReader`; subclasses implement :meth:`_parse`.

    It implements ``receive_data``, ``next_event``, ``state`` and ``buffered`` for protocols
    that never pause (pipelined requests are all parsed at once):

    * ``_parse()`` returns the next event cut from ``self._reader`` or ``None`` when more bytes
      are needed; it raises :class:`ProtocolError` for bad input. Once it has said ``None``,
      ``next_event()`` answers :data:`NEED_DATA` without asking it again until bytes (or end
      of input) arrive: ``_fed`` is false in between.
    * ``_parse_eof()`` is called once input has ended and ``_parse()`` found nothing; it
      returns a last event made of the remaining bytes, or ``None`` (the default, which drops
      them). :class:`EndOfInput` follows.

    Every :class:`Request` produced counts as unanswered until :meth:`_answered` is called for
    it (subclasses call it from ``send`` and ``encode_error``). After a ProtocolError the
    buffer is released, further input is discarded and the same error is raised again on every
    ``next_event()``. After :class:`EndOfInput`, ``next_event()`` returns :data:`NEED_DATA`
    forever (so a driver that loops until ``NEED_DATA`` cannot spin).
    """

    __slots__ = ("_closed", "_error", "_fed", "_reader", "_unanswered")

    def __init__(self) -> None:
        self._reader = FrameReader()
        self._error: ProtocolError | None = None
        self._closed = False
        self._fed = False  # input arrived since _parse() last needed more
        self._unanswered = 0

    @property
    def state(self) -> HandlerState:
        """ERROR, CLOSED (EndOfInput produced), RECEIVING, WAITING (answers due) or IDLE."""
        if self._error is not None:
            return HandlerState.ERROR
        if self._closed:
            return HandlerState.CLOSED
        if self.buffered or self._mid_request():
            return HandlerState.RECEIVING
        if self._unanswered:
            return HandlerState.WAITING
        return HandlerState.IDLE

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed into events."""
        return self._reader.buffered

    @property
    def unanswered(self) -> int:
        """Requests handed out by ``next_event()`` and not yet answered."""
        return self._unanswered

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the peer; ``b""`` means end of input. Discarded after an error.

        Raises:
            HandlerMisuseError: if called after end of input.
        """
        if self._error is not None:
            return
        reader = self._reader
        if reader.eof:
            raise HandlerMisuseError(
                f"{type(self).__name__}.receive_data() after end of input (b'')"
            )
        if data:
            reader.feed(data)
        else:
            reader.feed_eof()
        self._fed = True

    def next_event(self) -> Event | NeedData | Paused:
        """Return the next event or :data:`NEED_DATA`; never :data:`PAUSED`.

        Raises:
            ProtocolError: the peer's input is invalid (raised again on every later call).
        """
        # hot path: the pull that ends every read returns at the second test
        if self._error is not None:
            raise self._error.with_traceback(None)
        if self._closed or not self._fed:
            return NEED_DATA
        try:
            event = self._parse()
            if event is None:
                if not self._reader.eof:
                    self._fed = False
                    return NEED_DATA
                event = self._parse_eof()
        except ProtocolError as exc:
            self._error = exc
            self._reader = FrameReader()
            raise
        if event is None:
            self._closed = True
            self._reader.read_rest()
            return EndOfInput()
        if isinstance(event, Request):
            self._unanswered += 1
        return event

    def _answered(self) -> None:
        """Count the oldest unanswered request as answered.

        Raises:
            HandlerMisuseError: if no request is waiting for an answer.
        """
        if not self._unanswered:
            raise HandlerMisuseError(
                f"{type(self).__name__}: send() or encode_error() with no unanswered request"
            )
        self._unanswered -= 1

    def _mid_request(self) -> bool:
        """Whether part of a request was consumed from the reader but not yet produced."""
        return False

    def _parse(self) -> Event | None:
        """Cut the next event from ``self._reader``; ``None`` when more bytes are needed."""
        raise NotImplementedError

    def _parse_eof(self) -> Event | None:
        """At end of input, make a last event of the leftover bytes; ``None`` drops them."""
        return None
