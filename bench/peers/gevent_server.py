"""Benchmark peer: gevent's StreamServer, one greenlet per connection, blocking-style code.

Run: ``python -m bench.peers.gevent_server --resp-port 7001 --http-port 7002``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # before anything else imports socket or threading

import signal  # noqa: E402
import socket  # noqa: E402
from collections.abc import Callable  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

from bench.peers.cli import BACKLOG, HOST, announce_ready, parse_listeners  # noqa: E402
from bench.peers.minimal import Session  # noqa: E402

READ_SIZE = 65536


def _handler(new_session: Callable[[], Session]) -> Callable[[socket.socket, object], None]:
    """Return a per-connection greenlet body serving sessions made by ``new_session``."""

    def handle(sock: socket.socket, _address: object) -> None:
        session = new_session()
        try:
            # hot path: one iteration per read
            while data := sock.recv(READ_SIZE):
                reply = session.feed(data)
                if reply:
                    sock.sendall(reply)
                if session.close_after:
                    break
        except OSError:
            pass  # reset or broken pipe: an ordinary close here
        finally:
            sock.close()

    return handle


def main() -> None:
    """Entry point: listen, announce READY, serve until SIGTERM or SIGINT."""
    listeners = parse_listeners(__doc__ or "")
    servers = [
        StreamServer((HOST, listener.port), _handler(listener.new_session), backlog=BACKLOG)
        for listener in listeners
    ]
    for server in servers:
        server.start()
    stop = Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    announce_ready()
    stop.wait()
    for server in servers:
        server.stop(timeout=1)


if __name__ == "__main__":
    main()
