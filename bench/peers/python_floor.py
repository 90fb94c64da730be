"""Benchmark reference: the least a pure-Python server can do per request -- not a framework.

Run: ``python -m bench.peers.python_floor --resp-port 7001 --http-port 7002``.

One ``select.epoll`` loop, one dict from fd to connection, and per readable socket exactly
``recv``, the shared minimal session's ``feed`` and ``send``: no timers, no limits, no flow
control, no ordering of answers, no connection table, no callbacks. It exists to answer one
question with a measurement: how close can *any* Python event loop come to uvloop, whose loop
is C? Whatever this costs per request above uvloop is the price of running the loop in Python
at all, and no amount of framework tuning can take it back. It writes with a plain ``send``
and keeps what the socket did not take (replies here are far smaller than a socket buffer),
so it is correct for the benchmark's clients, not a server to copy.
"""

from __future__ import annotations

import select
import signal
import socket
from collections.abc import Callable
from types import FrameType

from bench.peers.cli import BACKLOG, HOST, announce_ready, parse_listeners
from bench.peers.minimal import Session

_READ = select.EPOLLIN
_WRITE = select.EPOLLOUT


class _Connection:
    __slots__ = ("pending", "session", "sock")

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.session = session
        self.pending = b""


def serve() -> None:
    """Serve until SIGTERM or SIGINT."""
    listeners = parse_listeners(__doc__ or "")
    epoll = select.epoll()
    servers: dict[int, tuple[socket.socket, Callable[[], Session]]] = {}
    for listener in listeners:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, listener.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        servers[sock.fileno()] = (sock, listener.new_session)
        epoll.register(sock.fileno(), _READ)
    connections: dict[int, _Connection] = {}
    running = True

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    announce_ready()

    def close(fd: int, conn: _Connection) -> None:
        epoll.unregister(fd)
        conn.sock.close()
        del connections[fd]

    while running:
        try:
            events = epoll.poll(0.5)  # PEP 475 retries a signalled poll: look at `running`
        except InterruptedError:
            continue
        for fd, mask in events:
            conn = connections.get(fd)
            if conn is None:
                if fd in servers:
                    listen_sock, new_session = servers[fd]
                    try:
                        client, _ = listen_sock.accept()
                    except BlockingIOError:
                        continue
                    client.setblocking(False)
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    connections[client.fileno()] = _Connection(client, new_session())
                    epoll.register(client.fileno(), _READ)
                continue
            if mask & _WRITE:
                sent = conn.sock.send(conn.pending)
                conn.pending = conn.pending[sent:]
                if not conn.pending:
                    epoll.modify(fd, _READ)
                continue
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                close(fd, conn)
                continue
            if not data:
                close(fd, conn)
                continue
            session = conn.session
            reply = session.feed(data)
            if reply:
                try:
                    sent = conn.sock.send(reply)
                except OSError:
                    close(fd, conn)
                    continue
                if sent < len(reply):
                    conn.pending = reply[sent:]
                    epoll.modify(fd, _WRITE)
            if session.close_after:
                close(fd, conn)
    for fd, conn in list(connections.items()):
        close(fd, conn)
    for sock, _ in servers.values():
        sock.close()
    epoll.close()


if __name__ == "__main__":
    serve()
