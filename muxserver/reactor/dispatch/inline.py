"""The inline strategy: the service runs in the reactor thread, synchronously.

The fastest strategy (no hand-off, no wake-up), and the one the seed called "synchronous":
while one service call runs, every other connection waits. Use it for services that answer
from memory in microseconds; send anything that blocks or burns CPU to a thread or process
strategy.
"""

from __future__ import annotations

from muxserver.handlers.base import Request
from muxserver.reactor.dispatch.base import DispatchStrategy, DoneCallback
from muxserver.service import Peer, Service

__all__ = ["InlineStrategy"]


class InlineStrategy(DispatchStrategy):
    """Run the service at once in the reactor thread."""

    name = "inline"
    inline = True

    def submit(self, service: Service, request: Request, peer: Peer, done: DoneCallback) -> None:
        """Call the service now and report before returning."""
        try:
            value = service.handle(request, peer)
        except Exception as exc:
            done(False, exc)
        else:
            done(True, value)
