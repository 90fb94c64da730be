"""Outbound stream connections: non-blocking connect, then an ordinary StreamConnection.

Proxies, clients and tests need the reactor to dial out. A :class:`Connector` owns the socket
while the connect is in progress (watched for writability, with a timeout) and hands it to a
:class:`~muxserver.reactor.server.StreamServer` -- which supplies the service, strategy and
limits -- once connected. Exactly one of ``on_connected(connection)`` and
``on_failed(error)`` is called, in the reactor thread.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from muxserver.handlers.base import Handler
from muxserver.reactor.poller import WRITE

if TYPE_CHECKING:
    from muxserver.reactor.server import StreamServer
    from muxserver.reactor.stream import StreamConnection
    from muxserver.reactor.timers import Timer

__all__ = ["Connector"]


class Connector:
    """One connect in progress."""

    def __init__(
        self,
        server: StreamServer,
        family: int,
        address: Any,
        handler: Handler,
        on_connected: Callable[[StreamConnection], None],
        on_failed: Callable[[OSError], None],
        timeout: float,
    ) -> None:
        self.server = server
        self.address = address
        self.handler = handler
        self.on_connected = on_connected
        self.on_failed = on_failed
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self._timer: Timer | None = None
        self._settled = False  # reported, one way or the other: later events are stale
        code = self.sock.connect_ex(address)
        reactor = server.reactor
        # EAGAIN is no connect in progress: a Unix listener's backlog is full (or, for TCP,
        # no local port is free). Only EINPROGRESS means "wait for writability".
        if code in (0, errno.EINPROGRESS):
            reactor.poller.register(self.fd, WRITE, self)
            self._timer = reactor.call_later(timeout, self._timed_out)
        else:
            self.sock.close()
            error = OSError(code, f"cannot connect to {address!r}: {errno.errorcode.get(code)}")
            reactor.call_soon(on_failed, error)

    def handle_read(self) -> None:
        """Errors are reported as readable too; the write check sorts them out."""
        self.handle_write()

    def handle_write(self) -> None:
        """The connect finished, one way or the other."""
        if self._settled:
            return  # one readiness event can call us twice (readable and writable)
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._stop_watching()
        if code:
            self.sock.close()
            self.on_failed(
                OSError(
                    code, f"cannot connect to {self.address!r}: {errno.errorcode.get(code, code)}"
                )
            )
            return
        if self.sock.family != socket.AF_UNIX:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = self.server.adopt(self.sock, self.address, self.handler)
        self.on_connected(connection)

    def _timed_out(self) -> None:
        self._timer = None
        if self._settled:
            return
        self._stop_watching()
        self.sock.close()
        self.on_failed(TimeoutError(errno.ETIMEDOUT, f"connect to {self.address!r} timed out"))

    def _stop_watching(self) -> None:
        self._settled = True
        self.server.reactor.poller.unregister(self.fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
