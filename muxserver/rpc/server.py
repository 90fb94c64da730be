"""Serving an :class:`~muxserver.rpc.program.RPCService` on the reactor, over TCP and UDP.

Theory of operation
-------------------
:class:`RPCServer` puts one service on one port number of one reactor, twice:

* **TCP**: a :class:`~muxserver.reactor.server.StreamServer` whose connections each get a
  :class:`~muxserver.rpc.record.RecordMarkingHandler`; every record is a call, the service's
  reply bytes are framed as one record (``None`` sends nothing). Replies on a connection go
  out in call order, as on any stream connection. The handler's record-size cap is
  ``Limits.max_input``, so an oversized record is refused as soon as its header is read.
* **UDP**: a :class:`~muxserver.reactor.datagram.DatagramEndpoint`; every datagram is one
  call, answered by one datagram (or none). The service reads the call from the
  :class:`~muxserver.reactor.datagram.Datagram`'s ``data``, just as it reads an
  :class:`~muxserver.rpc.record.RPCRecord`'s, so the same service object serves both.

Both sides submit calls to the same dispatch strategy (inline by default), so a slow
procedure can be sent to a thread or process pool without touching the program.

rpcbind registration (``register=True``) is a *blocking* exchange with the local
portmapper (127.0.0.1:111, version 2, over TCP so that a missing portmapper fails at once),
done in the constructor -- that is, at start-up, before the reactor runs. For every
(program, version) the service serves it first UNSETs any stale entry (as rpcgen's servers
do) and then SETs the TCP and the UDP port; any failure closes what was opened and raises
:class:`RegistrationError`. Unregistering happens on the reactor's graceful shutdown: it
starts on a short-lived thread when draining begins (the reactor thread never blocks) and is
joined before the shutdown completes; :meth:`RPCServer.close` does it synchronously.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from functools import partial

from muxserver.reactor.datagram import DatagramEndpoint
from muxserver.reactor.dispatch import DispatchStrategy
from muxserver.reactor.limits import Limits
from muxserver.reactor.listen import bind_tcp, bind_udp, format_address
from muxserver.reactor.loop import Reactor
from muxserver.reactor.server import StreamServer
from muxserver.rpc.client import RPCError
from muxserver.rpc.program import RPCService
from muxserver.rpc.record import RecordMarkingHandler
from muxserver.rpc.rpcbind import PMAP_PORT, PortmapperClient, Protocol

__all__ = ["RPCServer", "RegistrationError", "bind_tcp_and_udp"]

log = logging.getLogger("muxserver.rpc")

_PORT_ATTEMPTS = 32  # free TCP ports tried when port 0 must also be free for UDP


class RegistrationError(OSError):
    """rpcbind could not be reached, or refused to register (or unregister) a mapping."""


def bind_tcp_and_udp(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket and a UDP socket bound to the same ``host``:``port``.

    With ``port`` 0 the system picks a free TCP port; if that number is taken for UDP,
    another one is tried (a few dozen times at most).

    Raises:
        OSError: the address cannot be bound (the message names it).
    """
    for _ in range(_PORT_ATTEMPTS if port == 0 else 1):
        tcp = bind_tcp(host, port)
        try:
            return tcp, bind_udp(host, tcp.getsockname()[1])
        except OSError as exc:
            tcp.close()
            if port != 0 or exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(
        errno.EADDRINUSE, f"no port on {host} was free for both TCP and UDP; pass a port number"
    )


class RPCServer:
    """Serve ``service`` over TCP (record marking) and UDP on ``host``:``port``.

    Args:
        reactor: the reactor that owns both sockets.
        service: the programs to serve (see :class:`~muxserver.rpc.program.RPCService`).
        host, port: where to listen; port 0 picks a number free for both transports.
        strategy: where procedures run, for both transports (default: inline).
        limits: TCP connection limits; ``max_input`` also caps one record's size.
        register: register every (program, version) with the local rpcbind at start-up
            (blocking, see the module docstring) and unregister on shutdown.
        rpcbind_port, rpcbind_timeout: the local portmapper's port and how long each
            registration call may take.
        name: used in logs and the status page (``name`` for TCP, ``name-udp`` for UDP).

    Raises:
        OSError: the address cannot be bound.
        RegistrationError: ``register`` is set and rpcbind is unreachable or refuses.
    """

    def __init__(
        self,
        reactor: Reactor,
        service: RPCService,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        strategy: DispatchStrategy | None = None,
        limits: Limits | None = None,
        register: bool = False,
        rpcbind_port: int = PMAP_PORT,
        rpcbind_timeout: float = 2.0,
        name: str = "rpc",
    ) -> None:
        self.reactor = reactor
        self.service = service
        self.rpcbind_port = rpcbind_port
        self.rpcbind_timeout = rpcbind_timeout
        self.registered: list[tuple[int, int]] = []
        """The (program, version) pairs this server registered and has not unregistered."""
        self._unregistering: threading.Thread | None = None
        self._closed = False
        limits = limits if limits is not None else Limits()
        tcp_sock, udp_sock = bind_tcp_and_udp(host, port)
        self.port: int = tcp_sock.getsockname()[1]
        """The port number served on both transports."""
        try:
            self.stream = StreamServer(
                reactor,
                partial(RecordMarkingHandler, limits.max_input),
                service,
                strategy=strategy,
                limits=limits,
                name=name,
            )
        except BaseException:
            tcp_sock.close()
            udp_sock.close()
            raise
        self.tcp_address = self.stream.listen_socket(tcp_sock).address
        self.datagram = DatagramEndpoint(
            reactor, udp_sock, service, strategy=self.stream.strategy, name=f"{name}-udp"
        )
        self.udp_address = self.datagram.address
        reactor.add_stoppable(self)
        if register:
            try:
                self._register()
            except BaseException:
                self.close()
                raise

    def __repr__(self) -> str:
        return f"<RPCServer {self.stream.name} on {format_address(self.tcp_address)} tcp+udp>"

    # -- rpcbind ----------------------------------------------------------------------------

    def _portmapper(self) -> PortmapperClient:
        return PortmapperClient(
            "127.0.0.1", self.rpcbind_port, transport="tcp", timeout=self.rpcbind_timeout
        )

    def _register(self) -> None:
        where = f"rpcbind at 127.0.0.1:{self.rpcbind_port}"
        try:
            with self._portmapper() as portmapper:
                for prog, vers in self.service.served:
                    portmapper.unset(prog, vers)  # a stale entry would make SET fail
                    self.registered.append((prog, vers))
                    for protocol in (Protocol.TCP, Protocol.UDP):
                        if not portmapper.set(prog, vers, protocol, self.port):
                            raise RegistrationError(
                                f"{where} refused to register program {prog} version {vers} "
                                f"{protocol.name.lower()} port {self.port}"
                            )
                        log.info(
                            "registered program %d version %d %s port %d with %s",
                            prog,
                            vers,
                            protocol.name.lower(),
                            self.port,
                            where,
                        )
        except (OSError, RPCError) as exc:
            if isinstance(exc, RegistrationError):
                raise
            raise RegistrationError(
                f"cannot register with {where}: {exc}; is rpcbind running "
                f"(Debian package rpcbind)? Start it, or serve without registration"
            ) from exc

    def unregister(self) -> None:
        """UNSET every mapping this server registered (blocking; failures are logged)."""
        if not self.registered:
            return
        pairs, self.registered = self.registered, []
        try:
            with self._portmapper() as portmapper:
                for prog, vers in pairs:
                    portmapper.unset(prog, vers)
                    log.info("unregistered program %d version %d from rpcbind", prog, vers)
        except (OSError, RPCError) as exc:
            log.warning("could not unregister %s from rpcbind: %s", pairs, exc)

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Unregister (blocking) and close both sockets now (reactor thread, or not running).

        Connections already open are left to the reactor. Closing twice is harmless.
        """
        self.force_close()
        self.stream.close_listeners()
        self.datagram.close()

    # -- the reactor's Stoppable protocol ----------------------------------------------------

    def begin_shutdown(self) -> None:
        """Draining starts: unregister on a helper thread, so the reactor never blocks."""
        if self.registered and self._unregistering is None:
            self._unregistering = threading.Thread(
                target=self.unregister, name="muxserver-rpc-unregister", daemon=True
            )
            self._unregistering.start()

    def is_idle(self) -> bool:
        """True once unregistering (if any) has finished."""
        return self._unregistering is None or not self._unregistering.is_alive()

    def force_close(self) -> None:
        """Finish unregistering (join the helper thread, or unregister now if none ran)."""
        if self._closed:
            return
        self._closed = True
        if self._unregistering is not None:
            self._unregistering.join()
            self._unregistering = None
        self.unregister()
        self.reactor.remove_stoppable(self)
