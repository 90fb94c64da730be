"""Benchmark peer: asyncio with the Protocol/Transport callback API (the baseline).

Run: ``python -m bench.peers.asyncio_protocol --resp-port 7001 --http-port 7002``.
:func:`serve` is shared with the uvloop peer, which differs only in its event loop.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import cast

from bench.peers.cli import BACKLOG, HOST, Listener, announce_ready, parse_listeners
from bench.peers.minimal import Session


class SessionProtocol(asyncio.Protocol):
    """Feeds every read to a session and writes back what it returns."""

    __slots__ = ("_session", "_transport")

    def __init__(self, session: Session) -> None:
        self._session = session
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport (called once, before any data)."""
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Answer every complete request in ``data``."""
        # hot path: once per read
        session = self._session
        reply = session.feed(data)
        transport = self._transport
        assert transport is not None
        if reply:
            transport.write(reply)
        if session.close_after:
            transport.close()


async def _serve(listeners: list[Listener]) -> None:
    """Listen on every port, announce READY, and run until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers = []
    for listener in listeners:
        factory = listener.new_session
        servers.append(
            await loop.create_server(
                lambda f=factory: SessionProtocol(f()),
                HOST,
                listener.port,
                backlog=BACKLOG,
                reuse_address=True,
            )
        )
    announce_ready()
    await stop.wait()
    for server in servers:
        server.close()
    # Idle connections are not ours to wait for: the process is about to exit.


def serve(listeners: list[Listener], new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """Run the peer on an event loop made by ``new_loop`` until a stop signal arrives."""
    loop = new_loop()
    try:
        loop.run_until_complete(_serve(listeners))
    finally:
        loop.close()


def main() -> None:
    """Entry point: asyncio's default (selector) event loop."""
    serve(parse_listeners(__doc__ or ""), asyncio.new_event_loop)


if __name__ == "__main__":
    main()
