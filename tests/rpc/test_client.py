"""RPCClient against live (threaded, blocking) test servers over TCP and UDP."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from muxserver.rpc.client import (
    ProcedureUnavailableError,
    ProgramMismatchError,
    ProgramUnavailableError,
    RemoteSystemError,
    RPCAuthError,
    RPCClient,
    RPCProtocolError,
    RPCTimeoutError,
)
from muxserver.rpc.demo import (
    DEMO_GET,
    DEMO_LIST,
    DEMO_MEASURE,
    DEMO_PROGRAM,
    DEMO_PUT,
    DemoStore,
    Figure,
    PutArgs,
    Rect,
    ShapeKind,
    demo_service,
)
from muxserver.rpc.message import AuthStat, AuthSys, encode_auth_sys
from muxserver.rpc.program import CallContext, DuplicateRequestCache, RPCService
from muxserver.rpc.xdr import DOUBLE, VOID, String, UnionValue

from .servers import ThreadedRPCServer

FAST: dict[str, Any] = {"timeout": 2.0, "retransmit": 0.05}


@pytest.fixture(params=["tcp", "udp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(transport: str) -> Iterator[ThreadedRPCServer]:
    with ThreadedRPCServer(demo_service(), transport) as running:
        yield running


def client_for(server: ThreadedRPCServer, **options: Any) -> RPCClient:
    settings = {**FAST, "transport": server.transport, **options}
    return RPCClient.for_program("127.0.0.1", server.port, DEMO_PROGRAM, 1, **settings)


def test_the_demo_key_value_store_works_end_to_end(server: ThreadedRPCServer) -> None:
    with client_for(server) as client:
        client.null()
        assert client.call_procedure(DEMO_GET, "missing") is None
        client.call_procedure(DEMO_PUT, PutArgs("b", b"\0\1binary"))
        client.call_procedure(DEMO_PUT, PutArgs("a", b""))
        assert client.call_procedure(DEMO_GET, "b") == b"\0\1binary"
        assert client.call_procedure(DEMO_GET, "a") == b""
        assert client.call_procedure(DEMO_LIST) == ["a", "b"]
        figure = Figure("box", UnionValue(ShapeKind.SHAPE_RECT, Rect(3, 4)))
        assert client.call_procedure(DEMO_MEASURE, figure).area == 12.0


def test_a_large_value_crosses_in_one_call(server: ThreadedRPCServer) -> None:
    value = bytes(range(256)) * 200  # 51 200 bytes: several TCP segments, one UDP datagram
    with client_for(server) as client:
        client.call_procedure(DEMO_PUT, PutArgs("big", value))
        assert client.call_procedure(DEMO_GET, "big") == value


def test_error_statuses_raise_their_own_exceptions(server: ThreadedRPCServer) -> None:
    options = {**FAST, "transport": server.transport}
    with (
        RPCClient("127.0.0.1", server.port, DEMO_PROGRAM.number, 7, **options) as client,
        pytest.raises(ProgramMismatchError) as info,
    ):
        client.null()
    assert (info.value.low, info.value.high) == (1, 1)
    with (
        RPCClient("127.0.0.1", server.port, 0x20000002, 1, **options) as c,
        pytest.raises(ProgramUnavailableError),
    ):
        c.null()
    with client_for(server) as client:
        with pytest.raises(ProcedureUnavailableError):
            client.call(99, VOID, None, VOID)
        client.null()  # the connection is still usable after an error reply


def test_results_that_do_not_decode_are_a_protocol_error(server: ThreadedRPCServer) -> None:
    with client_for(server) as client, pytest.raises(RPCProtocolError, match="results"):
        client.call(DEMO_GET.number, String(), "k", DOUBLE)


def test_credentials_reach_the_implementation(transport: str) -> None:
    def whoami(args: None, context: CallContext) -> str:
        assert context.auth_sys is not None
        return f"{context.auth_sys.machinename}/{context.auth_sys.uid}"

    def require_sys(context: CallContext) -> AuthStat | None:
        return AuthStat.AUTH_TOOWEAK if context.auth_sys is None else None

    service = RPCService(authenticate=require_sys)
    service.register(DEMO_PROGRAM, 1, {"DEMO_LIST": lambda a, c: [whoami(a, c)]})
    cred = encode_auth_sys(AuthSys(0, "tester", 1000, 1000, []))
    with ThreadedRPCServer(service, transport) as running:
        with client_for(running, cred=cred) as client:
            assert client.call_procedure(DEMO_LIST) == ["tester/1000"]
        with client_for(running) as client, pytest.raises(RPCAuthError) as info:
            client.call_procedure(DEMO_LIST)
        assert info.value.auth_stat is AuthStat.AUTH_TOOWEAK


def test_a_server_failure_is_remote_system_error(transport: str) -> None:
    store = DemoStore(max_keys=1)
    with ThreadedRPCServer(demo_service(store), transport) as running, client_for(running) as c:
        c.call_procedure(DEMO_PUT, PutArgs("one", b""))
        with pytest.raises(RemoteSystemError):
            c.call_procedure(DEMO_PUT, PutArgs("two", b""))


def test_udp_retransmits_when_the_first_datagram_is_lost() -> None:
    with ThreadedRPCServer(demo_service(), "udp", drop_calls=1) as running:
        with client_for(running) as client:
            started = time.monotonic()
            client.null()
            assert time.monotonic() - started >= 0.05
        assert running.calls_received == 2


def test_udp_backs_off_exponentially_until_the_timeout() -> None:
    with ThreadedRPCServer(demo_service(), "udp", drop_calls=1000) as running:
        with client_for(running, timeout=0.5, retransmit=0.05) as client:
            started = time.monotonic()
            with pytest.raises(RPCTimeoutError):
                client.null()
            assert 0.5 <= time.monotonic() - started < 1.5
        time.sleep(0.05)
        # sends at 0, .05, .15, .35 (waits .05, .1, .2, then .4 capped by the deadline);
        # allow one either way for a loaded machine
        assert 3 <= running.calls_received <= 5


def test_a_lost_reply_is_replayed_from_the_duplicate_cache_not_run_twice() -> None:
    store = DemoStore()
    calls: list[str] = []
    original_put = store.put

    def counting_put(args: PutArgs, context: CallContext) -> None:
        calls.append(args.key)
        original_put(args, context)

    store.put = counting_put  # type: ignore[method-assign]
    service = demo_service(store, duplicate_cache=DuplicateRequestCache())
    with ThreadedRPCServer(service, "udp", drop_replies=1) as running, client_for(running) as c:
        c.call_procedure(DEMO_PUT, PutArgs("k", b"v"))
        assert running.calls_received == 2  # the call was retransmitted...
    assert calls == ["k"]  # ...but ran once


def test_tcp_times_out_when_the_server_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with (
            RPCClient("127.0.0.1", port, 1, 1, timeout=0.2) as client,
            pytest.raises(RPCTimeoutError),
        ):
            client.null()


def test_client_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="transport"):
        RPCClient("127.0.0.1", 1, 1, 1, transport="sctp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        RPCClient("127.0.0.1", 1, 1, 1, timeout=0)
