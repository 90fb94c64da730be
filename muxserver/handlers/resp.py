"""RESP2, the Redis protocol, server side: commands in, replies out.

Theory of operation
-------------------
Input. A client sends commands in one of two forms, and may send many before reading any
answer (pipelining):

* a *multibulk*: ``*<n>\\r\\n`` then ``n`` bulk strings ``$<len>\\r\\n<len bytes>\\r\\n``;
* an *inline* command: one line ending in ``\\n`` (an optional ``\\r`` before it), split on
  ASCII whitespace. Redis's quoting rules for inline commands are not implemented.

Each becomes a :class:`Command` event carrying its arguments as ``bytes``. Empty commands
(``*0``, ``*-1``, a blank line) produce nothing, as in Redis. The handler never pauses: every
complete command buffered is produced at once, and the driver keeps answers in order.

Parsing has two paths that must agree. The *batch path* (``_parse_batch``) handles the common
case -- complete, well-formed multibulks already in the buffer -- cutting every one of them out
in one pass: one ``split`` on CRLF, then a walk over the lines, consuming only what it cut
(it is off when ``max_inline_length`` is below 20 or ``max_bulk_length`` below 16 KiB). The
commands wait in ``_ready`` and ``next_event()`` hands them out one per call, so a pipelined
read costs one parse call, not one per command. Anything else (a partial command, an inline
command, anything odd) goes to the *step path* (``_parse``), which is the specification: it
consumes one line or bulk at a time, keeping ``_remaining`` (bulks still due in this command)
and ``_bulk_len`` (``-1`` while the next ``$`` header is due) so that a command fed one byte
at a time is parsed in linear time. The batch path only ever accepts what the step path would
accept, in canonical form (no leading zeros), so a cut command's size on the wire is known
from its arguments: ``buffered`` counts the commands still waiting in ``_ready``.

Limits, answered as Redis answers them, as a :class:`~muxserver.handlers.base.ProtocolError`
whose ``reply`` is the ``-ERR Protocol error: ...`` line:

* ``max_multibulk_length`` -- arguments in one command (``invalid multibulk length``);
* ``max_bulk_length`` -- bytes in one argument (``invalid bulk length``);
* ``max_inline_length`` -- bytes in an inline command (``too big inline request``) and in a
  ``*``/``$`` header line (``too big mbulk count string`` / ``too big bulk count string``).

They fire at the same command whatever the chunking. Unlike Redis, the ``\\r\\n`` after a
bulk's payload is checked (``expected CRLF after bulk string``) rather than skipped blindly.
At end of input a partial command is dropped (nobody is left to answer it): only
:class:`~muxserver.handlers.base.EndOfInput` follows.

Output. :func:`encode` turns a service's answer into a RESP2 reply, dispatching on the exact
type first (a dict lookup; subclasses fall back to an ``isinstance`` walk):

=====================================  ==============================
Python value                           RESP2 reply
=====================================  ==============================
:class:`SimpleString` (e.g. :data:`OK`) ``+OK\\r\\n``
:class:`RespError`                     ``-ERR message\\r\\n``
``int`` (``bool`` as 1/0)              ``:42\\r\\n``
``bytes``/``bytearray``/``memoryview`` ``$5\\r\\nhello\\r\\n``
``str`` (UTF-8), ``float`` (``repr``)  a bulk string
``None``                               ``$-1\\r\\n`` (null bulk)
``list``/``tuple`` (nested freely)     ``*2\\r\\n...``
:data:`NULL_ARRAY`                     ``*-1\\r\\n``
=====================================  ==============================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, TypeAlias, final

from muxserver.handlers.base import (
    NEED_DATA,
    Event,
    HandlerMisuseError,
    NeedData,
    Paused,
    ProtocolError,
    Request,
)
from muxserver.handlers.framing import FramedHandler, FrameTooLongError

__all__ = [
    "NULL_ARRAY",
    "OK",
    "Command",
    "NullArray",
    "RespError",
    "RespHandler",
    "RespValue",
    "SimpleString",
    "encode",
    "encode_command",
]

_CRLF: Final = b"\r\n"
_STAR: Final = 0x2A
_DOLLAR: Final = 0x24
_ZERO: Final = 0x30
_MAX_DIGITS: Final = 19
"""Digits in the longest count RESP allows (a signed 64-bit integer)."""
_CACHED: Final = 1024
"""Headers for counts below this are precomputed."""
_NO_COMMANDS: Final[list[Command]] = []
"""Every handler's ``_ready`` while no batch waits; never appended to."""
_BATCH_WINDOW: Final = 16 * 1024
"""Bytes the batch path splits into lines at a time, past its first window."""
_FIRST_WINDOW: Final = 2 * 1024
"""The first window of each batch: a command the batch path cannot take (a payload holding a
CRLF, a non-canonical header) costs a split of this much before the step path takes it."""
_COUNT_OF: Final = {b"*%d" % n: n for n in range(1, _CACHED)}
_SIZE_OF: Final = {b"$%d" % n: n for n in range(_CACHED)}
"""Canonical ``*``/``$`` header lines (CRLF excluded) -> their count: one lookup parses one."""


class SimpleString(str):
    """A RESP simple-string reply (``+OK``): a short status, never containing CR or LF.

    Raises:
        ValueError: if the text contains ``\\r`` or ``\\n``.
    """

    __slots__ = ()

    def __new__(cls, text: str) -> SimpleString:
        """Check and wrap ``text``."""
        if "\r" in text or "\n" in text:
            raise ValueError(f"a RESP simple string cannot contain CR or LF: {text!r}")
        return super().__new__(cls, text)


class RespError(str):
    """A RESP error *reply value* (``-ERR unknown command``), returned by a service.

    The text should start with an error code (``ERR``, ``WRONGTYPE``, ...), as Redis's do. CR
    and LF are replaced by spaces. Not an exception: a peer's bad input is a
    :class:`~muxserver.handlers.base.ProtocolError`; a service that *raises* is answered by
    :meth:`RespHandler.encode_error`.
    """

    __slots__ = ()

    def __new__(cls, text: str) -> RespError:
        """Sanitise and wrap ``text``."""
        return super().__new__(cls, _one_line(text))


@final
class NullArray:
    """The type of :data:`NULL_ARRAY`, RESP2's null array reply (``*-1``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY: Final = NullArray()
"""The null array reply ``*-1\\r\\n`` (``None`` encodes as the null *bulk* ``$-1\\r\\n``)."""

OK: Final = SimpleString("OK")
"""The ``+OK`` reply."""

RespValue: TypeAlias = (
    bool
    | int
    | float
    | str
    | bytes
    | bytearray
    | memoryview
    | NullArray
    | list["RespValue"]
    | tuple["RespValue", ...]
    | None
)
"""What :func:`encode` accepts (``SimpleString`` and ``RespError`` are ``str`` subtypes)."""


class Command(Request):
    """One command from the client: its arguments, the command name first."""

    __slots__ = ("args",)

    def __init__(self, args: list[bytes]) -> None:
        self.args = args

    @property
    def name(self) -> str:
        """The command name, upper-cased (``"GET"``); never fails, even on non-ASCII bytes."""
        return self.args[0].decode("latin-1").upper()

    def __eq__(self, other: object) -> bool:
        return type(other) is Command and other.args == self.args

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Command({self.args!r})"


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _protocol_error(detail: str) -> ProtocolError:
    message = f"Protocol error: {detail}"
    return ProtocolError(message, b"-ERR %s\r\n" % message.encode())


def _shown(byte: int) -> str:
    """A byte as Redis shows it in ``expected '$', got 'x'``, made safe for a reply line."""
    return chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}"


def _long_header(head: bytes, marker: bytes) -> int:
    """The count in a header line beyond :data:`_SIZE_OF`, or -1 unless it is canonical."""
    digits = head[1:]
    if (
        not head.startswith(marker)
        or not digits.isdigit()
        or (digits[0] == _ZERO and len(digits) > 1)
    ):
        return -1
    return int(digits)


def _wire_size(args: list[bytes]) -> int:
    """Bytes of ``args`` as a canonical multibulk (how the batch path found them)."""
    size = len(b"*%d\r\n" % len(args))
    for arg in args:
        size += len(b"$%d\r\n" % len(arg)) + len(arg) + 2
    return size


def _strict_int(line: bytes) -> int | None:
    """Parse ``line[1:]`` (after the ``*``/``$``) as Redis's string2ll does, else ``None``."""
    digits = line[1:]
    negative = digits[:1] == b"-"
    if negative:
        digits = digits[1:]
    if (
        not digits.isdigit()
        or len(digits) > _MAX_DIGITS
        or (digits[0] == _ZERO and (negative or len(digits) > 1))
    ):
        return None
    value = int(digits)
    return -value if negative else value


class RespHandler(FramedHandler):
    """A sans-IO RESP2 server handler: :class:`Command` events in, :func:`encode` replies out.

    Args:
        max_multibulk_length: most arguments in one command (Redis: 1024*1024 before auth).
        max_bulk_length: most bytes in one argument (Redis's ``proto-max-bulk-len``: 512 MiB).
        max_inline_length: most bytes in an inline command (its ``\\r`` included, the ``\\n``
            not) or in a ``*``/``$`` header line (Redis: 64 KiB).

    Raises:
        ValueError: if a limit is negative, or ``max_inline_length`` is zero.
    """

    __slots__ = (
        "_args",
        "_batching",
        "_bulk_len",
        "_max_bulk",
        "_max_inline",
        "_max_multibulk",
        "_ready",
        "_remaining",
    )

    def __init__(
        self,
        *,
        max_multibulk_length: int = 1024 * 1024,
        max_bulk_length: int = 512 * 1024 * 1024,
        max_inline_length: int = 64 * 1024,
    ) -> None:
        if min(max_multibulk_length, max_bulk_length) < 0 or max_inline_length < 1:
            raise ValueError(
                "RespHandler limits must be >= 0 (max_inline_length >= 1), got "
                f"{max_multibulk_length=}, {max_bulk_length=}, {max_inline_length=}"
            )
        super().__init__()
        self._max_multibulk = max_multibulk_length
        self._max_bulk = max_bulk_length
        self._max_inline = max_inline_length
        # The batch path reads header lines of any canonical count (up to 19 digits after
        # the marker) without measuring them, and never compares a payload's size with
        # max_bulk_length (a payload it cuts fits in one window): it runs only when the step
        # path would accept all of those.
        self._batching = max_inline_length > _MAX_DIGITS and max_bulk_length >= _BATCH_WINDOW
        # Commands cut by _parse_batch and not handed out yet, last first. The shared empty
        # list (never appended to) and a lazily made argument list keep an idle handler small.
        self._ready: list[Command] = _NO_COMMANDS
        self._args: list[bytes] | None = None  # the step path's command so far
        self._remaining = 0
        self._bulk_len = -1

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as commands."""
        waiting = self._reader.buffered
        for command in self._ready:
            waiting += _wire_size(command.args)
        return waiting

    def _mid_request(self) -> bool:
        return self._remaining > 0

    def next_event(self) -> Event | NeedData | Paused:
        """Return the next :class:`Command`, :class:`~muxserver.handlers.base.EndOfInput` or
        :data:`~muxserver.handlers.base.NEED_DATA`; never ``PAUSED``.

        Raises:
            ProtocolError: the peer's input is invalid (raised again on every later call).
        """
        # hot path: one call per command; one _parse_batch call cuts a whole pipelined read
        ready = self._ready
        if not ready:
            self._ready = _NO_COMMANDS  # drop the spent batch's list: idle handlers stay small
            if not self._fed:
                return NEED_DATA  # the pull that ends every read
            if self._remaining or self._error is not None or self._closed:
                return super().next_event()
            batch = self._parse_batch()
            if not batch:
                if batch is None and not self._reader.eof:
                    self._fed = False
                    return NEED_DATA
                return super().next_event()  # the step path decides
            self._ready = ready = batch
        self._unanswered += 1
        return ready.pop()

    def _parse_batch(self) -> list[Command] | None:
        """Cut every complete, well-formed multibulk at the front of the buffer, in one pass.

        Returns the commands last first (``next_event`` pops them), consuming exactly their
        bytes; ``[]`` when the first buffered byte starts something for the step path, and
        ``None`` when nothing is buffered. Bails out on anything unusual, consuming nothing of
        it: the step path then accepts it, waits for more, or raises the right error.

        The buffer is split on CRLF once per window (:data:`_FIRST_WINDOW` bytes, then
        :data:`_BATCH_WINDOW` while commands run past a window's end), and the lines are
        walked: a canonical multibulk of ``n`` arguments is ``2n + 1`` lines, its header, then
        each argument's ``$`` header and payload. A payload holding a CRLF splits into pieces
        shorter than its header says, so the length check that accepts a payload line also
        proves its framing.
        """
        # hot path: one split per window, then per command a dict lookup per header line and
        # one length comparison per argument; limits are compared per header, never per byte
        reader = self._reader
        view, start = reader.view()
        end = len(view)
        if start >= end:
            return None
        if not self._batching or view[start] != _STAR:
            return []  # inline commands and the rest are the step path's, one at a time
        max_count = self._max_multibulk
        count_of = _COUNT_OF.get
        size_of = _SIZE_OF.get
        ready: list[Command] = []
        at = start
        span = _FIRST_WINDOW
        while at < end:
            window = view[at : at + span]
            if type(window) is not bytes:
                window = bytes(window)
            lines = window.split(_CRLF)
            last = len(lines) - 1  # lines[last] is not CRLF-terminated: never a whole line
            line = 0
            refused = False  # a command the step path must take (or wait for)
            while line < last:
                head = lines[line]
                count = count_of(head)
                if count is None:
                    count = _long_header(head, b"*") if len(head) <= _MAX_DIGITS + 1 else -1
                if count < 1 or count > max_count:
                    refused = True
                    break
                stop = line + 1 + 2 * count
                if stop > last:
                    break  # runs past this window
                args = lines[line + 2 : stop : 2]
                line += 1
                for arg in args:
                    head = lines[line]
                    size = size_of(head)
                    if size is None:
                        size = _long_header(head, b"$") if len(head) <= _MAX_DIGITS + 1 else -1
                    if size != len(arg):  # within max_bulk: see _batching
                        break
                    line += 2
                else:
                    ready.append(Command(args))
                    continue
                line = stop - 2 * count - 1  # back to this command's header: not cut
                refused = True
                break
            if line:
                # bytes of the lines cut, CRLFs included: the window minus what is left of it
                if line == last:
                    at += len(window) - len(lines[last])
                else:
                    at += len(window) - sum(map(len, lines[line:])) - 2 * (last - line)
            elif span == _BATCH_WINDOW:
                break  # a command longer than a whole window: the step path's
            if refused or len(window) < span:
                break  # a command the batch cannot take, or the end of the buffer
            span = _BATCH_WINDOW
        if at > start:
            reader.advance(at - start)
            ready.reverse()
            # Nothing left and no end of input to report: the next pull needs no parse.
            self._fed = at < end or reader.eof
        return ready

    def _parse(self) -> Command | None:
        reader = self._reader
        while True:
            buf, start = reader.view()
            if start >= len(buf):
                return None
            if not self._remaining:
                if buf[start] != _STAR:
                    try:
                        line = reader.read_until(b"\n", self._max_inline)
                    except FrameTooLongError:
                        raise _protocol_error("too big inline request") from None
                    if line is None:
                        return None
                    args = line.split()
                    if args:
                        return Command(args)
                    continue
                try:
                    line = reader.read_until(_CRLF, self._max_inline)
                except FrameTooLongError:
                    raise _protocol_error("too big mbulk count string") from None
                if line is None:
                    return None
                count = _strict_int(line)
                if count is None or count > self._max_multibulk:
                    raise _protocol_error("invalid multibulk length")
                self._remaining = max(count, 0)
                continue
            if self._bulk_len < 0:
                if buf[start] != _DOLLAR:
                    raise _protocol_error(f"expected '$', got '{_shown(buf[start])}'")
                try:
                    line = reader.read_until(_CRLF, self._max_inline)
                except FrameTooLongError:
                    raise _protocol_error("too big bulk count string") from None
                if line is None:
                    return None
                size = _strict_int(line)
                if size is None or size < 0 or size > self._max_bulk:
                    raise _protocol_error("invalid bulk length")
                self._bulk_len = size
            if reader.buffered < self._bulk_len + 2:
                return None
            arg = reader.read_exactly(self._bulk_len)
            if reader.read_exactly(2) != _CRLF or arg is None:
                raise _protocol_error("expected CRLF after bulk string")
            if self._args is None:
                self._args = [arg]
            else:
                self._args.append(arg)
            self._bulk_len = -1
            self._remaining -= 1
            if not self._remaining:
                command = Command(self._args)
                self._args = None
                return command

    def send(self, response: Any) -> bytes:
        """Encode the answer to the oldest unanswered command with :func:`encode`.

        Raises:
            HandlerMisuseError: if ``response`` cannot be encoded (the command stays
                unanswered, so :meth:`encode_error` can still answer it), or no command is
                waiting for an answer.
        """
        # hot path: one call per command; the commonest replies (OK, PONG) are one lookup
        data = _SIMPLE_REPLIES.get(response) if type(response) is SimpleString else None
        if data is None:
            data = encode(response)
        if self._unanswered:
            self._unanswered -= 1
        else:
            self._answered()  # raises: nothing is waiting for an answer
        return data

    def encode_error(self, error: BaseException) -> bytes:
        """Answer the oldest unanswered command, whose service raised ``error``, with ``-ERR``.

        The message is ``str(error)`` (the exception's class name if empty), CR/LF replaced.

        Raises:
            HandlerMisuseError: if no command is waiting for an answer.
        """
        self._answered()
        message = _one_line(str(error) or type(error).__name__)
        return b"-ERR %s\r\n" % message.encode("utf-8", "replace")

    def encode_push(self, message: Any) -> bytes:
        """Encode a pushed message (a pub/sub ``["message", channel, data]`` array, say).

        Raises:
            HandlerMisuseError: if ``message`` cannot be encoded.
        """
        return encode(message)


# ---- Encoding (hot path: one call per reply) -----------------------------------------------

_Encoder: TypeAlias = Callable[[Any, list[bytes]], None]

_BULK_HEADERS: Final = tuple(b"$%d\r\n" % n for n in range(_CACHED))
_ARRAY_HEADERS: Final = tuple(b"*%d\r\n" % n for n in range(_CACHED))
_INTEGERS: Final = tuple(b":%d\r\n" % n for n in range(_CACHED))
_NULL_BULK: Final = b"$-1\r\n"
_SIMPLE_REPLIES: Final[dict[str, bytes]] = {}
"""Simple strings encoded so far: services answer with a handful (OK, PONG, QUEUED)."""
_SIMPLE_REPLIES_MAX: Final = 256


def _bulk(value: bytes, out: list[bytes]) -> None:
    size = len(value)
    out.append(_BULK_HEADERS[size] if size < _CACHED else b"$%d\r\n" % size)
    out.append(value)
    out.append(_CRLF)


def _buffer(value: bytearray | memoryview, out: list[bytes]) -> None:
    _bulk(bytes(value), out)


def _text(value: str, out: list[bytes]) -> None:
    _bulk(value.encode(), out)


def _float(value: float, out: list[bytes]) -> None:
    _bulk(repr(value).encode(), out)


def _integer(value: int, out: list[bytes]) -> None:
    out.append(_INTEGERS[value] if 0 <= value < _CACHED else b":%d\r\n" % value)


def _boolean(value: bool, out: list[bytes]) -> None:
    out.append(b":1\r\n" if value else b":0\r\n")


def _null_bulk(value: None, out: list[bytes]) -> None:
    out.append(_NULL_BULK)


def _null_array(value: NullArray, out: list[bytes]) -> None:
    out.append(b"*-1\r\n")


def _simple(value: SimpleString, out: list[bytes]) -> None:
    out.append(_simple_reply(value))


def _simple_reply(value: SimpleString) -> bytes:
    reply = _SIMPLE_REPLIES.get(value)
    if reply is None:
        reply = b"+%s\r\n" % value.encode()
        if len(_SIMPLE_REPLIES) < _SIMPLE_REPLIES_MAX:
            _SIMPLE_REPLIES[value] = reply
    return reply


def _error(value: RespError, out: list[bytes]) -> None:
    out.append(b"-%s\r\n" % value.encode())


def _array(value: list[Any] | tuple[Any, ...], out: list[bytes]) -> None:
    size = len(value)
    out.append(_ARRAY_HEADERS[size] if size < _CACHED else b"*%d\r\n" % size)
    lookup = _ENCODERS.get
    for item in value:
        (lookup(type(item)) or _encoder_for(item))(item, out)


_ENCODERS: Final[dict[type, _Encoder]] = {
    bytes: _bulk,
    SimpleString: _simple,
    int: _integer,
    list: _array,
    type(None): _null_bulk,
    str: _text,
    RespError: _error,
    tuple: _array,
    bool: _boolean,
    float: _float,
    bytearray: _buffer,
    memoryview: _buffer,
    NullArray: _null_array,
}

# For subclasses (an IntEnum, a str subclass): most specific first.
_BY_ISINSTANCE: Final[tuple[tuple[type, _Encoder], ...]] = (
    (bool, _boolean),
    (SimpleString, _simple),
    (RespError, _error),
    (str, _text),
    (int, _integer),
    (float, _float),
    (bytes, _bulk),
    (bytearray, _buffer),
    (memoryview, _buffer),
    (list, _array),
    (tuple, _array),
)


def _encoder_for(value: object) -> _Encoder:
    for kind, encoder in _BY_ISINSTANCE:
        if isinstance(value, kind):
            return encoder
    raise HandlerMisuseError(
        f"cannot encode {type(value).__name__} as a RESP2 reply: return bytes, str, int, "
        "float, None, SimpleString, RespError, NULL_ARRAY or a list/tuple of those"
    )


def encode(value: RespValue) -> bytes:
    """Encode ``value`` as a RESP2 reply (see the table in the module docstring).

    Raises:
        HandlerMisuseError: if ``value`` (or an element of it) has no RESP2 encoding.
    """
    # hot path: one call per reply; the commonest replies skip the out list
    kind = type(value)
    if kind is bytes:
        size = len(value)  # type: ignore[arg-type]
        if size < _CACHED:
            return b"".join((_BULK_HEADERS[size], value, _CRLF))  # type: ignore[arg-type]
    elif kind is SimpleString:
        return _simple_reply(value)  # type: ignore[arg-type]
    elif value is None:
        return _NULL_BULK
    out: list[bytes] = []
    (_ENCODERS.get(kind) or _encoder_for(value))(value, out)
    return b"".join(out)


def encode_command(args: Iterable[bytes | str | int]) -> bytes:
    """Encode a command as a client sends it: an array of bulk strings.

    ``str`` arguments are UTF-8 encoded and ``int`` ones written in decimal, as clients do.
    """
    return encode([_argument(arg) for arg in args])


def _argument(arg: bytes | str | int) -> bytes:
    if isinstance(arg, bytes):
        return bytes(arg)
    return (arg if isinstance(arg, str) else str(int(arg))).encode()
