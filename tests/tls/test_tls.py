"""Specification of muxserver.tls: real handshakes on loopback sockets, real clients."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import subprocess
import time
import warnings
from typing import Any

import pytest

from muxserver.handlers.base import Request
from muxserver.handlers.echo import EchoHandler
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.reactor.limits import Limits
from muxserver.service import Peer
from muxserver.tls import (
    StartTLSLineHandler,
    TLSAcceptor,
    TLSLayer,
    TLSState,
    format_subject,
    server_context,
)
from tests.tls.support import Certificates, RunningServer, client_context, recv_until


def tls_server(certs: Certificates, handler: Any = EchoHandler, service: Any = None,
               *, timeout: float | None = 5.0, limits: Limits | None = None,
               **context_options: Any) -> RunningServer:  # fmt: skip
    context = server_context(str(certs.server_cert), str(certs.server_key), **context_options)
    acceptor = TLSAcceptor(context, handshake_timeout=timeout)
    return RunningServer(handler, service, setup=acceptor, limits=limits)


def tls_connect(server: RunningServer, context: ssl.SSLContext,
                hostname: str = "localhost") -> ssl.SSLSocket:  # fmt: skip
    return context.wrap_socket(server.connect(), server_hostname=hostname)


def echo_once(server: RunningServer, certs: Certificates, payload: bytes = b"ping\n") -> bytes:
    with tls_connect(server, client_context(certs)) as tls:
        tls.sendall(payload)
        return recv_until(tls, payload[-1:])


def peer_extra_service(request: Request, peer: Peer) -> str:
    assert isinstance(request, LineRequest)
    return repr(peer.extra.get(request.line.decode()))


def test_a_python_client_handshakes_and_exchanges_data_with_the_echo_service(
    certs: Certificates,
) -> None:
    with tls_server(certs) as server:
        assert echo_once(server, certs, b"hello over tls\n") == b"hello over tls\n"


def test_the_handshake_facts_reach_the_service_before_the_first_request(
    certs: Certificates,
) -> None:
    with tls_server(certs, LineHandler, peer_extra_service, alpn=["http/1.1"]) as server:
        context = client_context(certs, alpn=["h2", "http/1.1"])
        with tls_connect(server, context) as tls:
            tls.sendall(b"tls_version\nalpn\nserver_name\npeercert\ncipher\n")
            data = b""
            while data.count(b"\n") < 5:
                data += tls.recv(4096)
            lines = data.split(b"\n")
    assert lines[0] in (b"'TLSv1.3'", b"'TLSv1.2'")
    assert lines[1:4] == [b"'http/1.1'", b"'localhost'", b"None"]
    assert lines[4].startswith(b"'")


def test_openssl_s_client_completes_a_handshake_and_gets_its_line_echoed(
    certs: Certificates,
) -> None:
    with tls_server(certs) as server:
        port = server.address[1]
        command = ["/usr/bin/openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                   "-CAfile", str(certs.ca), "-servername", "localhost",
                   "-verify_return_error", "-quiet"]  # fmt: skip
        with subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as client:
            assert client.stdin is not None and client.stdout is not None
            client.stdin.write(b"through s_client\n")
            client.stdin.flush()
            line = client.stdout.readline()
            client.terminate()
            client.wait(timeout=5)
    assert line == b"through s_client\n"


def test_curl_fetches_healthz_from_an_http_service_over_tls(certs: Certificates) -> None:
    from muxserver.handlers.http import HTTPHandler, HTTPRequest

    def health(request: Request, peer: Peer) -> bytes:
        assert isinstance(request, HTTPRequest)
        return b"ok\n" if request.target == b"/healthz" else b"?\n"

    with tls_server(certs, HTTPHandler, health) as server:
        port = server.address[1]
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "5", "--cacert", str(certs.ca),
             f"https://localhost:{port}/healthz"],
            check=False, capture_output=True, timeout=10,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ok\n"


def test_with_mutual_tls_a_client_certificate_is_verified_and_its_subject_reaches_the_service(
    certs: Certificates,
) -> None:
    options: dict[str, Any] = {"client_ca": str(certs.ca), "require_client_cert": True}
    with tls_server(certs, LineHandler, peer_extra_service, **options) as server:
        context = client_context(certs, cert=certs.client_cert, key=certs.client_key)
        with tls_connect(server, context) as tls:
            tls.sendall(b"client_subject\nauth_user\n")
            answer = recv_until(tls, b"'alice'\n")
    assert answer == b"'O=Example,CN=alice'\n'alice'\n"


def refused_with_a_log_line(
    server: RunningServer, context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> str:
    """Connect with ``context``; expect a refusal on either side; return the server's log."""
    caplog.set_level(logging.INFO)
    with pytest.raises((ssl.SSLError, OSError)), tls_connect(server, context) as tls:
        tls.sendall(b"anyone there?\n")
        if not tls.recv(100):  # TLS 1.3: the refusal arrives after the client's handshake
            raise ConnectionResetError("closed")
    return wait_for_log(caplog, "dropping it")


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> str:
    """Wait (briefly) for the reactor thread to log ``text``; return the whole log."""
    deadline = time.monotonic() + 2
    while text not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert text in caplog.text
    return caplog.text


@pytest.mark.parametrize("which", ["none", "other CA", "expired"])
def test_with_mutual_tls_a_missing_foreign_or_expired_client_certificate_is_refused(
    certs: Certificates, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    options: dict[str, Any] = {"client_ca": str(certs.ca), "require_client_cert": True}
    pairs = {
        "none": (None, None),
        "other CA": (certs.stranger_cert, certs.stranger_key),
        "expired": (certs.expired_client_cert, certs.expired_client_key),
    }
    cert, key = pairs[which]
    with tls_server(certs, **options) as server:
        log = refused_with_a_log_line(server, client_context(certs, cert=cert, key=key), caplog)
        good = client_context(certs, cert=certs.client_cert, key=certs.client_key)
        with tls_connect(server, good) as tls:  # and the next client is served as usual
            tls.sendall(b"still here\n")
            assert recv_until(tls, b"\n") == b"still here\n"
    assert "TLS handshake failed" in log and "127.0.0.1" in log


@pytest.mark.parametrize("which", ["wrong hostname", "expired", "unknown CA"])
def test_a_client_refuses_a_bad_server_certificate(
    certs: Certificates, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    cert, key = {
        "wrong hostname": (certs.wrong_host_cert, certs.wrong_host_key),
        "expired": (certs.expired_server_cert, certs.expired_server_key),
        "unknown CA": (certs.stranger_cert, certs.stranger_key),
    }[which]
    caplog.set_level(logging.INFO)
    context = server_context(str(cert), str(key))
    with RunningServer(EchoHandler, setup=TLSAcceptor(context)) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_connect(server, client_context(certs))
        wait_for_log(caplog, "TLS handshake failed")


@pytest.mark.parametrize(
    "garbage", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HELO plaintext\r\n", os.urandom(600)]
)
def test_plaintext_or_garbage_on_the_tls_port_is_dropped_and_affects_no_one_else(
    certs: Certificates, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    caplog.set_level(logging.INFO)
    with tls_server(certs) as server, tls_connect(server, client_context(certs)) as bystander:
        with server.connect() as plain:
            plain.sendall(garbage)
            received = recv_until(plain, b"\xff never")  # an alert at most, then the end
        assert b"HTTP" not in received and len(received) < 100
        bystander.sendall(b"unaffected\n")
        assert recv_until(bystander, b"\n") == b"unaffected\n"
    assert "TLS handshake failed" in caplog.text


def test_a_client_that_stalls_mid_handshake_is_timed_out_while_others_are_served(
    certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with tls_server(certs, timeout=0.4) as server:
        stalled = server.connect()
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
        started = time.monotonic()
        for _ in range(3):
            assert echo_once(server, certs) == b"ping\n"
        assert stalled.recv(100) == b""
        waited = time.monotonic() - started
        stalled.close()
    assert 0.3 < waited < 2.0
    assert "TLS handshake not finished after 0.4s" in caplog.text
    assert server.server.timeouts == 1


def test_handshakes_and_a_large_echo_work_with_one_byte_reads_and_tiny_buffers(
    certs: Certificates,
) -> None:
    with tls_server(certs, limits=Limits(read_size=1)) as server:
        raw = server.connect()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024)
        with client_context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
            payload = bytes(range(256)) * 40 + b"\n"
            tls.sendall(payload)
            echoed = b""
            while len(echoed) < len(payload):
                byte = tls.recv(1)
                assert byte
                echoed += byte
    assert echoed == payload


def pump(client: ssl.SSLObject, client_out: ssl.MemoryBIO, layer: TLSLayer,
         client_in: ssl.MemoryBIO, wire: list[bytes]) -> None:  # fmt: skip
    """Move the client's records into the layer one byte at a time, and the layer's back."""
    data = client_out.read()
    for i in range(len(data)):
        layer.receive(data[i : i + 1])
    for chunk in wire:
        client_in.write(chunk)
    wire.clear()


def test_the_layer_alone_handshakes_when_fed_one_byte_at_a_time_and_closes_cleanly(
    certs: Certificates,
) -> None:
    layer = TLSLayer(server_context(str(certs.server_cert), str(certs.server_key)))
    wire: list[bytes] = []
    facts: dict[str, Any] = {}
    layer.attach(wire.append, facts.update)
    assert layer.send(b"early push\n") == b""  # queued until the handshake is done
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(certs).wrap_bio(client_in, client_out, server_hostname="localhost")
    for _ in range(10):
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump(client, client_out, layer, client_in, wire)
    pump(client, client_out, layer, client_in, wire)  # the client's Finished
    assert layer.state is TLSState.OPEN and facts["tls_version"] == client.version()
    client.write(b"hello")
    data = client_out.read()
    plaintext = b"".join(filter(None, (layer.receive(data[i : i + 1]) for i in range(len(data)))))
    assert plaintext == b"hello"
    for chunk in wire:
        client_in.write(chunk)
    wire.clear()
    assert client.read(100) == b"early push\n"
    with pytest.raises(ssl.SSLWantReadError):
        client.unwrap()  # client's close_notify
    assert layer.receive(client_out.read()) is None  # a clean end of the plaintext stream
    assert layer.state.value == "peer_closed"
    client_in.write(layer.close())
    client.unwrap()  # completes: our close_notify arrived
    assert layer.receive(b"") is None


def test_end_of_input_without_close_notify_is_a_layer_error(
    certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    from muxserver.reactor.layer import LayerError

    caplog.set_level(logging.INFO)
    with tls_server(certs) as server:
        tls = tls_connect(server, client_context(certs))
        tls.sendall(b"x\n")
        assert recv_until(tls, b"\n") == b"x\n"
        tls.close()  # Python's close() sends no close_notify
        wait_for_log(caplog, "without TLS close_notify")
    layer = TLSLayer(server_context(str(certs.server_cert), str(certs.server_key)))
    layer.attach(lambda data: None, lambda extra: None)
    with pytest.raises(LayerError, match="during the TLS handshake"):
        layer.receive(b"")


def test_a_clean_close_notify_from_the_client_is_answered_with_ours(certs: Certificates) -> None:
    with tls_server(certs) as server:
        tls = tls_connect(server, client_context(certs))
        tls.sendall(b"bye\n")
        assert recv_until(tls, b"\n") == b"bye\n"
        plain = tls.unwrap()  # sends close_notify and waits for the server's
        plain.close()


def test_tls_1_1_is_refused_by_default(
    certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    context = client_context(certs)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with tls_server(certs) as server:
        log = refused_with_a_log_line(server, context, caplog)
    assert "TLS handshake" in log


def test_the_sni_callback_sees_the_requested_name(certs: Certificates) -> None:
    names: list[str | None] = []
    with tls_server(certs, sni_callback=lambda obj, name, ctx: names.append(name)) as server:
        assert echo_once(server, certs) == b"ping\n"
    assert names == ["localhost"]


def test_format_subject_writes_rfc_4514_with_escapes() -> None:
    cert = {"subject": ((("countryName", "FR"),), (("commonName", "Doe, John"),))}
    assert format_subject(cert) == "CN=Doe\\, John,C=FR"
    assert format_subject({}) is None


def test_bad_configuration_is_refused_with_a_clear_message(certs: Certificates) -> None:
    with pytest.raises(ValueError, match="needs client_ca"):
        server_context(str(certs.server_cert), str(certs.server_key), require_client_cert=True)
    with pytest.raises(ValueError, match="server context"):
        TLSAcceptor(ssl.create_default_context())


def starttls_server(certs: Certificates, timeout: float = 5.0) -> RunningServer:
    context = server_context(str(certs.server_cert), str(certs.server_key))
    acceptor = TLSAcceptor(context, handshake_timeout=timeout)
    seen: list[bytes] = []

    def service(request: Request, peer: Peer) -> bytes:
        assert isinstance(request, LineRequest)
        seen.append(request.line)
        return b"%s %s" % (request.line, peer.extra.get("tls_version", "plain").encode())

    server = RunningServer(lambda: StartTLSLineHandler(acceptor), service)
    server.seen = seen  # type: ignore[attr-defined]
    return server


def test_starttls_upgrades_mid_stream_with_the_client_hello_pipelined_after_the_command(
    certs: Certificates,
) -> None:
    with starttls_server(certs) as server, server.connect() as sock:
        client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_context(certs).wrap_bio(client_in, client_out, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            client.do_handshake()
        sock.sendall(b"before\nSTARTTLS\r\n" + client_out.read())  # one segment
        received = recv_until(sock, b"220 ready to start TLS\n")
        assert received.startswith(b"before plain\n220 ready to start TLS\n")
        client_in.write(received.split(b"TLS\n", 1)[1])
        while True:
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(client_out.read())
                client_in.write(sock.recv(65536))
        sock.sendall(client_out.read())
        client.write(b"after\nSTARTTLS\n")
        sock.sendall(client_out.read())
        answer = b""
        while not answer.endswith(b"454 TLS already active\n"):
            client_in.write(sock.recv(65536))
            with contextlib.suppress(ssl.SSLWantReadError):
                while True:
                    answer += client.read(65536)
    assert answer.startswith(b"after TLSv1.")
    assert server.seen == [b"before", b"after"]  # type: ignore[attr-defined]


def test_plaintext_pipelined_after_starttls_is_never_taken_as_a_command(
    certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with starttls_server(certs) as server:
        with server.connect() as sock:
            sock.sendall(b"STARTTLS\nINJECTED COMMAND\n")
            received = recv_until(sock, b"\xff never")
        assert received.startswith(b"220 ready to start TLS\n")
        assert b"INJECTED" not in received
    assert server.seen == []  # type: ignore[attr-defined]
    assert "TLS handshake failed" in caplog.text


STRATEGIES = ["threads", "processes"]


@pytest.mark.parametrize("kind", STRATEGIES)
def test_tls_works_through_the_thread_and_process_strategies(
    certs: Certificates, kind: str
) -> None:
    strategy = _strategy(kind)
    context = server_context(str(certs.server_cert), str(certs.server_key), client_ca=str(certs.ca))
    server = RunningServer(
        LineHandler, peer_extra_service, setup=TLSAcceptor(context), strategy=strategy
    )
    with server:
        context_ = client_context(certs, cert=certs.client_cert, key=certs.client_key)
        with tls_connect(server, context_) as tls:
            tls.sendall(b"auth_user\n" * 5)
            answer = recv_until(tls, b"'alice'\n" * 5)
    assert answer == b"'alice'\n" * 5


def _strategy(kind: str) -> Any:
    if kind == "threads":
        try:
            from muxserver.reactor.dispatch.threads import ThreadPoolStrategy
        except ImportError:
            pytest.skip("muxserver/reactor/dispatch/threads.py does not exist yet")
        return ThreadPoolStrategy()
    try:
        from muxserver.reactor.dispatch.fork import ForkPerRequestStrategy
    except ImportError:
        pytest.skip("no process strategy yet (muxserver/reactor/dispatch/fork.py)")
    return ForkPerRequestStrategy()
