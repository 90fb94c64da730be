"""The dispatch strategy interface: where a complete request's service runs.

A strategy receives ``(service, request, peer, done)`` from a connection in the reactor thread
and must eventually call ``done(ok, value)`` **in the reactor thread**: ``ok`` true with the
service's return value, or false with the exception that stands for the failure. The
connection keeps responses in request order whatever order strategies finish in.

Backpressure: a strategy that cannot take more work reports ``saturated``; connections that
feed it stop reading and register with :meth:`DispatchStrategy.when_unsaturated`, which calls
them back (once) when there is room again.

Life cycle: ``attach(reactor)`` once, before the first request; then ``begin_shutdown`` /
``is_idle`` / ``force_close`` during the reactor's graceful shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from muxserver.handlers.base import Request
from muxserver.service import Peer, Service

if TYPE_CHECKING:
    from muxserver.reactor.loop import Reactor

__all__ = ["DispatchError", "DispatchStrategy", "DoneCallback"]

DoneCallback = Callable[[bool, Any], None]
"""``done(ok, value)``: the service's result (ok) or the exception that failed it."""


class DispatchError(Exception):
    """A request could not be served by its strategy (worker died, deadline passed...)."""


class DispatchStrategy:
    """Base class for dispatch strategies."""

    name = "strategy"
    """Short name used in logs, metrics and ``Request.strategy`` routing."""

    inline = False
    """True when ``submit`` runs the service synchronously in the reactor thread."""

    def __init__(self) -> None:
        self.reactor: Reactor | None = None

    def attach(self, reactor: Reactor) -> None:
        """Bind to ``reactor`` (called once by the server using the strategy)."""
        if self.reactor is not None and self.reactor is not reactor:
            raise RuntimeError(f"the {self.name} strategy is already attached to a reactor")
        if self.reactor is None:
            self.reactor = reactor
            reactor.add_stoppable(self)

    def submit(self, service: Service, request: Request, peer: Peer, done: DoneCallback) -> None:
        """Run ``service.handle(request, peer)`` somewhere; report through ``done``."""
        raise NotImplementedError

    @property
    def saturated(self) -> bool:
        """True while the strategy refuses new work."""
        return False

    def when_unsaturated(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once, in the reactor thread, when there is room again.

        Only called while ``saturated`` is true, so a strategy that can saturate must
        override it (as ``BoundedStrategy`` does); one that never saturates never gets here.
        """
        raise NotImplementedError(f"{type(self).__name__} reports saturation but cannot wait")

    def stats(self) -> dict[str, int]:
        """Counters for the status page and metrics (queued, busy, workers...)."""
        return {}

    def begin_shutdown(self) -> None:
        """Finish what was submitted; accept no new pools of work."""

    def is_idle(self) -> bool:
        """True when nothing submitted is still running."""
        return True

    def force_close(self) -> None:
        """Stop everything (threads joined, children reaped) and release resources."""
