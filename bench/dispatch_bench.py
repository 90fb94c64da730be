"""Dispatch strategies against inline: what moving the service off the reactor thread buys.

Two measurements, each a ratio of requests per second over the same line protocol:

* **CPU-bound** -- each request hashes 64 KiB ``--rounds`` times (about 10 ms). A 2-worker
  :class:`ProcessPoolStrategy` against inline; the ideal on two cores is 2x.
* **Blocking** -- each request sleeps 10 ms. A 64-thread :class:`ThreadPoolStrategy` with 64
  concurrent clients against inline; the ideal is 64x.

The server runs in a child process (``python bench/dispatch_bench.py serve MODE``) so the load
generator -- one selector loop over all connections, each keeping ``--depth`` requests
outstanding -- never competes with the reactor for the GIL. Run it from the repository root::

    .venv/bin/python bench/dispatch_bench.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from muxserver.handlers.base import Request
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.reactor import InlineStrategy, Limits, Reactor, StreamServer
from muxserver.reactor.dispatch import (
    DispatchStrategy,
    ProcessPoolStrategy,
    ThreadPoolStrategy,
)
from muxserver.service import Peer

_BLOCK = b"x" * 65536


def service(request: Request, peer: Peer) -> bytes:
    """``hash N``: sha256 over 64 KiB N times; ``sleep S``: block S seconds."""
    assert isinstance(request, LineRequest)
    command, _, argument = request.line.partition(b" ")
    if command == b"hash":
        digest = b""
        for _ in range(int(argument)):
            digest = hashlib.sha256(_BLOCK + digest).digest()
        return digest.hex().encode()
    time.sleep(float(argument))
    return b"ok"


def serve(mode: str) -> None:
    """Run a server with the strategy ``mode`` names; print its port; stop on SIGTERM."""
    strategies: dict[str, Any] = {
        "inline": InlineStrategy,
        "pool2": lambda: ProcessPoolStrategy(2),
        "threads64": lambda: ThreadPoolStrategy(64),
    }
    strategy: DispatchStrategy = strategies[mode]()
    reactor = Reactor()
    server = StreamServer(reactor, LineHandler, service, strategy=strategy, limits=Limits(linger=0))
    server.listen_tcp("127.0.0.1", 0)
    reactor.stop_on_signals((signal.SIGTERM,), grace=5.0)
    print(server.addresses[0][1], flush=True)
    try:
        reactor.run()
    finally:
        reactor.close()


def load(port: int, line: bytes, clients: int, depth: int, seconds: float) -> float:
    """Drive ``clients`` connections, each with ``depth`` requests outstanding; return req/s."""
    selector = selectors.DefaultSelector()
    request = line + b"\n"
    socks = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request * depth)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        socks.append(sock)
    answered = 0
    started = time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        for key, _ in selector.select(0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(65536)
            if not data:
                raise SystemExit("the server closed a connection")
            done = data.count(b"\n")
            answered += done
            if done:
                sock.sendall(request * done)
    elapsed = time.monotonic() - started
    for sock in socks:
        selector.unregister(sock)
        sock.close()
    selector.close()
    return answered / elapsed


def measure(mode: str, line: bytes, clients: int, depth: int, seconds: float) -> float:
    """Start a server in ``mode``, warm it up, measure, stop it; return requests per second."""
    process = subprocess.Popen(
        [sys.executable, __file__, "serve", mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        load(port, line, clients, depth, min(0.5, seconds / 4))  # warm-up
        rate = load(port, line, clients, depth, seconds)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    print(f"  {mode:10} {line.decode():12} {clients:3} clients: {rate:9.1f} req/s", flush=True)
    return rate


def main() -> None:
    """Measure both ratios and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per run")
    parser.add_argument("--rounds", type=int, default=200, help="64 KiB hashes per request")
    options = parser.parse_args()
    cpu = f"hash {options.rounds}".encode()
    inline_cpu = measure("inline", cpu, 4, 2, options.seconds)
    pool_cpu = measure("pool2", cpu, 4, 2, options.seconds)
    inline_block = measure("inline", b"sleep 0.01", 64, 1, options.seconds)
    threads_block = measure("threads64", b"sleep 0.01", 64, 1, options.seconds)
    cpu_ratio = pool_cpu / inline_cpu
    block_ratio = threads_block / inline_block
    print(f"CPU-bound, 2-worker process pool / inline: {cpu_ratio:.2f}x (aim >= 1.7x)")
    print(f"blocking, 64-thread pool / inline:         {block_ratio:.1f}x (aim >= 40x)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        main()
