"""The HTTP demo: ``GET /healthz`` answers ``ok``; ``GET /`` a small page about the server.

The page names the running services (the banner lines ``python -m muxserver`` prints) and
counts the reactor's open connections, by state, from its connection table. The service must
run inline (the default strategy): it reads the table, which only the reactor thread may touch.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, Final

from muxserver.handlers.base import Request
from muxserver.handlers.http import HTTPHandler, HTTPRequest, HTTPResponse
from muxserver.reactor.listen import format_address
from muxserver.reactor.loop import Reactor
from muxserver.reactor.server import StreamServer
from muxserver.service import Peer, Service

__all__ = ["HTTPStatusService", "start_http_status"]

_HTML: Final = [("Content-Type", "text/html; charset=utf-8")]
_TEXT: Final = [("Content-Type", "text/plain; charset=utf-8")]


class HTTPStatusService(Service):
    """Answer ``/healthz`` and ``/`` for a reactor; anything else is a 404 (or a 405).

    Args:
        reactor: whose connection table the page counts.
        services: the banner lines naming the running services. The sequence is read on
            every request, so a list that grows as services start is shown in full.
    """

    def __init__(self, reactor: Reactor, services: Sequence[str]) -> None:
        self.reactor = reactor
        self.services = services

    def handle(self, request: Request, peer: Peer) -> Any:
        """Route on the path; only GET and HEAD are allowed."""
        assert isinstance(request, HTTPRequest)
        path = request.target.split(b"?", 1)[0]
        if path not in (b"/", b"/healthz"):
            return HTTPResponse(404, _TEXT, "not found\n")
        if request.method not in (b"GET", b"HEAD"):
            return HTTPResponse(405, [*_TEXT, ("Allow", "GET, HEAD")], "method not allowed\n")
        if path == b"/healthz":
            return HTTPResponse(200, _TEXT, "ok")
        return HTTPResponse(200, _HTML, self.page())

    def page(self) -> str:
        """The status page: the services and the open connections (reactor thread only)."""
        table = self.reactor.table
        states = "".join(
            f"<li>{state.value}: {count}</li>"
            for state, count in table.count_by_state().items()
            if count
        )
        services = "".join(f"<li><code>{html.escape(line)}</code></li>" for line in self.services)
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>muxserver</title>'
            "</head>\n<body><h1>muxserver</h1>\n"
            f"<h2>Services</h2><ul>{services}</ul>\n"
            f"<h2>Connections</h2><p>open connections: {len(table)}</p><ul>{states}</ul>\n"
            "</body></html>\n"
        )


def start_http_status(reactor: Reactor, host: str, port: int, services: Sequence[str]) -> list[str]:
    """Serve :class:`HTTPStatusService` on ``host``:``port``; return the banner line.

    Raises:
        OSError: the port cannot be bound.
    """
    server = StreamServer(reactor, HTTPHandler, HTTPStatusService(reactor, services), name="http")
    listener = server.listen_tcp(host, port)
    return [f"http  tcp {format_address(listener.address)}"]
