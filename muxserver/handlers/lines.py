"""Line-oriented protocols: every delimited line is a request, every answer a line.

Theory of operation
-------------------
:class:`LineHandler` cuts its input at ``delimiter`` (``b"\\n"`` by default) with the shared
:class:`~muxserver.handlers.framing.FrameReader`, strips the delimiter and, if ``strip_cr``, one
trailing ``b"\\r"`` (so ``\\r\\n`` clients work with the default), and produces one
:class:`LineRequest` per line. Lines are pipelined: every complete line buffered is produced
without waiting for answers, and answers are written in request order by the driver.

Limits: a line longer than ``max_line_length`` bytes (delimiter excluded, a stripped ``\\r``
included) is a :class:`~muxserver.handlers.base.ProtocolError` carrying ``too_long_reply``,
raised at the same request whatever the chunking -- as soon as more than that many bytes without
a delimiter are buffered, or when an over-long line completes.

End of input: a trailing partial line (bytes after the last delimiter) is still a line -- the
peer ended it by closing -- so it becomes one last :class:`LineRequest` (subject to the same
limit), then :class:`~muxserver.handlers.base.EndOfInput`.

Answers: ``send(response)`` writes ``bytes`` or ``str`` (encoded with ``encoding``) followed by
the delimiter, a list or tuple of them as several lines, and ``None`` as nothing at all.
"""

from __future__ import annotations

import enum
from typing import Any, Final

from muxserver.handlers.base import HandlerMisuseError, ProtocolError, Request
from muxserver.handlers.framing import FramedHandler, FrameTooLongError

__all__ = ["DEFAULT_MAX_LINE_LENGTH", "LineHandler", "LineRequest"]

DEFAULT_MAX_LINE_LENGTH: Final = 64 * 1024
"""The default cap on one line, in bytes."""


class _Default(enum.Enum):
    TOKEN = "default"


class LineRequest(Request):
    """One line from the peer, without its delimiter (and without a trailing ``\\r``)."""

    __slots__ = ("line",)

    def __init__(self, line: bytes) -> None:
        self.line = line

    def __eq__(self, other: object) -> bool:
        return type(other) is LineRequest and other.line == self.line

    def __hash__(self) -> int:
        return hash((LineRequest, self.line))

    def __repr__(self) -> str:
        return f"LineRequest({self.line!r})"


class LineHandler(FramedHandler):
    """A sans-IO handler for line protocols. See the module docstring for the rules.

    Args:
        delimiter: the bytes that end a line (non-empty).
        max_line_length: the longest line accepted, in bytes, delimiter excluded.
        strip_cr: strip one trailing ``b"\\r"`` from every line.
        too_long_reply: the last reply sent for an over-long line; ``None`` for none. The
            default is ``b"line too long"`` followed by the delimiter.
        encoding: how ``str`` answers are encoded.

    Raises:
        ValueError: for an empty delimiter or a negative ``max_line_length``.
    """

    __slots__ = ("_delimiter", "_encoding", "_max_line_length", "_strip_cr", "_too_long_reply")

    def __init__(
        self,
        *,
        delimiter: bytes = b"\n",
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        strip_cr: bool = True,
        too_long_reply: bytes | _Default | None = _Default.TOKEN,
        encoding: str = "utf-8",
    ) -> None:
        if not delimiter:
            raise ValueError("LineHandler needs a non-empty delimiter, e.g. b'\\n'")
        if max_line_length < 0:
            raise ValueError(f"max_line_length must be >= 0, not {max_line_length}")
        super().__init__()
        self._delimiter = bytes(delimiter)
        self._max_line_length = max_line_length
        self._strip_cr = strip_cr
        if isinstance(too_long_reply, _Default):
            too_long_reply = b"line too long" + self._delimiter
        self._too_long_reply = too_long_reply
        self._encoding = encoding

    def _too_long(self) -> ProtocolError:
        return ProtocolError(
            f"line longer than {self._max_line_length} bytes", self._too_long_reply
        )

    def _request(self, line: bytes) -> LineRequest:
        if self._strip_cr and line.endswith(b"\r"):
            line = line[:-1]
        return LineRequest(line)

    def _parse(self) -> LineRequest | None:
        try:
            line = self._reader.read_until(self._delimiter, self._max_line_length)
        except FrameTooLongError:
            raise self._too_long() from None
        return None if line is None else self._request(line)

    def _parse_eof(self) -> LineRequest | None:
        rest = self._reader.read_rest()
        if not rest:
            return None
        if len(rest) > self._max_line_length:
            raise self._too_long()
        return self._request(rest)

    def send(self, response: Any) -> bytes:
        """Encode the answer to the oldest unanswered line (see the module docstring).

        Raises:
            HandlerMisuseError: if no line is waiting for an answer, or ``response`` is not
                ``bytes``, ``str``, ``None`` or a list/tuple of ``bytes``/``str``.
        """
        self._answered()
        return self.encode_push(response)

    def encode_push(self, message: Any) -> bytes:
        """Encode a server-pushed message exactly like an answer, without answering anything.

        Raises:
            HandlerMisuseError: for a ``message`` of a type lines cannot carry.
        """
        if message is None:
            return b""
        if isinstance(message, (list, tuple)):
            return b"".join([self._line(item) for item in message])
        return self._line(message)

    def _line(self, item: object) -> bytes:
        if isinstance(item, (bytes, bytearray, memoryview)):
            return b"".join((item, self._delimiter))
        if isinstance(item, str):
            return b"".join((item.encode(self._encoding), self._delimiter))
        raise HandlerMisuseError(
            f"LineHandler cannot send {type(item).__name__}: answer with bytes, str, None "
            "or a list of bytes/str"
        )
