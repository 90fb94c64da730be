"""TLS edges: close_notify in the same read as the last request, plaintext that arrives while
STARTTLS waits for earlier answers, and a ClientHello trickled past the socketserver mix-in's
handshake deadline."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import Any

import pytest

from muxserver import socketserver
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.reactor.dispatch.threads import ThreadPoolStrategy
from muxserver.service import Peer
from muxserver.tls import StartTLSLineHandler, TLSAcceptor, server_context
from muxserver.tls_socketserver import TLSMixIn
from tests.reactor.support import wait_for
from tests.tls.support import Certificates, RunningServer, client_context


def _client_hello(certs: Certificates) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(certs).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return client, incoming, outgoing


def _echo(request: LineRequest, peer: Peer) -> bytes:
    return bytes(request.line)


def _handshake(sock: socket.socket, client: ssl.SSLObject, incoming: ssl.MemoryBIO,
               outgoing: ssl.MemoryBIO) -> None:  # fmt: skip
    while True:
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            incoming.write(sock.recv(65536))
    if outgoing.pending:
        sock.sendall(outgoing.read())


@pytest.mark.timeout(30)
def test_close_notify_in_the_same_read_as_the_last_request_ends_the_connection(
    certs: Certificates,
) -> None:
    context = server_context(str(certs.server_cert), str(certs.server_key))
    server = RunningServer(LineHandler, _echo, setup=TLSAcceptor(context))
    with server, server.connect(timeout=3) as sock:
        client, incoming, outgoing = _client_hello(certs)
        _handshake(sock, client, incoming, outgoing)
        client.write(b"last\n")
        request = outgoing.read()
        with contextlib.suppress(ssl.SSLWantReadError):
            client.unwrap()
        sock.sendall(request + outgoing.read())  # one segment: request + close_notify
        received = b""
        closed = False
        with contextlib.suppress(TimeoutError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                received += chunk
        incoming.write(received)
        plaintext = b""
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            while chunk := client.read(65536):
                plaintext += chunk
    assert plaintext == b"last\n"
    assert closed, "the server answered but kept the connection open after close_notify"


@pytest.mark.timeout(30)
def test_plaintext_arriving_while_starttls_is_held_never_becomes_a_request(
    certs: Certificates,
) -> None:
    context = server_context(str(certs.server_cert), str(certs.server_key))
    acceptor = TLSAcceptor(context, handshake_timeout=5)
    seen: list[bytes] = []
    slow_started = threading.Event()
    release = threading.Event()

    def service(request: LineRequest, peer: Peer) -> bytes:
        seen.append(bytes(request.line))
        if request.line == b"SLOW":
            slow_started.set()
            release.wait(10)
        return bytes(request.line)

    server = RunningServer(
        lambda: StartTLSLineHandler(acceptor), service, strategy=ThreadPoolStrategy(2)
    )
    try:
        with server, server.connect(timeout=5) as sock:
            sock.sendall(b"SLOW\nSTARTTLS\n")  # one read: STARTTLS is held behind SLOW
            assert slow_started.wait(5)
            sock.sendall(b"INJECTED\n")  # a later read, while the upgrade waits

            def injected_buffered() -> bool:
                records = server.reactor.table.records()
                return bool(records) and records[0].handler.buffered >= len(b"INJECTED\n")

            assert wait_for(injected_buffered)  # read by the server before SLOW is answered
            release.set()
            sock.settimeout(3)
            with contextlib.suppress(OSError):
                while sock.recv(65536):
                    pass
    finally:
        release.set()
    assert seen == [b"SLOW"], f"plaintext after STARTTLS was served: {seen}"


@pytest.mark.timeout(30)
def test_tls_mixin_bounds_the_whole_handshake_not_each_read(certs: Certificates) -> None:
    """A client trickling its ClientHello a byte at a time is dropped at the deadline."""
    dropped: list[float] = []

    class Server(TLSMixIn, socketserver.ThreadingTCPServer):
        ssl_context = server_context(str(certs.server_cert), str(certs.server_key))
        tls_handshake_timeout = 0.5

        def shutdown_request(self, request: Any) -> None:
            dropped.append(time.monotonic())
            super().shutdown_request(request)

    server = Server(("127.0.0.1", 0), socketserver.StreamRequestHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        _, _, outgoing = _client_hello(certs)
        hello = outgoing.read()
        started = time.monotonic()
        with (
            socket.create_connection(server.server_address, timeout=5) as sock,
            contextlib.suppress(OSError),
        ):
            for index in range(10):  # one byte every 0.3 s: each read is in time
                sock.sendall(hello[index : index + 1])
                time.sleep(0.3)
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
    assert len(dropped) == 1
    assert dropped[0] - started < 1.5
