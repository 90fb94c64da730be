"""Specification of muxserver.auth: every scheme's accept and refuse paths on real sockets."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from muxserver.auth import (
    AddressRules,
    AuthenticationError,
    CertificateRules,
    ChallengeResponseHandler,
    ChallengeState,
    UnixCredentialRules,
    admit_all,
    authenticate,
    compute_response,
    setup_all,
)
from muxserver.handlers.base import NEED_DATA, PeerUpdate, ProtocolError, Request, Send
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.reactor.limits import Limits
from muxserver.service import Peer
from muxserver.tls import TLSAcceptor, server_context
from tests.tls.support import Certificates, RunningServer, client_context, recv_until

SECRETS = {"alice": b"correct horse battery staple"}


class Recorder:
    """A line service that answers with ``peer.extra[line]`` and remembers every call."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, request: Request, peer: Peer) -> str:
        assert isinstance(request, LineRequest)
        self.calls.append(request.line)
        return repr(peer.extra.get(request.line.decode()))


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = time.monotonic() + 2
    while text not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert text in caplog.text


# -- address rules ------------------------------------------------------------------------


def test_address_rules_deny_wins_and_an_allow_list_admits_only_its_networks() -> None:
    rules = AddressRules(allow=["10.0.0.0/8", "2001:db8::/32"], deny=["10.6.6.0/24"])
    assert rules.check("10.1.2.3") is None
    assert rules.check("2001:db8::1") is None
    assert rules.check("::ffff:10.1.2.3") is None  # IPv4-mapped, from a dual-stack listener
    assert "denied network 10.6.6.0/24" in (rules.check("10.6.6.6") or "")
    assert "not in an allowed network" in (rules.check("192.0.2.1") or "")
    assert "not in an allowed network" in (rules.check("2001:db9::1") or "")
    assert AddressRules(deny=["::1"]).check("::1") is not None
    assert AddressRules().check("192.0.2.1") is None


def test_a_malformed_network_is_a_clear_configuration_error() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0/33' is not an IP network"):
        AddressRules(allow=["10.0.0/33"])


def test_a_denied_address_gets_the_reply_then_the_close_and_no_service_code_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Recorder()
    rules = AddressRules(deny=["127.0.0.0/8"], reply=b"-ERR not allowed\r\n")
    with RunningServer(LineHandler, service, admit=rules) as server, server.connect() as sock:
        assert recv_until(sock, b"\xff never") == b"-ERR not allowed\r\n"
        wait_for_log(caplog, "refused 127.0.0.1")
    assert service.calls == []
    assert "denied network 127.0.0.0/8" in caplog.text
    assert server.server.refused == 1


def test_an_allowed_address_is_served() -> None:
    rules = admit_all(AddressRules(allow=["127.0.0.1/32"]), AddressRules(deny=["10.0.0.0/8"]))
    with RunningServer(LineHandler, Recorder(), admit=rules) as server, server.connect() as sock:
        sock.sendall(b"x\n")
        assert recv_until(sock, b"\n") == b"None\n"


# -- Unix peer credentials ----------------------------------------------------------------


def test_unix_peer_credentials_admit_the_allowed_user_and_reach_the_service(
    tmp_path: Path,
) -> None:
    rules = UnixCredentialRules(users=[os.getuid()])
    path = str(tmp_path / "s")
    with (
        RunningServer(
            LineHandler, Recorder(), unix_path=path, admit=rules, setup=setup_all(rules.record)
        ) as server,
        server.connect() as sock,
    ):
        sock.sendall(b"peercred\n")
        answer = recv_until(sock, b"\n")
    assert (
        answer
        == f"PeerCredentials(pid={os.getpid()}, uid={os.getuid()}, gid={os.getgid()})\n".encode()
    )


def test_unix_peer_credentials_refuse_other_users_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = Recorder()
    rules = UnixCredentialRules(users=[os.getuid() + 4242], groups=[os.getgid() + 4242])
    path = str(tmp_path / "s")
    with RunningServer(LineHandler, service, unix_path=path, admit=rules) as server:
        with server.connect() as sock:
            assert recv_until(sock, b"\xff never") == b""
        wait_for_log(caplog, "is not an allowed user or group")
    assert f"uid={os.getuid()}" in caplog.text
    assert service.calls == []


def test_unix_credential_rules_reject_unknown_names_at_start_up() -> None:
    with pytest.raises(ValueError, match="unknown user 'no-such-user-here'"):
        UnixCredentialRules(users=["no-such-user-here"])
    with pytest.raises(ValueError, match="unknown group"):
        UnixCredentialRules(groups=["no-such-group-here"])
    with pytest.raises(ValueError, match="at least one"):
        UnixCredentialRules()


# -- shared-secret challenge-response -------------------------------------------------------


def challenge_server(service: Any, **options: Any) -> RunningServer:
    return RunningServer(
        lambda: ChallengeResponseHandler(LineHandler(), SECRETS), service, **options
    )


def test_the_right_secret_authenticates_and_the_service_sees_the_user() -> None:
    with challenge_server(Recorder()) as server, server.connect() as sock:
        assert authenticate(sock, "alice", SECRETS["alice"]) == b""
        sock.sendall(b"auth_user\nauth_scheme\n")
        assert recv_until(sock, b"'hmac-sha256'\n") == b"'alice'\n'hmac-sha256'\n"


def test_a_wrong_secret_is_refused_and_three_wrong_responses_end_in_denied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Recorder()
    caplog.set_level(logging.INFO)
    with challenge_server(service) as server:
        with server.connect() as sock, pytest.raises(AuthenticationError, match="refused"):
            authenticate(sock, "alice", b"wrong")
        with server.connect() as sock:
            sock.sendall(b"AUTH alice\n")
            replies = [recv_until(sock, b"\n")]
            for extra in (b"", b"", b"auth_user\n"):  # the last one pipelines a request
                sock.sendall(b"RESPONSE " + b"00" * 32 + b"\n" + extra)
                replies.append(recv_until(sock, b"\n"))
            assert recv_until(sock, b"\xff never") == b""
        wait_for_log(caplog, "wrong response for user 'alice' after 3 attempt(s)")
    assert replies[0].startswith(b"CHALLENGE ") and replies[1].startswith(b"RETRY ")
    assert replies[1] != replies[2]  # a fresh nonce for every attempt
    assert replies[3] == b"DENIED\n"
    assert service.calls == []  # the pipelined line never reached the inner handler
    assert "127.0.0.1" in caplog.text


def test_an_unknown_user_is_challenged_like_anyone_and_denied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server = challenge_server(Recorder())
    with server, server.connect() as sock, pytest.raises(AuthenticationError):
        authenticate(sock, "mallory", b"guess")
    handler = ChallengeResponseHandler(LineHandler(), SECRETS, max_attempts=1)
    handler.receive_data(b"AUTH mallory\n")
    assert isinstance(handler.next_event(), Send)
    handler.receive_data(b"RESPONSE " + b"ab" * 32 + b"\n")
    with pytest.raises(ProtocolError, match="unknown user 'mallory'") as refused:
        handler.next_event()
    assert refused.value.reply == b"DENIED\n"
    assert handler.challenge_state is ChallengeState.REFUSED


def test_a_client_that_stalls_during_the_exchange_is_dropped_by_the_request_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    limits = Limits(request_timeout=0.3)
    with challenge_server(Recorder(), limits=limits) as server, server.connect() as sock:
        sock.sendall(b"AUTH alice\n")
        assert recv_until(sock, b"\n").startswith(b"CHALLENGE ")
        started = time.monotonic()
        assert recv_until(sock, b"\xff never") == b""
        assert time.monotonic() - started < 2.0
        wait_for_log(caplog, "request incomplete after 0.3s")


def test_the_exchange_gives_the_same_events_fed_one_byte_at_a_time() -> None:
    nonce = bytes(range(32))
    response = compute_response(SECRETS["alice"], "alice", nonce)
    stream = b"AUTH alice\r\nRESPONSE " + response + b"\r\nfirst line\nsecond"

    def run(chunks: list[bytes]) -> list[Any]:
        handler = ChallengeResponseHandler(LineHandler(), SECRETS, nonce_source=lambda n: nonce[:n])
        events: list[Any] = []
        for chunk in [*chunks, b""]:
            handler.receive_data(chunk)
            while (event := handler.next_event()) is not NEED_DATA:
                events.append(event)
                if isinstance(event, LineRequest):
                    handler.send(None)
        return events

    whole = run([stream])
    assert whole == run([stream[i : i + 1] for i in range(len(stream))])
    assert whole[:3] == [
        Send(b"CHALLENGE " + nonce.hex().encode() + b"\n"),
        Send(b"OK\n"),
        PeerUpdate({"auth_user": "alice", "auth_scheme": "hmac-sha256"}),
    ]
    assert whole[3:5] == [LineRequest(b"first line"), LineRequest(b"second")]


def test_an_overlong_authentication_line_is_refused() -> None:
    handler = ChallengeResponseHandler(LineHandler(), SECRETS)
    handler.receive_data(b"AUTH " + b"a" * 300)
    with pytest.raises(ProtocolError, match="longer than 256"):
        handler.next_event()
    with pytest.raises(ValueError, match="max_attempts"):
        ChallengeResponseHandler(LineHandler(), SECRETS, max_attempts=0)


# -- client certificates --------------------------------------------------------------------


def cert_server(certs: Certificates, rules: CertificateRules) -> RunningServer:
    context = server_context(str(certs.server_cert), str(certs.server_key), client_ca=str(certs.ca))
    return RunningServer(LineHandler, Recorder(), setup=TLSAcceptor(context, authorize=rules))


def test_an_allowed_client_certificate_subject_is_served(certs: Certificates) -> None:
    with cert_server(certs, CertificateRules(subjects=["O=Example,CN=alice"])) as server:
        context = client_context(certs, cert=certs.client_cert, key=certs.client_key)
        with context.wrap_socket(server.connect(), server_hostname="localhost") as tls:
            tls.sendall(b"client_subject\n")
            assert recv_until(tls, b"\n") == b"'O=Example,CN=alice'\n"


@pytest.mark.parametrize("with_certificate", [True, False])
def test_a_client_certificate_that_is_not_allowed_is_refused_before_any_request(
    certs: Certificates, caplog: pytest.LogCaptureFixture, with_certificate: bool
) -> None:
    caplog.set_level(logging.INFO)
    server = cert_server(certs, CertificateRules(common_names=["bob"]))
    with server:
        if with_certificate:
            context = client_context(certs, cert=certs.client_cert, key=certs.client_key)
        else:
            context = client_context(certs)
        with context.wrap_socket(server.connect(), server_hostname="localhost") as tls:
            tls.sendall(b"client_subject\n")
            with pytest.raises((ssl.SSLError, OSError)):
                if not tls.recv(100):
                    raise ConnectionResetError("closed by the server")
        wait_for_log(caplog, "TLS client refused")
    reason = "is not allowed" if with_certificate else "no verified client certificate"
    assert reason in caplog.text
    assert server.server.service.function.calls == []  # type: ignore[attr-defined]


def test_a_unix_socket_is_not_judged_by_address_rules() -> None:
    rules = AddressRules(allow=["192.0.2.0/24"])
    left, right = socket.socketpair()
    with left, right:
        assert rules(left, "") is None


def test_address_rules_in_ipv4_mapped_form_match_ipv4_mapped_peers() -> None:
    deny = AddressRules(deny=["::ffff:10.6.6.0/120"])
    assert deny.check("::ffff:10.6.6.7") is not None
    assert deny.check("10.6.6.7") is not None
    allow = AddressRules(allow=["::ffff:127.0.0.1"])
    assert allow.check("::ffff:127.0.0.1") is None
