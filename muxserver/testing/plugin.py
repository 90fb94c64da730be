"""The pytest plugin (entry point ``muxserver``): fixtures that run a real reactor.

Fixtures:

* ``mux_reactor`` -- a started :class:`~muxserver.testing.live.ReactorThread`, stopped and
  closed after the test.
* ``mux_serve`` -- a function ``mux_serve(handler_factory, service=None, **options)`` that
  serves on a free loopback port of ``mux_reactor`` and returns the address to connect to.
* ``mux_connect`` -- a function ``mux_connect(address)`` returning a connected blocking client
  socket (with a timeout) that is closed after the test.

Example::

    def test_my_protocol_over_tcp(mux_serve, mux_connect):
        address = mux_serve(MyHandler, my_service)
        client = mux_connect(address)
        client.sendall(b"hello\\n")
        assert client.recv(100) == b"HELLO\\n"
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from muxserver.testing.live import ReactorThread, connect

__all__ = ["mux_connect", "mux_reactor", "mux_serve"]


@pytest.fixture
def mux_reactor() -> Iterator[ReactorThread]:
    """A reactor running on a background thread for the duration of one test."""
    thread = ReactorThread().start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def mux_serve(mux_reactor: ReactorThread) -> Callable[..., Any]:
    """Serve a handler (and optional service) on a free loopback port; returns the address."""

    def serve(handler_factory: Callable[..., Any], service: Any = None, **options: Any) -> Any:
        _, address = mux_reactor.serve(handler_factory, service, **options)
        return address

    return serve


@pytest.fixture
def mux_connect() -> Iterator[Callable[..., socket.socket]]:
    """Open blocking client sockets that are closed after the test."""
    opened: list[socket.socket] = []

    def open_client(address: Any, timeout: float = 5.0) -> socket.socket:
        sock = connect(address, timeout)
        opened.append(sock)
        return sock

    yield open_client
    for sock in opened:
        sock.close()
