"""No service code runs for a refused peer: ``connection_made`` waits for admission.

The handler (a PROXY header, an authentication exchange) or the layer (a TLS handshake with
an authorizer) may still refuse a peer after the socket was accepted; the service's side of
the connection starts only once both have let the peer in.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

import pytest

from muxserver.auth import (
    AuthenticationError,
    CertificateRules,
    ChallengeResponseHandler,
    authenticate,
)
from muxserver.handlers.lines import LineHandler
from muxserver.handlers.proxy import ProxyProtocolHandler, encode_v1
from muxserver.testing.live import ReactorThread, connect
from muxserver.tls import TLSAcceptor
from tests.reactor.support import recv_all, recv_until, wait_for
from tests.tls.support import Certificates, Recorder, client_context, mutual_tls_acceptor

SECRET = b"correct horse battery staple"


def test_a_peer_refused_by_the_challenge_never_reaches_the_service() -> None:
    service = Recorder()
    with ReactorThread() as live:
        factory = lambda: ChallengeResponseHandler(LineHandler(), {"alice": SECRET})  # noqa: E731
        _, address = live.serve(factory, service)
        with connect(address) as intruder, pytest.raises(AuthenticationError):
            authenticate(intruder, "alice", b"wrong", timeout=5)
        with connect(address) as alice:
            leftover = authenticate(alice, "alice", SECRET, timeout=5)
            greeting = leftover + recv_until(alice, len(b"welcome\n") - len(leftover))
            assert greeting == b"welcome\n"  # pushed by connection_made, after OK
            alice.sendall(b"hello\n")
            assert recv_until(alice, 6) == b"hello\n"
        assert wait_for(lambda: live.call(lambda: len(service.lost)) == 1)
        made = live.call(lambda: list(service.made))
    assert len(made) == 1
    assert made[0][1]["auth_user"] == "alice"


def test_connection_made_sees_the_client_address_from_the_proxy_header() -> None:
    service = Recorder()
    with ReactorThread() as live:
        _, address = live.serve(lambda: ProxyProtocolHandler(LineHandler()), service)
        with connect(address) as balancer:
            balancer.sendall(encode_v1(("203.0.113.7", 40000), ("10.0.0.1", 80)))
            assert recv_until(balancer, 8) == b"welcome\n"
        with connect(address) as garbage:
            garbage.sendall(b"GET / HTTP/1.1\r\n\r\n")  # no PROXY header: refused
            assert recv_all(garbage) == b""
        assert wait_for(lambda: live.call(lambda: len(service.lost)) == 1)
        made = live.call(lambda: list(service.made))
    assert [client for client, _ in made] == [("203.0.113.7", 40000)]


def test_a_tls_client_refused_by_the_authorizer_never_reaches_the_service(
    certs: Certificates,
) -> None:
    service = Recorder()
    acceptor = mutual_tls_acceptor(certs, "bob")
    context = acceptor.context
    with ReactorThread() as live:
        _, address = live.serve(LineHandler, service, setup=acceptor)
        alice = client_context(certs, cert=certs.client_cert, key=certs.client_key)
        with contextlib.suppress(ssl.SSLError, OSError):
            raw = socket.create_connection(address, timeout=5)
            with alice.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"let me in\n")
                assert tls.recv(100) == b""
        accepted_rules = CertificateRules(common_names=["alice"])
        _, open_address = live.serve(
            LineHandler, service, setup=TLSAcceptor(context, authorize=accepted_rules)
        )
        raw = socket.create_connection(open_address, timeout=5)
        with alice.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(100) == b"welcome\n"
        assert wait_for(lambda: live.call(lambda: len(service.lost)) == 1)
        made = live.call(lambda: list(service.made))
    assert len(made) == 1
    assert made[0][1]["client_subject"] == "O=Example,CN=alice"
