"""Small services, strategies and client helpers shared by the reactor tests."""

from __future__ import annotations

import socket
import time
from typing import Any

from muxserver.handlers.base import Request
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.reactor.dispatch import DispatchStrategy, DoneCallback
from muxserver.service import Peer, Service


def upper(request: Request, peer: Peer) -> bytes:
    """Answer a line with the same line in capitals."""
    assert isinstance(request, LineRequest)
    return request.line.upper()


def lines() -> LineHandler:
    """The line handler most reactor tests use."""
    return LineHandler()


class DelayedStrategy(DispatchStrategy):
    """Answers each request after ``delay`` seconds of reactor time, without threads.

    It puts requests *in flight* so that tests can watch ordering, pausing and draining.
    """

    name = "delayed"

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.running = 0

    def submit(self, service: Service, request: Request, peer: Peer, done: DoneCallback) -> None:
        assert self.reactor is not None
        self.running += 1

        def finish() -> None:
            self.running -= 1
            try:
                value = service.handle(request, peer)
            except Exception as exc:
                done(False, exc)
            else:
                done(True, value)

        self.reactor.call_later(self.delay, finish)

    def is_idle(self) -> bool:
        return self.running == 0


def recv_until(sock: socket.socket, expected: int, timeout: float = 5.0) -> bytes:
    """Read until ``expected`` bytes arrived (or EOF / timeout); return what came."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    got = 0
    while got < expected:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until EOF (or timeout)."""
    return recv_until(sock, 1 << 62, timeout)


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return bool(value)
        time.sleep(interval)
