"""The handler contract: incremental, sans-IO protocol state machines.

Theory of operation
-------------------
A handler is the protocol half of one connection. It never touches a socket, a clock or a
thread; it is given bytes exactly as they arrived and says what they mean. The reactor (or a
test, or a fuzzer) drives it with three verbs, in the manner of h11:

* ``receive_data(data)`` -- append bytes that arrived. ``b""`` means end of input (the peer
  half-closed or went away). Feeding after end of input is a :class:`HandlerMisuseError`.
* ``next_event()`` -- parse as far as possible and return the next :class:`Event`, or one of
  the sentinels :data:`NEED_DATA` (nothing complete yet: feed more bytes) or :data:`PAUSED`
  (a complete event was produced and the handler refuses to parse further until the driver
  has answered it -- e.g. a request that is not pipelinable). The same input, split into
  chunks in any way, yields the same sequence of events.
* ``send(response)`` -- encode the service's answer to the oldest :class:`Request` that has
  not been answered yet and return the bytes to write. Responses are handed over in request
  order; the driver (the reactor) keeps that order whatever order services finish in.

Events, and what the driver does with each, in the order they are produced:

* :class:`Request` (protocol-specific subclasses) -- a complete request: run the service
  (through the dispatch strategy), then ``send()`` its result.
* :class:`Send` -- bytes the protocol itself wants written (a greeting, ``100 Continue``),
  written after every earlier response.
* :class:`Close` -- close the connection once every earlier response has been written.
* :class:`EndOfInput` -- the peer will send nothing more; finish what was received, then
  close (see "half-close" in the README). No event follows it.
* :class:`PeerUpdate` -- what the protocol learned about the peer (the real client address
  from a PROXY header, an authenticated user name); the driver merges it into the
  connection's ``Peer.extra`` at once, so services, logs and the status page see it.

The grammar of one connection, as the driver sees it::

    receive_data* interleaved with next_event*  ->  (EndOfInput | Close | ProtocolError)?

A peer's bad input raises :class:`ProtocolError` from ``next_event()``; it may carry a last
reply (an HTTP 400, a Redis ``-ERR``) to write before closing. After it the handler is in its
error state for good: every later ``next_event()`` raises the same error again. A *caller's*
mistake (feeding after EOF, sending with nothing to answer) raises :class:`HandlerMisuseError`,
which is a bug in the driver, never the peer's fault.

Server push: long-lived services send data nobody asked for (a chat line to every member of
a room). ``encode_push(message)`` turns such a message into bytes; the reactor writes them
immediately, outside the request/response order.

Every handler exposes ``state``, a member of its own :class:`enum.Enum`, so tests and the
status page can see where each connection stands.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Final, final

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Close",
    "EndOfInput",
    "Event",
    "Handler",
    "HandlerMisuseError",
    "HandlerState",
    "NeedData",
    "Paused",
    "PeerUpdate",
    "ProtocolError",
    "Request",
    "Send",
]


@final
class NeedData:
    """Sentinel type: the handler needs more bytes before it can produce an event.

    There is one instance, :data:`NEED_DATA`: ``NeedData()`` returns it, so drivers may
    compare with ``is``.
    """

    __slots__ = ()

    def __new__(cls) -> NeedData:
        try:
            return NEED_DATA
        except NameError:  # making NEED_DATA itself, below
            return super().__new__(cls)

    def __repr__(self) -> str:
        return "NEED_DATA"


@final
class Paused:
    """Sentinel type: the handler will not parse further until its last request is answered.

    There is one instance, :data:`PAUSED`: ``Paused()`` returns it.
    """

    __slots__ = ()

    def __new__(cls) -> Paused:
        try:
            return PAUSED
        except NameError:  # making PAUSED itself, below
            return super().__new__(cls)

    def __repr__(self) -> str:
        return "PAUSED"


NEED_DATA: Final = NeedData()
"""Returned by ``next_event()`` when no complete event is buffered yet."""

PAUSED: Final = Paused()
"""Returned by ``next_event()`` while the handler waits for a response before parsing on."""


class Event:
    """Base class of everything ``next_event()`` returns that is not a sentinel."""

    __slots__ = ()


class Request(Event):
    """A complete request for the service. Protocols subclass it with their own fields.

    ``strategy`` names the dispatch strategy that should run this request's service; ``None``
    means the server's default. A handler (or a subclass) may set it per request, e.g. to send
    an expensive command to a process pool while cheap ones run inline.
    """

    __slots__ = ()

    strategy: ClassVar[str | None] = None


class Send(Event):
    """Bytes the protocol itself wants written, in order after every earlier response."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return type(other) is Send and other.data == self.data

    def __hash__(self) -> int:
        return hash((Send, self.data))

    def __repr__(self) -> str:
        return f"Send({self.data!r})"


class _Singleton(Event):
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Close(_Singleton):
    """Close the connection after every earlier response has been written."""

    __slots__ = ()


class EndOfInput(_Singleton):
    """The peer sent end of input; nothing follows. Finish earlier requests, then close."""

    __slots__ = ()


class PeerUpdate(Event):
    """Facts about the peer learned by the protocol, merged into ``Peer.extra`` at once."""

    __slots__ = ("extra",)

    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra

    def __eq__(self, other: object) -> bool:
        return type(other) is PeerUpdate and other.extra == self.extra

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PeerUpdate({self.extra!r})"


class ProtocolError(Exception):
    """The peer broke the protocol.

    ``reply`` is a last message to write before closing (``None`` for none). Raised by
    ``next_event()``; once raised, the handler stays in its error state and raises it again.
    """

    def __init__(self, message: str, reply: bytes | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class HandlerMisuseError(Exception):
    """The driver used the handler wrongly (a bug in the caller, not the peer's fault)."""


class HandlerState(enum.Enum):
    """The states of :class:`Handler`'s default implementation helpers.

    Concrete handlers usually define their own enum; this one suits simple framed protocols.
    """

    IDLE = "idle"
    """Between requests, nothing buffered."""
    RECEIVING = "receiving"
    """Part of a request has arrived."""
    WAITING = "waiting"
    """Requests handed out and not yet answered."""
    CLOSED = "closed"
    """End of input seen or a Close produced; no more events."""
    ERROR = "error"
    """A ProtocolError was raised; it is raised again on every call."""


class Handler:
    """Base class for sans-IO protocol handlers. See the module docstring for the contract.

    Subclasses implement :meth:`receive_data`, :meth:`next_event` and :meth:`send`, and expose
    a ``state`` enum member. They may override :meth:`encode_error` (how a failed service is
    reported to the peer), :meth:`encode_push` (server push) and :attr:`buffered`.
    """

    __slots__ = ()

    @property
    def state(self) -> enum.Enum:
        """Where the connection stands, as a member of the handler's state enum."""
        raise NotImplementedError

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed into events (for limits and the status page)."""
        return 0

    @property
    def admitted(self) -> bool:
        """Whether the protocol has let the peer in.

        False while a preamble runs that may refuse the peer (a PROXY header, an
        authentication exchange): the driver starts the service's side of the connection
        (``connection_made``) only once this is true -- checked when the handler produces a
        :class:`PeerUpdate` -- so no service code runs for a peer that is refused. The
        default is true from the start.
        """
        return True

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the peer; ``b""`` means end of input.

        Raises:
            HandlerMisuseError: if called again after end of input.
        """
        raise NotImplementedError

    def next_event(self) -> Event | NeedData | Paused:
        """Return the next event, :data:`NEED_DATA` or :data:`PAUSED`.

        Raises:
            ProtocolError: the peer's input is invalid (sticky: raised again on later calls).
        """
        raise NotImplementedError

    def send(self, response: Any) -> bytes:
        """Encode the service's answer to the oldest unanswered request.

        Raises:
            HandlerMisuseError: if no request is waiting for an answer.
        """
        raise NotImplementedError

    def encode_error(self, error: BaseException) -> bytes | None:
        """Bytes answering the oldest unanswered request whose service raised ``error``.

        Return ``None`` when the protocol has no error reply; the connection is then closed.
        The default has no error reply.
        """
        return None

    def encode_push(self, message: Any) -> bytes:
        """Encode a server-pushed message. The default accepts ``bytes`` as they are."""
        if isinstance(message, (bytes, bytearray, memoryview)):
            return bytes(message)
        raise HandlerMisuseError(
            f"{type(self).__name__} cannot push {type(message).__name__}: push bytes, "
            "or override encode_push()"
        )
