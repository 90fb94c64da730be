"""A synchronous ONC RPC client over TCP (record marking) or UDP (retransmission).

Theory of operation
-------------------
:class:`RPCClient` talks to one program version at one address with plain blocking sockets;
it is for users, scripts and tests, not for the reactor. Each call gets a fresh xid (a random
start, then counting up), and only a reply with that xid answers it -- late replies to earlier,
timed-out calls are read and thrown away.

* **TCP**: the call is sent as one record; replies are read record by record (each record
  bounded by ``max_record_size``) until the matching xid arrives or ``timeout`` expires. After
  a timeout the stream may hold half a record, so the connection is closed and reopened on the
  next call.
* **UDP**: the call is sent, then re-sent whenever ``retransmit`` seconds pass without the
  reply, the wait doubling each time (exponential back-off, capped at ``max_retransmit``),
  until ``timeout`` expires overall. A server may therefore see the same call more than once:
  that is what its duplicate-request cache is for.

Every reply status that is not SUCCESS raises its own subclass of :class:`RPCReplyError`
(:class:`ProgramMismatchError` carries ``low`` and ``high``, :class:`RPCAuthError` its
``auth_stat``, ...); a malformed reply raises :class:`RPCProtocolError`; a timeout raises
:class:`RPCTimeoutError`. A client is not thread-safe: use one per thread.
"""

from __future__ import annotations

import itertools
import random
import socket
import struct
import time
from types import TracebackType
from typing import Any, Literal, TypeVar

from muxserver.rpc.message import (
    AUTH_NONE_NULL,
    AcceptStat,
    AuthStat,
    MsgType,
    OpaqueAuth,
    RejectStat,
    Reply,
    ReplyStat,
    decode_reply,
    encode_call,
)
from muxserver.rpc.program import Procedure, Program
from muxserver.rpc.record import DEFAULT_MAX_RECORD_SIZE, frame_record
from muxserver.rpc.xdr import VOID, XDRError, XDRType

__all__ = [
    "GarbageArgumentsError",
    "ProcedureUnavailableError",
    "ProgramMismatchError",
    "ProgramUnavailableError",
    "RPCAuthError",
    "RPCClient",
    "RPCError",
    "RPCProtocolError",
    "RPCReplyError",
    "RPCTimeoutError",
    "RPCVersionMismatchError",
    "RemoteSystemError",
    "raise_for_reply",
]

A = TypeVar("A")
R = TypeVar("R")

_MAX_DATAGRAM = 65535
_HEADER = struct.Struct(">I")


class RPCError(Exception):
    """Base class of every error the client raises."""


class RPCTimeoutError(RPCError, TimeoutError):
    """No matching reply arrived within the timeout."""


class RPCProtocolError(RPCError):
    """The server's reply could not be parsed (or its results did not decode)."""


class RPCReplyError(RPCError):
    """The server answered with a status other than SUCCESS; ``reply`` is the parsed reply."""

    def __init__(self, message: str, reply: Reply) -> None:
        super().__init__(message)
        self.reply = reply


class ProgramUnavailableError(RPCReplyError):
    """PROG_UNAVAIL: the server does not export the program."""


class ProgramMismatchError(RPCReplyError):
    """PROG_MISMATCH: the version is not served; ``low``..``high`` are."""

    def __init__(self, message: str, reply: Reply, low: int, high: int) -> None:
        super().__init__(message, reply)
        self.low = low
        self.high = high


class ProcedureUnavailableError(RPCReplyError):
    """PROC_UNAVAIL: the program has no such procedure (or does not implement it)."""


class GarbageArgumentsError(RPCReplyError):
    """GARBAGE_ARGS: the server could not decode the arguments."""


class RemoteSystemError(RPCReplyError):
    """SYSTEM_ERR: the server failed while running the procedure."""


class RPCVersionMismatchError(RPCReplyError):
    """Denied, RPC_MISMATCH: the server speaks RPC versions ``low``..``high`` only."""

    def __init__(self, message: str, reply: Reply, low: int, high: int) -> None:
        super().__init__(message, reply)
        self.low = low
        self.high = high


class RPCAuthError(RPCReplyError):
    """Denied, AUTH_ERROR: the credentials were refused; ``auth_stat`` says why."""

    def __init__(self, message: str, reply: Reply, auth_stat: AuthStat) -> None:
        super().__init__(message, reply)
        self.auth_stat = auth_stat


_ACCEPT_ERRORS: dict[AcceptStat, type[RPCReplyError]] = {
    AcceptStat.PROG_UNAVAIL: ProgramUnavailableError,
    AcceptStat.PROC_UNAVAIL: ProcedureUnavailableError,
    AcceptStat.GARBAGE_ARGS: GarbageArgumentsError,
    AcceptStat.SYSTEM_ERR: RemoteSystemError,
}


def raise_for_reply(reply: Reply) -> bytes:
    """Return a SUCCESS reply's result bytes; raise the matching error for any other status.

    Raises:
        RPCReplyError: a subclass naming the status (see the module docstring).
    """
    if reply.stat == ReplyStat.MSG_ACCEPTED:
        status = reply.accept_stat
        if status == AcceptStat.SUCCESS:
            return reply.results
        if status == AcceptStat.PROG_MISMATCH and reply.mismatch is not None:
            low, high = reply.mismatch
            raise ProgramMismatchError(
                f"program version not supported; server has {low}..{high}", reply, low, high
            )
        error = _ACCEPT_ERRORS.get(status) if status is not None else None
        if error is None or status is None:
            raise RPCProtocolError(f"accepted reply with impossible status {status!r}")
        raise error(f"call failed: {status.name}", reply)
    if reply.reject_stat == RejectStat.RPC_MISMATCH and reply.mismatch is not None:
        low, high = reply.mismatch
        raise RPCVersionMismatchError(
            f"RPC version not supported; server speaks {low}..{high}", reply, low, high
        )
    auth_stat = reply.auth_stat if reply.auth_stat is not None else AuthStat.AUTH_FAILED
    raise RPCAuthError(f"call denied: {auth_stat.name}", reply, auth_stat)


class RPCClient:
    """A blocking client for one program version at ``(host, port)``.

    Args:
        host, port: the server's address.
        prog, vers: the program number and version every call goes to.
        transport: ``"tcp"`` or ``"udp"``.
        timeout: seconds a call may take in total before :class:`RPCTimeoutError`.
        retransmit: UDP only: seconds before the first retransmission (doubling after).
        max_retransmit: UDP only: the back-off's cap, in seconds.
        cred, verf: the credential and verifier sent with every call (AUTH_NONE by default;
            see :func:`~muxserver.rpc.message.encode_auth_sys`).
        max_record_size: TCP only: the largest reply record accepted.
    """

    def __init__(
        self,
        host: str,
        port: int,
        prog: int,
        vers: int,
        *,
        transport: Literal["tcp", "udp"] = "tcp",
        timeout: float = 5.0,
        retransmit: float = 0.5,
        max_retransmit: float = 4.0,
        cred: OpaqueAuth = AUTH_NONE_NULL,
        verf: OpaqueAuth = AUTH_NONE_NULL,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
    ) -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', not {transport!r}")
        if timeout <= 0 or retransmit <= 0:
            raise ValueError("timeout and retransmit must be positive numbers of seconds")
        self.address = (host, port)
        self.prog = prog
        self.vers = vers
        self.transport = transport
        self.timeout = timeout
        self.retransmit = retransmit
        self.max_retransmit = max_retransmit
        self.cred = cred
        self.verf = verf
        self.max_record_size = max_record_size
        self._xids = itertools.count(random.getrandbits(32))
        self._sock: socket.socket | None = None

    @classmethod
    def for_program(
        cls, host: str, port: int, program: Program, vers: int, **options: Any
    ) -> RPCClient:
        """A client for ``vers`` of a :class:`Program` definition (checked to exist)."""
        program.version(vers)
        return cls(host, port, program.number, vers, **options)

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (a later call opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def null(self) -> None:
        """Call procedure 0 (NULL): a ping that checks the program and version are served."""
        self.call(0, VOID, None, VOID)

    def call_procedure(self, procedure: Procedure, args: Any = None) -> Any:
        """Call a procedure of a program definition, with its argument and result types."""
        return self.call(procedure.number, procedure.arg_type, args, procedure.result_type)

    def call(self, proc: int, arg_type: XDRType[A], args: A, result_type: XDRType[R]) -> R:
        """Call procedure ``proc`` and return its decoded result.

        Raises:
            XDRError: ``args`` does not fit ``arg_type`` (nothing was sent).
            RPCReplyError: the server answered with a non-SUCCESS status (a subclass each).
            RPCProtocolError: the reply or its results could not be decoded.
            RPCTimeoutError: no reply within ``timeout``.
            OSError: the connection failed.
        """
        xid = next(self._xids) & 0xFFFFFFFF
        message = encode_call(
            xid,
            self.prog,
            self.vers,
            proc,
            arg_type.encode(args),
            cred=self.cred,
            verf=self.verf,
        )
        deadline = time.monotonic() + self.timeout
        if self.transport == "tcp":
            raw = self._exchange_tcp(xid, message, deadline)
        else:
            raw = self._exchange_udp(xid, message, deadline)
        try:
            reply = decode_reply(raw)
        except XDRError as exc:
            raise RPCProtocolError(f"malformed reply: {exc}") from exc
        results = raise_for_reply(reply)
        try:
            return result_type.decode_all(results)
        except XDRError as exc:
            raise RPCProtocolError(f"results of procedure {proc} do not decode: {exc}") from exc

    # -- TCP ------------------------------------------------------------------------------

    def _exchange_tcp(self, xid: int, message: bytes, deadline: float) -> bytes:
        try:
            if self._sock is None:
                self._sock = socket.create_connection(self.address, timeout=self.timeout)
            sock = self._sock
            sock.settimeout(_remaining(deadline))
            sock.sendall(frame_record(message))
            while True:
                record = self._read_record(sock, deadline)
                if _reply_xid(record) == xid:
                    return record
        except TimeoutError:
            self.close()  # the stream may now hold half a record: start afresh next time
            raise RPCTimeoutError(f"no reply from {self.address} within {self.timeout}s") from None
        except (OSError, RPCError):
            self.close()
            raise

    def _read_record(self, sock: socket.socket, deadline: float) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            (header,) = _HEADER.unpack(self._read_exactly(sock, 4, deadline))
            length = header & 0x7FFF_FFFF
            size += length
            if size > self.max_record_size:
                raise RPCProtocolError(
                    f"reply record exceeds max_record_size ({self.max_record_size})"
                )
            parts.append(self._read_exactly(sock, length, deadline))
            if header & 0x8000_0000:
                return b"".join(parts)

    @staticmethod
    def _read_exactly(sock: socket.socket, count: int, deadline: float) -> bytes:
        buffer = bytearray()
        while len(buffer) < count:
            sock.settimeout(_remaining(deadline))
            chunk = sock.recv(min(count - len(buffer), 1 << 16))
            if not chunk:
                raise RPCProtocolError("server closed the connection before replying")
            buffer += chunk
        return bytes(buffer)

    # -- UDP ------------------------------------------------------------------------------

    def _exchange_udp(self, xid: int, message: bytes, deadline: float) -> bytes:
        if self._sock is None:
            self._sock = socket.socket(_family(self.address[0]), socket.SOCK_DGRAM)
            self._sock.connect(self.address)
        sock = self._sock
        wait = self.retransmit
        while True:
            sock.send(message)
            resend_at = min(time.monotonic() + wait, deadline)
            while True:
                left = resend_at - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                try:
                    datagram = sock.recv(_MAX_DATAGRAM)
                except TimeoutError:
                    break
                except ConnectionRefusedError:
                    # An ICMP "port unreachable" from an earlier send: keep waiting, the
                    # server may come up before the deadline.
                    continue
                if _reply_xid(datagram) == xid:
                    return datagram
            if time.monotonic() >= deadline:
                raise RPCTimeoutError(f"no reply from {self.address} within {self.timeout}s")
            wait = min(wait * 2, self.max_retransmit)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _reply_xid(message: bytes) -> int | None:
    """The xid of something that starts like a REPLY (anything else is ignored)."""
    if len(message) < 8:
        return None
    xid, mtype = struct.unpack_from(">II", message)
    return int(xid) if mtype == MsgType.REPLY else None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
