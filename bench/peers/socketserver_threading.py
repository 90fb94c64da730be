"""Benchmark peer: the standard library's socketserver.ThreadingTCPServer, a thread per client.

Run: ``python -m bench.peers.socketserver_threading --resp-port 7001 --http-port 7002``.
Each listener's serve_forever runs in its own thread; the main thread waits for a stop signal
and then calls shutdown() on each (calling it from the serving thread would deadlock).
"""

from __future__ import annotations

import signal
import socketserver
import threading
from collections.abc import Callable

from bench.peers.cli import BACKLOG, HOST, announce_ready, parse_listeners
from bench.peers.minimal import Session

READ_SIZE = 65536


class _Server(socketserver.ThreadingTCPServer):
    """ThreadingTCPServer with the benchmark's backlog and no waiting for clients at exit."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    request_queue_size = BACKLOG


def _handler_class(new_session: Callable[[], Session]) -> type[socketserver.BaseRequestHandler]:
    """Return a request-handler class serving sessions made by ``new_session``."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock = self.request
            session = new_session()
            try:
                # hot path: one iteration per read
                while data := sock.recv(READ_SIZE):
                    reply = session.feed(data)
                    if reply:
                        sock.sendall(reply)
                    if session.close_after:
                        break
            except OSError:
                pass  # reset or broken pipe: an ordinary close here

    return Handler


def main() -> None:
    """Entry point: serve each port from its own thread until SIGTERM or SIGINT."""
    listeners = parse_listeners(__doc__ or "")
    servers = [
        _Server((HOST, listener.port), _handler_class(listener.new_session))
        for listener in listeners
    ]
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [
        threading.Thread(target=server.serve_forever, name=f"serve-{server.server_address}")
        for server in servers
    ]
    for thread in threads:
        thread.start()
    announce_ready()
    while not stop.wait(1.0):
        pass
    for server in servers:
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
