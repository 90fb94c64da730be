"""The Sun RPC demo service: program 0x20000001 version 1 of ``examples/demo.x``.

It serves :func:`muxserver.rpc.demo.demo_service` (an in-memory key-value store and a shape
measurer) over TCP and UDP on one port, with a duplicate-request cache so that a UDP client
retransmitting DEMO_PUT does not store twice. With ``register`` it also tells the local
rpcbind where it is (a blocking call at start-up; see :mod:`muxserver.rpc.server`).
"""

from __future__ import annotations

from muxserver.reactor.listen import format_address
from muxserver.reactor.loop import Reactor
from muxserver.rpc.demo import demo_service
from muxserver.rpc.program import DuplicateRequestCache
from muxserver.rpc.server import RPCServer

__all__ = ["start_rpc_demo"]


def start_rpc_demo(reactor: Reactor, host: str, port: int, *, register: bool = False) -> list[str]:
    """Serve the demo program on ``host``:``port`` (TCP and UDP); return the banner lines.

    Raises:
        OSError: the port cannot be bound on both transports.
        muxserver.rpc.server.RegistrationError: ``register`` is set and rpcbind refused or
            is not running.
    """
    service = demo_service(duplicate_cache=DuplicateRequestCache())
    server = RPCServer(reactor, service, host=host, port=port, register=register, name="rpc")
    lines = [
        f"rpc   tcp {format_address(server.tcp_address)}",
        f"rpc   udp {format_address(server.udp_address)}",
    ]
    for prog, vers in server.registered:
        lines.append(f"rpc   registered with rpcbind: program {prog} version {vers}")
    return lines
