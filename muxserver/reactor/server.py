"""Stream servers: a handler factory, a service and limits served on one or more listeners.

A :class:`StreamServer` owns its listeners and creates a
:class:`~muxserver.reactor.stream.StreamConnection` for each accepted socket. It enforces
``Limits.max_connections`` by pausing every listener when full and resuming exactly when a
connection of this server closes, and it takes part in the reactor's graceful shutdown
(stop accepting first).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from muxserver.handlers.base import Handler, Request
from muxserver.reactor.connect import Connector
from muxserver.reactor.dispatch import DispatchStrategy, InlineStrategy
from muxserver.reactor.limits import Limits, UrgentPolicy
from muxserver.reactor.listen import Listener, bind_tcp, bind_unix, format_address
from muxserver.reactor.loop import Reactor
from muxserver.reactor.stream import StreamConnection
from muxserver.reactor.timers import Deadlined, DeadlineWheel, Timer
from muxserver.service import Peer, Service, as_service

__all__ = ["StreamServer"]

log = logging.getLogger("muxserver.server")


class StreamServer:
    """Serve ``handler_factory()`` + ``service`` on stream listeners of one reactor.

    Args:
        reactor: the reactor that owns every socket.
        handler_factory: called once per connection for a fresh handler.
        service: a :class:`~muxserver.service.Service`, a function ``(request, peer)``, or
            ``None`` for handlers that answer everything themselves (echo).
        strategy: where services run (default: inline, in the reactor thread).
        strategies: further strategies by name, for requests whose ``strategy`` names one.
        limits: per-connection limits (see :class:`~muxserver.reactor.limits.Limits`).
        name: used in logs, the status page and metrics.
        on_fd_limit: called with the server when accepts fail for lack of descriptors
            (e.g. to close idle connections).
        admit: called with each accepted socket and its peer address before any handler
            exists; returns ``None`` to admit or a reason string to refuse (the socket is
            closed and one log line names the peer and the reason). Address rules and peer
            credential checks plug in here.
        setup: called with each accepted connection after ``admit`` and before it starts
            (before ``connection_made`` and before any byte is read): installs a stream layer
            such as TLS (:meth:`StreamConnection.install_layer`) or records facts about the
            peer in ``connection.peer.extra``. If it raises, the connection is refused.
    """

    def __init__(
        self,
        reactor: Reactor,
        handler_factory: Callable[[], Handler],
        service: Service | Callable[[Request, Peer], Any] | None = None,
        *,
        strategy: DispatchStrategy | None = None,
        strategies: dict[str, DispatchStrategy] | None = None,
        limits: Limits | None = None,
        name: str = "server",
        on_fd_limit: Callable[[StreamServer], None] | None = None,
        admit: Callable[[socket.socket, Any], str | None] | None = None,
        setup: Callable[[StreamConnection], None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.handler_factory = handler_factory
        self.service = as_service(service)
        self.strategy = strategy if strategy is not None else InlineStrategy()
        self.strategies: dict[str, DispatchStrategy] = dict(strategies or {})
        self.strategies.setdefault(self.strategy.name, self.strategy)
        self.limits = limits if limits is not None else Limits()
        # Copies of the limits the hot path reads on every request.
        # A read never exceeds the input cap, so the leftover of a read that completed a
        # request is within the cap too (stream.py checks only reads that complete nothing).
        self.read_size = min(self.limits.read_size, self.limits.max_input)
        self.high_water = self.limits.high_water
        self.request_timeout = self.limits.request_timeout
        self.name = name
        self.on_fd_limit = on_fd_limit
        self.admit = admit
        self.setup = setup
        self.listeners: list[Listener] = []
        self.connections = 0
        self.timeouts = 0
        self.refused = 0
        self.errors = 0
        """Service failures and protocol errors, over the server's lifetime."""
        # Requests and bytes of connections already closed: open ones keep their own counts
        # and metrics add the two, so the hot path counts each thing once.
        self.requests_closed = 0
        self.bytes_in_closed = 0
        self.bytes_out_closed = 0
        self.shutting_down = False
        self.watch_urgent = (
            self.limits.urgent is UrgentPolicy.EVENT and reactor.poller.supports_priority
        )
        if self.limits.urgent is UrgentPolicy.EVENT and not self.watch_urgent:
            raise ValueError(
                "UrgentPolicy.EVENT needs the epoll poller; use INLINE or DISCARD here"
            )
        service_class = type(self.service)
        self.wants_lifecycle = (
            service_class.connection_made is not Service.connection_made
            or service_class.connection_lost is not Service.connection_lost
        )
        timeouts = [t for t in (self.limits.idle_timeout, self.limits.request_timeout) if t]
        self.wheel: DeadlineWheel | None = None
        self._sweep: Timer | None = None
        if timeouts:
            self.wheel = DeadlineWheel(granularity=max(0.01, min(min(timeouts) / 8, 1.0)))
        for part in self.strategies.values():
            part.attach(reactor)
        reactor.add_stoppable(self)

    def __repr__(self) -> str:
        addresses = ", ".join(format_address(lst.address) for lst in self.listeners)
        return f"<StreamServer {self.name} on {addresses or 'nothing'}>"

    # -- listeners ------------------------------------------------------------------------

    def listen_tcp(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        dual_stack: bool = False,
        reuse_port: bool = False,
        backlog: int = 1024,
    ) -> Listener:
        """Listen on a TCP address (IPv4 or IPv6; see :func:`bind_tcp`)."""
        sock = bind_tcp(host, port, dual_stack=dual_stack, reuse_port=reuse_port, backlog=backlog)
        return self.listen_socket(sock)

    def listen_unix(self, path: str, *, mode: int | None = None, backlog: int = 1024) -> Listener:
        """Listen on a Unix stream socket (a path, or ``@name`` for a Linux abstract name)."""
        return self.listen_socket(bind_unix(path, mode=mode, backlog=backlog))

    def listen_socket(self, sock: socket.socket) -> Listener:
        """Accept on an already listening socket (inherited, socket-activated...)."""
        sock.setblocking(False)
        listener = Listener(self, sock)
        self.listeners.append(listener)
        if self.full() or self.shutting_down:
            listener.pause()
        return listener

    def connect(
        self,
        address: Any,
        handler: Handler,
        on_connected: Callable[[StreamConnection], None],
        on_failed: Callable[[OSError], None],
        *,
        timeout: float = 10.0,
    ) -> Connector:
        """Dial ``address`` (``(host, port)`` or a Unix path) and serve it with ``handler``.

        Exactly one of ``on_connected(connection)`` / ``on_failed(error)`` is called later.
        """
        target: Any
        if isinstance(address, str):
            family, target = socket.AF_UNIX, address
        else:
            info = socket.getaddrinfo(address[0], address[1], 0, socket.SOCK_STREAM)[0]
            family, target = info[0], info[4]
        return Connector(self, family, target, handler, on_connected, on_failed, timeout)

    @property
    def addresses(self) -> list[Any]:
        """The bound address of every listener."""
        return [listener.address for listener in self.listeners]

    # -- connections ----------------------------------------------------------------------

    def full(self) -> bool:
        """True when ``max_connections`` connections are open."""
        limit = self.limits.max_connections
        return limit is not None and self.connections >= limit

    def accepted(self, sock: socket.socket, address: Any, tcp: bool) -> None:
        """Take over a freshly accepted socket (called by the listeners); ``tcp``: not Unix."""
        sock.setblocking(False)
        if self.admit is not None:
            try:
                reason = self.admit(sock, address)
            except Exception:
                log.exception("%s: admission check failed; refusing %r", self.name, address)
                reason = "admission check failed"
            if reason is not None:
                log.warning("%s: refused %s: %s", self.name, format_address(address), reason)
                self.refused += 1
                sock.close()
                return
        if tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.limits.urgent is UrgentPolicy.INLINE:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        try:
            handler = self.handler_factory()
        except Exception:
            log.exception("%s: handler factory failed; refusing the connection", self.name)
            sock.close()
            return
        try:
            self.adopt(sock, address, handler, setup=self.setup)
        except Exception:
            log.exception("%s: connection setup failed; refusing %r", self.name, address)
            sock.close()

    def adopt(
        self,
        sock: socket.socket,
        address: Any,
        handler: Handler,
        *,
        setup: Callable[[StreamConnection], None] | None = None,
    ) -> StreamConnection:
        """Serve an already connected socket with ``handler`` (accepted or outbound).

        ``setup(connection)`` runs before the connection starts (see the class docstring).
        """
        connection = StreamConnection(self, sock, address, handler)
        if setup is not None:
            setup(connection)
        self.connections += 1
        if self.full():
            for listener in self.listeners:
                listener.pause()
        connection.start()
        return connection

    def connection_closed(self, connection: StreamConnection) -> None:
        """Bookkeeping when one of this server's connections closes."""
        was_full = self.full()
        self.connections -= 1
        self.requests_closed += connection.requests
        self.bytes_in_closed += connection.bytes_in
        self.bytes_out_closed += connection.bytes_out
        if connection.service_started:
            try:
                self.service.connection_lost(connection, connection.peer)
            except Exception:
                log.exception("connection_lost failed for connection #%d", connection.id)
        if was_full and not self.full() and not self.shutting_down:
            for listener in self.listeners:
                if listener._retry is None:
                    listener.resume()

    def at_fd_limit(self, listener: Listener) -> None:
        """A listener ran out of descriptors: give the application its chance to help."""
        if self.on_fd_limit is not None:
            try:
                self.on_fd_limit(self)
            except Exception:
                log.exception("%s: on_fd_limit hook failed", self.name)

    def route(self, request: Request) -> DispatchStrategy:
        """The strategy a request asked for by name.

        Raises:
            LookupError: naming the known strategies, if the name is unknown.
        """
        name = request.strategy
        try:
            return self.strategies[name]  # type: ignore[index]
        except KeyError:
            raise LookupError(
                f"request {type(request).__name__} asked for strategy {name!r}; "
                f"{self.name} has {sorted(self.strategies)}"
            ) from None

    # -- timeouts -------------------------------------------------------------------------

    def watch_deadline(self, connection: Deadlined) -> None:
        """File ``connection`` under its current deadline and make sure a sweep is due."""
        if self.wheel is not None:
            self.wheel.file(connection)
            self._arm_sweep()

    def _arm_sweep(self) -> None:
        wheel = self.wheel
        if wheel is None:
            return
        due = wheel.next_due()
        if due is None:
            return
        if self._sweep is not None:
            if self._sweep.when <= due:
                return
            self._sweep.cancel()
        self._sweep = self.reactor.call_at(due, self._run_sweep)

    def _run_sweep(self) -> None:
        self._sweep = None
        assert self.wheel is not None
        self.wheel.sweep(self.reactor.time())
        self._arm_sweep()

    # -- shutdown (the reactor's Stoppable protocol) ----------------------------------------

    def begin_shutdown(self) -> None:
        """Stop accepting; connections are drained by the reactor."""
        self.shutting_down = True
        self.close_listeners()

    def is_idle(self) -> bool:
        """True when this server has no open connection."""
        return self.connections == 0

    def force_close(self) -> None:
        """Close the listeners (connections are aborted by the reactor)."""
        self.close_listeners()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def close_listeners(self) -> None:
        """Stop listening on every address."""
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()
