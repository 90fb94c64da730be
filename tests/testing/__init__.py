"""Tests for muxserver.testing, and the tiny handler they drive.

:class:`TinyHandler` speaks a made-up line protocol with one of everything the contract has:
a greeting (``Send``), pipelined requests, a request that pauses parsing until answered
(``SLOW``), a peer update (``AUTH name``), a close (``QUIT``), a peer error with a reply
(``BAD`` or an over-long line) and end of input.
"""

from __future__ import annotations

import enum
from typing import Any

from muxserver.handlers.base import (
    NEED_DATA,
    PAUSED,
    Close,
    EndOfInput,
    Event,
    HandlerMisuseError,
    NeedData,
    Paused,
    PeerUpdate,
    ProtocolError,
    Request,
    Send,
)
from tests.handlers.support import BufferingHandler

MAX_LINE = 32


class TinyState(enum.Enum):
    """Where a TinyHandler stands."""

    GREETING = "greeting"
    READY = "ready"
    PAUSED = "paused"
    DONE = "done"
    ERROR = "error"


class Command(Request):
    """One line from the peer."""

    __slots__ = ("line",)

    def __init__(self, line: bytes) -> None:
        self.line = line

    def __eq__(self, other: object) -> bool:
        return type(other) is Command and other.line == self.line

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Command({self.line!r})"


class TinyHandler(BufferingHandler):
    """The made-up line protocol described in the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.greeted = False
        self.done = False
        self.error: ProtocolError | None = None
        self.unanswered = 0
        self.waiting_slow = False

    @property
    def state(self) -> enum.Enum:
        if self.error is not None:
            return TinyState.ERROR
        if self.done:
            return TinyState.DONE
        if not self.greeted:
            return TinyState.GREETING
        return TinyState.PAUSED if self.waiting_slow else TinyState.READY

    def next_event(self) -> Event | NeedData | Paused:
        if self.error is not None:
            raise self.error
        if not self.greeted:
            self.greeted = True
            return Send(b"hi\n")
        if self.done:
            return NEED_DATA
        if self.waiting_slow:
            return PAUSED
        end = self.buffer.find(b"\n", 0, MAX_LINE + 1)
        if end < 0:
            if len(self.buffer) > MAX_LINE:
                return self._fail("line too long")
            if self.eof:
                self.done = True
                return EndOfInput()
            return NEED_DATA
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        if line == b"BAD":
            return self._fail("bad command")
        if line == b"QUIT":
            self.done = True
            return Close()
        if line.startswith(b"AUTH "):
            return PeerUpdate({"user": line[5:].decode("latin-1")})
        self.unanswered += 1
        self.waiting_slow = line == b"SLOW"
        return Command(line)

    def _fail(self, message: str) -> NeedData:
        self.error = ProtocolError(message, reply=b"-ERR " + message.encode() + b"\n")
        raise self.error

    def send(self, response: Any) -> bytes:
        if not self.unanswered:
            raise HandlerMisuseError("nothing to answer")
        self.unanswered -= 1
        self.waiting_slow = False
        return bytes(response) + b"\n"

    def encode_error(self, error: BaseException) -> bytes | None:
        self.unanswered -= 1
        self.waiting_slow = False
        return None if isinstance(error, KeyError) else b"-FAIL\n"


class ChunkCountingHandler(TinyHandler):
    """Deliberately wrong: every ``receive_data`` call is one request, so chunking shows."""

    def receive_data(self, data: bytes) -> None:
        super().receive_data(data)
        if data:
            self.buffer = bytearray(self.buffer.replace(b"\n", b"")) + b"\n"


def echo(request: Request, peer: Any) -> bytes:
    """A service: answer a Command with its line."""
    assert isinstance(request, Command)
    return request.line
