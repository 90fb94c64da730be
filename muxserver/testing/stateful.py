"""HandlerStateMachine: a base for hypothesis stateful tests of one connection's lifecycle.

Requires hypothesis (a dev dependency of muxserver, not a runtime one).

Hypothesis explores sequences of the things a reactor does to a connection -- read some of
what the peer sent, pull events, answer the oldest request, come under write pressure and
recover, see end of input -- and checks after every step that the handler keeps the contract.
Subclass it with a handler factory and a message strategy::

    class LineLifecycle(HandlerStateMachine):
        def make_handler(self) -> Handler:
            return LineHandler()

        def messages(self) -> SearchStrategy[bytes]:
            return st.binary().map(lambda b: b.replace(b"\\n", b"") + b"\\n")

        def respond(self, request: Request) -> Any:
            return b"ok\\n"

    TestLineLifecycle = LineLifecycle.TestCase

Invariants checked after every step: :func:`~muxserver.testing.properties.check_contract`
holds (the grammar, and nothing more from a handler that has ended); once the harness has
pulled all it can (and the handler did not answer PAUSED), the handler holds at most
:attr:`~HandlerStateMachine.max_buffered` bytes (when set); and a connection that has ended
stays ended. The machine drives a :class:`HandlerHarness` (available as
``self.harness``) without a service, answering through :meth:`HandlerStateMachine.respond`.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from muxserver.handlers.base import Handler, Request
from muxserver.testing.harness import HandlerHarness
from muxserver.testing.properties import check_contract

__all__ = ["HandlerStateMachine"]


class HandlerStateMachine(RuleBasedStateMachine):
    """Rules and invariants for one connection; override :meth:`make_handler` and
    :meth:`messages`, optionally :meth:`respond` and :attr:`max_buffered`."""

    max_buffered: int | None = None
    """The most bytes the handler may hold once everything pullable was pulled (None: no check)."""

    def __init__(self) -> None:
        super().__init__()
        self.harness = HandlerHarness(self.make_handler())
        self.unsent = b""  # bytes the peer has "written" that the reactor has not read yet
        self.settled = True  # nothing fed since the last pull, so the buffer must be small
        self.ended = False
        self._eof_sent = False

    # --- what subclasses provide -----------------------------------------------------------

    def make_handler(self) -> Handler:
        """Return a fresh handler for the protocol under test."""
        raise NotImplementedError("subclass HandlerStateMachine and override make_handler()")

    def messages(self) -> st.SearchStrategy[bytes]:
        """Return a strategy of byte strings (one or more messages) the peer may send."""
        raise NotImplementedError("subclass HandlerStateMachine and override messages()")

    def respond(self, request: Request) -> Any:
        """The response handed to ``handler.send`` for ``request``; override per protocol."""
        return None

    # --- rules -----------------------------------------------------------------------------

    @precondition(lambda self: not self.harness.closing and not self._eof_sent)
    @rule(data=st.data())
    def peer_writes(self, data: st.DataObject) -> None:
        """The peer writes another message (the reactor has not read it yet)."""
        self.unsent += data.draw(self.messages(), label="message")

    @precondition(lambda self: bool(self.unsent))
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        """The reactor reads some prefix (possibly empty) of what the peer wrote."""
        size = data.draw(st.integers(0, len(self.unsent)), label="read size")
        chunk, self.unsent = self.unsent[:size], self.unsent[size:]
        self.harness.feed(chunk)
        self.settled = self.settled and not chunk

    @rule()
    def pull(self) -> None:
        """The reactor pulls events until the handler needs data or pauses."""
        self.harness.events()
        # A PAUSED handler may legitimately hold pipelined input beyond its usual cap -- but
        # only while a request waits for its answer; PAUSED for nothing is no excuse.
        harness = self.harness
        self.settled = not harness.paused and not (harness.handler_paused and harness.pending)

    @precondition(lambda self: bool(self.harness.pending) and not self.harness.closed)
    @rule()
    def answer(self) -> None:
        """The service's answer to the oldest pending request arrives."""
        self.harness.answer(self.respond(self.harness.pending[0]))

    @precondition(lambda self: not self.harness.paused)
    @rule()
    def write_pressure(self) -> None:
        """Output passes the high water mark: reading and dispatching stop."""
        self.harness.pause()

    @precondition(lambda self: self.harness.paused)
    @rule()
    def drained(self) -> None:
        """Output drains below the low water mark: held input is handed over."""
        self.harness.resume()
        self.settled = False

    @precondition(lambda self: not self._eof_sent)
    @rule()
    def peer_closes(self) -> None:
        """The peer's remaining bytes are read, then end of input."""
        self.harness.feed(self.unsent)
        self.unsent = b""
        self.harness.feed_eof()
        self._eof_sent = True
        self.settled = False

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def contract_holds(self) -> None:
        """The grammar holds, and a handler that has ended produces nothing more."""
        check_contract(self.harness)

    @invariant()
    def buffered_within_limit(self) -> None:
        """Once everything pullable was pulled, the handler holds at most max_buffered."""
        if self.max_buffered is not None and self.settled and not self.harness.closing:
            buffered = self.harness.handler.buffered
            assert buffered <= self.max_buffered, (
                f"handler holds {buffered} bytes after pulling, limit {self.max_buffered}"
            )

    @invariant()
    def an_end_is_final(self) -> None:
        """Once the connection is closing it stays closing."""
        if self.ended:
            assert self.harness.closing, "the connection reopened after it ended"
        self.ended = self.harness.closing
