"""TCP record marking (RFC 5531 section 11) as a sans-IO handler.

Theory of operation
-------------------
On a byte stream, each RPC message is a *record* sent as one or more *fragments*. A fragment
is a 4-byte big-endian header -- the top bit set on the record's last fragment, the low 31
bits the fragment's length -- followed by that many bytes. :class:`RecordMarkingHandler`
follows the contract of :mod:`muxserver.handlers.base`:

* ``receive_data(bytes)`` buffers input (``b""`` is end of input);
* ``next_event()`` returns one :class:`RPCRecord` per complete record -- every pipelined
  record, in order, without waiting for answers -- then :data:`NEED_DATA`, and finally
  :class:`EndOfInput` after end of input;
* ``send(reply)`` frames the service's reply bytes as a single last fragment, or returns
  ``b""`` for ``None`` (a call the service chose to drop, e.g. garbage or a duplicate).

States, as data::

    IDLE       --header-->        RECEIVING   (part of a record has arrived)
    RECEIVING  --last fragment--> IDLE        (an RPCRecord was produced)
    IDLE       --end of input-->  CLOSED      (EndOfInput)
    RECEIVING  --end of input-->  ERROR       (ProtocolError: record cut short)
    any        --oversized-->     ERROR       (ProtocolError, no reply, sticky)

The record-size limit is checked against the *declared* fragment lengths as each header is
read, so it fires at the same point whatever the chunking and before the bytes are buffered.
RPC has no way to answer a record it could not read, so protocol errors carry no reply.

Hot path: ``receive_data``/``next_event`` run per readiness event. Input is kept in one
``bytearray`` with a read offset, compacted only when the consumed prefix is large, so
scanning stays linear however the bytes are split.
"""

from __future__ import annotations

import collections
import enum
import struct

from muxserver.handlers.base import (
    NEED_DATA,
    EndOfInput,
    Event,
    Handler,
    HandlerMisuseError,
    NeedData,
    Paused,
    ProtocolError,
    Request,
)
from muxserver.rpc.message import AcceptStat, Reply, encode_reply, peek_xid

__all__ = [
    "DEFAULT_MAX_RECORD_SIZE",
    "RPCRecord",
    "RecordMarkingHandler",
    "RecordState",
    "frame_record",
]

DEFAULT_MAX_RECORD_SIZE = 1 << 20
"""Largest record accepted by default (1 MiB): ample for calls, small enough to be safe."""

_LAST_FRAGMENT = 0x8000_0000
_MAX_FRAGMENT = 0x7FFF_FFFF
_HEADER = struct.Struct(">I")
_COMPACT_AT = 64 * 1024  # drop the consumed prefix of the input once it is this large


class RecordState(enum.Enum):
    """Where a record-marked connection stands."""

    IDLE = "idle"
    """Between records, nothing buffered."""
    RECEIVING = "receiving"
    """Part of a record has arrived."""
    CLOSED = "closed"
    """End of input was reported; no more events."""
    ERROR = "error"
    """A ProtocolError was raised; it is raised again on every call."""


class RPCRecord(Request):
    """A complete record: one RPC message (for a server, a call) as bytes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return type(other) is RPCRecord and other.data == self.data

    def __hash__(self) -> int:
        return hash((RPCRecord, self.data))

    def __repr__(self) -> str:
        return f"RPCRecord({self.data!r})"


def frame_record(message: bytes, max_fragment: int = _MAX_FRAGMENT) -> bytes:
    """Return ``message`` record-marked: fragments of at most ``max_fragment`` bytes.

    A message of ``max_fragment`` bytes or fewer (the usual case) becomes one last fragment.

    Raises:
        ValueError: ``max_fragment`` is not between 1 and 2**31 - 1.
    """
    if not 1 <= max_fragment <= _MAX_FRAGMENT:
        raise ValueError(f"max_fragment must be between 1 and {_MAX_FRAGMENT}")
    if len(message) <= max_fragment:
        return _HEADER.pack(_LAST_FRAGMENT | len(message)) + message
    parts: list[bytes] = []
    for start in range(0, len(message), max_fragment):
        chunk = message[start : start + max_fragment]
        last = start + max_fragment >= len(message)
        parts.append(_HEADER.pack((_LAST_FRAGMENT if last else 0) | len(chunk)))
        parts.append(chunk)
    return b"".join(parts)


class RecordMarkingHandler(Handler):
    """Split a TCP byte stream into RPC records and frame replies. See the module docstring.

    ``max_record_size`` bounds the sum of a record's fragment lengths; a record declaring more
    is a :class:`ProtocolError` (without a reply: the connection is closed).
    """

    __slots__ = (
        "_buffer",
        "_eof",
        "_error",
        "_fragments",
        "_last",
        "_pending",
        "_pos",
        "_record_size",
        "_state",
        "_want",
        "max_record_size",
    )

    def __init__(self, max_record_size: int = DEFAULT_MAX_RECORD_SIZE) -> None:
        if max_record_size < 0:
            raise ValueError("max_record_size cannot be negative")
        self.max_record_size = max_record_size
        self._buffer = bytearray()
        self._pos = 0  # bytes of _buffer already consumed
        self._want = -1  # bytes left in the current fragment; -1 while reading a header
        self._last = False
        self._fragments: list[bytes] = []
        self._record_size = 0
        self._eof = False
        self._error: ProtocolError | None = None
        self._state = RecordState.IDLE
        # xids of records handed out and not yet answered (None: not a readable call), so
        # encode_error() can answer a crashed service with SYSTEM_ERR for the right xid.
        self._pending: collections.deque[int | None] = collections.deque()

    @property
    def state(self) -> RecordState:
        """Where the connection stands (see :class:`RecordState`)."""
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes received and not yet delivered as records."""
        return len(self._buffer) - self._pos + self._record_size

    @property
    def pending(self) -> int:
        """Records delivered by ``next_event()`` and not yet answered by ``send()``."""
        return len(self._pending)

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the peer; ``b""`` means end of input.

        Raises:
            HandlerMisuseError: called again after end of input.
        """
        if self._eof:
            raise HandlerMisuseError("receive_data() called after end of input")
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Event | NeedData | Paused:
        """Return the next :class:`RPCRecord`, :class:`EndOfInput`, or :data:`NEED_DATA`.

        Raises:
            ProtocolError: a record exceeds ``max_record_size``, or input ended mid-record
                (sticky: raised again on later calls).
        """
        if self._error is not None:
            raise self._error
        if self._state is RecordState.CLOSED:
            return NEED_DATA
        try:
            record = self._parse()
        except ProtocolError as exc:
            self._error = exc
            self._state = RecordState.ERROR
            raise
        if record is not None:
            self._pending.append(peek_xid(record))
            return RPCRecord(record)
        if self._eof:
            if self._state is RecordState.RECEIVING or self._pos < len(self._buffer):
                self._error = ProtocolError("connection closed in the middle of an RPC record")
                self._state = RecordState.ERROR
                raise self._error
            self._state = RecordState.CLOSED
            return EndOfInput()
        return NEED_DATA

    def _parse(self) -> bytes | None:
        """Consume fragments until a record completes (return it) or input runs out (None)."""
        buffer = self._buffer
        while True:
            available = len(buffer) - self._pos
            if self._want < 0:
                if available < 4:
                    break
                header = _HEADER.unpack_from(buffer, self._pos)[0]
                self._pos += 4
                self._state = RecordState.RECEIVING
                self._want = header & _MAX_FRAGMENT
                self._last = bool(header & _LAST_FRAGMENT)
                if self._record_size + self._want > self.max_record_size:
                    raise ProtocolError(
                        f"RPC record of at least {self._record_size + self._want} bytes "
                        f"exceeds the limit of {self.max_record_size}"
                    )
                continue
            take = min(self._want, available)
            if take:
                self._fragments.append(bytes(buffer[self._pos : self._pos + take]))
                self._pos += take
                self._want -= take
                self._record_size += take
            if self._want:
                break
            self._want = -1
            if self._last:
                record = b"".join(self._fragments)
                self._fragments.clear()
                self._record_size = 0
                self._state = RecordState.IDLE
                self._compact()
                return record
        self._compact()
        return None

    def _compact(self) -> None:
        if self._pos == len(self._buffer):
            self._buffer.clear()
            self._pos = 0
        elif self._pos >= _COMPACT_AT:
            del self._buffer[: self._pos]
            self._pos = 0

    def send(self, response: bytes | None) -> bytes:
        """Frame the reply to the oldest unanswered record; ``None`` sends nothing.

        Raises:
            HandlerMisuseError: no record is waiting for an answer.
        """
        if not self._pending:
            raise HandlerMisuseError("send() called with no RPC record waiting for a reply")
        self._pending.popleft()
        if response is None:
            return b""
        return frame_record(bytes(response))

    def encode_error(self, error: BaseException) -> bytes | None:
        """Answer the oldest record with SYSTEM_ERR when its service raised.

        Returns ``None`` (close) when that record was not even a readable call.
        """
        if not self._pending:
            raise HandlerMisuseError("encode_error() called with no RPC record waiting")
        xid = self._pending.popleft()
        if xid is None:
            return None
        return frame_record(encode_reply(Reply.accepted(xid, AcceptStat.SYSTEM_ERR)))
