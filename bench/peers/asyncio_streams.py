"""Benchmark peer: asyncio's high-level streams API (StreamReader/StreamWriter, one task each).

Run: ``python -m bench.peers.asyncio_streams --resp-port 7001 --http-port 7002``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from bench.peers.cli import BACKLOG, HOST, announce_ready, parse_listeners
from bench.peers.minimal import Session

READ_SIZE = 65536


def _handler(
    new_session: Callable[[], Session],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """Return a connection callback that serves sessions made by ``new_session``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = new_session()
        try:
            # hot path: one iteration per read
            while data := await reader.read(READ_SIZE):
                reply = session.feed(data)
                if reply:
                    writer.write(reply)
                    await writer.drain()
                if session.close_after:
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()

    return handle


async def _serve() -> None:
    """Listen, announce READY, and run until SIGTERM or SIGINT."""
    listeners = parse_listeners(__doc__ or "")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers = [
        await asyncio.start_server(
            _handler(listener.new_session),
            HOST,
            listener.port,
            backlog=BACKLOG,
            reuse_address=True,
        )
        for listener in listeners
    ]
    announce_ready()
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    """Entry point."""
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
