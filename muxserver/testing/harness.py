"""HandlerHarness: drive any handler the way the reactor does, without sockets or threads.

Requires nothing beyond the standard library (the package as a whole needs hypothesis).

Theory of operation
-------------------
The harness plays the reactor and one connection for a single handler. You give it bytes
(:meth:`~HandlerHarness.feed`, :meth:`~HandlerHarness.feed_eof`) and ask it to process them
(:meth:`~HandlerHarness.events`); it keeps what the peer would receive in
:attr:`~HandlerHarness.output`. It follows the contract in :mod:`muxserver.handlers.base`:

* A :class:`~muxserver.handlers.base.Request` is answered by the service, inline, at once (if a
  service was given) or waits in :attr:`~HandlerHarness.pending` until you call
  :meth:`~HandlerHarness.answer`. Answers are handed to the handler in request order.
* Output keeps request order: a :class:`~muxserver.handlers.base.Send`, or a
  :class:`~muxserver.handlers.base.Close`, that comes after a still unanswered request waits
  behind that request's answer, exactly as the reactor holds it back.
* :class:`~muxserver.handlers.base.PeerUpdate` is merged into :attr:`peer.extra
  <muxserver.service.Peer.extra>` the moment it is pulled.
* :class:`~muxserver.handlers.base.EndOfInput`, :class:`~muxserver.handlers.base.Close` and a
  :class:`~muxserver.handlers.base.ProtocolError` end the connection: the harness stops
  reading and pulling (:attr:`closing`), writes the error's reply, if any, after the earlier
  answers, and becomes :attr:`closed` once everything before the end has been written.
* A service that raises is answered with ``handler.encode_error(error)``; when that is
  ``None`` the connection closes after the earlier output.
* Write pressure: while :attr:`paused` (see :meth:`pause`), the reactor neither reads nor
  dispatches, so :meth:`feed` holds the bytes back and :meth:`events` does nothing;
  :meth:`resume` hands the held bytes over, chunk by chunk as they were fed.

The harness is also the service's connection (a :class:`~muxserver.service.PushTarget`):
``connection_made`` runs when it is created, ``connection_lost`` once when it closes, and
``push`` writes ``handler.encode_push(message)`` at once, outside the request order.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any, TypeAlias

from muxserver.handlers.base import (
    Close,
    EndOfInput,
    Event,
    Handler,
    HandlerMisuseError,
    NeedData,
    Paused,
    PeerUpdate,
    ProtocolError,
    Request,
    Send,
)
from muxserver.service import Peer, Service, as_service

__all__ = ["MAX_EVENTS_PER_PULL", "ContractViolationError", "HandlerHarness", "Trace"]

MAX_EVENTS_PER_PULL = 100_000
"""More events than this from one pull means a handler that never stops (raise it for tests
that feed more pipelined requests than this in one chunk)."""


class ContractViolationError(AssertionError):
    """A handler broke the contract of :mod:`muxserver.handlers.base`."""


Trace: TypeAlias = "list[Event | ProtocolError]"
"""What a connection produced, in order: events, then possibly the ProtocolError that ended it."""

_ids = itertools.count(1)


class _Slot:
    """One place in the output order: bytes now, bytes once answered, or the end."""

    __slots__ = ("data", "ends")

    def __init__(self, data: bytes | None, ends: bool = False) -> None:
        self.data = data  # None while the request it stands for is unanswered
        self.ends = ends


class HandlerHarness:
    """Drive ``handler`` like the reactor would, in memory. See the module docstring.

    Args:
        handler: the handler under test, fresh (nothing fed yet).
        service: answers each Request inline when it is pulled: a
            :class:`~muxserver.service.Service` or a function ``(request, peer) -> response``.
            ``None`` leaves requests in :attr:`pending` for :meth:`answer`.
        peer: the peer the service sees; a fresh ``Peer`` with address ``("127.0.0.1", 0)``
            and this harness as its connection by default.
    """

    def __init__(
        self,
        handler: Handler,
        service: Service | Callable[[Request, Peer], Any] | None = None,
        *,
        peer: Peer | None = None,
    ) -> None:
        self.handler = handler
        self.service = None if service is None else as_service(service)
        self._id = next(_ids)
        self.peer = peer if peer is not None else Peer(self._id, ("127.0.0.1", 0))
        self.peer.connection = self
        self.trace: Trace = []
        """Every event pulled so far and the ending ProtocolError, if any, in order."""
        self.pending: deque[Request] = deque()
        """Requests pulled and not yet answered, oldest first."""
        self.service_errors: list[BaseException] = []
        """Exceptions raised by the service (the reactor would log them)."""
        self.error: ProtocolError | None = None
        """The ProtocolError that ended the connection, if one did."""
        self.closing = False
        """An end was seen: nothing more is read or pulled."""
        self.closed = False
        """The connection has closed: the end was reached and everything before it written."""
        self.handler_paused = False
        """The last :meth:`events` stopped because the handler returned PAUSED."""
        self._output: list[bytes] = []
        self._slots: deque[_Slot] = deque()
        self._held: list[bytes] = []
        self._held_eof = False
        self._eof_fed = False
        self._stalled_after_end = False
        self._paused = False
        if self.service is not None:
            self.service.connection_made(self, self.peer)

    # --- input -----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Give ``data`` to the handler, as one read. ``b""`` is an empty read, not EOF.

        Ignored once :attr:`closing` (the reactor stops reading); held back while paused.

        Raises:
            HandlerMisuseError: if called after :meth:`feed_eof`.
        """
        if self._eof_fed or self._held_eof:
            raise HandlerMisuseError("HandlerHarness.feed() after feed_eof()")
        if self.closing or not data:
            return
        if self._paused:
            self._held.append(bytes(data))
        else:
            self.handler.receive_data(data)

    @property
    def stalled_after_end(self) -> bool:
        """Whether the handler, told of end of input and with every request answered, last
        stopped at NEED_DATA or PAUSED instead of ending: a reactor would never close it."""
        return self._stalled_after_end and not self.pending and not self.closing

    def feed_eof(self) -> None:
        """Tell the handler the peer sent end of input (``receive_data(b"")``), once."""
        if self._eof_fed or self._held_eof or self.closing:
            return
        if self._paused:
            self._held_eof = True
        else:
            self._eof_fed = True
            self.handler.receive_data(b"")

    # --- processing ------------------------------------------------------------------------

    def events(self) -> list[Event]:
        """Pull events until NEED_DATA or PAUSED (or the end); return them in order.

        Requests are answered inline when there is a service; PeerUpdates are merged into
        :attr:`peer`. A ProtocolError is caught, stored in :attr:`error` and ends the
        connection; it is in :attr:`trace`, not in the returned list. Does nothing while
        paused or once closing. Any other exception from the handler propagates.
        """
        pulled: list[Event] = []
        # Read the flags on every turn: a service may pause or close the connection inline.
        while not self._paused and not self.closing:
            if len(pulled) >= MAX_EVENTS_PER_PULL:
                raise ContractViolationError(
                    f"{MAX_EVENTS_PER_PULL} events from one pull without NEED_DATA or PAUSED: "
                    "the handler never stops (a reactor would spin on it)"
                )
            try:
                event = self.handler.next_event()
            except ProtocolError as error:
                self.error = error
                self.trace.append(error)
                self._end(error.reply)
                break
            if isinstance(event, (NeedData, Paused)):
                self.handler_paused = isinstance(event, Paused)
                self._stalled_after_end = self._eof_fed
                break
            pulled.append(event)
            self.trace.append(event)
            self._dispatch(event)
        return pulled

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Request):
            self.pending.append(event)
            self._slots.append(_Slot(None))
            if self.service is not None:
                self._answer_with_service(event)
        elif isinstance(event, Send):
            self._write(event.data)
        elif isinstance(event, PeerUpdate):
            self.peer.extra.update(event.extra)
        elif isinstance(event, (Close, EndOfInput)):
            self._end(None)

    def _answer_with_service(self, request: Request) -> None:
        assert self.service is not None
        try:
            response = self.service.handle(request, self.peer)
        except Exception as error:
            self.answer_error(error)
        else:
            self.answer(response)

    def answer(self, response: Any) -> bytes:
        """Answer the oldest pending request with ``response``; return the bytes it made.

        Raises:
            HandlerMisuseError: if no request is pending.
        """
        if not self.pending:
            raise HandlerMisuseError("HandlerHarness.answer(): no request is pending")
        data = self.handler.send(response)
        self._fill(data)
        return data

    def answer_error(self, error: BaseException) -> bytes | None:
        """Answer the oldest pending request as failed with ``error``, as the reactor does.

        Writes ``handler.encode_error(error)``; when that is ``None``, closes after the
        earlier output. Returns the reply bytes or ``None``.

        Raises:
            HandlerMisuseError: if no request is pending.
        """
        if not self.pending:
            raise HandlerMisuseError("HandlerHarness.answer_error(): no request is pending")
        self.service_errors.append(error)
        reply = self.handler.encode_error(error)
        if reply is None:
            # No error reply in this protocol: the slot ends the connection instead.
            self.pending.popleft()
            self._stalled_after_end = False
            slot = next(s for s in self._slots if s.data is None and not s.ends)
            slot.data, slot.ends = b"", True
            self.closing = True
            self._flush()
        else:
            self._fill(reply)
        return reply

    def _fill(self, data: bytes) -> None:
        self._stalled_after_end = False  # the handler may end once asked again
        self.pending.popleft()
        for slot in self._slots:
            if slot.data is None and not slot.ends:
                slot.data = data
                break
        self._flush()

    def _write(self, data: bytes) -> None:
        self._slots.append(_Slot(data))
        self._flush()

    def _end(self, reply: bytes | None) -> None:
        self.closing = True
        self._slots.append(_Slot(reply or b"", ends=True))
        self._flush()

    def _flush(self) -> None:
        while self._slots and self._slots[0].data is not None and not self.closed:
            slot = self._slots.popleft()
            if slot.data:
                self._output.append(slot.data)
            if slot.ends:
                self._close_now()

    def _close_now(self) -> None:
        self.closed = True
        self.closing = True
        self._slots.clear()
        self.pending.clear()  # requests after the end are never answered
        if self.service is not None:
            self.service.connection_lost(self, self.peer)

    # --- output ----------------------------------------------------------------------------

    @property
    def output(self) -> bytes:
        """Everything written to the peer and not yet taken."""
        return b"".join(self._output)

    def take_output(self) -> bytes:
        """Return :attr:`output` and forget it."""
        data = self.output
        self._output.clear()
        return data

    # --- write pressure --------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether write pressure has stopped reading and dispatching (see :meth:`pause`)."""
        return self._paused

    def pause(self) -> None:
        """Act as if the output is above the high water mark: hold input, pull nothing."""
        self._paused = True

    def resume(self) -> None:
        """Drop below the low water mark: hand over the held input (then call :meth:`events`)."""
        self._paused = False
        held, self._held = self._held, []
        held_eof, self._held_eof = self._held_eof, False
        for chunk in held:
            self.feed(chunk)
        if held_eof:
            self.feed_eof()

    # --- PushTarget: what the service may do with this connection --------------------------

    @property
    def id(self) -> int:
        """The connection's number, unique among harnesses in this process."""
        return self._id

    def push(self, message: Any) -> None:
        """Write ``handler.encode_push(message)`` now, outside the request order."""
        if not self.closed:
            self._output.append(self.handler.encode_push(message))

    def push_threadsafe(self, message: Any) -> None:
        """Same as :meth:`push` (the harness has a single thread)."""
        self.push(message)

    def close(self) -> None:
        """Close after the output already queued, as ``PushTarget.close`` does."""
        if not self.closing:
            self._end(None)
