"""One serving process: build the servers for bound sockets on a fresh reactor, run, summarise.

This is what the command line runs in its own process (one process) or in each worker
(``--workers N``, see :mod:`muxserver.supervisor`). The sockets are already bound
(:mod:`muxserver.endpoints`); here they get a :class:`~muxserver.reactor.StreamServer` or a
:class:`~muxserver.reactor.DatagramEndpoint` each, with the service, handler, dispatch
strategy, limits, PROXY protocol and TLS the command line asked for. Every process also keeps
:class:`~muxserver.metrics.Metrics` (loop latency included) for its status page.

Services are named: the built-in ones (:data:`BUILTINS`) or an application given as
``module:factory``, where ``factory()`` returns a :class:`ServiceSpec` (or a
``(handler_factory, service)`` pair).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from muxserver.endpoints import BoundSocket
from muxserver.handlers.base import Event, Handler, Request
from muxserver.handlers.echo import EchoHandler
from muxserver.handlers.proxy import ProxyProtocolHandler
from muxserver.handlers.resp import RespHandler
from muxserver.metrics import Metrics
from muxserver.metrics_share import MetricsShare
from muxserver.reactor import DatagramEndpoint, Limits, Reactor, StreamServer
from muxserver.reactor.dispatch import (
    DispatchStrategy,
    ProcessPoolStrategy,
    ThreadPoolStrategy,
)
from muxserver.reactor.listen import format_address
from muxserver.reactor.stream import StreamConnection
from muxserver.rpc.demo import demo_service
from muxserver.rpc.program import DuplicateRequestCache
from muxserver.rpc.server import RPCServer
from muxserver.service import Peer, Service
from muxserver.services.chat import ChatService, chat_handler
from muxserver.services.echo import echo_datagram
from muxserver.services.kv import KVService
from muxserver.services.status import StatusService, status_handler
from muxserver.systemd import Notifier

__all__ = [
    "BUILTINS",
    "ProcessOptions",
    "ServiceSpec",
    "Summary",
    "load_application",
    "make_strategy",
    "parse_dispatch",
    "run_process",
]

log = logging.getLogger("muxserver")

ServiceLike = Service | Callable[[Request, Peer], Any] | None


@dataclass
class ServiceSpec:
    """What to serve: a handler per connection, the service, and optionally datagrams.

    ``inline_only`` services keep their state in the reactor thread (chat, kv, the status
    page): ``--dispatch`` does not apply to them. ``datagram_service`` answers ``--udp``.
    ``start`` runs once the servers exist (e.g. to start a periodic sweep).
    """

    handler_factory: Callable[[], Handler]
    service: ServiceLike = None
    datagram_service: ServiceLike = None
    inline_only: bool = False
    start: Callable[[Reactor], None] | None = None


@dataclass(frozen=True)
class ProcessOptions:
    """Everything one serving process needs besides its sockets."""

    services: dict[str, Callable[[Metrics], ServiceSpec]]
    limits: Limits = field(default_factory=Limits)
    dispatch: str = "inline"
    proxy_versions: tuple[int, ...] = ()
    tls: ssl.SSLContext | None = None
    tls_handshake_timeout: float = 10.0
    grace: float = 10.0
    name: str = "muxserver"
    rpc: tuple[str, int, bool] | None = None
    """``(host, port, register)`` of the Sun RPC demo, which binds its own sockets."""
    metrics_dir: str | None = None
    """A :class:`~muxserver.metrics_share.MetricsShare` directory (workers): publish there and
    answer ``/metrics`` for every worker."""


@dataclass
class Summary:
    """What one process did, for the shutdown line (and the supervisor's sum of them)."""

    connections: int = 0
    requests: int = 0
    errors: int = 0
    report: str = ""
    drain_seconds: float = 0.0

    def line(self, prefix: str = "muxserver stopped") -> str:
        """``muxserver stopped: drained in 0.004s; served 3 connections, 5 requests, 0 errors``."""
        return (
            f"{prefix}: {self.report or 'stopped'}; served {self.connections} connections, "
            f"{self.requests} requests, {self.errors} errors"
        )


def parse_dispatch(text: str) -> tuple[str, int]:
    """``inline``, ``thread:N`` or ``process:N`` as ``(kind, N)`` (N is 0 for inline).

    Raises:
        ValueError: saying what is accepted.
    """
    kind, _, count = text.partition(":")
    if kind == "inline" and not count:
        return kind, 0
    if kind in ("thread", "process"):
        try:
            workers = int(count)
        except ValueError:
            workers = 0
        if workers < 1:
            raise ValueError(f"{kind}:N needs a worker count of at least 1, not {count!r}")
        return kind, workers
    raise ValueError(f"expected inline, thread:N or process:N, not {text!r}")


def make_strategy(text: str) -> DispatchStrategy | None:
    """The strategy for a ``--dispatch`` value (``None`` for inline; see :func:`parse_dispatch`)."""
    kind, workers = parse_dispatch(text)
    if kind == "thread":
        return ThreadPoolStrategy(workers, name="threads")
    if kind == "process":
        return ProcessPoolStrategy(workers, name="processes")
    return None


def load_application(target: str) -> Callable[[Metrics], ServiceSpec]:
    """Import ``module:factory`` and return a builder of its :class:`ServiceSpec`.

    Raises:
        ValueError: the module or the factory cannot be found (said so that the fix is clear).
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected a built-in service or MODULE:FACTORY, not {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for {target}: {exc}") from None
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)  # type: ignore[assignment]
        if factory is None:
            raise ValueError(f"{module_name} has no attribute {attribute!r}")
    if not callable(factory):
        raise ValueError(f"{target} is not callable; it should return a ServiceSpec")

    def build(metrics: Metrics) -> ServiceSpec:
        made = factory()
        if isinstance(made, ServiceSpec):
            return made
        if isinstance(made, tuple) and len(made) == 2 and callable(made[0]):
            return ServiceSpec(made[0], made[1])
        raise TypeError(
            f"{target}() returned {type(made).__name__}; return a muxserver.serving.ServiceSpec "
            "or a (handler_factory, service) pair"
        )

    return build


def _kv(metrics: Metrics) -> ServiceSpec:
    service = KVService(metrics.reactor.time)
    return ServiceSpec(RespHandler, service, inline_only=True, start=service.start_expiry)


BUILTINS: dict[str, Callable[[Metrics], ServiceSpec]] = {
    "echo": lambda metrics: ServiceSpec(EchoHandler, None, echo_datagram),
    "chat": lambda metrics: ServiceSpec(chat_handler, ChatService(), inline_only=True),
    "kv": _kv,
    "http": lambda metrics: ServiceSpec(status_handler, StatusService(metrics), inline_only=True),
}
"""The built-in services by name (the Sun RPC demo is separate: it binds its own sockets)."""


class _OnShutdown:
    """A reactor Stoppable that only notes when graceful shutdown begins."""

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.started: float | None = None

    def begin_shutdown(self) -> None:
        self.started = time.monotonic()
        self.callback()

    def is_idle(self) -> bool:
        return True

    def force_close(self) -> None:
        """Nothing to release."""


def build(
    reactor: Reactor, options: ProcessOptions, sockets: Sequence[BoundSocket], *, shared: bool
) -> Metrics:
    """Create the servers for ``sockets`` on ``reactor``; return the process's metrics.

    ``shared``: the sockets are shared with other processes (workers), so closing them here
    must not remove Unix socket files.

    Raises:
        ValueError: a service cannot take datagrams, or a factory failed.
    """
    metrics = Metrics(reactor)
    metrics.watch_loop()
    strategy = make_strategy(options.dispatch)
    specs: dict[str, ServiceSpec] = {}
    servers: dict[str, StreamServer] = {}
    for bound in sockets:
        spec = specs.get(bound.service)
        if spec is None:
            spec = specs[bound.service] = options.services[bound.service](metrics)
        chosen = None if spec.inline_only else strategy
        if bound.stream:
            server = servers.get(bound.service)
            if server is None:
                server = servers[bound.service] = _stream_server(
                    reactor, options, bound.service, spec, chosen
                )
                metrics.add_server(server)
            listener = server.listen_socket(bound.sock)
            listener.owns_path = not (shared or bound.shared)
        else:
            if spec.datagram_service is None:
                raise ValueError(f"the {bound.service} service does not take datagrams (--udp)")
            endpoint = DatagramEndpoint(
                reactor, bound.sock, spec.datagram_service, strategy=chosen, name=bound.service
            )
            endpoint.owns_path = not (shared or bound.shared)
            metrics.add_endpoint(endpoint)
    for spec in specs.values():
        if spec.start is not None:
            spec.start(reactor)
    if options.rpc is not None:
        host, port, register = options.rpc
        rpc = RPCServer(
            reactor,
            demo_service(duplicate_cache=DuplicateRequestCache()),
            host=host,
            port=port,
            register=register,
            strategy=strategy,
            name="rpc",
        )
        metrics.add_server(rpc.stream)
        metrics.add_endpoint(rpc.datagram)
        metrics.banner += [
            f"rpc   tcp {format_address(rpc.tcp_address)}",
            f"rpc   udp {format_address(rpc.udp_address)}",
        ]
        for prog, vers in rpc.registered:
            metrics.banner.append(f"rpc   registered with rpcbind: program {prog} version {vers}")
    if options.metrics_dir is not None:  # once every server is registered
        MetricsShare(options.metrics_dir).publish_every(reactor, metrics)
    return metrics


def _stream_server(
    reactor: Reactor,
    options: ProcessOptions,
    name: str,
    spec: ServiceSpec,
    strategy: DispatchStrategy | None,
) -> StreamServer:
    handler_factory = spec.handler_factory
    setup: Callable[[StreamConnection], None] | None = None
    upgrade: Callable[[bytes], Event] | None = None
    if options.tls is not None:
        from muxserver.tls import TLSAcceptor

        acceptor = TLSAcceptor(options.tls, handshake_timeout=options.tls_handshake_timeout)
        if options.proxy_versions:
            upgrade = acceptor.upgrade  # the header is cleartext: TLS starts after it
        else:
            setup = acceptor
    if options.proxy_versions:
        inner, versions = handler_factory, options.proxy_versions

        def handler_factory() -> Handler:
            return ProxyProtocolHandler(inner(), versions, upgrade=upgrade)

    return StreamServer(
        reactor,
        handler_factory,
        spec.service,
        strategy=strategy,
        limits=options.limits,
        name=name,
        setup=setup,
    )


def run_process(
    options: ProcessOptions,
    sockets: Sequence[BoundSocket],
    *,
    notifier: Notifier | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
    worker: bool = False,
) -> Summary:
    """Serve ``sockets`` until SIGTERM (and SIGINT unless ``worker``); return the summary.

    ``on_ready(lines)`` is called once everything listens, with banner lines for what this
    process bound itself (the RPC demo).

    A ``worker`` ignores SIGINT and SIGHUP (its supervisor relays what matters as SIGTERM)
    and drains by itself if its supervisor disappears.
    """
    reactor = Reactor()
    try:
        metrics = build(reactor, options, sockets, shared=worker)
        watcher = _OnShutdown(lambda: notifier.stopping() if notifier is not None else None)
        reactor.add_stoppable(watcher)
        if worker:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            reactor.add_signal_handler(signal.SIGTERM, _WorkerStop(reactor, metrics, options.grace))
            _watch_parent(reactor, options.grace)
        else:
            reactor.stop_on_signals(grace=options.grace)
        if notifier is not None:
            notifier.ready()
            notifier.keep_alive(reactor)
        if on_ready is not None:
            on_ready(metrics.banner)
        reactor.run()
        summary = Summary(
            connections=reactor.table.accepted,
            report=reactor.shutdown_report or "stopped",
            drain_seconds=0.0 if watcher.started is None else time.monotonic() - watcher.started,
        )
        for server in metrics.servers:
            summary.requests += server.requests_closed
            summary.errors += server.errors
        return summary
    finally:
        reactor.close()


class _WorkerStop:
    """A worker's SIGTERM: stop accepting, let just-accepted clients speak, then drain.

    The listening sockets are shared: once this worker stops accepting, the others (or the
    kernel's queue) take new clients. A client this worker accepted an instant before the
    signal may not have sent its request yet, and draining closes a connection with nothing
    received -- so the drain starts ``settle`` seconds after accepting stopped. A second
    SIGTERM closes everything at once.
    """

    def __init__(self, reactor: Reactor, metrics: Metrics, grace: float) -> None:
        self.reactor = reactor
        self.metrics = metrics
        self.grace = grace
        self.settle = min(0.5, grace / 4)
        self.signalled = False

    def __call__(self, signum: int) -> None:
        reactor = self.reactor
        if self.signalled:
            log.warning("worker %d: second SIGTERM: closing every connection now", os.getpid())
            reactor.shutdown_report = "closed at once on a second SIGTERM"
            reactor.stop()
            return
        self.signalled = True
        for server in self.metrics.servers:
            server.close_listeners()
        reactor.call_later(self.settle, reactor.shutdown, self.grace - self.settle)


def _watch_parent(reactor: Reactor, grace: float) -> None:
    parent = os.getppid()

    def check() -> None:
        if os.getppid() != parent:
            log.warning("worker %d: the supervisor is gone; draining", os.getpid())
            reactor.shutdown(grace)
        else:
            reactor.call_later(1.0, check)

    reactor.call_later(1.0, check)
