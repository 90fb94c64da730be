"""The reactor's own Python cost per request, with the kernel taken out.

Run: ``.venv/bin/python bench/reactor_bench.py``.

Fake sockets (``recv`` hands back a canned request, ``send`` takes everything) and a fake
poller (every connection readable on every pass) drive :class:`~muxserver.reactor.Reactor` and
a :class:`~muxserver.reactor.StreamServer` exactly as epoll would, so what is timed is the loop,
the connection record, the handler contract and the output path -- everything muxserver adds
between the kernel's ``recv`` and ``send``. Beside it runs the floor: the loop of
``bench/peers/python_floor.py`` over the same fakes (a dict lookup, ``recv``, ``feed``,
``send``). Both drive the same minimal session, so the difference between the two lines is
the framework's price per request; the kernel's share (several microseconds per request on
loopback, the same for every server) is in neither.

Each figure is the best of ``--repeat`` timings of ``--passes`` passes over ``--connections``
connections, in nanoseconds per request; they are for comparing commits on one machine, not
absolute.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.handlers_bench import HTTP_REQUEST, RESP_COMMANDS
from bench.peers.minimal import Session, http_session_factory, resp_session_factory
from bench.servers.muxserver_server import SessionHandler, own_handlers
from muxserver.reactor import Limits, Reactor, StreamServer
from muxserver.reactor.poller import READ, WRITE, Poller

REQUESTS = {
    "resp": RESP_COMMANDS["set"],
    "http": HTTP_REQUEST,
}
SESSION_FACTORIES: dict[str, Callable[[], Callable[[], Session]]] = {
    "resp": resp_session_factory,
    "http": http_session_factory,
}


class FakeSocket:
    """Just enough of a connected non-blocking socket: every read returns one request."""

    def __init__(self, fd: int, request: bytes) -> None:
        self.fd = fd
        self.request = request
        self.sent = 0

    def fileno(self) -> int:
        return self.fd

    def recv(self, size: int) -> bytes:
        return self.request

    def send(self, data: bytes) -> int:
        self.sent += 1
        return len(data)

    def sendmsg(self, buffers: list[bytes]) -> int:
        self.sent += 1
        return sum(map(len, buffers))

    def setblocking(self, flag: bool) -> None:
        pass

    def setsockopt(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass


class FakePoller(Poller):
    """Reports every registered connection readable on every pass, as epoll would at load."""

    def __init__(self) -> None:
        self.owners: dict[int, Any] = {}
        self.events: list[tuple[int, int]] = []

    def register(self, fd: int, mask: int, owner: Any) -> None:
        self.owners[fd] = owner

    def modify(self, fd: int, mask: int, owner: Any) -> None:
        pass

    def unregister(self, fd: int) -> None:
        self.owners.pop(fd, None)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return self.events

    def close(self) -> None:
        self.owners.clear()

    def close_after_fork(self) -> None:
        self.owners.clear()


def time_reactor(
    protocol: str, handlers: str, connections: int, passes: int, depth: int = 1
) -> float:
    """Nanoseconds per request through Reactor + StreamServer."""
    poller = FakePoller()
    reactor = Reactor(poller=poller)
    limits = Limits(request_timeout=None)
    if handlers == "own":
        factory, service = own_handlers()[protocol]
    else:
        new_session = SESSION_FACTORIES[protocol]()
        factory, service = (lambda: SessionHandler(new_session())), None
    server = StreamServer(reactor, factory, service, limits=limits, name=protocol)
    socks = [FakeSocket(1000 + i, REQUESTS[protocol] * depth) for i in range(connections)]
    for sock in socks:
        server.accepted(sock, ("127.0.0.1", sock.fd), True)  # type: ignore[arg-type]
    poller.events = [(sock.fd, READ) for sock in socks]
    run_once = reactor.run_once
    reactor.run_once(0)  # warm up
    started = time.perf_counter()
    for _ in range(passes):
        run_once(0)
    elapsed = time.perf_counter() - started
    if any(sock.sent != passes + 1 for sock in socks):
        raise RuntimeError("a request went unanswered: the benchmark measured nothing")
    reactor.close()
    return elapsed / (passes * connections * depth) * 1e9


def time_floor(protocol: str, connections: int, passes: int, depth: int = 1) -> float:
    """Nanoseconds per request through the python-floor loop body."""
    socks = [FakeSocket(1000 + i, REQUESTS[protocol] * depth) for i in range(connections)]
    new_session = SESSION_FACTORIES[protocol]()
    conns = {sock.fd: (sock, new_session()) for sock in socks}
    events = [(sock.fd, READ) for sock in socks]
    started = time.perf_counter()
    for _ in range(passes):
        for fd, mask in events:
            conn = conns.get(fd)
            if conn is None:
                continue
            sock, session = conn
            if mask & WRITE:  # as python_floor.py does: never here, every fake send is whole
                continue
            data = sock.recv(65536)
            if not data:
                continue
            reply = session.feed(data)
            if reply:
                sent = sock.send(reply)
                if sent < len(reply):
                    raise RuntimeError("fake socket took part of a reply")
            if session.close_after:
                break
    elapsed = time.perf_counter() - started
    if any(sock.sent != passes for sock in socks):
        raise RuntimeError("a request went unanswered: the benchmark measured nothing")
    return elapsed / (passes * connections * depth) * 1e9


def main(argv: list[str] | None = None) -> int:
    """Print ns per request for the floor, muxserver (minimal) and muxserver (own)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--passes", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--depth", type=int, default=1, help="requests per read (pipelining)")
    parser.add_argument(
        "--protocols", nargs="+", choices=sorted(REQUESTS), default=["resp", "http"]
    )
    parser.add_argument("--resp-command", choices=sorted(RESP_COMMANDS), default="set")
    args = parser.parse_args(argv)
    REQUESTS["resp"] = RESP_COMMANDS[args.resp_command]
    print(
        f"ns of Python per request ({args.connections} connections, {args.depth} request(s) "
        f"per read, RESP {args.resp_command.upper()}, best of {args.repeat})"
    )
    for protocol in args.protocols:
        floor = min(
            time_floor(protocol, args.connections, args.passes, args.depth)
            for _ in range(args.repeat)
        )
        rows = [("python-floor loop", floor)]
        for handlers in ("minimal", "own"):
            best = min(
                time_reactor(protocol, handlers, args.connections, args.passes, args.depth)
                for _ in range(args.repeat)
            )
            rows.append((f"muxserver ({handlers} handler)", best))
        for name, ns in rows:
            print(f"  {protocol:4} {name:28} {ns:7.0f} ns   {ns - floor:+6.0f} over the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
