"""A real HAProxy in mode tcp passing TLS through (send-proxy-v2) to two muxserver kv instances,
with deploy/haproxy-tls-passthrough.cfg: PROXY v2 header in cleartext, then TLS to muxserver."""

from __future__ import annotations

import json
import signal
import socket

import pytest

from muxserver.handlers.proxy import encode_v2
from tests.tls.support import Certificates, client_context, make_certificates, recv_until

from .haproxy import http_body, needs_haproxy, read_all, running_haproxy
from .support import Server, running

pytestmark = needs_haproxy

PING = b"*1\r\n$4\r\nPING\r\n"
STATUS_CLIENT = ("192.0.2.10", 4242)  # what the test's own status queries claim to be


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """The test CA and a server certificate for localhost (tests/tls's fixture is not visible
    from here)."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


def kv_clients(server: Server, certs: Certificates) -> list[dict[str, str]]:
    """The kv rows of an instance's /status.json. Its status listener wants what every listener
    of the process wants: a PROXY v2 header, then TLS."""
    address = server.address("http")
    raw = socket.create_connection(address, timeout=5)
    raw.sendall(encode_v2(STATUS_CLIENT, address))
    with client_context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /status.json?service=kv&size=500 HTTP/1.0\r\nHost: x\r\n\r\n")
        data = read_all(tls)
    head, body = http_body(data)
    assert head.startswith(b"HTTP/1.1 200 "), head
    rows: list[dict[str, str]] = json.loads(body)["rows"]
    return rows


@pytest.mark.timeout(90)
def test_haproxy_passes_tls_through_with_the_client_address(certs: Certificates) -> None:
    args = [
        "kv", "--bind", "127.0.0.1:0", "--status", "127.0.0.1:0", "--proxy-protocol", "v2",
        "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), "--grace", "5",
    ]  # fmt: skip
    with running(*args) as first, running(*args) as second:
        backends = [first.address("kv"), second.address("kv")]
        with running_haproxy("haproxy-tls-passthrough.cfg", backends) as haproxy:
            # The health checks (PROXY header, then a TLS handshake) find both instances.
            haproxy.wait_until(
                lambda states: states == {"mux1": ("UP", "L6OK"), "mux2": ("UP", "L6OK")}
            )
            listen = haproxy.listen
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
        for server in (first, second):
            out, err = server.stop(signal.SIGTERM)
            assert server.process.returncode == 0, err
            assert "muxserver stopped: drained" in out, out
