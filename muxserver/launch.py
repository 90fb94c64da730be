"""Launching from the command line: plan, bind, then run one process or a supervisor.

:mod:`muxserver.cli` parses the flags; this module turns them into sockets and processes. The
order matters: every address is bound first (so an address in use is a clear start-up error and
workers can share the sockets), then one process runs :func:`muxserver.serving.run_process`, or
a :class:`~muxserver.supervisor.Supervisor` runs it in each worker. Both print the banner when
serving and one summary line when drained.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

from muxserver import __version__
from muxserver.endpoints import Address, BoundSocket, bind_all, parse_address
from muxserver.metrics import Metrics
from muxserver.serving import (
    BUILTINS,
    ProcessOptions,
    ServiceSpec,
    Summary,
    load_application,
    run_process,
)
from muxserver.systemd import Notifier, listen_fds

__all__ = [
    "DemoFlag",
    "UsageError",
    "bind",
    "describe_error",
    "plan",
    "run",
    "tls_context",
]

log = logging.getLogger("muxserver")


@dataclasses.dataclass(frozen=True)
class DemoFlag:
    """A demo service's port flag: ``--NAME-port``, its default and its help."""

    name: str
    default: int
    help: str


class UsageError(Exception):
    """A combination of flags that cannot work; the message says why."""


Wanted = list[tuple[str, Address, bool]]
"""``(service, address, stream)`` for each socket to bind."""


def plan(args: argparse.Namespace, flags: tuple[DemoFlag, ...]) -> tuple[Wanted, dict[str, Any]]:
    """What to bind, and the services by name.

    Raises:
        UsageError: flags that do not fit together.
        ValueError: a ``module:factory`` that cannot be loaded.
    """
    services: dict[str, Callable[[Metrics], ServiceSpec]] = dict(BUILTINS)
    wanted: list[tuple[str, Address, bool]] = []
    rpc: tuple[str, int, bool] | None = None
    host = args.host

    def address(text: str) -> Address:
        try:
            return parse_address(text, host)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(str(exc)) from None

    service = args.service
    if service is not None:
        if not args.bind and not args.udp:
            raise UsageError(f"say where to serve {service}: --bind ADDR and/or --udp ADDR")
        if service == "rpc":
            if len(args.bind) != 1 or args.udp or address(args.bind[0]).kind != "inet":
                raise UsageError("rpc takes exactly one --bind HOST:PORT (TCP and UDP on it)")
            target = address(args.bind[0])
            rpc = (target.host, target.port, args.rpc_register)
        else:
            if service not in services:
                services[service] = load_application(service)
            wanted += [(service, address(text), True) for text in args.bind]
            if args.udp and service in BUILTINS and service != "echo":
                raise UsageError(f"the {service} service does not take datagrams (--udp)")
            wanted += [(service, address(text), False) for text in args.udp]
    elif args.bind or args.udp:
        raise UsageError("--bind and --udp need a SERVICE (e.g. muxserver echo --bind :9000)")
    for flag in flags:
        port = getattr(args, f"{flag.name}_port", None if service else flag.default)
        if flag.name == "rpc" and args.workers and not hasattr(args, "rpc_port"):
            port = None
        if port is None:
            continue
        target = Address("inet", host=host, port=port, text=f"{host}:{port}")
        if flag.name == "rpc":
            rpc = (host, port, args.rpc_register)
        else:
            wanted.append((flag.name, target, True))
            if flag.name == "echo":
                wanted.append(("echo", target, False))
    wanted += [("http", address(text), True) for text in args.status]
    if rpc is not None and args.workers:
        raise UsageError("the RPC demo runs in one process only: drop --workers or the rpc port")
    if not wanted and rpc is None:
        raise UsageError("every service is off; nothing to serve")
    return wanted, {"services": services, "rpc": rpc}


def bind(wanted: Wanted) -> list[BoundSocket]:
    """Bind in order; echo's UDP socket takes the port its TCP socket got (port 0).

    Raises:
        OSError: naming the address that cannot be bound (nothing stays bound).
    """
    activated = listen_fds()
    claimed = {a.path for _, a, _ in wanted if a.kind == "systemd" and a.path}
    bound: list[BoundSocket] = []
    try:
        for service, wanted_address, stream in wanted:
            address = wanted_address
            if service == "echo" and not stream and address.kind == "inet" and address.port == 0:
                tcp = next((b for b in bound if b.service == "echo" and b.stream), None)
                if tcp is not None and tcp.sock.family != socket.AF_UNIX:
                    address = dataclasses.replace(address, port=tcp.sock.getsockname()[1])
            bound += bind_all([(service, address, stream)], activated, claimed=claimed)
    except BaseException:
        for item in bound:
            item.close()
        raise
    for unused in activated:
        if all(unused.sock is not b.sock for b in bound):
            unused.sock.close()
    return bound


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server context the --tls-* flags describe (``None`` without --tls-cert)."""
    if args.tls_cert is None:
        if args.tls_key or args.tls_client_ca or args.tls_require_client_cert:
            raise UsageError("the --tls-* flags need --tls-cert")
        return None
    from muxserver.tls import server_context

    try:
        return server_context(
            args.tls_cert,
            args.tls_key,
            client_ca=args.tls_client_ca,
            require_client_cert=args.tls_require_client_cert,
        )
    except OSError as exc:  # ssl.SSLError included
        files = ", ".join(f for f in (args.tls_cert, args.tls_key, args.tls_client_ca) if f)
        reason = exc.strerror or str(exc)
        raise ValueError(f"cannot load the TLS files ({files}): {reason}") from None


def run(args: argparse.Namespace, options: ProcessOptions, bound: list[BoundSocket]) -> int:
    """Serve ``bound`` in this process or under a supervisor; return the exit status."""
    if args.workers:
        return _supervise(args, options, bound)
    return _single(args, options, bound)


def _banner(args: argparse.Namespace, bound: list[BoundSocket], extra: list[str]) -> None:
    for item in bound:
        print(f"{item.service:<5} {item.address_text}", flush=True)
    for line in extra:
        print(line, flush=True)
    processes = f"{args.workers} worker processes" if args.workers else "1 process"
    print(
        f"muxserver {__version__}: pid {os.getpid()}, dispatch {args.dispatch}, {processes}",
        flush=True,
    )


def _single(args: argparse.Namespace, options: ProcessOptions, bound: list[BoundSocket]) -> int:
    notifier = Notifier()
    try:
        summary = run_process(
            options, bound, notifier=notifier, on_ready=lambda lines: _banner(args, bound, lines)
        )
    except (ValueError, TypeError, OSError) as exc:  # a factory or the RPC demo failed
        print(f"muxserver: error: {describe_error(exc)}", file=sys.stderr)
        return 2
    finally:
        notifier.close()
    print(summary.line(), flush=True)
    return 0


def _supervise(args: argparse.Namespace, options: ProcessOptions, bound: list[BoundSocket]) -> int:
    from muxserver.metrics_share import MetricsShare
    from muxserver.supervisor import Supervisor, WorkerLink

    notifier = Notifier()
    os.environ.pop("NOTIFY_SOCKET", None)  # workers must not speak for the service
    share = MetricsShare.create()  # one /metrics scrape answers for every worker
    options = dataclasses.replace(options, metrics_dir=share.directory)

    def work(link: WorkerLink) -> int:
        summary = run_process(options, bound, on_ready=lambda lines: link.ready(), worker=True)
        link.summary(dataclasses.asdict(summary))
        return 0

    def before_reload() -> None:
        if args.service in options.services and args.service not in BUILTINS:
            module = importlib.reload(sys.modules[args.service.partition(":")[0]])
            log.info("reload: re-imported %s", module.__name__)
            options.services[args.service] = load_application(args.service)

    supervisor = Supervisor(
        work,
        args.workers,
        grace=args.grace,
        before_reload=before_reload,
        notifier=notifier,
        on_ready=lambda: _banner(args, bound, []),
        on_exit=share.forget,
    )
    try:
        report = supervisor.run()
    finally:
        share.remove()  # workers leave by os._exit and never come back here
    notifier.close()
    total = Summary(report=f"{args.workers} workers drained in {report.drain_seconds:.3f}s")
    for item in report.summaries:
        total.connections += item.get("connections", 0)
        total.requests += item.get("requests", 0)
        total.errors += item.get("errors", 0)
    extra = f" ({report.restarts} restarts, {report.reloads} reloads)"
    print(total.line() + extra, flush=True)
    return 0


def describe_error(exc: BaseException) -> str:
    """An error as one line for people: no ``[Errno N]`` prefix, the file name if known."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc).replace("\n", " ")
