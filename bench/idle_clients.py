"""Open many idle TCP connections to a server and hold them until told to let go.

Used by ``bench/run.py`` for the idle test: one process can hold at most its fd limit of
connections (20,000 here, minus a few), so the harness starts several of these, each with a
share of the crowd. The connections never send a byte: they measure what an *idle* client
costs the server.

Protocol with the parent, on stdout: one line ``CONNECTED <ok> FAILED <failed>`` once every
connection attempt has finished (or the deadline passed), then nothing until stdin reaches end
of file or SIGTERM/SIGINT arrives, when every socket is closed and the process exits 0.

Connections are opened non-blocking with a bounded number in flight, so a server with a short
accept backlog slows the crowd down instead of making every connect wait for a SYN retry.
"""

from __future__ import annotations

import argparse
import errno
import selectors
import signal
import socket
import sys
import time

from bench.peers.cli import raise_fd_limit

IN_FLIGHT = 256


def open_idle(host: str, port: int, count: int, deadline: float) -> tuple[list[socket.socket], int]:
    """Open ``count`` connections to (host, port) before ``deadline`` (a monotonic time).

    Returns the connected sockets and the number of attempts that failed.
    """
    selector = selectors.DefaultSelector()
    connected: list[socket.socket] = []
    failed = 0
    started = 0
    pending = 0
    try:
        while (started < count or pending) and time.monotonic() < deadline:
            while started < count and pending < IN_FLIGHT:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                started += 1
                code = sock.connect_ex((host, port))
                if code == 0:
                    connected.append(sock)
                elif code == errno.EINPROGRESS:
                    selector.register(sock, selectors.EVENT_WRITE)
                    pending += 1
                else:
                    sock.close()
                    failed += 1
            for key, _events in selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                selector.unregister(sock)
                pending -= 1
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    connected.append(sock)
                else:
                    sock.close()
                    failed += 1
        # whatever is still pending at the deadline counts as failed
        for key in list(selector.get_map().values()):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            selector.unregister(sock)
            sock.close()
            failed += 1
        failed += count - started
    finally:
        selector.close()
    return connected, failed


def main() -> None:
    """Entry point: open the crowd, report, hold until stdin closes or a stop signal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to connect all")
    args = parser.parse_args()
    limit = raise_fd_limit()
    if args.count > limit - 16:
        parser.error(f"--count {args.count} does not fit this process's fd limit {limit}")

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    socks: list[socket.socket] = []
    try:
        socks, failed = open_idle(args.host, args.port, args.count, time.monotonic() + args.timeout)
        sys.stdout.write(f"CONNECTED {len(socks)} FAILED {failed}\n")
        sys.stdout.flush()
        sys.stdin.read()  # hold until the parent closes our stdin
    finally:
        for sock in socks:
            sock.close()


if __name__ == "__main__":
    main()
