"""RPCService: every reply status it produces, as the client's decoder sees it; the cache."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxserver.rpc.client import (
    GarbageArgumentsError,
    ProcedureUnavailableError,
    ProgramMismatchError,
    ProgramUnavailableError,
    RemoteSystemError,
    RPCAuthError,
    RPCVersionMismatchError,
    raise_for_reply,
)
from muxserver.rpc.message import (
    AuthFlavor,
    AuthStat,
    AuthSys,
    OpaqueAuth,
    decode_reply,
    encode_auth_sys,
    encode_call,
)
from muxserver.rpc.program import (
    CacheStatus,
    CallContext,
    DuplicateRequestCache,
    Procedure,
    Program,
    RPCService,
    Version,
)
from muxserver.rpc.record import RPCRecord
from muxserver.rpc.xdr import UINT, VOID, String
from muxserver.service import Peer

ECHO = Procedure(1, "ECHO", String(10), String(10))
COUNT = Procedure(2, "COUNT", VOID, UINT, idempotent=False)
CRASH = Procedure(3, "CRASH", VOID, VOID)
WRONG_RESULT = Procedure(4, "WRONG_RESULT", VOID, UINT)
WHOAMI = Procedure(5, "WHOAMI", VOID, String())
UNIMPLEMENTED = Procedure(6, "UNIMPLEMENTED")
TEST_PROGRAM = Program(
    0x30000000,
    "TEST_PROG",
    [
        Version(2, "V2", [ECHO, COUNT, CRASH, WRONG_RESULT, WHOAMI, UNIMPLEMENTED]),
        Version(3, "V3", []),
        Version(5, "V5", [ECHO]),
    ],
)
PROG = TEST_PROGRAM.number
PEER = Peer(7, ("192.0.2.1", 700))


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def bump(self, args: None, context: CallContext) -> int:
        self.count += 1
        return self.count


def whoami(args: None, context: CallContext) -> str:
    who = context.auth_sys.machinename if context.auth_sys else "nobody"
    return f"{who}:{context.peer.address[1]}:{context.procedure.name}:{context.xid}"


def make_service(**options: Any) -> tuple[RPCService, Counter]:
    counter = Counter()
    service = RPCService(**options)
    implementations = {
        "ECHO": lambda args, context: args.upper(),
        "COUNT": counter.bump,
        "CRASH": lambda args, context: 1 / 0,
        "WRONG_RESULT": lambda args, context: "not an int",
        "WHOAMI": whoami,
    }
    service.register(TEST_PROGRAM, 2, implementations)
    service.register(TEST_PROGRAM, 5, {1: lambda args, context: args})
    return service, counter


def call(service: RPCService, message: bytes, peer: Peer = PEER) -> Any:
    """Run ``message`` through the service and the client's reply decoder."""
    reply = service.handle(RPCRecord(message), peer)
    assert reply is not None
    return raise_for_reply(decode_reply(reply))


def test_success_returns_the_encoded_result() -> None:
    service, _ = make_service()
    results = call(service, encode_call(1, PROG, 2, 1, String().encode("hi")))
    assert String().decode_all(results) == "HI"


def test_null_is_always_answered() -> None:
    service, _ = make_service()
    assert call(service, encode_call(1, PROG, 5, 0)) == b""


def test_unknown_program_is_prog_unavail() -> None:
    service, _ = make_service()
    with pytest.raises(ProgramUnavailableError):
        call(service, encode_call(1, PROG + 1, 2, 0))


def test_unknown_version_is_prog_mismatch_with_the_registered_range() -> None:
    service, _ = make_service()
    with pytest.raises(ProgramMismatchError) as info:
        call(service, encode_call(1, PROG, 4, 0))
    assert (info.value.low, info.value.high) == (2, 5)


@pytest.mark.parametrize("proc", [6, 99])
def test_unknown_or_unimplemented_procedure_is_proc_unavail(proc: int) -> None:
    service, _ = make_service()
    with pytest.raises(ProcedureUnavailableError):
        call(service, encode_call(1, PROG, 2, proc))


@pytest.mark.parametrize(
    "args", [b"", b"\0\0\0\x0bhello world\0", String().encode("ok") + b"\0\0\0\0"]
)
def test_undecodable_arguments_are_garbage_args(args: bytes) -> None:
    service, _ = make_service()
    with pytest.raises(GarbageArgumentsError):
        call(service, encode_call(1, PROG, 2, 1, args))


@pytest.mark.parametrize("proc", [3, 4])
def test_a_failing_implementation_is_system_err_and_logged(
    proc: int, caplog: pytest.LogCaptureFixture
) -> None:
    service, _ = make_service()
    with caplog.at_level(logging.ERROR, logger="muxserver.rpc"), pytest.raises(RemoteSystemError):
        call(service, encode_call(1, PROG, 2, proc))
    assert "RPC implementation failed" in caplog.text
    assert "192.0.2.1" in caplog.text


def test_a_wrong_rpc_version_is_rpc_mismatch() -> None:
    service, _ = make_service()
    with pytest.raises(RPCVersionMismatchError) as info:
        call(service, encode_call(1, PROG, 2, 0, rpcvers=3))
    assert (info.value.low, info.value.high) == (2, 2)


@pytest.mark.parametrize(
    "cred",
    [
        OpaqueAuth(AuthFlavor.AUTH_SYS, b"\0\0\0\1"),  # truncated authsys_parms
        OpaqueAuth(AuthFlavor.AUTH_DH, b""),  # a flavor this server does not speak
        OpaqueAuth(1234, b""),
    ],
)
def test_unreadable_credentials_are_auth_badcred(cred: OpaqueAuth) -> None:
    service, _ = make_service()
    with pytest.raises(RPCAuthError) as info:
        call(service, encode_call(1, PROG, 2, 0, cred=cred))
    assert info.value.auth_stat is AuthStat.AUTH_BADCRED


def test_an_auth_body_over_400_bytes_is_auth_badcred() -> None:
    service, _ = make_service()
    message = bytearray(encode_call(1, PROG, 2, 0, cred=OpaqueAuth(AuthFlavor.AUTH_DH, b"")))
    message[28:32] = (404).to_bytes(4, "big")
    message[32:32] = b"\0" * 404
    with pytest.raises(RPCAuthError) as info:
        call(service, bytes(message))
    assert info.value.auth_stat is AuthStat.AUTH_BADCRED


def test_the_authenticate_hook_can_reject_with_its_own_status() -> None:
    seen: list[CallContext] = []

    def require_sys(context: CallContext) -> AuthStat | None:
        seen.append(context)
        if context.procedure.number == 0:
            return None
        return AuthStat.AUTH_TOOWEAK if context.auth_sys is None else AuthStat.AUTH_OK

    service, _ = make_service(authenticate=require_sys)
    assert call(service, encode_call(1, PROG, 2, 0)) == b""
    with pytest.raises(RPCAuthError) as info:
        call(service, encode_call(2, PROG, 2, 5))
    assert info.value.auth_stat is AuthStat.AUTH_TOOWEAK
    cred = encode_auth_sys(AuthSys(1, "client.example", 1000, 100, [4, 5]))
    results = call(service, encode_call(3, PROG, 2, 5, cred=cred))
    assert String().decode_all(results) == "client.example:700:WHOAMI:3"
    assert seen[-1].auth_sys == AuthSys(1, "client.example", 1000, 100, [4, 5])
    assert seen[-1].peer is PEER


def test_a_crashing_authenticate_hook_is_system_err() -> None:
    def broken(context: CallContext) -> AuthStat | None:
        raise RuntimeError("hook bug")

    service, _ = make_service(authenticate=broken)
    with pytest.raises(RemoteSystemError):
        call(service, encode_call(1, PROG, 2, 0))


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\0\0\0\1",
        encode_call(1, PROG, 2, 0)[:20],  # rpcvers fine, but no prog/vers/proc
        bytes.fromhex("00000001 00000001 00000000"),  # a REPLY, not a call
    ],
)
def test_a_message_that_is_not_a_call_header_is_dropped(message: bytes) -> None:
    service, _ = make_service()
    assert service.handle(RPCRecord(message), PEER) is None


@given(garbage=st.binary(max_size=64))
def test_the_service_never_raises_on_garbage(garbage: bytes) -> None:
    service, _ = make_service()
    reply = service.handle_message(garbage, PEER)
    if reply is not None:
        decode_reply(reply)


def test_handle_rejects_a_request_without_data() -> None:
    service, _ = make_service()
    with pytest.raises(TypeError, match="RPCRecord"):
        service.handle(object(), PEER)  # type: ignore[arg-type]


def test_registration_errors_are_clear() -> None:
    service, _ = make_service()
    with pytest.raises(ValueError, match="already registered"):
        service.register(TEST_PROGRAM, 2, {})
    with pytest.raises(KeyError):
        RPCService().register(TEST_PROGRAM, 9, {})
    with pytest.raises(KeyError, match="NOPE"):
        RPCService().register(TEST_PROGRAM, 2, {"NOPE": whoami})
    with pytest.raises(ValueError, match="NULL"):
        Version(1, "V", [Procedure(0, "NOT_NULL", UINT, UINT)])


# -- the duplicate-request cache -------------------------------------------------------------


def test_a_retransmitted_non_idempotent_call_replays_the_saved_reply() -> None:
    service, counter = make_service(duplicate_cache=DuplicateRequestCache())
    first = service.handle_message(encode_call(42, PROG, 2, 2), PEER)
    again = service.handle_message(encode_call(42, PROG, 2, 2), PEER)
    assert first == again
    assert counter.count == 1
    other_client = Peer(8, ("192.0.2.2", 700))
    assert service.handle_message(encode_call(42, PROG, 2, 2), other_client) != first
    assert service.handle_message(encode_call(43, PROG, 2, 2), PEER) != first
    assert counter.count == 3


def test_idempotent_calls_are_not_cached() -> None:
    cache = DuplicateRequestCache()
    service, _ = make_service(duplicate_cache=cache)
    service.handle_message(encode_call(42, PROG, 2, 1, String().encode("a")), PEER)
    assert len(cache) == 0


def test_without_a_cache_a_retransmission_runs_again() -> None:
    service, counter = make_service()
    for _ in range(2):
        service.handle_message(encode_call(42, PROG, 2, 2), PEER)
    assert counter.count == 2


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = DuplicateRequestCache(max_entries=2)
    for key in ("a", "b"):
        assert cache.begin(key) == (CacheStatus.NEW, None)
        cache.finish(key, key.encode())
    assert cache.begin("a") == (CacheStatus.DONE, b"a")  # "a" is now the most recent
    assert cache.begin("c")[0] is CacheStatus.NEW
    assert len(cache) == 2
    assert cache.begin("b")[0] is CacheStatus.NEW  # "b" was evicted
    with pytest.raises(ValueError):
        DuplicateRequestCache(max_entries=0)


def test_a_retransmission_during_the_original_call_is_dropped() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(args: None, context: CallContext) -> int:
        started.set()
        release.wait(5)
        return 1

    service = RPCService(duplicate_cache=DuplicateRequestCache())
    service.register(TEST_PROGRAM, 2, {"COUNT": slow})
    replies: list[bytes | None] = []
    worker = threading.Thread(
        target=lambda: replies.append(service.handle_message(encode_call(9, PROG, 2, 2), PEER))
    )
    worker.start()
    assert started.wait(5)
    assert service.handle_message(encode_call(9, PROG, 2, 2), PEER) is None
    release.set()
    worker.join(5)
    assert replies[0] is not None
    assert service.handle_message(encode_call(9, PROG, 2, 2), PEER) == replies[0]


def test_a_failed_call_is_cached_as_its_system_err_reply() -> None:
    cache = DuplicateRequestCache()
    service = RPCService(duplicate_cache=cache)
    service.register(TEST_PROGRAM, 2, {"COUNT": lambda args, context: 1 / 0})
    first = service.handle_message(encode_call(5, PROG, 2, 2), PEER)
    assert first is not None
    with pytest.raises(RemoteSystemError):
        raise_for_reply(decode_reply(first))
    assert service.handle_message(encode_call(5, PROG, 2, 2), PEER) == first
