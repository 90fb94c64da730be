"""A real HAProxy in mode tcp passing TLS through (send-proxy-v2) to two muxserver kv instances,
with deploy/haproxy-tls-passthrough.cfg: PROXY v2 header in cleartext, then TLS to muxserver."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from muxserver.handlers.proxy import encode_v2
from tests.tls.support import Certificates, client_context, make_certificates, recv_until

from .support import ROOT, Server, running, wait_for

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(
        shutil.which("haproxy") is None, reason="needs haproxy (Debian package haproxy)"
    ),
]

PING = b"*1\r\n$4\r\nPING\r\n"
STATUS_CLIENT = ("192.0.2.10", 4242)  # what the test's own status queries claim to be


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """The test CA and a server certificate for localhost (tests/tls's fixture is not visible
    from here)."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_all(sock: socket.socket) -> bytes:
    """Everything up to the server's end of the stream (HTTP/1.0: it closes after answering)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


def server_states(stats_port: int) -> dict[str, tuple[str, str]]:
    """HAProxy's view of each server: (status, last check status), from the CSV stats."""
    with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as sock:
        sock.sendall(b"GET /stats;csv HTTP/1.0\r\nHost: x\r\n\r\n")
        data = read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    lines = body.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    states: dict[str, tuple[str, str]] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "muxservers" and row.get("svname", "").startswith("mux"):
            states[row["svname"]] = (row["status"], row["check_status"])
    return states


def kv_clients(server: Server, certs: Certificates) -> list[dict[str, str]]:
    """The kv rows of an instance's /status.json. Its status listener wants what every listener
    of the process wants: a PROXY v2 header, then TLS."""
    address = server.address("http")
    raw = socket.create_connection(address, timeout=5)
    raw.sendall(encode_v2(STATUS_CLIENT, address))
    with client_context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /status.json?service=kv&size=500 HTTP/1.0\r\nHost: x\r\n\r\n")
        data = read_all(tls)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    rows: list[dict[str, str]] = json.loads(body)["rows"]
    return rows


def _quiet(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, or ``{}`` while HAProxy's stats port is not answering yet."""
    try:
        return function(*args)
    except OSError:
        return {}


@pytest.mark.timeout(90)
def test_haproxy_passes_tls_through_with_the_client_address(certs: Certificates) -> None:
    args = [
        "kv", "--bind", "127.0.0.1:0", "--status", "127.0.0.1:0", "--proxy-protocol", "v2",
        "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), "--grace", "5",
    ]  # fmt: skip
    with running(*args) as first, running(*args) as second:
        listen, stats = free_port(), free_port()
        backends = [first.address("kv"), second.address("kv")]
        env = {
            **os.environ,
            "MUX_LISTEN": f"127.0.0.1:{listen}",
            "MUX_STATS": f"127.0.0.1:{stats}",
            "MUX_BACKEND1": f"{backends[0][0]}:{backends[0][1]}",
            "MUX_BACKEND2": f"{backends[1][0]}:{backends[1][1]}",
        }
        config = os.path.join(ROOT, "deploy", "haproxy-tls-passthrough.cfg")
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", config],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The health checks (PROXY header, then a TLS handshake) find both instances.
            up = {"mux1": ("UP", "L6OK"), "mux2": ("UP", "L6OK")}
            wait_for(lambda: _quiet(server_states, stats) == up, timeout=15)

            served = set()
            for _ in range(6):
                raw = socket.create_connection(("127.0.0.1", listen), timeout=10)
                local = raw.getsockname()
                with client_context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
                    assert tls.version() in ("TLSv1.2", "TLSv1.3")
                    tls.sendall(PING)
                    assert recv_until(tls, b"\r\n") == b"+PONG\r\n"
                    # While the connection is open, the instance serving it lists it under the
                    # client's own address (from the PROXY header), not HAProxy's.
                    client = f"127.0.0.1:{local[1]}"
                    found = [
                        (name, row)
                        for name, server in (("first", first), ("second", second))
                        for row in kv_clients(server, certs)
                        if row["client"] == client
                    ]
                    assert len(found) == 1, found
                    name, row = found[0]
                    assert row["peer"] != row["client"]  # the socket peer is HAProxy
                    served.add(name)
            assert served == {"first", "second"}  # round robin reached both
        finally:
            haproxy.terminate()
            try:
                _, haproxy_err = haproxy.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                haproxy.kill()
                _, haproxy_err = haproxy.communicate()
        assert haproxy.returncode in (0, -signal.SIGTERM, 143), haproxy_err
        for server in (first, second):
            out, err = server.stop(signal.SIGTERM)
            assert server.process.returncode == 0, err
            assert "muxserver stopped: drained" in out, out
