"""The command-line contract every benchmark server follows, in one place.

Contract (``bench/run.py`` relies on it, and ``bench/servers/muxserver_server.py`` must keep it):

* ``--resp-port N`` and ``--http-port M``: serve :class:`~bench.peers.minimal.RespSession` /
  :class:`~bench.peers.minimal.HttpSession` on 127.0.0.1 at that port; 0 or omitted = off.
* At start, raise the RLIMIT_NOFILE soft limit to the hard limit (the idle test holds 19,000
  connections in one server process).
* Listen with a backlog of :data:`BACKLOG` (the C references' default), then print ``READY``
  on its own line on stdout, flushed.
* On SIGTERM or SIGINT, stop and exit with status 0.
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass

from bench.peers.minimal import Session, http_session_factory, resp_session_factory

#: Listen backlog for every peer: the default of redis-server and nginx on Linux.
BACKLOG = 511

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Listener:
    """One port to serve and the factory of the sessions its connections get."""

    name: str
    port: int
    new_session: Callable[[], Session]


def parse_listeners(description: str, argv: list[str] | None = None) -> list[Listener]:
    """Parse the common options, raise the fd limit, and return the listeners to open.

    Exits with a usage error when both ports are off.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--resp-port", type=int, default=0, help="RESP port (0 = off)")
    parser.add_argument("--http-port", type=int, default=0, help="HTTP port (0 = off)")
    args = parser.parse_args(argv)
    listeners = []
    if args.resp_port:
        listeners.append(Listener("resp", args.resp_port, resp_session_factory()))
    if args.http_port:
        listeners.append(Listener("http", args.http_port, http_session_factory()))
    if not listeners:
        parser.error("give --resp-port and/or --http-port")
    raise_fd_limit()
    return listeners


def raise_fd_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def announce_ready() -> None:
    """Tell the harness that every listener is bound and listening."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()
