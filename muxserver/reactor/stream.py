"""Stream connections (TCP, Unix): reading, events, the public connection API, closing.

A :class:`StreamConnection` is at once the socket's poller owner and its record in the
connection table. It feeds received bytes to its handler, turns the handler's events into
service calls (through the dispatch strategy), and writes the answers back **in request
order**: every request, ``Send`` and ``Close`` takes a slot in a queue, and slots leave from
the head only once they are complete.

The connection is one object written in three modules: this one (reading, the handler's
events, the public API, closing, deadlines), :mod:`~muxserver.reactor.responses` (the ordered
response queue) and :mod:`~muxserver.reactor.output` (writing and flow control -- the only
rules about when a connection reads). :mod:`~muxserver.reactor.connstate` holds what they
share.

Closing: ``Close``/``EndOfInput`` (or a protocol error) move the connection to CLOSING: no
more events; once earlier answers are flushed it half-closes its side and *lingers* --
reads and discards input until the peer closes or ``Limits.linger`` passes -- so the last
answer is not destroyed by a reset. ``abort()`` closes at once.
"""

from __future__ import annotations

import collections
import errno
import logging
import math
import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from muxserver.handlers.base import (
    NEED_DATA,
    PAUSED,
    Close,
    EndOfInput,
    Event,
    Handler,
    NeedData,
    Paused,
    PeerUpdate,
    ProtocolError,
    Request,
    Send,
)
from muxserver.reactor.connstate import (
    CLOSED,
    CLOSING,
    DISCONNECT_ERRNOS,
    DRAINING,
    LINGERING,
    OPEN,
    PAUSE_HANDLER,
    PAUSE_NAMES,
    SERVICE_NONE,
    SERVICE_STARTED,
    SERVICE_WAITING,
    SLOT_BYTES,
    SLOT_CLOSE,
    Phase,
)
from muxserver.reactor.layer import LayerError, StreamLayer, UpgradeLayer
from muxserver.reactor.output import OutputMixin
from muxserver.reactor.poller import PRIORITY, READ, WRITE
from muxserver.reactor.responses import ResponseQueueMixin
from muxserver.reactor.table import ConnectionSnapshot, ConnectionState
from muxserver.service import Peer

if TYPE_CHECKING:
    from muxserver.reactor.server import StreamServer

__all__ = ["Phase", "StreamConnection"]

log = logging.getLogger("muxserver.connection")


class StreamConnection(ResponseQueueMixin, OutputMixin):
    """One accepted (or connected) stream socket and its record in the table."""

    __slots__ = (
        "_fast",
        "_interest",
        "_lifecycle",
        "_out",
        "_paused",
        "_peer",
        "_pending",
        "_processing",
        "_resuming",
        "bytes_in",
        "bytes_out",
        "created",
        "fd",
        "handler",
        "id",
        "in_flight",
        "input_ended",
        "last_activity",
        "layer",
        "out_bytes",
        "peer_address",
        "phase",
        "reactor",
        "request_started",
        "requests",
        "server",
        "sock",
        "wheel_slot",
    )

    def __init__(
        self, server: StreamServer, sock: socket.socket, peer_address: Any, handler: Handler
    ) -> None:
        reactor = server.reactor
        self.server = server
        self.reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.handler = handler
        self.layer: StreamLayer | None = None
        self.peer_address = peer_address
        self.id = reactor.table.new_id()
        self.phase = OPEN
        self._peer: Peer | None = None
        self._out: list[bytes | memoryview] | None = None
        self.out_bytes = 0
        self._pending: collections.deque[list[Any]] | None = None
        self._paused = 0
        self._processing = False
        self._resuming = False  # inside _resume's loop (see OutputMixin._resume)
        self.in_flight = 0
        self.input_ended = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.requests = 0
        now = reactor.time()
        self.created = now
        self.last_activity = now
        self.request_started: float | None = None
        self.wheel_slot: int | None = None
        self._interest = READ | (PRIORITY if server.watch_urgent else 0)
        self._fast = True
        self._lifecycle = SERVICE_WAITING if server.wants_lifecycle else SERVICE_NONE

    def start(self) -> None:
        """Enter the table and the poller; tell the service. Called once, by the server."""
        self.reactor.table.add(self)
        self.reactor.poller.register(self.fd, self._interest, self)
        self.server.watch_deadline(self)
        self._admit()

    def _admit(self) -> None:
        """Start the service's side (``connection_made``) once handler and layer admit the peer.

        Called at start and whenever the handler or the layer reports facts about the peer --
        the moments a preamble (PROXY header, authentication, TLS handshake) can end -- so a
        refused peer never reaches service code.
        """
        if self._lifecycle != SERVICE_WAITING or not self.handler.admitted:
            return
        if self.layer is not None and not self.layer.admitted:
            return
        self._lifecycle = SERVICE_STARTED
        try:
            self.server.service.connection_made(self, self.peer)
        except Exception:
            log.exception("connection_made failed for %s; closing it", self._context())
            self.abort()

    @property
    def service_started(self) -> bool:
        """Whether ``connection_made`` was called (so ``connection_lost`` is due at close)."""
        return self._lifecycle == SERVICE_STARTED

    # -- identity -----------------------------------------------------------------------

    @property
    def peer(self) -> Peer:
        """The :class:`Peer` given to services (made on first use: idle clients need none)."""
        peer = self._peer
        if peer is None:
            peer = self._peer = Peer(self.id, self.peer_address, None, self)
        return peer

    @property
    def state(self) -> ConnectionState:
        """The state of this connection's partially finished request (derived, never stale)."""
        phase = self.phase
        if phase is not OPEN:
            if phase is DRAINING:
                return ConnectionState.DRAINING
            return ConnectionState.CLOSED if phase is CLOSED else ConnectionState.CLOSING
        if self.in_flight:
            return ConnectionState.DISPATCHED
        if self.out_bytes:
            return ConnectionState.WRITING
        if self.handler.buffered:
            return ConnectionState.READING
        return ConnectionState.IDLE

    def snapshot(self) -> ConnectionSnapshot:
        """An immutable copy of this record."""
        peer = self._peer
        return ConnectionSnapshot(
            id=self.id,
            server=self.server.name,
            state=self.state,
            handler_state=getattr(self.handler.state, "name", str(self.handler.state)),
            peer=self.peer_address,
            client_address=peer.client_address if peer is not None else self.peer_address,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            input_buffered=self.handler.buffered,
            output_buffered=self.out_bytes,
            requests=self.requests,
            in_flight=self.in_flight,
            created=self.created,
            last_activity=self.last_activity,
            reading_paused=tuple(n for bit, n in PAUSE_NAMES.items() if self._paused & bit),
        )

    def _context(self) -> str:
        peer = self._peer
        address = peer.client_address if peer is not None else self.peer_address
        return (
            f"connection #{self.id} from {address!r} on {self.server.name} "
            f"({self.state.value}, handler {getattr(self.handler.state, 'name', '?')})"
        )

    def __repr__(self) -> str:
        return f"<StreamConnection {self._context()}>"

    # -- reading ------------------------------------------------------------------------

    def handle_read(self) -> None:
        """The socket is readable (or hung up): read once and process what arrived."""
        # hot path: one recv, one feed, the handler's events, one send
        fast = self._fast
        if not fast and not self._reading():
            return
        try:
            data = self.sock.recv(self.server.read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._io_error(exc)
            return
        self.last_activity = self.reactor.now
        self.bytes_in += len(data)
        if not fast or not data:
            unwrapped = self._unwrap(data)
            if unwrapped is None:
                return
            if not unwrapped:
                self._end_of_input()
                return
            data = unwrapped
        handler = self.handler
        handler.receive_data(data)
        self._processing = True
        completed = self._process()
        # _end_processing(), inlined for the common case of one answer and no backlog
        self._processing = False
        out = self._out
        if out is None:
            if self.phase is CLOSING and self._pending is None:
                self._finish_closing()
        elif len(out) == 1:
            # _flush() inlined for the commonest case: one answer, sent whole
            try:
                sent = self.sock.send(out[0])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._io_error(exc)
                return
            if sent == self.out_bytes and self._fast and not self._interest & WRITE:
                self.bytes_out += sent
                self.out_bytes = 0
                self._out = None
            else:
                self._sent(sent)
        else:
            self._flush()
        if not self._fast:
            if self.phase is not OPEN:
                return  # closed while processing: nothing is partial any more
            if not self._interest & READ:
                self._rearm_reading()  # a pause that ended inside the batch
        if completed and self.server.request_timeout is None:
            # Nothing times out a request: only the input cap matters, and a read that
            # completed something leaves less than one read (read_size <= max_input).
            return
        if handler.buffered:
            # Part of a request is held: the next one if this read completed something
            # (its clock starts now), else the same one as before (its clock runs on).
            self._note_partial_request(restart=completed)
        elif self.request_started is not None:
            self.request_started = None

    def _reading(self) -> bool:
        """Off the fast path: whether a read event should read the socket at all."""
        phase = self.phase
        if phase is not OPEN or not self._interest & READ:
            if phase is LINGERING:
                self._linger_read()
            elif phase is not CLOSED:
                self._check_hangup()
            return False
        return True

    def _unwrap(self, data: bytes) -> bytes | None:
        """Off the fast path: pass ``data`` through the layer, and note the end of input.

        Returns what the handler is to receive (``b""`` for its end of input), or ``None``
        when there is nothing for it (a handshake, or the connection was dropped).
        """
        if self.layer is not None:
            try:
                plaintext = self.layer.receive(data)
            except LayerError as exc:
                log.info("%s: %s; dropping it", self._context(), exc)
                self.abort()
                return None
            if plaintext is None:
                data = b""  # the end of the layer's stream is the handler's end of input
            elif plaintext:
                if not self.layer.ended:
                    return plaintext
                # The stream's last plaintext and its end in one read: the handler gets the
                # plaintext now and its end of input from _end_of_input, in that order.
                self.handler.receive_data(plaintext)
                data = b""
            else:  # only the layer's own traffic (a handshake) so far
                if self._out is not None:
                    self._flush()
                return None
        if not data:
            self.input_ended = True
            self._fast = False
        return data

    def _end_of_input(self) -> None:
        """The peer sent its last byte: let the handler say what that means, stop reading."""
        self.handler.receive_data(b"")
        self._processing = True
        self._process()
        self._end_processing()
        # A half-closed peer stays readable forever. Most connections are closed by now,
        # and the closing took the socket out of the poller without this extra call.
        if self.phase is not CLOSED and self._interest & (READ | PRIORITY):
            self._set_interest(self._interest & ~(READ | PRIORITY))

    def install_layer(self, layer: StreamLayer) -> None:
        """Put ``layer`` between the socket and the handler from now on (e.g. STARTTLS)."""
        self.layer = layer
        self._fast = False
        layer.attach(self._write_raw, self._layer_learned)

    def _layer_learned(self, extra: dict[str, Any]) -> None:
        """The layer reports facts about the peer (a finished TLS handshake)."""
        self.peer.extra.update(extra)
        self._admit()

    def _check_hangup(self) -> None:
        """Readiness while not reading: an error, a hang-up, or news from before a pause.

        A hang-up (the peer closed both directions: a Unix peer that went away) stays
        reported whatever the interest, so it must end the connection -- no answer can reach
        the peer -- or the loop would spin on it.
        """
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._io_error(OSError(error, errno.errorcode.get(error, str(error))))
        elif _hung_up(self.fd):
            log.debug("%s: the peer hung up; dropping it", self._context())
            self.abort()

    def handle_priority(self) -> None:
        """Urgent data is pending (only watched under ``UrgentPolicy.EVENT``)."""
        try:
            byte = self.sock.recv(1, socket.MSG_OOB)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # the mark was already consumed
                return
            self._io_error(exc)
            return
        receive_urgent = getattr(self.handler, "receive_urgent", None)
        if receive_urgent is not None and byte:
            receive_urgent(byte)
            self._processing = True
            self._process()
            self._end_processing()

    def _end_processing(self) -> None:
        """After a batch of events: send what they produced in one go, or finish a close;
        read again if a pause ended inside the batch (its resume left that to us)."""
        self._processing = False
        if self._out is not None:
            self._flush()
        elif self.phase is CLOSING and self._pending is None:
            self._finish_closing()
        if not self._interest & READ:
            self._rearm_reading()

    def _note_partial_request(self, restart: bool) -> None:
        limits = self.server.limits
        if self.handler.buffered > limits.max_input:
            log.warning(
                "%s: %d bytes buffered without a complete request (limit %d); closing",
                self._context(),
                self.handler.buffered,
                limits.max_input,
            )
            self._start_closing()
            return
        if self._paused:
            # What is held may be complete requests waiting for the pause to end: the clock
            # starts when reading resumes (OutputMixin._resume), not now.
            self.request_started = None
            return
        if self.request_started is None:
            self.request_started = self.last_activity
            if limits.request_timeout is not None:
                self.server.watch_deadline(self)  # the deadline may come before the filed one
        elif restart:
            self.request_started = self.last_activity  # later than filed: the wheel re-files

    def _process(self) -> bool:
        """Pull events from the handler while reading is not paused.

        Called inside a batch (``_processing`` set: writes are gathered) except while
        draining, which is never the fast path. Returns whether any event was produced
        (something completed).
        """
        # hot path: one next_event() per request, then NEED_DATA. On the fast path a Send, or
        # the answer to a request served inline, goes straight to the output.
        handler = self.handler
        next_event = handler.next_event
        high_water = self.server.high_water
        # The service's handle() when requests are served inline: looked up at the first
        # request (many reads have none), then None for "not looked up" or False for "no".
        handle: Callable[[Request, Peer], Any] | Literal[False] | None = None
        peer = self._peer
        produced = False
        while True:
            if not self._fast:
                if self._paused:
                    return produced
                phase = self.phase
                if phase is not OPEN and phase is not DRAINING:
                    return True
            try:
                event = next_event()
            except Exception as exc:
                self._event_failed(exc)
                return True
            if event is NEED_DATA:
                if self.phase is DRAINING:
                    self._enqueue(SLOT_CLOSE, None)
                return produced
            produced = True
            if type(event) is Send and self._fast:
                data = event.data
            elif isinstance(event, Request):
                if handle is None:
                    server = self.server
                    handle = server.service.handle if server.strategy.inline else False
                if handle is False or not self._fast or event.strategy is not None:
                    self._request(event)
                    continue
                # _request() inlined: serve it now, nothing is queued ahead of it
                self.requests += 1
                if peer is None:
                    peer = self.peer
                try:
                    response = handle(event, peer)
                except Exception as exc:
                    self._write_failure(exc)
                    continue
                try:
                    data = handler.send(response)
                except Exception:
                    log.exception("handler could not encode a response on %s", self._context())
                    self.abort()
                    return True
                if not self._fast:  # the service paused or closed the connection
                    self._write_raw(data)
                    continue
            elif self._other_event(event):
                continue
            else:
                return True
            # _write_raw() inlined: the fast path runs only inside a batch, so queue it
            if data:
                out = self._out
                if out is None:
                    self._out = [data]
                else:
                    out.append(data)
                self.out_bytes += len(data)
                if self.out_bytes > high_water:
                    self._over_high_water()

    def _other_event(self, event: Event | NeedData | Paused) -> bool:
        """Off the fast path: act on any event but a request. Returns whether to go on."""
        if isinstance(event, Send):
            if self._pending is None:
                self.write(event.data)
            else:
                self._enqueue(SLOT_BYTES, event.data)
        elif event is PAUSED:
            self._paused |= PAUSE_HANDLER
            self._fast = False
            return False
        elif isinstance(event, PeerUpdate):
            self.peer.extra.update(event.extra)
            self._admit()
        elif isinstance(event, (Close, EndOfInput)):
            self._enqueue(SLOT_CLOSE, None)
            return False
        elif isinstance(event, UpgradeLayer):
            return self._upgrade(event)
        else:
            log.error("handler produced an unknown event %r on %s", event, self._context())
            self.abort()
            return False
        return True

    def _event_failed(self, exc: Exception) -> None:
        """``next_event()`` raised: the peer's fault (a protocol error) or the handler's."""
        if isinstance(exc, ProtocolError):
            self._protocol_error(exc)
        else:
            log.error("handler failed on %s; closing it", self._context(), exc_info=exc)
            self.abort()

    def _upgrade(self, event: UpgradeLayer) -> bool:
        """STARTTLS: last plaintext reply, new layer, then the handler's leftover through it."""
        if self._pending is not None:
            log.error("%s: layer upgrade with answers still due; dropping it", self._context())
            self.abort()
            return False
        if event.reply:
            self.write(event.reply)
        event.install(self)
        if event.buffered and self.layer is not None:
            try:
                plaintext = self.layer.receive(event.buffered)
            except LayerError as exc:
                log.info("%s: %s; dropping it", self._context(), exc)
                if self._out is not None:
                    self._flush()  # the plaintext reply and the layer's alert, best effort
                self.abort()
                return False
            if plaintext:
                self.handler.receive_data(plaintext)
        self._admit()  # a handler may hold admission until its upgrade event is out
        return True

    # -- the public connection API (see muxserver.service.PushTarget) ---------------------

    def push(self, message: Any) -> None:
        """Encode ``message`` with the handler and write it now, outside the request order."""
        if self.phase is CLOSED or self.phase is LINGERING:
            return
        self.last_activity = self.reactor.time()
        self.write(self.handler.encode_push(message))

    def push_threadsafe(self, message: Any) -> None:
        """:meth:`push` from any thread."""
        self.reactor.call_soon_threadsafe(self.push, message)

    def close(self) -> None:
        """Close once the answers to every request received so far are written.

        Called by a service while it answers a request (``/quit``), the close comes after
        that answer, and later requests already received are not processed.
        """
        if self.phase is not OPEN and self.phase is not DRAINING:
            return
        if self._processing and self._pending is None:
            # Inside the inline answer of the current request: stop parsing now and let
            # _end_processing() finish the close once that answer is queued.
            self.phase = CLOSING
            self._fast = False
            self._set_interest(self._interest & ~(READ | PRIORITY))
        else:
            self._enqueue(SLOT_CLOSE, None)

    def drain(self) -> None:
        """Graceful shutdown: finish what was received, then close.

        "Received" includes bytes already waiting in the kernel's buffer: they are read (a
        bounded number of reads) before the connection stops reading for good.
        """
        if self.phase is LINGERING:
            self.abort()
            return
        for _ in range(16):
            if self.phase is not OPEN or self._paused or not self._interest & READ:
                break
            before = self.bytes_in
            self.handle_read()
            if self.bytes_in == before:
                break  # nothing more was waiting
        if self.phase is not OPEN:
            return
        self.phase = DRAINING
        self._fast = False
        self._set_interest(self._interest & ~(READ | PRIORITY))
        if not self._paused:
            self._process()

    # -- closing --------------------------------------------------------------------------

    def _start_closing(self) -> None:
        if self.phase is CLOSED or self.phase is LINGERING:
            return
        self.phase = CLOSING
        self._fast = False
        if self.layer is not None:
            self._write_raw(self.layer.close())
        if self._out is None:
            self._finish_closing()  # closes, or lingers reading only: no interest change first
        else:
            self._set_interest(self._interest & ~(READ | PRIORITY))

    def _finish_closing(self) -> None:
        """All output is out: half-close, then linger for the peer's close (or abort)."""
        if self.phase is not CLOSING:
            return
        linger = self.server.limits.linger
        if linger <= 0 or self.input_ended:
            self.abort()
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.abort()
            return
        self.phase = LINGERING
        self._fast = False
        self._set_interest(READ)
        if self.server.wheel is not None:
            self.server.wheel.remove(self)
        self.reactor.call_later(linger, self.abort)

    def _linger_read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.abort()

    def _io_error(self, exc: OSError) -> None:
        if exc.errno in DISCONNECT_ERRNOS:
            log.debug("%s: peer went away (%s)", self._context(), exc.strerror)
        else:
            log.warning("%s: socket error %s; closing", self._context(), exc)
        self.abort()

    def abort(self) -> None:
        """Close now, dropping unsent output. Idempotent."""
        if self.phase is CLOSED:
            return
        self.phase = CLOSED
        self._fast = False
        self.reactor.poller.unregister(self.fd)
        self.sock.close()
        self.reactor.table.remove(self)
        self._out = None
        self.out_bytes = 0
        self._pending = None
        server = self.server
        if server.wheel is not None:
            server.wheel.remove(self)
        server.connection_closed(self)

    # -- deadlines (see muxserver.reactor.timers.DeadlineWheel) ---------------------------

    def current_deadline(self) -> float:
        """The earliest of this connection's idle and request deadlines."""
        limits = self.server.limits
        deadline = math.inf
        if limits.idle_timeout is not None and not self.in_flight:
            deadline = self.last_activity + limits.idle_timeout
        if self.request_started is not None and limits.request_timeout is not None:
            deadline = min(deadline, self.request_started + limits.request_timeout)
        return deadline

    def deadline_expired(self, now: float) -> None:
        """A deadline passed: log why and close."""
        limits = self.server.limits
        if (
            self.request_started is not None
            and limits.request_timeout is not None
            and (self.request_started + limits.request_timeout <= now)
        ):
            reason = f"request incomplete after {limits.request_timeout}s"
        else:
            reason = f"idle for {limits.idle_timeout}s"
        log.info("%s: %s; closing", self._context(), reason)
        self.server.timeouts += 1
        self.abort()


def _hung_up(fd: int) -> bool:
    """Whether ``fd`` reports a hang-up right now (asked directly: the event that woke us
    may be older than a pause)."""
    if not hasattr(select, "poll"):
        return False
    probe = select.poll()
    probe.register(fd, 0)
    return any(mask & select.POLLHUP for _, mask in probe.poll(0))
