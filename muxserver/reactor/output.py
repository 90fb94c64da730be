"""Writing and flow control for stream connections: the only rules about when one reads.

The write path: ``write()`` queues bytes (through the TLS layer, if any) and sends at once,
as far as the socket takes them -- or, while a read is being processed, gathers them and sends
them with one system call at the end of it. What the socket does not take waits in a list of
buffers, flushed with one ``sendmsg`` when the socket becomes writable; no buffer is ever
concatenated.

Flow control:

* A connection reads while no *pause reason* is set (see ``connstate.PAUSE_*``): unsent output
  above the high-water mark (cleared at the low mark); too many requests in flight; a
  saturated dispatch strategy; the handler said PAUSED (cleared when an answer is sent).
  Reading resumes when the last reason clears.
* While paused, no socket reads happen *and* no buffered events are pulled from the handler:
  nothing is dispatched after a pause.
* Unsent output past ``Limits.max_output`` (a peer that never reads while others push to it)
  drops the connection.

What the rest of the connection must call: ``_pause(reason)`` / ``_resume(reason)`` when a
reason starts or ends, ``_refresh_fast()`` whenever what the fast path assumes may have
changed, and ``_flush()`` at the end of a batch of processing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from muxserver.reactor.connstate import CLOSED, CLOSING, IOV_MAX, JOIN_MAX, OPEN, PAUSE_OUTPUT
from muxserver.reactor.poller import PRIORITY, READ, WRITE

if TYPE_CHECKING:
    import socket

    from muxserver.handlers.base import Handler
    from muxserver.reactor.connstate import Phase
    from muxserver.reactor.layer import StreamLayer
    from muxserver.reactor.loop import Reactor
    from muxserver.reactor.server import StreamServer

__all__ = ["OutputMixin"]

log = logging.getLogger("muxserver.connection")


class OutputMixin:
    """The write path and flow control of :class:`~muxserver.reactor.stream.StreamConnection`."""

    if not TYPE_CHECKING:
        # Empty slots keep StreamConnection free of a per-instance __dict__. Hidden from mypy,
        # which would check assignments against them rather than the subclass's slots.
        __slots__ = ()

    if TYPE_CHECKING:
        sock: socket.socket
        fd: int
        server: StreamServer
        reactor: Reactor
        layer: StreamLayer | None
        phase: Phase
        input_ended: bool
        last_activity: float
        bytes_out: int
        out_bytes: int
        _out: list[bytes | memoryview] | None
        _paused: int
        _interest: int
        _fast: bool
        _processing: bool
        _resuming: bool
        _pending: object | None
        handler: Handler

        def _context(self) -> str: ...
        def _note_partial_request(self, restart: bool) -> None: ...
        def _io_error(self, exc: OSError) -> None: ...
        def _process(self) -> bool: ...
        def _end_processing(self) -> None: ...
        def _finish_closing(self) -> None: ...
        def abort(self) -> None: ...

    # -- writing and flow control ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending, after everything queued before (reactor thread only).

        While a read is being processed, writes are gathered and sent with one system call
        at the end; otherwise they are sent at once, as far as the socket takes them.
        """
        layer = self.layer
        self._write_raw(data if layer is None or not data else layer.send(data))

    def _write_raw(self, data: bytes) -> None:
        # hot path: queue one answer; flushed now, or once at the end of the read
        if not data or self.phase is CLOSED:
            return
        out = self._out
        if out is None:
            self._out = [data]
        else:
            out.append(data)
        self.out_bytes += len(data)
        if not self._processing:
            self._flush()
        if self.out_bytes > self.server.high_water:
            self._over_high_water()

    def _over_high_water(self) -> None:
        """Unsent output passed the high water mark: stop reading, or drop a non-reader."""
        limits = self.server.limits
        if self.out_bytes > limits.max_output:
            # Queued in a batch, not yet offered to the socket: only what it will not take
            # now is unsent (one inline answer may be larger than max_output).
            self._flush()
            if self.phase is CLOSED:
                return
            if self.out_bytes > limits.max_output:
                log.warning(
                    "%s: %d bytes of output unsent (limit %d): the peer is not reading; "
                    "dropping it",
                    self._context(),
                    self.out_bytes,
                    limits.max_output,
                )
                self.abort()
                return
        if self.out_bytes > limits.high_water and not self._paused & PAUSE_OUTPUT:
            self._pause(PAUSE_OUTPUT)

    def handle_write(self) -> None:
        """The socket can take more output."""
        if self._out is not None:
            self.last_activity = self.reactor.time()
            self._flush()

    def _flush(self) -> None:
        # hot path: usually one buffer, sent whole by one send()
        out = self._out
        assert out is not None
        try:
            if len(out) == 1:
                sent = self.sock.send(out[0])
            elif self.out_bytes <= JOIN_MAX:
                # many small answers (a pipelined read): one copy beats one iovec each
                self._out = out = [b"".join(out)]
                sent = self.sock.send(out[0])
            else:
                sent = self.sock.sendmsg(out if len(out) <= IOV_MAX else out[:IOV_MAX])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._io_error(exc)
            return
        self._sent(sent)

    def _sent(self, sent: int) -> None:
        """Account for the first ``sent`` bytes of ``_out`` written; keep the rest for later."""
        out = self._out
        assert out is not None
        self.bytes_out += sent
        remaining = self.out_bytes - sent
        self.out_bytes = remaining
        if not remaining:
            self._out = None
            if self._interest & WRITE or self._paused or self.phase is CLOSING:
                self._drained()
            return
        whole = 0
        for buffer in out:
            if sent < len(buffer):
                break
            sent -= len(buffer)
            whole += 1
        del out[:whole]
        if sent:
            out[0] = memoryview(out[0])[sent:]
        if not self._interest & WRITE:
            self._set_interest(self._interest | WRITE)
        if self._paused & PAUSE_OUTPUT and remaining <= self.server.limits.low_water:
            self._resume(PAUSE_OUTPUT)

    def _drained(self) -> None:
        """Everything queued is sent: stop watching for writability, finish a close, resume."""
        if self._interest & WRITE:
            self._set_interest(self._interest & ~WRITE)
        if self.phase is CLOSING and self._pending is None:
            self._finish_closing()
        elif self._paused & PAUSE_OUTPUT:
            self._resume(PAUSE_OUTPUT)

    def _pause(self, reason: int) -> None:
        self._paused |= reason
        self._fast = False
        if self._interest & READ:
            self._set_interest(self._interest & ~(READ | PRIORITY))

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        self._refresh_fast()
        if self._paused or self.phase is CLOSED or self._processing or self._resuming:
            return  # still paused, gone, or an outer loop picks up from here
        # Events already buffered in the handler come first, then the socket again. A batch
        # that pauses on output and drains at once resumes here, in this loop: a resume from
        # inside the flush would recurse once per batch.
        self._resuming = True
        try:
            while True:
                self._processing = True
                self._process()
                paused = self._paused
                self._end_processing()
                if not paused or self._paused or self.phase is CLOSED:
                    break
        finally:
            self._resuming = False
        self._rearm_reading()
        if not self._paused and self.phase is OPEN and self.handler.buffered:
            self._note_partial_request(restart=True)  # its clock starts now, not at the pause

    def _rearm_reading(self) -> None:
        """Watch the socket for input again unless something still holds reading back."""
        if (
            not self._paused
            and self.phase is OPEN
            and not self.input_ended
            and not self._interest & READ
        ):
            urgent = PRIORITY if self.server.watch_urgent else 0
            self._set_interest(self._interest | READ | urgent)

    def _refresh_fast(self) -> None:
        """Recompute ``_fast`` after a change to anything it sums up (never on the hot path).

        ``_fast`` is true while the connection is open, reading, not paused, without a layer
        and with no answer queued behind a dispatched request: then a read needs no other
        check, and a Send is written as it comes.
        """
        self._fast = (
            self.phase is OPEN
            and not self._paused
            and self._pending is None
            and self.layer is None
            and not self.input_ended
        )

    def _set_interest(self, mask: int) -> None:
        if mask != self._interest and self.phase is not CLOSED:
            self._interest = mask
            self.reactor.poller.modify(self.fd, mask, self)
