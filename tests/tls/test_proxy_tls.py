"""TLS behind a PROXY header (a load balancer passing TLS through): real sockets on loopback.

The header is cleartext and the client's TLS handshake follows it, often in the same segment;
``ProxyProtocolHandler(inner, upgrade=TLSAcceptor(...).upgrade)`` puts the TLS layer in place
right after the header. The command line does the same for ``--proxy-protocol`` with
``--tls-cert``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
from typing import Any

import pytest

from muxserver.handlers.lines import LineHandler
from muxserver.handlers.proxy import ProxyProtocolHandler, encode_v1, encode_v2
from muxserver.testing.live import ReactorThread
from muxserver.tls import TLSAcceptor, server_context
from tests.reactor.support import recv_all, wait_for
from tests.tls.support import Certificates, Recorder, client_context, mutual_tls_acceptor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT = ("203.0.113.7", 40000)
FRONT = ("10.0.0.1", 443)


class BioClient:
    """A TLS client on memory BIOs, so the PROXY header and the ClientHello share one send."""

    def __init__(self, address: Any, header: bytes, context: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._in, self._out, server_hostname="localhost")
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        self.sock.sendall(header + self._out.read())  # one segment: the server's one read
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._exchange()
        self.sock.sendall(self._out.read())

    def _exchange(self) -> None:
        pending = self._out.read()
        if pending:
            self.sock.sendall(pending)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self._in.write(data)

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self.sock.sendall(self._out.read())

    def recv_until(self, terminator: bytes) -> bytes:
        received = b""
        while terminator not in received:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._exchange()
                continue
            if not chunk:
                raise ConnectionError("TLS stream ended")
            received += chunk
        return received

    def close(self) -> None:
        self.sock.close()


def test_header_and_client_hello_in_one_segment_then_tls_to_the_service(
    certs: Certificates,
) -> None:
    service = Recorder()
    acceptor = TLSAcceptor(server_context(str(certs.server_cert), str(certs.server_key)))
    factory = lambda: ProxyProtocolHandler(LineHandler(), upgrade=acceptor.upgrade)  # noqa: E731
    with ReactorThread() as live:
        _, address = live.serve(factory, service)
        client = BioClient(address, encode_v2(CLIENT, FRONT), client_context(certs))
        try:
            assert client.recv_until(b"\n") == b"welcome\n"  # connection_made, over TLS
            client.send(b"through the balancer\n")
            assert client.recv_until(b"\n") == b"through the balancer\n"
        finally:
            client.close()
        # The header alone first, then a standard TLS client on the same socket.
        raw = socket.create_connection(address, timeout=5)
        raw.sendall(encode_v1(("198.51.100.9", 50000), FRONT))
        with client_context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(100) == b"welcome\n"
            tls.sendall(b"again\n")
            assert tls.recv(100) == b"again\n"
        assert wait_for(lambda: live.call(lambda: len(service.lost)) == 2)
        made = live.call(lambda: list(service.made))
    assert [client for client, _ in made] == [CLIENT, ("198.51.100.9", 50000)]
    for _, extra in made:
        assert extra["proxy_destination"] == FRONT
        assert extra["tls_version"] in ("TLSv1.2", "TLSv1.3")


def test_no_service_code_runs_for_a_peer_the_tls_layer_refuses(certs: Certificates) -> None:
    service = Recorder()
    acceptor = mutual_tls_acceptor(certs, "bob")
    factory = lambda: ProxyProtocolHandler(LineHandler(), upgrade=acceptor.upgrade)  # noqa: E731
    alice = client_context(certs, cert=certs.client_cert, key=certs.client_key)
    with ReactorThread() as live:
        _, address = live.serve(factory, service)
        with contextlib.suppress(ssl.SSLError, OSError):  # refused: alice is not bob
            client = BioClient(address, encode_v2(CLIENT, FRONT), alice)
            try:
                client.send(b"let me in\n")
                client.recv_until(b"\n")
            finally:
                client.close()
        with socket.create_connection(address, timeout=5) as plain:  # no TLS after the header
            plain.sendall(encode_v1(CLIENT, FRONT) + b"GET / HTTP/1.1\r\n\r\n")
            assert b"welcome" not in recv_all(plain)
        with socket.create_connection(address, timeout=5) as gone:  # header, then leaves
            gone.sendall(encode_v1(CLIENT, FRONT))
            gone.shutdown(socket.SHUT_WR)
            assert recv_all(gone) == b""
        assert wait_for(lambda: live.call(lambda: len(live.reactor.table)) == 0)
        made = live.call(lambda: list(service.made))
    assert made == []


@pytest.mark.timeout(30)
def test_the_command_line_serves_tls_behind_a_proxy_header(certs: Certificates) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "muxserver", "kv", "--bind", "127.0.0.1:0",
         "--proxy-protocol", "v2", "--tls-cert", str(certs.server_cert),
         "--tls-key", str(certs.server_key)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        name, kind, address = process.stdout.readline().split()  # the banner: "kv tcp ADDR"
        assert (name, kind) == ("kv", "tcp")
        port = int(address.rsplit(":", 1)[1])
        client = BioClient(("127.0.0.1", port), encode_v2(CLIENT, FRONT), client_context(certs))
        try:
            client.send(b"*1\r\n$4\r\nPING\r\n")
            assert client.recv_until(b"\r\n") == b"+PONG\r\n"
        finally:
            client.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "served 1 connections, 1 requests, 0 errors" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
