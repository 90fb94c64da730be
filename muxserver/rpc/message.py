"""ONC RPC v2 messages (RFC 5531 section 9): call headers, replies, and credentials.

Theory of operation
-------------------
An RPC message is ``xid, msg_type`` followed by a call body or a reply body. The procedure's
arguments (in a call) and results (in a successful reply) are *not* length-prefixed: they are
simply the rest of the message. So this module never decodes a whole message; it decodes the
header and says where the payload starts:

* :func:`decode_call` -> :class:`CallHeader` (with ``args_offset``), used by the server;
* :func:`encode_call` builds a call from a header's fields and already-encoded arguments,
  used by the client;
* :func:`encode_reply` builds any reply from a :class:`Reply`, and :func:`decode_reply` parses
  one back into a :class:`Reply` whose ``results`` holds the undecoded result bytes. The two
  are exact inverses, which is what lets the tests pair every status the server produces with
  the client's parser.

Credentials travel as :class:`OpaqueAuth` ``(flavor, body)``; :func:`decode_auth_sys` opens an
AUTH_SYS body into :class:`AuthSys`. Flavors and statuses are ``IntEnum`` s; an opaque_auth's
flavor stays a plain ``int`` when it is not one we know, so a server can still reject it
politely (AUTH_BADCRED) instead of failing to parse the call.
"""

from __future__ import annotations

import dataclasses
import enum

from muxserver.rpc.xdr import (
    UINT,
    Array,
    Buffer,
    Enum,
    Opaque,
    String,
    Struct,
    XDRError,
)

__all__ = [
    "AUTH_NONE_NULL",
    "RPC_VERSION",
    "AcceptStat",
    "AuthFlavor",
    "AuthStat",
    "AuthSys",
    "CallHeader",
    "MsgType",
    "OpaqueAuth",
    "RejectStat",
    "Reply",
    "ReplyStat",
    "decode_auth_sys",
    "decode_call",
    "decode_reply",
    "encode_auth_sys",
    "encode_call",
    "encode_reply",
    "peek_xid",
]

RPC_VERSION = 2
"""The only RPC protocol version this module speaks (``rpcvers``)."""

MAX_AUTH_BYTES = 400
"""RFC 5531: the body of an opaque_auth is at most 400 bytes."""


class MsgType(enum.IntEnum):
    """``msg_type``: whether a message is a call or a reply."""

    CALL = 0
    REPLY = 1


class ReplyStat(enum.IntEnum):
    """``reply_stat``: whether the server accepted the call (it may still have failed)."""

    MSG_ACCEPTED = 0
    MSG_DENIED = 1


class AcceptStat(enum.IntEnum):
    """``accept_stat``: the outcome of an accepted call."""

    SUCCESS = 0
    """The procedure ran; results follow."""
    PROG_UNAVAIL = 1
    """The program is not exported here."""
    PROG_MISMATCH = 2
    """The program exists but not in this version; the supported range follows."""
    PROC_UNAVAIL = 3
    """The program has no such procedure."""
    GARBAGE_ARGS = 4
    """The arguments could not be decoded."""
    SYSTEM_ERR = 5
    """The server failed (e.g. the implementation raised)."""


class RejectStat(enum.IntEnum):
    """``reject_stat``: why a call was denied."""

    RPC_MISMATCH = 0
    """The RPC version is not 2; the supported range follows."""
    AUTH_ERROR = 1
    """Authentication failed; an :class:`AuthStat` follows."""


class AuthStat(enum.IntEnum):
    """``auth_stat``: why authentication failed."""

    AUTH_OK = 0
    AUTH_BADCRED = 1
    """Bad credential (seal broken, or a flavor or body we cannot read)."""
    AUTH_REJECTEDCRED = 2
    """The client must begin a new session."""
    AUTH_BADVERF = 3
    AUTH_REJECTEDVERF = 4
    AUTH_TOOWEAK = 5
    """Rejected for security reasons (e.g. AUTH_NONE where AUTH_SYS is required)."""
    AUTH_INVALIDRESP = 6
    AUTH_FAILED = 7
    AUTH_KERB_GENERIC = 8
    AUTH_TIMEEXPIRE = 9
    AUTH_TKT_FILE = 10
    AUTH_DECODE = 11
    AUTH_NET_ADDR = 12
    RPCSEC_GSS_CREDPROBLEM = 13
    RPCSEC_GSS_CTXPROBLEM = 14


class AuthFlavor(enum.IntEnum):
    """Well-known authentication flavors (``auth_flavor``)."""

    AUTH_NONE = 0
    AUTH_SYS = 1
    AUTH_SHORT = 2
    AUTH_DH = 3
    RPCSEC_GSS = 6


@dataclasses.dataclass(frozen=True)
class OpaqueAuth:
    """``opaque_auth``: a flavor and an opaque body of at most 400 bytes.

    ``flavor`` is an :class:`AuthFlavor` when known, else the raw unsigned int.
    """

    flavor: int
    body: bytes = b""


AUTH_NONE_NULL = OpaqueAuth(AuthFlavor.AUTH_NONE, b"")
"""The empty AUTH_NONE credential/verifier."""


@dataclasses.dataclass(frozen=True)
class AuthSys:
    """The body of an AUTH_SYS credential (``authsys_parms``)."""

    stamp: int
    """An arbitrary id the caller's machine may generate."""
    machinename: str
    """The caller's host name (at most 255 bytes; non-UTF-8 bytes are surrogate-escaped)."""
    uid: int
    gid: int
    gids: list[int] = dataclasses.field(default_factory=list)
    """Supplementary groups, at most 16."""


_AUTH_SYS = Struct(
    AuthSys,
    [
        ("stamp", UINT),
        ("machinename", String(255, errors="surrogateescape")),
        ("uid", UINT),
        ("gid", UINT),
        ("gids", Array(UINT, 16)),
    ],
)
_AUTH_BODY = Opaque(MAX_AUTH_BYTES)


def encode_auth_sys(parms: AuthSys) -> OpaqueAuth:
    """Return an AUTH_SYS credential carrying ``parms``.

    Raises:
        XDRError: a field is out of range (more than 16 gids, a name over 255 bytes...).
    """
    return OpaqueAuth(AuthFlavor.AUTH_SYS, _AUTH_SYS.encode(parms))


def decode_auth_sys(cred: OpaqueAuth) -> AuthSys:
    """Decode the body of an AUTH_SYS credential.

    Raises:
        XDRError: the flavor is not AUTH_SYS or the body is malformed.
    """
    if cred.flavor != AuthFlavor.AUTH_SYS:
        raise XDRError(f"credential flavor {cred.flavor} is not AUTH_SYS")
    return _AUTH_SYS.decode_all(cred.body)


def _flavor(raw: int) -> int:
    try:
        return AuthFlavor(raw)
    except ValueError:
        return raw


def _pack_auth(auth: OpaqueAuth, out: bytearray) -> None:
    UINT.pack(int(auth.flavor), out)
    _AUTH_BODY.pack(auth.body, out)


def _decode_auth(data: Buffer, offset: int) -> tuple[OpaqueAuth, int]:
    flavor, offset = UINT.decode(data, offset)
    body, offset = _AUTH_BODY.decode(data, offset)
    return OpaqueAuth(_flavor(flavor), body), offset


@dataclasses.dataclass(frozen=True)
class CallHeader:
    """The header of a CALL message; the arguments start at ``args_offset``."""

    xid: int
    rpcvers: int
    prog: int
    vers: int
    proc: int
    cred: OpaqueAuth
    verf: OpaqueAuth
    args_offset: int


def encode_call(
    xid: int,
    prog: int,
    vers: int,
    proc: int,
    args: bytes = b"",
    *,
    cred: OpaqueAuth = AUTH_NONE_NULL,
    verf: OpaqueAuth = AUTH_NONE_NULL,
    rpcvers: int = RPC_VERSION,
) -> bytes:
    """Return a complete CALL message with the already-encoded ``args`` appended.

    Raises:
        XDRError: a number is out of range or an auth body is over 400 bytes.
    """
    out = bytearray()
    for number in (xid, MsgType.CALL, rpcvers, prog, vers, proc):
        UINT.pack(int(number), out)
    _pack_auth(cred, out)
    _pack_auth(verf, out)
    out += args
    return bytes(out)


def peek_xid(data: Buffer) -> int | None:
    """Return the xid of a message that at least starts like a CALL, else ``None``."""
    if len(data) < 8:
        return None
    xid, offset = UINT.decode(data, 0)
    mtype, _ = UINT.decode(data, offset)
    return xid if mtype == MsgType.CALL else None


def decode_call(data: Buffer) -> CallHeader:
    """Decode the header of a CALL message.

    ``rpcvers`` is returned as found, not checked: a server answers a wrong version with
    RPC_MISMATCH, which it can only do having read the xid.

    Raises:
        XDRError: the message is truncated, not a CALL, or its credentials are malformed.
    """
    xid, offset = UINT.decode(data, 0)
    mtype, offset = UINT.decode(data, offset)
    if mtype != MsgType.CALL:
        raise XDRError(f"message type {mtype} is not CALL", 4)
    rpcvers, offset = UINT.decode(data, offset)
    prog, offset = UINT.decode(data, offset)
    vers, offset = UINT.decode(data, offset)
    proc, offset = UINT.decode(data, offset)
    cred, offset = _decode_auth(data, offset)
    verf, offset = _decode_auth(data, offset)
    return CallHeader(xid, rpcvers, prog, vers, proc, cred, verf, offset)


@dataclasses.dataclass(frozen=True)
class Reply:
    """A REPLY message, flattened: which fields are meaningful depends on the statuses.

    * accepted (``stat`` MSG_ACCEPTED): ``verf`` and ``accept_stat``; ``results`` (the encoded
      results) for SUCCESS; ``mismatch`` ``(low, high)`` for PROG_MISMATCH;
    * denied (MSG_DENIED): ``reject_stat``; ``mismatch`` for RPC_MISMATCH; ``auth_stat`` for
      AUTH_ERROR.
    """

    xid: int
    stat: ReplyStat
    accept_stat: AcceptStat | None = None
    reject_stat: RejectStat | None = None
    auth_stat: AuthStat | None = None
    mismatch: tuple[int, int] | None = None
    verf: OpaqueAuth = AUTH_NONE_NULL
    results: bytes = b""

    @classmethod
    def accepted(
        cls,
        xid: int,
        accept_stat: AcceptStat,
        results: bytes = b"",
        mismatch: tuple[int, int] | None = None,
    ) -> Reply:
        """An accepted reply (``results`` only for SUCCESS, ``mismatch`` for PROG_MISMATCH)."""
        return cls(xid, ReplyStat.MSG_ACCEPTED, accept_stat, mismatch=mismatch, results=results)

    @classmethod
    def rpc_mismatch(cls, xid: int, low: int, high: int) -> Reply:
        """A denied reply: the RPC version is not supported; ``low..high`` are."""
        return cls(
            xid, ReplyStat.MSG_DENIED, reject_stat=RejectStat.RPC_MISMATCH, mismatch=(low, high)
        )

    @classmethod
    def auth_error(cls, xid: int, auth_stat: AuthStat) -> Reply:
        """A denied reply: authentication failed with ``auth_stat``."""
        return cls(
            xid, ReplyStat.MSG_DENIED, reject_stat=RejectStat.AUTH_ERROR, auth_stat=auth_stat
        )


_ACCEPT_STAT = Enum(AcceptStat)
_REJECT_STAT = Enum(RejectStat)
_AUTH_STAT = Enum(AuthStat)
_REPLY_STAT = Enum(ReplyStat)


def _pack_mismatch(mismatch: tuple[int, int] | None, out: bytearray) -> None:
    if mismatch is None:
        raise XDRError("a mismatch reply needs the supported (low, high) range")
    UINT.pack(mismatch[0], out)
    UINT.pack(mismatch[1], out)


def encode_reply(reply: Reply) -> bytes:
    """Return the wire form of ``reply``.

    Raises:
        XDRError: a status is missing for the reply's kind, or a number is out of range.
    """
    out = bytearray()
    UINT.pack(reply.xid, out)
    UINT.pack(MsgType.REPLY, out)
    _REPLY_STAT.pack(reply.stat, out)
    if reply.stat == ReplyStat.MSG_ACCEPTED:
        _pack_auth(reply.verf, out)
        if reply.accept_stat is None:
            raise XDRError("an accepted reply needs an accept_stat")
        _ACCEPT_STAT.pack(reply.accept_stat, out)
        if reply.accept_stat == AcceptStat.SUCCESS:
            out += reply.results
        elif reply.accept_stat == AcceptStat.PROG_MISMATCH:
            _pack_mismatch(reply.mismatch, out)
    else:
        if reply.reject_stat is None:
            raise XDRError("a denied reply needs a reject_stat")
        _REJECT_STAT.pack(reply.reject_stat, out)
        if reply.reject_stat == RejectStat.RPC_MISMATCH:
            _pack_mismatch(reply.mismatch, out)
        else:
            if reply.auth_stat is None:
                raise XDRError("an AUTH_ERROR reply needs an auth_stat")
            _AUTH_STAT.pack(reply.auth_stat, out)
    return bytes(out)


def decode_reply(data: Buffer) -> Reply:
    """Parse a REPLY message; a SUCCESS reply's result bytes are left in ``results``.

    Raises:
        XDRError: the message is truncated, not a REPLY, or has undeclared statuses.
    """
    xid, offset = UINT.decode(data, 0)
    mtype, offset = UINT.decode(data, offset)
    if mtype != MsgType.REPLY:
        raise XDRError(f"message type {mtype} is not REPLY", 4)
    stat, offset = _REPLY_STAT.decode(data, offset)
    if stat == ReplyStat.MSG_ACCEPTED:
        verf, offset = _decode_auth(data, offset)
        accept_stat, offset = _ACCEPT_STAT.decode(data, offset)
        if accept_stat == AcceptStat.SUCCESS:
            return Reply(xid, stat, accept_stat, verf=verf, results=bytes(data[offset:]))
        mismatch = None
        if accept_stat == AcceptStat.PROG_MISMATCH:
            mismatch, offset = _decode_mismatch(data, offset)
        _expect_end(data, offset)
        return Reply(xid, stat, accept_stat, mismatch=mismatch, verf=verf)
    reject_stat, offset = _REJECT_STAT.decode(data, offset)
    if reject_stat == RejectStat.RPC_MISMATCH:
        mismatch, offset = _decode_mismatch(data, offset)
        _expect_end(data, offset)
        return Reply(xid, stat, reject_stat=reject_stat, mismatch=mismatch)
    auth_stat, offset = _AUTH_STAT.decode(data, offset)
    _expect_end(data, offset)
    return Reply(xid, stat, reject_stat=reject_stat, auth_stat=auth_stat)


def _decode_mismatch(data: Buffer, offset: int) -> tuple[tuple[int, int], int]:
    low, offset = UINT.decode(data, offset)
    high, offset = UINT.decode(data, offset)
    return (low, high), offset


def _expect_end(data: Buffer, offset: int) -> None:
    if offset != len(data):
        raise XDRError(f"{len(data) - offset} trailing bytes after the reply", offset)
