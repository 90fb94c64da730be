"""The command line: ``python -m muxserver`` (or ``muxserver``).

Two ways to say what to serve:

* **The demo** (no SERVICE argument): echo, chat, kv, http (the status page) and the Sun RPC
  demo, each on its own port flag (a number, 0 for a free port, or ``off``) on ``--host``.
* **One service** (``muxserver SERVICE --bind ADDR ...``): a built-in (echo, chat, kv, http,
  rpc) or an application given as ``module:factory`` (see :mod:`muxserver.serving`), on every
  ``--bind`` (stream) and ``--udp`` (datagram) address; port flags add demo services beside it.

Every socket is bound before anything else happens, so a bad flag or an address that cannot be
bound ends the program with one clear line on stderr and exit status 2 -- no traceback. Then
one process serves (or ``--workers N`` processes under a supervisor, sharing the sockets), a
banner names every bound address, the dispatch strategy and the processes, and SIGTERM or
Ctrl-C drains gracefully and prints one summary line. SIGHUP reloads the workers gracefully.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from muxserver import __version__, launch
from muxserver.endpoints import BoundSocket
from muxserver.launch import DemoFlag
from muxserver.logs import FORMATS, setup_logging
from muxserver.reactor import Limits
from muxserver.serving import ProcessOptions, parse_dispatch

__all__ = ["build_parser", "main", "parse_port", "parse_size"]


def parse_port(text: str) -> int | None:
    """A port flag's value: a number from 0 to 65535, or ``off`` (``None``)."""
    if text.lower() == "off":
        return None
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number or 'off', not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


def parse_size(text: str) -> int:
    """A byte count: ``65536``, ``64k``, ``8M`` or ``1G`` (binary multiples)."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale != 1 else text
    try:
        value = int(digits) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size like 65536, 64k or 8M, not {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a size must be positive, not {text!r}")
    return value


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}") from None
        if not value > 0 or value == float("inf"):  # also refuses nan
            raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
        return value

    return parse


def _dispatch(text: str) -> str:
    try:
        parse_dispatch(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


_LIMITS = Limits()
"""The library's defaults, which the limit options start from rather than restate."""

_SERVICES = (
    DemoFlag("echo", 7007, "echo over TCP and UDP"),
    DemoFlag("chat", 7070, "a line-based chat room (every line goes to every other member)"),
    DemoFlag(
        "rpc",
        7111,
        "the Sun RPC demo (program 0x20000001 version 1 of examples/demo.x) over TCP and UDP; "
        "single process only (off by default with --workers)",
    ),
    DemoFlag("kv", 6380, "an in-memory key-value store speaking RESP (try redis-cli -p 6380)"),
    DemoFlag(
        "http", 8080, "the live status page at /, /status.json, /metrics, /healthz and /readyz"
    ),
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"muxserver: error: {message} (see muxserver --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render ``--help``)."""
    parser = _Parser(
        prog="muxserver",
        description="Serve muxserver's built-in services, or your own, from one reactor per "
        "process.",
        epilog="Addresses: HOST:PORT, [V6]:PORT, :PORT, unix:PATH, unix:@ABSTRACT, systemd:NAME "
        "(a socket-activated socket by FileDescriptorName) or systemd (all of them). Signals: "
        "SIGTERM/SIGINT drain gracefully (twice: close now), SIGHUP reloads workers gracefully.",
    )
    parser.add_argument("--version", action="version", version=f"muxserver {__version__}")
    parser.add_argument(
        "service",
        nargs="?",
        metavar="SERVICE",
        help="serve one service on the --bind/--udp addresses: echo, chat, kv, http, rpc, or "
        "MODULE:FACTORY, where FACTORY() returns a muxserver.serving.ServiceSpec (or a "
        "(handler_factory, service) pair). Without it the demo services run on their ports.",
    )
    where = parser.add_argument_group("addresses")
    where.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="ADDR",
        help="a stream (TCP or Unix) address for SERVICE; repeat for more",
    )
    where.add_argument(
        "--udp",
        action="append",
        default=[],
        metavar="ADDR",
        help="a datagram (UDP or Unix) address for SERVICE (echo, or an application whose "
        "ServiceSpec has a datagram_service); repeat for more",
    )
    where.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="ADDR",
        help="also serve the status page and metrics (the http service) on ADDR",
    )
    where.add_argument(
        "--host",
        default="127.0.0.1",
        help="the host for port flags and for addresses given as :PORT (default: %(default)s)",
    )
    for flag in _SERVICES:
        where.add_argument(
            f"--{flag.name}-port",
            type=parse_port,
            default=argparse.SUPPRESS,
            metavar="PORT",
            help=f"{flag.help} (demo default: {flag.default}; with SERVICE: off)",
        )
    where.add_argument(
        "--rpc-register",
        action="store_true",
        help="register the RPC demo with the local rpcbind (127.0.0.1:111) at start-up and "
        "unregister it on exit",
    )
    work = parser.add_argument_group("processes and dispatch")
    work.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="run N reactor processes under a supervisor, sharing the listening sockets; it "
        "restarts a worker that dies and reloads them all on SIGHUP (default: one process, "
        "no supervisor)",
    )
    work.add_argument(
        "--dispatch",
        type=_dispatch,
        default="inline",
        metavar="inline|thread:N|process:N",
        help="where an application's (and the RPC demo's) service runs: in the reactor thread, "
        "a pool of N threads or N processes; echo, chat, kv and http are always inline "
        "(default: %(default)s)",
    )
    limits = parser.add_argument_group("limits (per process, per service)")
    limits.add_argument(
        "--max-connections",
        type=_positive(int),
        metavar="N",
        help="open connections at most, per service and process; past it accepting pauses "
        "(the kernel backlog holds new clients) until one closes (default: no limit)",
    )
    limits.add_argument(
        "--idle-timeout", type=_positive(float), metavar="SECONDS", help="close quiet clients"
    )
    limits.add_argument(
        "--request-timeout",
        type=_positive(float),
        default=_LIMITS.request_timeout,
        metavar="SECONDS",
        help="close a client whose request is still incomplete after this (default: %(default)s)",
    )
    limits.add_argument(
        "--high-water",
        type=parse_size,
        default=_LIMITS.high_water,
        metavar="BYTES",
        help="stop reading from a client above this much unsent output (default: %(default)s)",
    )
    limits.add_argument(
        "--low-water",
        type=parse_size,
        default=_LIMITS.low_water,
        metavar="BYTES",
        help="read again once its output drains to this (default: %(default)s)",
    )
    limits.add_argument(
        "--max-input",
        type=parse_size,
        default=_LIMITS.max_input,
        metavar="BYTES",
        help="largest incomplete request held per connection (default: %(default)s)",
    )
    front = parser.add_argument_group("load balancers and TLS")
    front.add_argument(
        "--proxy-protocol",
        choices=["v1", "v2", "any"],
        help="require a PROXY protocol header (HAProxy send-proxy / send-proxy-v2) on every "
        "stream listener; the client address it carries is the one services, logs and the "
        "status page see. With --tls-cert the header comes first and TLS after it (TLS "
        "passthrough)",
    )
    front.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    front.add_argument("--tls-key", metavar="PEM", help="its private key (default: in --tls-cert)")
    front.add_argument("--tls-client-ca", metavar="PEM", help="verify client certificates")
    front.add_argument(
        "--tls-require-client-cert",
        action="store_true",
        help="mutual TLS: refuse clients without a certificate signed by --tls-client-ca",
    )
    front.add_argument(
        "--tls-handshake-timeout",
        type=_positive(float),
        default=10.0,
        metavar="SECONDS",
        help="drop a client that has not finished the TLS handshake by then (default: 10)",
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a graceful stop may take before connections are closed hard "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging threshold (default: %(default)s)",
    )
    run.add_argument(
        "--log-format", default="plain", choices=FORMATS, help="log lines (default: plain)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; return the exit status (2: bad flags or addresses)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    bound: list[BoundSocket] = []
    try:
        if args.workers < 0:
            raise launch.UsageError("--workers must be 0 (one process) or more")
        wanted, plan = launch.plan(args, _SERVICES)
        versions = {"v1": (1,), "v2": (2,), "any": (1, 2)}.get(args.proxy_protocol or "", ())
        options = ProcessOptions(
            services=plan["services"],
            limits=Limits(
                max_connections=args.max_connections,
                idle_timeout=args.idle_timeout,
                request_timeout=args.request_timeout,
                high_water=args.high_water,
                low_water=args.low_water,
                max_input=args.max_input,
                max_output=max(_LIMITS.max_output, args.high_water),
            ),
            dispatch=args.dispatch,
            proxy_versions=versions,
            tls=launch.tls_context(args),
            tls_handshake_timeout=args.tls_handshake_timeout,
            grace=args.grace,
            rpc=plan["rpc"],
        )
        bound = launch.bind(wanted)
    except (launch.UsageError, ValueError, OSError, ssl.SSLError) as exc:
        for item in bound:
            item.close()
        print(f"muxserver: error: {launch.describe_error(exc)}", file=sys.stderr)
        return 2
    try:
        return launch.run(args, options, bound)
    finally:
        for item in bound:
            item.close()
