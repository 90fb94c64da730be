"""Specification of muxserver.tls_socketserver: TLS for the socketserver face."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from muxserver import socketserver
from muxserver.tls import server_context
from muxserver.tls_socketserver import TLSMixIn
from tests.tls.support import Certificates, client_context, recv_until


class EchoLine(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


class Server(TLSMixIn, socketserver.ThreadingTCPServer):
    daemon_threads = False
    tls_handshake_timeout = 0.5


def test_a_stream_request_handler_gets_a_tls_stream_and_a_silent_client_stalls_no_one(
    certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = Server(("127.0.0.1", 0), EchoLine)
    server.ssl_context = server_context(str(certs.server_cert), str(certs.server_key))
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        silent = socket.create_connection(server.server_address, timeout=5)
        started = time.monotonic()
        raw = socket.create_connection(server.server_address, timeout=5)
        with client_context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"over tls\n")
            assert recv_until(tls, b"\n") == b"over tls\n"
        assert time.monotonic() - started < 0.5  # served while the silent one waits
        assert silent.recv(10) == b""
        silent.close()
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
    assert "TLS handshake with" in caplog.text and "timed out" in caplog.text
