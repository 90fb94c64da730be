"""Benchmark peer: Twisted's default reactor (epoll on Linux) with a plain Protocol.

Run: ``python -m bench.peers.twisted_server --resp-port 7001 --http-port 7002``.
Twisted's reactor installs its own SIGTERM/SIGINT handlers, which stop it cleanly.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import protocol

from bench.peers.cli import BACKLOG, HOST, announce_ready, parse_listeners
from bench.peers.minimal import Session


class SessionProtocol(protocol.Protocol):
    """Feeds every read to a session and writes back what it returns."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def dataReceived(self, data: bytes) -> None:
        """Answer every complete request in ``data``."""
        # hot path: once per read
        session = self._session
        reply = session.feed(data)
        if reply:
            self.transport.write(reply)
        if session.close_after:
            self.transport.loseConnection()


class SessionFactory(protocol.Factory):
    """Builds one :class:`SessionProtocol` per accepted connection."""

    noisy = False  # no log line per listening port start/stop

    def __init__(self, new_session: Callable[[], Session]) -> None:
        self._new_session = new_session

    def buildProtocol(self, addr: object) -> SessionProtocol:
        """Return the protocol for a new connection from ``addr``."""
        return SessionProtocol(self._new_session())


def main() -> None:
    """Entry point: listen, announce READY once the reactor runs, run until a stop signal."""
    listeners = parse_listeners(__doc__ or "")
    from twisted.internet import reactor  # imported late: installs the default reactor

    for listener in listeners:
        reactor.listenTCP(
            listener.port, SessionFactory(listener.new_session), backlog=BACKLOG, interface=HOST
        )
    reactor.callWhenRunning(announce_ready)
    reactor.run()


if __name__ == "__main__":
    main()
