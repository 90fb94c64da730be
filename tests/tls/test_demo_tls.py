"""The demo command over TLS: ``python -m muxserver --tls-cert FILE --tls-key FILE``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys

import pytest

from tests.tls.support import Certificates

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.timeout(30)
def test_the_demo_serves_echo_chat_kv_and_http_over_tls(certs: Certificates) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "muxserver", "--tls-cert", str(certs.server_cert),
         "--tls-key", str(certs.server_key), "--echo-port", "0", "--chat-port", "0",
         "--kv-port", "0", "--http-port", "0", "--rpc-port", "off"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ports: dict[str, int] = {}
        while len(ports) < 4:
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else "no banner"
            name, kind, address = [*line.split(), "", "", ""][:3]
            if kind == "tcp":
                ports[name] = int(address.rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(certs.ca))

        def tls_client(port: int) -> ssl.SSLSocket:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            return context.wrap_socket(raw, server_hostname="localhost")

        with tls_client(ports["echo"]) as echo:
            echo.sendall(b"secret echo")
            assert echo.recv(100) == b"secret echo"
        with tls_client(ports["kv"]) as kv:
            kv.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert kv.recv(100) == b"+PONG\r\n"
        with tls_client(ports["chat"]) as chat:
            assert chat.recv(100).startswith(b"* welcome")
        with tls_client(ports["http"]) as http:
            http.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := http.recv(4096):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200")
            assert reply.split(b"\r\n\r\n", 1)[1].strip() == b"ok"
        if shutil.which("curl"):
            result = subprocess.run(
                ["curl", "-sS", "--cacert", str(certs.ca), "--resolve",
                 f"localhost:{ports['http']}:127.0.0.1", f"https://localhost:{ports['http']}/healthz"],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == "ok"
        with socket.create_connection(("127.0.0.1", ports["echo"]), timeout=5) as plain:
            plain.sendall(b"not tls at all\r\n\r\n")
            received = b""
            while chunk := plain.recv(4096):  # at most a TLS alert, then the server closes
                received += chunk
            assert b"not tls" not in received
        with tls_client(ports["echo"]) as echo:
            echo.sendall(b"still served")
            assert echo.recv(100) == b"still served"
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "muxserver stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
