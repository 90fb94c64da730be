"""Every transport end to end on real sockets: TCP v4/v6, Unix stream and datagram, UDP."""

import os
import socket
import stat

import pytest

from muxserver.reactor import DatagramEndpoint, StreamServer
from muxserver.reactor.listen import bind_unix, prepare_unix_path
from muxserver.service import FunctionService
from muxserver.services.echo import echo_datagram
from muxserver.testing.live import ReactorThread, connect

from .support import lines, recv_until, upper, wait_for

HAS_IPV6 = socket.has_ipv6 and os.path.exists("/proc/net/if_inet6")


@pytest.mark.parametrize(
    "family",
    ["tcp", pytest.param("tcp6", marks=pytest.mark.skipif(not HAS_IPV6, reason="no IPv6"))],
)
def test_line_requests_are_answered_over_tcp(live: ReactorThread, family: str):
    _, address = live.serve(lines, upper, family=family)
    with connect(address) as client:
        client.sendall(b"hello\nworld\n")
        assert recv_until(client, 12) == b"HELLO\nWORLD\n"


def test_line_requests_are_answered_over_a_unix_socket(live: ReactorThread):
    _, path = live.serve(lines, upper, family="unix")
    with connect(path) as client:
        client.sendall(b"over unix\n")
        assert recv_until(client, 10) == b"OVER UNIX\n"


def test_a_linux_abstract_name_serves_without_a_file(live: ReactorThread):
    name = f"@muxserver-test-{os.getpid()}"

    def make():
        server = StreamServer(live.reactor, lines, upper)
        return server.listen_unix(name).address

    address = live.call(make)
    assert address.startswith(b"\0")  # Linux reports abstract names as bytes
    with connect(address) as client:
        client.sendall(b"abstract\n")
        assert recv_until(client, 9) == b"ABSTRACT\n"


def test_a_unix_socket_file_gets_the_requested_mode(live: ReactorThread):
    path = live.temp_path("moded.sock")
    live.call(lambda: StreamServer(live.reactor, lines, upper).listen_unix(path, mode=0o600))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "stale.sock")
    old = bind_unix(path)
    old.close()  # the file stays behind, with nobody listening
    assert os.path.exists(path)
    new = bind_unix(path)
    new.close()


def test_a_live_socket_file_or_a_regular_file_is_never_removed(tmp_path):
    path = str(tmp_path / "live.sock")
    live = bind_unix(path)
    try:
        with pytest.raises(OSError, match="in use"):
            prepare_unix_path(path)
    finally:
        live.close()
    regular = tmp_path / "notasocket"
    regular.write_text("data")
    with pytest.raises(OSError, match="not a socket"):
        prepare_unix_path(str(regular))
    assert regular.read_text() == "data"


def test_a_dual_stack_listener_accepts_ipv4_clients(live: ReactorThread):
    if not HAS_IPV6:
        pytest.skip("no IPv6")

    def make():
        server = StreamServer(live.reactor, lines, upper)
        return server.listen_tcp("::", 0, dual_stack=True).address

    port = live.call(make)[1]
    with connect(("127.0.0.1", port)) as client:
        client.sendall(b"v4 on v6\n")
        assert recv_until(client, 9) == b"V4 ON V6\n"


def test_several_listeners_share_one_reactor(live: ReactorThread):
    _, first = live.serve(lines, upper)
    _, second = live.serve(lines, lambda request, peer: b"second")
    with connect(first) as a, connect(second) as b:
        a.sendall(b"x\n")
        b.sendall(b"x\n")
        assert recv_until(a, 2) == b"X\n"
        assert recv_until(b, 7) == b"second\n"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(not HAS_IPV6, reason="no IPv6"))],
)
def test_udp_datagrams_are_echoed(live: ReactorThread, host: str):
    address = live.call(lambda: DatagramEndpoint.udp(live.reactor, echo_datagram, host, 0).address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        for payload in (b"one", b"two", b"x" * 60000):
            client.sendto(payload, address[:2])
            data, _ = client.recvfrom(65535)
            assert data == payload


def test_unix_datagrams_are_echoed(live: ReactorThread, tmp_path):
    server_path = str(tmp_path / "dgram.sock")
    live.call(lambda: DatagramEndpoint.unix(live.reactor, echo_datagram, server_path))
    client_path = str(tmp_path / "client.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        client.bind(client_path)
        client.settimeout(5)
        client.sendto(b"unix datagram", server_path)
        assert client.recvfrom(100)[0] == b"unix datagram"


def test_an_outbound_connection_is_served_like_an_accepted_one(live: ReactorThread):
    _, address = live.serve(lines, upper)
    replies: list[bytes] = []

    def dial():
        client_side = StreamServer(
            live.reactor, lines, FunctionService(lambda r, p: replies.append(r.line)), name="client"
        )
        client_side.connect(
            address, lines(), lambda conn: conn.push(b"from the reactor"), replies.append
        )

    live.call(dial)
    assert wait_for(lambda: replies == [b"FROM THE REACTOR"])


def test_a_failed_connect_is_reported(live: ReactorThread):
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # bound, never listening: connects are refused
        errors: list[OSError] = []

        def dial():
            server = StreamServer(live.reactor, lines, upper, name="client")
            server.connect(("127.0.0.1", port), lines(), lambda conn: None, errors.append)

        live.call(dial)
        assert wait_for(lambda: errors)
        assert "refused" in str(errors[0]).lower() or "ECONNREFUSED" in str(errors[0])
