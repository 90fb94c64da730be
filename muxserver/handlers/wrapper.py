"""A handler that runs a short preamble of its own, then hands the stream to an inner handler.

Theory of operation
-------------------
Some layers speak first and then step aside: a PROXY protocol header
(:class:`~muxserver.handlers.proxy.ProxyProtocolHandler`), an authentication exchange
(:class:`~muxserver.auth.challenge.ChallengeResponseHandler`). :class:`PreambleWrapper` holds
what they share -- buffering, the hand-over, sticky errors and delegation -- so a subclass
writes only its preamble step, :meth:`PreambleWrapper._step`.

The grammar of one wrapper, as its driver sees ``next_event()``::

    wrapper   := own* (hand-over | refusal | end)
    own       := NEED_DATA | Event           the preamble's own replies (e.g. a Send)
    hand-over := Event+ inner*               the hand-over's events, then the inner's
    refusal   := ProtocolError+              sticky: the same error on every later call
    end       := EndOfInput NEED_DATA*       end of input before the preamble began

Until the hand-over, ``receive_data`` buffers bytes in :attr:`_buffer` (end of input sets
:attr:`_eof`) and ``_step`` consumes them. At the hand-over, the bytes left in the buffer --
whatever the peer sent after the preamble in the same chunk -- and then end of input, if it
came, are given to the inner handler *before* any of its events are asked for; from then on
every byte and every call goes straight to it. The events the hand-over produced (a
:class:`~muxserver.handlers.base.PeerUpdate`, say) come first, in order.

``state`` is the wrapper's own state (a member of the subclass's enum) until the hand-over
and its events are out, the inner handler's afterwards, so the status page shows the protocol
actually being spoken. A refusal drops the buffer and every byte fed after it: nothing a
refused peer sent ever reaches the inner handler. ``send``, ``encode_error`` and
``encode_push`` go to the inner handler (a subclass may filter pushes).
"""

from __future__ import annotations

import enum
from typing import Any, Generic, TypeVar

from muxserver.handlers.base import (
    NEED_DATA,
    EndOfInput,
    Event,
    Handler,
    HandlerMisuseError,
    NeedData,
    Paused,
    ProtocolError,
)

__all__ = ["PreambleWrapper"]

StateT = TypeVar("StateT", bound=enum.Enum)


class PreambleWrapper(Handler, Generic[StateT]):
    """Base class for handlers that run a preamble, then delegate to ``inner``.

    A subclass implements :meth:`_step` and names, as class attributes, the members of its own
    state enum for the three ways a preamble ends: ``_HANDED_OVER``, ``_CLOSED`` (end of input
    before the preamble began) and ``_FAILED`` (refused, sticky).

    Args:
        inner: the handler for the protocol spoken after the preamble.
        start: the subclass's first state.
    """

    __slots__ = ("_buffer", "_eof", "_error", "_pending", "_state", "inner")

    _HANDED_OVER: StateT
    _CLOSED: StateT
    _FAILED: StateT

    def __init__(self, inner: Handler, start: StateT) -> None:
        self.inner = inner
        self._state = start
        self._buffer = bytearray()
        self._eof = False
        self._error: ProtocolError | None = None
        self._pending: tuple[Event, ...] = ()  # the hand-over's events not yet pulled

    @property
    def state(self) -> enum.Enum:
        """The inner handler's state once handed over, else this wrapper's own state."""
        if self._state is self._HANDED_OVER and not self._pending:
            return self.inner.state
        return self._state

    @property
    def admitted(self) -> bool:
        """Not before the hand-over; then whatever the inner handler says."""
        return self._state is self._HANDED_OVER and self.inner.admitted

    @property
    def buffered(self) -> int:
        """Preamble bytes held; the inner handler's count once handed over."""
        if self._state is self._HANDED_OVER:
            return self.inner.buffered
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes for the preamble; once handed over, pass them to the inner handler.

        Bytes fed after a refusal are dropped.

        Raises:
            HandlerMisuseError: if called again after end of input.
        """
        # hot path once handed over: one state check, then the inner handler
        if self._state is self._HANDED_OVER:
            self.inner.receive_data(data)
            return
        if self._eof:
            raise HandlerMisuseError("receive_data() called after end of input (b'')")
        if self._error is not None:
            return
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Event | NeedData | Paused:
        """The preamble's events, then the hand-over's, then the inner handler's.

        Raises:
            ProtocolError: the preamble refused the peer (sticky: raised on every later call).
        """
        if self._pending:
            event, *rest = self._pending
            self._pending = tuple(rest)
            return event
        if self._state is self._HANDED_OVER:
            return self.inner.next_event()
        if self._error is not None:
            raise self._error
        if self._state is self._CLOSED:
            return NEED_DATA
        try:
            return self._step()
        except ProtocolError as error:
            self._state = self._FAILED
            self._error = error
            self._buffer = bytearray()
            raise

    def send(self, response: Any) -> bytes:
        """Delegate to the inner handler, which raises HandlerMisuseError if nothing waits."""
        return self.inner.send(response)

    def encode_error(self, error: BaseException) -> bytes | None:
        """Delegate to the inner handler."""
        return self.inner.encode_error(error)

    def encode_push(self, message: Any) -> bytes:
        """Delegate to the inner handler."""
        return self.inner.encode_push(message)

    # -- for subclasses -----------------------------------------------------------------

    def _step(self) -> Event | NeedData:
        """Consume preamble bytes from :attr:`_buffer`; return an event or ``NEED_DATA``.

        Called by :meth:`next_event` while the preamble runs (never after it ended). End it
        with ``return self._hand_over(...)`` or ``return self._end()``, or refuse the peer by
        raising :class:`~muxserver.handlers.base.ProtocolError`.
        """
        raise NotImplementedError

    def _hand_over(self, first: Event, *later: Event) -> Event:
        """Give the inner handler the bytes left in the buffer (and end of input), then step
        aside; return ``first``, and queue ``later`` to come before the inner's events."""
        self._state = self._HANDED_OVER
        rest = bytes(self._buffer)
        self._buffer = bytearray()
        if rest:
            self.inner.receive_data(rest)
        if self._eof:
            self.inner.receive_data(b"")
        self._pending = later
        return first

    def _end(self) -> EndOfInput:
        """End of input came before the preamble began: end cleanly, no inner handler runs."""
        self._state = self._CLOSED
        return EndOfInput()
