"""Services: the application layer that turns a complete request into a response.

A service never sees bytes or sockets. For each :class:`~muxserver.handlers.base.Request` a
handler produces, the dispatch strategy calls ``service.handle(request, peer)`` -- in the
reactor thread, on a worker thread or in a worker process -- and the handler encodes whatever
it returns. The order of calls for one connection is::

    connection_made  ->  handle*  ->  connection_lost

``connection_made`` and ``connection_lost`` always run in the reactor thread, so they may keep
per-connection state (a chat room's member list) without locks. ``connection_made`` waits until
the peer is admitted -- after a PROXY header, an authentication exchange or a TLS handshake
with an authorizer, when those are in use -- so a refused peer never reaches service code;
``connection_lost`` follows only a ``connection_made``. ``handle`` runs wherever the
strategy puts it; in a worker process, changes it makes to the service's attributes stay in
that process (return the change as part of the result instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from muxserver.handlers.base import Request

__all__ = ["FunctionService", "Peer", "PushTarget", "Service", "as_service"]


@runtime_checkable
class PushTarget(Protocol):
    """What a service may do with a live connection (reactor thread only, unless noted)."""

    @property
    def id(self) -> int:
        """The connection's number, unique for the reactor's lifetime."""
        ...

    def push(self, message: Any) -> None:
        """Encode ``message`` with the connection's handler and write it now."""
        ...

    def push_threadsafe(self, message: Any) -> None:
        """Like :meth:`push`, callable from any thread."""
        ...

    def close(self) -> None:
        """Close after the output buffered so far has been written."""
        ...


class Peer:
    """Who is at the other end of a request: picklable, so it can travel to a worker process.

    ``address`` is the socket's peer address; ``extra`` carries what layers learned about the
    peer (``"proxy_address"`` from the PROXY protocol, ``"peercred"`` on Unix sockets,
    ``"peercert"`` with TLS client certificates, ...). ``connection`` is the live connection
    when the service runs in the reactor process, ``None`` inside a worker process.
    """

    __slots__ = ("address", "connection", "connection_id", "extra")

    def __init__(
        self,
        connection_id: int,
        address: Any,
        extra: dict[str, Any] | None = None,
        connection: PushTarget | None = None,
    ) -> None:
        self.connection_id = connection_id
        self.address = address
        self.extra: dict[str, Any] = extra if extra is not None else {}
        self.connection = connection

    @property
    def client_address(self) -> Any:
        """The real client's address: the PROXY protocol's when present, else the socket's."""
        return self.extra.get("proxy_address", self.address)

    def __getstate__(self) -> tuple[int, Any, dict[str, Any]]:
        return (self.connection_id, self.address, self.extra)

    def __setstate__(self, state: tuple[int, Any, dict[str, Any]]) -> None:
        self.connection_id, self.address, self.extra = state
        self.connection = None

    def __repr__(self) -> str:
        return f"Peer(#{self.connection_id} {self.client_address!r})"


class Service:
    """Base class for services; override :meth:`handle`, optionally the lifecycle hooks."""

    def handle(self, request: Request, peer: Peer) -> Any:
        """Return the response to ``request``; raising makes the handler send its error reply."""
        raise NotImplementedError

    def connection_made(self, connection: PushTarget, peer: Peer) -> None:
        """Called in the reactor thread once the peer is admitted, before any request."""

    def connection_lost(self, connection: PushTarget, peer: Peer) -> None:
        """Called in the reactor thread once, when the connection has closed."""


class FunctionService(Service):
    """A service made from a plain function ``(request, peer) -> response``."""

    def __init__(self, function: Callable[[Request, Peer], Any]) -> None:
        self.function = function

    def handle(self, request: Request, peer: Peer) -> Any:
        """Call the wrapped function."""
        return self.function(request, peer)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FunctionService, (self.function,))


def as_service(service: Service | Callable[[Request, Peer], Any] | None) -> Service:
    """Accept a :class:`Service`, a plain function, or ``None`` (requests are answered ``None``).

    Raises:
        TypeError: if ``service`` is neither.
    """
    if service is None:
        return FunctionService(_answer_none)
    if isinstance(service, Service):
        return service
    if callable(service):
        return FunctionService(service)
    raise TypeError(
        f"service must be a muxserver.service.Service or a function (request, peer) -> "
        f"response, not {type(service).__name__}"
    )


def _answer_none(request: Request, peer: Peer) -> None:
    return None
