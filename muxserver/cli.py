"""The command line: ``python -m muxserver`` (or ``muxserver``) runs the demo services.

Each service has a port flag that takes a number (0 picks a free port) or ``off``. Bad flags
and addresses that cannot be bound end the program with one clear line on stderr and exit
status 2 -- no traceback. Ctrl-C or SIGTERM stops it gracefully: no new connections, every
request received is answered, then it exits.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from muxserver import __version__
from muxserver.handlers.echo import EchoHandler
from muxserver.reactor import DatagramEndpoint, Limits, Reactor, StreamServer
from muxserver.reactor.listen import format_address
from muxserver.services.chat import ChatService, chat_handler
from muxserver.services.echo import echo_datagram
from muxserver.services.http_status import start_http_status
from muxserver.services.kv import start_kv_demo
from muxserver.services.rpc_demo import start_rpc_demo

__all__ = ["main", "parse_port"]

log = logging.getLogger("muxserver")


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


@dataclass(frozen=True)
class _ServiceFlag:
    name: str
    default: int
    help: str


_SERVICES = (
    _ServiceFlag("echo", 7007, "echo over TCP and UDP"),
    _ServiceFlag("chat", 7070, "a line-based chat room (every line goes to every other member)"),
    _ServiceFlag(
        "rpc",
        7111,
        "the Sun RPC demo (program 0x20000001 version 1 of examples/demo.x) over TCP and UDP",
    ),
    _ServiceFlag("kv", 6380, "an in-memory key-value store speaking RESP (try redis-cli -p 6380)"),
    _ServiceFlag("http", 8080, "GET /healthz and a status page at / (services, connections)"),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="muxserver",
        description="Serve muxserver's demo services from one single-threaded reactor.",
        epilog="Every port flag takes a number (0 picks a free port) or 'off'.",
    )
    parser.add_argument("--version", action="version", version=f"muxserver {__version__}")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind every service to (default: %(default)s)",
    )
    for flag in _SERVICES:
        parser.add_argument(
            f"--{flag.name}-port",
            type=parse_port,
            default=flag.default,
            metavar="PORT",
            help=f"{flag.help} (default: {flag.default})",
        )
    parser.add_argument(
        "--rpc-register",
        action="store_true",
        help="register the RPC demo with the local rpcbind (127.0.0.1:111) at start-up and "
        "unregister it on exit",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a graceful stop may take before connections are closed hard "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging threshold (default: %(default)s)",
    )
    return parser


def _echo(reactor: Reactor, host: str, port: int) -> list[str]:
    server = StreamServer(reactor, EchoHandler, None, name="echo", limits=Limits())
    tcp = server.listen_tcp(host, port)
    udp = DatagramEndpoint.udp(reactor, echo_datagram, host, tcp.address[1], name="echo-udp")
    return [
        f"echo  tcp {format_address(tcp.address)}",
        f"echo  udp {format_address(udp.address)}",
    ]


def _chat(reactor: Reactor, host: str, port: int) -> list[str]:
    server = StreamServer(reactor, chat_handler, ChatService(), name="chat")
    listener = server.listen_tcp(host, port)
    return [f"chat  tcp {format_address(listener.address)}"]


_STARTERS: dict[str, Callable[[Reactor, argparse.Namespace, int], list[str]]] = {
    "echo": lambda reactor, args, port: _echo(reactor, args.host, port),
    "chat": lambda reactor, args, port: _chat(reactor, args.host, port),
    "rpc": lambda reactor, args, port: start_rpc_demo(
        reactor, args.host, port, register=args.rpc_register
    ),
    "kv": lambda reactor, args, port: start_kv_demo(reactor, args.host, port),
    "http": lambda reactor, args, port: start_http_status(reactor, args.host, port, args.banner),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo services until SIGINT/SIGTERM; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    reactor = Reactor()
    try:
        lines: list[str] = []
        args.banner = lines  # the status page (--http-port) lists every service started
        for flag in _SERVICES:
            port = getattr(args, f"{flag.name}_port")
            if port is not None:
                lines += _STARTERS[flag.name](reactor, args, port)
        if not lines:
            parser.error("every service is off; nothing to serve")
        for line in lines:
            print(line, flush=True)
        reactor.stop_on_signals(grace=args.grace)
        reactor.run()
        if reactor.shutdown_report:
            print(f"muxserver stopped: {reactor.shutdown_report}", flush=True)
        return 0
    except OSError as exc:
        print(f"muxserver: {exc}", file=sys.stderr)
        return 2
    finally:
        reactor.close()
