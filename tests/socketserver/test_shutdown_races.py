"""socketserver's serve_forever and shutdown() at awkward moments: requested during the wait,
before the serving thread starts, and from a signal handler in the serving thread."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any, ClassVar

import pytest

from muxserver import socketserver


class _Recording(socketserver.BaseRequestHandler):
    handled: ClassVar[list[Any]] = []

    def handle(self) -> None:
        self.handled.append(self.client_address)


@pytest.mark.timeout(20)
def test_shutdown_requested_during_the_wait_handles_no_further_request() -> None:
    _Recording.handled = []
    server = socketserver.TCPServer(("127.0.0.1", 0), _Recording)
    client = socket.create_connection(server.server_address, timeout=5)
    # Deterministic interleaving: shutdown() runs during the serving loop's wait (as when
    # another thread calls it at that moment) while a connection is also waiting.
    server._reactor.call_soon_threadsafe(server.shutdown)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 5})
    try:
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
        assert _Recording.handled == [], "a request was handled after shutdown() was requested"
    finally:
        thread.join(10)
        client.close()
        server.server_close()


@pytest.mark.timeout(20)
def test_shutdown_then_server_close_before_the_serving_thread_starts_is_quiet() -> None:
    server = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    go = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        go.wait(10)  # the thread is started but has not reached serve_forever yet
        try:
            server.serve_forever(poll_interval=0.01)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        server.shutdown()
        server.server_close()
    finally:
        go.set()
        thread.join(10)
    assert not thread.is_alive()
    assert errors == []


@pytest.mark.timeout(30)
def test_shutdown_from_a_signal_handler_in_the_serving_thread_is_immediate() -> None:
    server = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: server.shutdown())
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        started = time.monotonic()
        server.serve_forever(poll_interval=4)
        elapsed = time.monotonic() - started
    finally:
        timer.join(10)
        signal.signal(signal.SIGUSR1, previous)
        server.server_close()
    assert elapsed < 2.0, f"serve_forever returned {elapsed:.1f}s after the signal"
