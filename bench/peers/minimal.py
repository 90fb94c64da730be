"""The one protocol module every benchmark peer shares.

Theory of operation
-------------------
The benchmark compares I/O frameworks, not parsers, so every peer server (asyncio, uvloop,
Twisted, gevent, socketserver, and muxserver's ``--handlers minimal`` mode) feeds the bytes it
receives into the same two tiny sessions defined here and writes back whatever they return:

* :class:`RespSession` understands just enough RESP for ``redis-benchmark -t ping,set,get``:
  arrays of bulk strings (``*2\\r\\n$3\\r\\nGET\\r\\n$3\\r\\nkey\\r\\n``) and inline commands
  (``PING\\r\\n``). PING, SET and GET are served from a dict shared by the whole process; any
  other command gets ``-ERR unknown command`` (redis-benchmark's start-up ``CONFIG GET`` probe
  lands there and only prints a warning).
* :class:`HttpSession` understands HTTP/1.1 keep-alive GET requests without bodies, the way
  ``wrk`` sends them, and answers each with the same small fixed response.

A session is sans-IO: ``feed(data)`` takes bytes exactly as they arrived, in any chunking, and
returns the bytes to send back (possibly ``b""``). After a reply that ends the conversation
(a protocol error, ``Connection: close``, or a request over :data:`MAX_REQUEST_BYTES`) the
attribute ``close_after`` is true; the server then flushes the returned bytes and closes.

Both parsers keep a search offset so that scanning stays linear however the input is split,
and both consume every complete request in one ``feed`` so pipelining (``-P 16``) works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

#: Largest request (RESP command or HTTP header block) a session accepts; larger is an error.
MAX_REQUEST_BYTES = 64 * 1024

#: The fixed HTTP body; small on purpose so the benchmark measures per-request overhead.
HTTP_BODY = b"Hello, world\n"

HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(HTTP_BODY)).encode() + b"\r\n"
    b"\r\n" + HTTP_BODY
)
HTTP_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
HTTP_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)

_PONG = b"+PONG\r\n"
_OK = b"+OK\r\n"
_NIL = b"$-1\r\n"
_ERR_PROTOCOL = b"-ERR Protocol error\r\n"
_ERR_TOO_LARGE = b"-ERR Protocol error: request too large\r\n"


class Session(Protocol):
    """What a peer server needs from a session: bytes in, bytes out, and a close flag."""

    close_after: bool

    def feed(self, data: bytes) -> bytes:
        """Consume ``data`` and return the replies to every request it completed."""
        ...


class _ProtocolError(Exception):
    """The peer sent something this module refuses; the connection is answered and closed."""


class RespSession:
    """One RESP connection: PING, SET and GET against a dict shared by the process."""

    __slots__ = ("_buf", "_store", "close_after")

    def __init__(self, store: dict[bytes, bytes]) -> None:
        self._buf = b""
        self._store = store
        self.close_after = False

    def feed(self, data: bytes) -> bytes:
        """Parse every complete command in the buffered input and return their replies."""
        # hot path: runs once per read on every RESP connection of every peer
        buf = self._buf + data if self._buf else data
        replies: list[bytes] = []
        pos = 0
        end = len(buf)
        try:
            while pos < end:
                if buf[pos] == 0x2A:  # "*": an array of bulk strings
                    parsed = self._parse_array(buf, pos)
                else:
                    parsed = self._parse_inline(buf, pos)
                if parsed is None:
                    break
                args, pos = parsed
                replies.append(self._execute(args))
        except _ProtocolError as exc:
            replies.append(exc.args[0])
            self.close_after = True
            self._buf = b""
            return b"".join(replies)
        rest = buf[pos:]
        if len(rest) > MAX_REQUEST_BYTES:
            replies.append(_ERR_TOO_LARGE)
            self.close_after = True
            rest = b""
        self._buf = rest
        return b"".join(replies)

    @staticmethod
    def _parse_array(buf: bytes, pos: int) -> tuple[list[bytes], int] | None:
        """Return (arguments, next position) or None when the command is incomplete."""
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            count = int(buf[pos + 1 : eol])
        except ValueError:
            raise _ProtocolError(_ERR_PROTOCOL) from None
        if not 0 < count <= 16:
            raise _ProtocolError(_ERR_PROTOCOL)
        pos = eol + 2
        args: list[bytes] = []
        for _ in range(count):
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            if buf[pos] != 0x24:  # "$"
                raise _ProtocolError(_ERR_PROTOCOL)
            try:
                size = int(buf[pos + 1 : eol])
            except ValueError:
                raise _ProtocolError(_ERR_PROTOCOL) from None
            if not 0 <= size <= MAX_REQUEST_BYTES:
                raise _ProtocolError(_ERR_TOO_LARGE)
            start = eol + 2
            stop = start + size
            if stop + 2 > len(buf):
                return None
            if buf[stop : stop + 2] != b"\r\n":
                raise _ProtocolError(_ERR_PROTOCOL)
            args.append(buf[start:stop])
            pos = stop + 2
        return args, pos

    @staticmethod
    def _parse_inline(buf: bytes, pos: int) -> tuple[list[bytes], int] | None:
        """Parse a space-separated inline command such as ``PING\\r\\n``."""
        eol = buf.find(b"\n", pos)
        if eol < 0:
            return None
        return buf[pos:eol].split(), eol + 1

    def _execute(self, args: list[bytes]) -> bytes:
        """Run one command and return its encoded reply."""
        if not args:
            return b""  # an empty inline line: Redis ignores it too
        name = args[0].upper()
        if name == b"GET" and len(args) == 2:
            value = self._store.get(args[1])
            if value is None:
                return _NIL
            return b"$%d\r\n%b\r\n" % (len(value), value)
        if name == b"SET" and len(args) == 3:
            self._store[args[1]] = args[2]
            return _OK
        if name == b"PING" and len(args) == 1:
            return _PONG
        return b"-ERR unknown command or wrong number of arguments\r\n"


class HttpSession:
    """One HTTP/1.1 connection: every GET gets :data:`HTTP_RESPONSE`; keep-alive by default."""

    __slots__ = ("_buf", "_scan_from", "close_after")

    def __init__(self) -> None:
        self._buf = b""
        self._scan_from = 0
        self.close_after = False

    def feed(self, data: bytes) -> bytes:
        """Parse every complete request head in the buffered input and return the responses."""
        # hot path: runs once per read on every HTTP connection of every peer
        buf = self._buf + data if self._buf else data
        replies: list[bytes] = []
        pos = 0
        scan = self._scan_from
        while True:
            head_end = buf.find(b"\r\n\r\n", max(pos, scan))
            if head_end < 0:
                break
            reply, close = self._respond(buf[pos:head_end])
            replies.append(reply)
            pos = head_end + 4
            scan = pos
            if close:
                self.close_after = True
                self._buf = b""
                return b"".join(replies)
        rest = buf[pos:]
        if len(rest) > MAX_REQUEST_BYTES:
            replies.append(HTTP_TOO_LARGE)
            self.close_after = True
            rest = b""
        self._buf = rest
        # the terminator may straddle this read and the next: rescan its last 3 bytes
        self._scan_from = max(0, len(rest) - 3)
        return b"".join(replies)

    @staticmethod
    def _respond(head: bytes) -> tuple[bytes, bool]:
        """Answer one request head; return (response, close the connection afterwards)."""
        line_end = head.find(b"\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        parts = request_line.split(b" ")
        if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
            return HTTP_BAD_REQUEST, True
        headers = b"" if line_end < 0 else head[line_end:].lower()
        if b"\r\ncontent-length:" in headers or b"\r\ntransfer-encoding:" in headers:
            return HTTP_BAD_REQUEST, True  # this benchmark's GETs never carry a body
        if parts[2] == b"HTTP/1.0":
            keep_alive = b"\r\nconnection: keep-alive" in headers
        else:
            keep_alive = b"\r\nconnection: close" not in headers
        return HTTP_RESPONSE, not keep_alive


def resp_session_factory() -> Callable[[], RespSession]:
    """Return a factory of RESP sessions that all share one new key-value store."""
    store: dict[bytes, bytes] = {}
    return lambda: RespSession(store)


def http_session_factory() -> Callable[[], HttpSession]:
    """Return a factory of HTTP sessions (they share nothing; this mirrors the RESP one)."""
    return HttpSession
