"""RPC messages: call headers, every reply shape, credentials."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxserver.rpc.message import (
    AUTH_NONE_NULL,
    AcceptStat,
    AuthFlavor,
    AuthStat,
    AuthSys,
    OpaqueAuth,
    RejectStat,
    Reply,
    ReplyStat,
    decode_auth_sys,
    decode_call,
    decode_reply,
    encode_auth_sys,
    encode_call,
    encode_reply,
)
from muxserver.rpc.xdr import XDRError

u32 = st.integers(0, 2**32 - 1)
auth_sys = st.builds(
    AuthSys,
    u32,
    st.text(max_size=20),
    u32,
    u32,
    st.lists(u32, max_size=16),
)
creds = st.one_of(
    st.just(AUTH_NONE_NULL),
    auth_sys.map(encode_auth_sys),
    st.builds(OpaqueAuth, st.integers(7, 2**32 - 1), st.binary(max_size=400)),
)
replies = st.one_of(
    st.builds(Reply.accepted, u32, st.just(AcceptStat.SUCCESS), st.binary(max_size=20)),
    st.builds(
        Reply.accepted,
        u32,
        st.sampled_from(
            [s for s in AcceptStat if s not in (AcceptStat.SUCCESS, AcceptStat.PROG_MISMATCH)]
        ),
    ),
    st.builds(Reply.accepted, u32, st.just(AcceptStat.PROG_MISMATCH), mismatch=st.tuples(u32, u32)),
    st.builds(Reply.rpc_mismatch, u32, u32, u32),
    st.builds(Reply.auth_error, u32, st.sampled_from(AuthStat)),
)


@given(xid=u32, prog=u32, vers=u32, proc=u32, args=st.binary(max_size=16), cred=creds, verf=creds)
def test_call_headers_round_trip(
    xid: int, prog: int, vers: int, proc: int, args: bytes, cred: OpaqueAuth, verf: OpaqueAuth
) -> None:
    message = encode_call(xid, prog, vers, proc, args, cred=cred, verf=verf)
    header = decode_call(message)
    assert (header.xid, header.rpcvers, header.prog, header.vers, header.proc) == (
        xid,
        2,
        prog,
        vers,
        proc,
    )
    assert (header.cred, header.verf) == (cred, verf)
    assert message[header.args_offset :] == args


@given(reply=replies)
def test_every_reply_shape_round_trips(reply: Reply) -> None:
    assert decode_reply(encode_reply(reply)) == reply


@given(parms=auth_sys)
def test_auth_sys_parameters_round_trip(parms: AuthSys) -> None:
    cred = encode_auth_sys(parms)
    assert cred.flavor is AuthFlavor.AUTH_SYS
    assert decode_auth_sys(cred) == parms


def test_auth_sys_limits_are_enforced() -> None:
    with pytest.raises(XDRError):
        encode_auth_sys(AuthSys(0, "h", 0, 0, list(range(17))))
    with pytest.raises(XDRError):
        encode_auth_sys(AuthSys(0, "h" * 256, 0, 0, []))
    with pytest.raises(XDRError):
        decode_auth_sys(AUTH_NONE_NULL)


def test_an_unknown_flavor_stays_a_plain_int() -> None:
    header = decode_call(encode_call(1, 2, 3, 4, cred=OpaqueAuth(99, b"x")))
    assert header.cred.flavor == 99
    assert not isinstance(header.cred.flavor, AuthFlavor)


@given(garbage=st.binary(max_size=80))
def test_garbage_headers_fail_with_xdr_error_only(garbage: bytes) -> None:
    for decode in (decode_call, decode_reply):
        with contextlib.suppress(XDRError):
            decode(garbage)


def test_a_reply_is_not_a_call_and_vice_versa() -> None:
    with pytest.raises(XDRError, match="not CALL"):
        decode_call(encode_reply(Reply.accepted(1, AcceptStat.SUCCESS)))
    with pytest.raises(XDRError, match="not REPLY"):
        decode_reply(encode_call(1, 2, 3, 4))


def test_an_oversized_auth_body_is_rejected() -> None:
    with pytest.raises(XDRError):
        encode_call(1, 2, 3, 4, cred=OpaqueAuth(AuthFlavor.AUTH_SYS, b"x" * 401))


def test_incomplete_replies_cannot_be_encoded() -> None:
    with pytest.raises(XDRError, match="mismatch"):
        encode_reply(Reply.accepted(1, AcceptStat.PROG_MISMATCH))
    with pytest.raises(XDRError, match="reject_stat"):
        encode_reply(Reply(1, ReplyStat.MSG_DENIED))
    with pytest.raises(XDRError, match="auth_stat"):
        encode_reply(Reply(1, ReplyStat.MSG_DENIED, reject_stat=RejectStat.AUTH_ERROR))
