"""Datagram endpoints (UDP v4/v6, Unix datagram): one message in, at most one reply out.

A datagram service is a function (or :class:`~muxserver.service.Service`) called with the
datagram's bytes as a :class:`Datagram` request and a :class:`~muxserver.service.Peer` for the
sender; what it returns (``bytes`` or ``None``) is sent back to that sender. Services run
through a dispatch strategy like stream services do.

Datagrams have no flow control of their own, so the endpoint bounds what it holds: at most
``max_queued`` replies wait for a full socket buffer (beyond that the oldest is dropped and
counted -- UDP may lose datagrams anyway, a server must not grow without bound), and reading
pauses while the dispatch strategy is saturated.
"""

from __future__ import annotations

import collections
import errno
import logging
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

from muxserver.handlers.base import Request
from muxserver.reactor.dispatch import DispatchStrategy, InlineStrategy
from muxserver.reactor.listen import bind_udp, bind_unix, format_address, remove_socket_file
from muxserver.reactor.loop import Reactor
from muxserver.reactor.poller import READ, WRITE
from muxserver.service import Peer, Service, as_service

__all__ = ["Datagram", "DatagramEndpoint"]

log = logging.getLogger("muxserver.datagram")

_MAX_DATAGRAM = 65535


class Datagram(Request):
    """One received datagram, as a request for a datagram service."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Datagram({self.data!r})"


class DatagramEndpoint:
    """A bound datagram socket in the reactor, answering each datagram through a service."""

    def __init__(
        self,
        reactor: Reactor,
        sock: socket.socket,
        service: Service | Callable[[Request, Peer], Any],
        *,
        strategy: DispatchStrategy | None = None,
        name: str = "datagram",
        burst: int = 64,
        max_queued: int = 1024,
    ) -> None:
        sock.setblocking(False)
        self.reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.address = sock.getsockname()
        self.service = as_service(service)
        self.strategy = strategy if strategy is not None else InlineStrategy()
        self.name = name
        self.burst = burst
        self.max_queued = max_queued
        self.received = 0
        self.sent = 0
        self.dropped = 0
        self.owns_path = True
        """Remove a Unix socket's file on close (false: it belongs to systemd or a supervisor)."""
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self.in_flight = 0
        self._interest = READ
        self._closed = False
        self._draining = False  # begin_shutdown: reading never resumes
        self.strategy.attach(reactor)
        reactor.poller.register(self.fd, READ, self)
        reactor.add_stoppable(self)

    @classmethod
    def udp(
        cls,
        reactor: Reactor,
        service: Service | Callable[[Request, Peer], Any],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        dual_stack: bool = False,
        **options: Any,
    ) -> DatagramEndpoint:
        """An endpoint on a new UDP socket bound to ``host``:``port``."""
        return cls(reactor, bind_udp(host, port, dual_stack=dual_stack), service, **options)

    @classmethod
    def unix(
        cls,
        reactor: Reactor,
        service: Service | Callable[[Request, Peer], Any],
        path: str,
        *,
        mode: int | None = None,
        **options: Any,
    ) -> DatagramEndpoint:
        """An endpoint on a new Unix datagram socket at ``path`` (``@name``: abstract)."""
        sock = bind_unix(path, kind=socket.SOCK_DGRAM, mode=mode)
        return cls(reactor, sock, service, **options)

    def __repr__(self) -> str:
        return f"<DatagramEndpoint {self.name} on {format_address(self.address)}>"

    def handle_read(self) -> None:
        """Receive up to a burst of datagrams and serve each."""
        strategy = self.strategy
        for _ in range(self.burst):
            if strategy.saturated:
                self._set_interest(self._interest & ~READ)
                strategy.when_unsaturated(self._resume_reading)
                return
            try:
                data, _, flags, address = self.sock.recvmsg(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP errors from earlier sends surface here (ECONNREFUSED): not ours to fix.
                log.debug("%r: %s", self, exc)
                continue
            self.received += 1
            if flags & socket.MSG_TRUNC:  # a Unix datagram over 64 KiB: never serve a part
                log.warning(
                    "%r: dropped a datagram over %d bytes from %r", self, _MAX_DATAGRAM, address
                )
                self.dropped += 1
                continue
            peer = Peer(0, address)
            if strategy.inline:
                try:
                    reply = self.service.handle(Datagram(data), peer)
                except Exception:
                    log.exception("%r: service failed for a datagram from %r", self, address)
                    continue
                if reply:
                    self.send(reply, address)
            else:
                self.in_flight += 1
                strategy.submit(self.service, Datagram(data), peer, partial(self._done, address))

    def _done(self, address: Any, ok: bool, value: Any) -> None:
        self.in_flight -= 1
        if not ok:
            log.error("%r: service failed for a datagram from %r: %r", self, address, value)
        elif value and not self._closed:
            self.send(value, address)

    def _resume_reading(self) -> None:
        if not self._closed and not self._draining:
            self._set_interest(self._interest | READ)

    def send(self, data: bytes, address: Any) -> None:
        """Send one datagram to ``address`` now, or queue it (bounded) if the socket is full."""
        if not address:  # an unbound Unix datagram sender: there is nowhere to reply
            self.dropped += 1
            return
        if self._queue:
            self._enqueue(data, address)
            return
        try:
            self.sock.sendto(data, address)
            self.sent += 1
        except (BlockingIOError, InterruptedError):
            self._enqueue(data, address)
        except TypeError as exc:  # a reply that is not bytes: the service's mistake
            log.error("%r: cannot send %s to %r: %s", self, type(data).__name__, address, exc)
            self.dropped += 1
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.EMSGSIZE):
                log.warning("%r: cannot send to %r: %s", self, address, exc)
            self.dropped += 1

    def _enqueue(self, data: bytes, address: Any) -> None:
        if len(self._queue) >= self.max_queued:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((data, address))
        self._set_interest(self._interest | WRITE)

    def handle_write(self) -> None:
        """Send queued replies while the socket takes them."""
        queue = self._queue
        while queue:
            data, address = queue[0]
            try:
                self.sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.dropped += 1
            else:
                self.sent += 1
            queue.popleft()
        self._set_interest(self._interest & ~WRITE)

    def _set_interest(self, mask: int) -> None:
        if mask != self._interest and not self._closed:
            self._interest = mask
            self.reactor.poller.modify(self.fd, mask, self)

    def close(self) -> None:
        """Close the socket (and remove a Unix socket file)."""
        if self._closed:
            return
        self._closed = True
        self.reactor.poller.unregister(self.fd)
        self.sock.close()
        if self.owns_path:
            remove_socket_file(self.address)
        self.reactor.remove_stoppable(self)

    # -- the reactor's Stoppable protocol -------------------------------------------------

    def begin_shutdown(self) -> None:
        """Stop receiving; requests in flight are still answered."""
        self._draining = True
        self._set_interest(self._interest & ~READ)

    def is_idle(self) -> bool:
        """True when no request is in flight and no reply is queued."""
        return self.in_flight == 0 and not self._queue

    def force_close(self) -> None:
        """Close at once."""
        self.close()
