"""The ordered response queue of stream connections: answers leave in request order.

Every request a handler produces is answered in the order it came in, whatever strategy ran
its service and whatever order the services finished in. The common case costs nothing: with
the inline strategy and nothing queued, a request is answered on the spot. Otherwise each
request takes a *slot* in a queue (a two-item list: kind and value; see
``connstate.SLOT_*``), as do the protocol's own bytes (``Send``, a protocol error's last reply)
and a close; slots leave from the head only once complete, so a ``Send`` or a close never
overtakes an answer due before it.
"""

from __future__ import annotations

import collections
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from muxserver.handlers.base import ProtocolError, Request
from muxserver.reactor.connstate import (
    CLOSED,
    CLOSING,
    DRAINING,
    PAUSE_HANDLER,
    PAUSE_IN_FLIGHT,
    PAUSE_STRATEGY,
    SLOT_ANSWERED,
    SLOT_BYTES,
    SLOT_CLOSE,
    SLOT_FAILED,
    SLOT_WAITING,
    Phase,
)
from muxserver.reactor.poller import PRIORITY, READ

if TYPE_CHECKING:
    from muxserver.handlers.base import Handler
    from muxserver.reactor.layer import StreamLayer
    from muxserver.reactor.server import StreamServer
    from muxserver.service import Peer

__all__ = ["ResponseQueueMixin"]

log = logging.getLogger("muxserver.connection")


class ResponseQueueMixin:
    """Dispatching requests and writing their answers in order (see the module docstring)."""

    if not TYPE_CHECKING:
        # Empty slots keep StreamConnection free of a per-instance __dict__. Hidden from mypy,
        # which would check assignments against them rather than the subclass's slots.
        __slots__ = ()

    if TYPE_CHECKING:
        server: StreamServer
        handler: Handler
        layer: StreamLayer | None
        phase: Phase
        requests: int
        in_flight: int
        wheel_slot: int | None
        _peer: Peer | None
        _pending: collections.deque[list[Any]] | None
        _paused: int
        _interest: int
        _fast: bool
        _processing: bool

        @property
        def peer(self) -> Peer: ...
        def _context(self) -> str: ...
        def abort(self) -> None: ...
        def write(self, data: bytes) -> None: ...
        def _write_raw(self, data: bytes) -> None: ...
        def _pause(self, reason: int) -> None: ...
        def _resume(self, reason: int) -> None: ...
        def _refresh_fast(self) -> None: ...
        def _set_interest(self, mask: int) -> None: ...
        def _process(self) -> bool: ...
        def _end_processing(self) -> None: ...
        def _start_closing(self) -> None: ...
        def current_deadline(self) -> float: ...
        def deadline_expired(self, now: float) -> None: ...

    def _request(self, request: Request) -> None:
        self.requests += 1
        server = self.server
        strategy = server.strategy if request.strategy is None else server.route(request)
        if strategy.inline and self._pending is None:
            # hot path: answer synchronously, nothing queued ahead of us
            peer = self._peer
            try:
                response = server.service.handle(request, self.peer if peer is None else peer)
            except Exception as exc:
                self._write_failure(exc)
                return
            try:
                data = self.handler.send(response)
            except Exception:
                log.exception("handler could not encode a response on %s", self._context())
                self.abort()
                return
            if self.layer is None:
                self._write_raw(data)
            else:
                self.write(data)
            return
        slot: list[Any] = [SLOT_WAITING, None]
        if self._pending is None:
            self._pending = collections.deque()
            self._fast = False
        self._pending.append(slot)
        self.in_flight += 1
        if self.in_flight >= server.limits.max_in_flight:
            self._pause(PAUSE_IN_FLIGHT)
        strategy.submit(server.service, request, self.peer, partial(self._answered, slot))
        if strategy.saturated and not self._paused & PAUSE_STRATEGY:
            self._pause(PAUSE_STRATEGY)
            strategy.when_unsaturated(partial(self._resume, PAUSE_STRATEGY))

    def _answered(self, slot: list[Any], ok: bool, value: Any) -> None:
        """A strategy finished a request (reactor thread)."""
        slot[0] = SLOT_ANSWERED if ok else SLOT_FAILED
        slot[1] = value
        self.in_flight -= 1
        if self.phase is CLOSED:
            return
        if not self.in_flight and self.wheel_slot is None:
            self.server.watch_deadline(self)  # the idle deadline applies again
        self._flush_pending()
        if self._paused & PAUSE_IN_FLIGHT and self.in_flight < self.server.limits.max_in_flight:
            self._resume(PAUSE_IN_FLIGHT)
        elif self.phase is DRAINING and not self._paused:
            self._process()

    def _write_failure(self, exc: BaseException) -> None:
        self.server.errors += 1
        log.error("service failed on %s: %r", self._context(), exc, exc_info=exc)
        try:
            data = self.handler.encode_error(exc)
        except Exception:
            log.exception("handler could not encode an error on %s", self._context())
            data = None
        if data is None:
            self._start_closing()
        else:
            self.write(data)

    def _protocol_error(self, exc: ProtocolError) -> None:
        self.server.errors += 1
        log.info("protocol error on %s: %s", self._context(), exc)
        if exc.reply:
            self._enqueue(SLOT_BYTES, exc.reply)
        self._enqueue(SLOT_CLOSE, None)

    def _enqueue(self, kind: int, value: Any) -> None:
        if self._pending is None:
            if kind == SLOT_BYTES:
                self.write(value)
            else:
                self._start_closing()
            return
        self._pending.append([kind, value])
        if kind == SLOT_CLOSE:
            self.phase = CLOSING
            self._fast = False
            self._set_interest(self._interest & ~(READ | PRIORITY))

    def _flush_pending(self) -> None:
        pending = self._pending
        if pending is None:
            return
        handler = self.handler
        sent_answer = False
        while pending and pending[0][0] != SLOT_WAITING:
            kind, value = pending.popleft()
            if kind == SLOT_ANSWERED:
                sent_answer = True
                try:
                    data = handler.send(value)
                except Exception:
                    log.exception("handler could not encode a response on %s", self._context())
                    self.abort()
                    return
                if data:
                    self.write(data)
            elif kind == SLOT_FAILED:
                sent_answer = True
                self._write_failure(value)
            elif kind == SLOT_BYTES:
                self.write(value)
            else:
                self._pending = None
                self._refresh_fast()
                self._start_closing()
                return
        if not pending:
            self._pending = None
            self._refresh_fast()
        if sent_answer:
            # An answer can change what the handler says next (it may resume from PAUSED,
            # or close after a "Connection: close" response), so ask it again.
            if self._paused & PAUSE_HANDLER:
                self._resume(PAUSE_HANDLER)
            elif not self._paused and not self._processing and self.phase is not CLOSING:
                self._processing = True
                self._process()
                self._end_processing()
