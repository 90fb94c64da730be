"""Unix stream and datagram servers, plain, threading and forking, in a temporary directory."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from muxserver import socketserver

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")

STREAM = ["UnixStreamServer", "ThreadingUnixStreamServer", "ForkingUnixStreamServer"]
DGRAM = ["UnixDatagramServer", "ThreadingUnixDatagramServer", "ForkingUnixDatagramServer"]


def server_class(name: str) -> type[socketserver.BaseServer]:
    """The named class; before 3.12 the forking Unix servers are composed the way 3.12 does."""
    cls = getattr(socketserver, name, None)
    if cls is None and name.startswith("Forking"):
        if not hasattr(os, "fork"):
            pytest.skip("needs os.fork")
        base = getattr(socketserver, name.replace("Forking", ""))
        cls = type(name, (socketserver.ForkingMixIn, base), {})
    assert isinstance(cls, type)
    return cls


class StreamEcho(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline().upper())


class DatagramEcho(socketserver.DatagramRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.read().upper())


def serve(srv: socketserver.BaseServer) -> threading.Thread:
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("name", STREAM)
def test_unix_stream_servers_echo(name: str, tmp_path: Path) -> None:
    path = str(tmp_path / "stream.sock")
    with server_class(name)(path, StreamEcho) as srv:
        thread = serve(srv)
        for _ in range(3):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(5)
                client.connect(path)
                client.sendall(b"hello\n")
                assert client.makefile("rb").readline() == b"HELLO\n"
        srv.shutdown()
        thread.join(5)
    assert not getattr(srv, "active_children", None)


@pytest.mark.parametrize("name", DGRAM)
def test_unix_datagram_servers_echo(name: str, tmp_path: Path) -> None:
    path = str(tmp_path / "dgram.sock")
    with server_class(name)(path, DatagramEcho) as srv:
        thread = serve(srv)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.bind(str(tmp_path / "client.sock"))
            for _ in range(3):
                client.sendto(b"hello", path)
                assert client.recv(100) == b"HELLO"
        srv.shutdown()
        thread.join(5)
    assert os.path.exists(path)  # like the standard library, the socket file is left behind
