"""RPC programs and the service that runs them: call bytes in, reply bytes out.

Theory of operation
-------------------
A program is *defined* once, as data shared by servers and clients::

    KV = Program(0x20000001, "KV_PROG", [
        Version(1, "KV_VERS", [
            Procedure(1, "KV_PUT", PUT_ARGS, VOID, idempotent=False),
            Procedure(2, "KV_GET", KEY, Optional(VALUE)),
        ]),
    ])

Every :class:`Version` has procedure 0, NULL (void -> void), whether listed or not. A server
then *implements* it by registering Python callables on an :class:`RPCService`::

    service = RPCService()
    service.register(KV, 1, {"KV_PUT": store.put, "KV_GET": store.get})

An implementation is called as ``implementation(args, context)`` with the decoded arguments
and a :class:`CallContext` (xid, credentials, decoded AUTH_SYS parameters, the ``Peer``); it
returns the value to encode as the result. A procedure defined but not registered answers
PROC_UNAVAIL; NULL is always answered.

:meth:`RPCService.handle_message` turns one call message into one reply message, checking in
the order a real server does (each failure yields the reply shown)::

    not a readable call header            -> None (drop: nobody to answer)
    rpcvers != 2                          -> MSG_DENIED  RPC_MISMATCH(2, 2)
    malformed credentials, unknown flavor -> MSG_DENIED  AUTH_ERROR(AUTH_BADCRED)
    program not registered                -> PROG_UNAVAIL
    version not registered                -> PROG_MISMATCH(lowest, highest registered)
    procedure unknown or unimplemented    -> PROC_UNAVAIL
    authenticate hook returns an AuthStat -> MSG_DENIED  AUTH_ERROR(that status)
    arguments do not decode exactly       -> GARBAGE_ARGS
    implementation raises / bad result    -> SYSTEM_ERR (logged with the call and the peer)
    otherwise                             -> SUCCESS with the encoded result

The optional :class:`DuplicateRequestCache` replays the saved reply when a client retransmits
a non-idempotent call (over UDP a lost *reply* makes the client resend a call that already
ran: without the cache, "append" would append twice). A retransmission that arrives while the
original is still running is dropped; the client will retry and then hit the saved reply.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from muxserver.handlers.base import Request
from muxserver.rpc.message import (
    RPC_VERSION,
    AcceptStat,
    AuthFlavor,
    AuthStat,
    AuthSys,
    CallHeader,
    OpaqueAuth,
    Reply,
    decode_auth_sys,
    decode_call,
    encode_reply,
    peek_xid,
)
from muxserver.rpc.xdr import VOID, Buffer, XDRError, XDRType
from muxserver.service import Peer, Service

__all__ = [
    "NULL_PROCEDURE",
    "Authenticator",
    "CacheStatus",
    "CallContext",
    "DuplicateRequestCache",
    "Implementation",
    "Procedure",
    "Program",
    "RPCService",
    "Version",
]

logger = logging.getLogger("muxserver.rpc")

_CALL_HEADER_SIZE = 24  # xid, msg_type, rpcvers, prog, vers, proc: the part we must read


@dataclasses.dataclass(frozen=True)
class Procedure:
    """One remote procedure: its number, name, and argument and result XDR types.

    ``idempotent=False`` marks calls whose replies the duplicate-request cache keeps.
    """

    number: int
    name: str
    arg_type: XDRType[Any] = VOID
    result_type: XDRType[Any] = VOID
    idempotent: bool = True


NULL_PROCEDURE = Procedure(0, "NULL")
"""Procedure 0 of every version: no arguments, no results; used to ping a server."""


class Version:
    """One version of a program: its procedures by number, NULL (0) included."""

    def __init__(self, number: int, name: str, procedures: Iterable[Procedure]) -> None:
        self.number = number
        self.name = name
        self.procedures: dict[int, Procedure] = {0: NULL_PROCEDURE}
        for procedure in procedures:
            if procedure.number == 0 and (procedure.arg_type, procedure.result_type) != (
                VOID,
                VOID,
            ):
                raise ValueError(f"{name}: procedure 0 must be NULL (void -> void)")
            self.procedures[procedure.number] = procedure
        names = [p.name for p in self.procedures.values()]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: procedure names must be unique, got {names}")

    def procedure(self, key: int | str) -> Procedure:
        """Return the procedure with this number or name.

        Raises:
            KeyError: no such procedure in this version.
        """
        if isinstance(key, int):
            return self.procedures[key]
        for procedure in self.procedures.values():
            if procedure.name == key:
                return procedure
        raise KeyError(f"{self.name} has no procedure named {key!r}")

    def __repr__(self) -> str:
        return f"Version({self.number}, {self.name!r}, {len(self.procedures)} procedures)"


class Program:
    """A program definition: its number, name and versions (shared by servers and clients)."""

    def __init__(self, number: int, name: str, versions: Iterable[Version]) -> None:
        self.number = number
        self.name = name
        self.versions: dict[int, Version] = {v.number: v for v in versions}
        if not self.versions:
            raise ValueError(f"{name}: a program needs at least one version")

    def version(self, number: int) -> Version:
        """Return version ``number``.

        Raises:
            KeyError: the program has no such version.
        """
        return self.versions[number]

    def __repr__(self) -> str:
        return f"Program({self.number:#x}, {self.name!r}, versions={sorted(self.versions)})"


@dataclasses.dataclass(frozen=True)
class CallContext:
    """What an implementation (and the authenticate hook) knows about the call."""

    xid: int
    prog: int
    vers: int
    procedure: Procedure
    cred: OpaqueAuth
    """The raw credential (flavor and body)."""
    verf: OpaqueAuth
    auth_sys: AuthSys | None
    """The decoded AUTH_SYS parameters, or ``None`` for AUTH_NONE."""
    peer: Peer


Implementation = Callable[[Any, CallContext], Any]
"""``implementation(args, context) -> result``."""

Authenticator = Callable[[CallContext], AuthStat | None]
"""Called before the arguments are decoded; return ``None`` (or AUTH_OK) to accept the call,
or the :class:`AuthStat` to reject it with (AUTH_TOOWEAK, AUTH_BADCRED, ...)."""


class CacheStatus(enum.Enum):
    """What :meth:`DuplicateRequestCache.begin` found for a call."""

    NEW = "new"
    """Not seen before: run it, then call ``finish``."""
    IN_PROGRESS = "in progress"
    """The original is still running: drop the retransmission."""
    DONE = "done"
    """Answered before: replay the saved reply."""


class DuplicateRequestCache:
    """A bounded LRU of replies to non-idempotent calls, keyed by (xid, client, prog, vers,
    proc). Thread-safe: services may run on a thread pool.

    When full, the least recently used entry is forgotten (``max_entries`` bounds memory).
    In a process-pool strategy each worker has its own cache; use it with inline or thread
    dispatch to be effective.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[Hashable, bytes | None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def begin(self, key: Hashable) -> tuple[CacheStatus, bytes | None]:
        """Look ``key`` up; if new, record it as in progress. Returns the status and the
        saved reply (for DONE; ``None`` otherwise)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                reply = self._entries[key]
                return (
                    (CacheStatus.IN_PROGRESS, None)
                    if reply is None
                    else (
                        CacheStatus.DONE,
                        reply,
                    )
                )
            self._entries[key] = None
            self._evict()
            return CacheStatus.NEW, None

    def finish(self, key: Hashable, reply: bytes | None) -> None:
        """Save the reply to a call begun with :meth:`begin` (``None``: forget the call)."""
        with self._lock:
            if reply is None:
                self._entries.pop(key, None)
                return
            self._entries[key] = reply
            self._entries.move_to_end(key)
            self._evict()

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _null(args: None, context: CallContext) -> None:
    return None


class RPCService(Service):
    """Serve registered programs: ``handle`` takes an :class:`~muxserver.rpc.record.RPCRecord`
    (or any request with a ``data`` bytes attribute) and returns reply bytes or ``None``.

    ``authenticate`` is the credentials hook (see :data:`Authenticator`); ``duplicate_cache``
    enables replaying replies to retransmitted non-idempotent calls.
    """

    def __init__(
        self,
        *,
        authenticate: Authenticator | None = None,
        duplicate_cache: DuplicateRequestCache | None = None,
    ) -> None:
        self.authenticate = authenticate
        self.duplicate_cache = duplicate_cache
        # (prog, vers) -> (definition, implementations by procedure number)
        self._versions: dict[tuple[int, int], tuple[Version, dict[int, Implementation]]] = {}
        self._programs: dict[int, list[int]] = {}

    def register(
        self,
        program: Program,
        version: int,
        implementations: Mapping[Any, Implementation],
    ) -> None:
        """Serve ``version`` of ``program`` with ``implementations`` keyed by procedure
        number (``int``) or name (``str``). NULL needs no implementation.

        Raises:
            KeyError: the version or a procedure name/number is not in the definition.
            ValueError: this version of the program is already registered.
        """
        definition = program.version(version)
        if (program.number, version) in self._versions:
            raise ValueError(f"{program.name} version {version} is already registered")
        table: dict[int, Implementation] = {0: _null}
        for key, implementation in implementations.items():
            table[definition.procedure(key).number] = implementation
        self._versions[program.number, version] = (definition, table)
        self._programs.setdefault(program.number, []).append(version)
        self._programs[program.number].sort()

    @property
    def served(self) -> list[tuple[int, int]]:
        """Every registered ``(program number, version)``, sorted (what rpcbind is told)."""
        return sorted(self._versions)

    def handle(self, request: Request, peer: Peer) -> bytes | None:
        """Answer one call (the request's ``data``); ``None`` means send nothing.

        Raises:
            TypeError: the request carries no ``data`` bytes (a wiring bug).
        """
        data = getattr(request, "data", None)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"RPCService needs a request with a data bytes attribute (an RPCRecord), "
                f"not {type(request).__name__}"
            )
        return self.handle_message(data, peer)

    def handle_message(self, data: Buffer, peer: Peer) -> bytes | None:
        """Answer one call message: reply bytes, or ``None`` to drop it (see module docs)."""
        xid = peek_xid(data)
        if xid is None or len(data) < 12:
            return None  # not a call we can even address a reply to
        if int.from_bytes(bytes(data[8:12]), "big") != RPC_VERSION:
            return encode_reply(Reply.rpc_mismatch(xid, RPC_VERSION, RPC_VERSION))
        if len(data) < _CALL_HEADER_SIZE:
            return None
        try:
            header = decode_call(data)
        except XDRError:
            # Only the credential or verifier can be malformed past the fixed header.
            return encode_reply(Reply.auth_error(xid, AuthStat.AUTH_BADCRED))
        return self._dispatch(header, data, peer)

    def _credentials(self, header: CallHeader) -> AuthSys | None:
        """Decode the credential; raise XDRError when it is one we cannot accept."""
        if header.cred.flavor == AuthFlavor.AUTH_NONE:
            return None
        if header.cred.flavor == AuthFlavor.AUTH_SYS:
            return decode_auth_sys(header.cred)
        raise XDRError(f"unsupported credential flavor {header.cred.flavor}")

    def _dispatch(self, header: CallHeader, data: Buffer, peer: Peer) -> bytes | None:
        xid = header.xid
        try:
            auth_sys = self._credentials(header)
        except XDRError:
            return encode_reply(Reply.auth_error(xid, AuthStat.AUTH_BADCRED))
        versions = self._programs.get(header.prog)
        if versions is None:
            return encode_reply(Reply.accepted(xid, AcceptStat.PROG_UNAVAIL))
        entry = self._versions.get((header.prog, header.vers))
        if entry is None:
            mismatch = (versions[0], versions[-1])
            return encode_reply(Reply.accepted(xid, AcceptStat.PROG_MISMATCH, mismatch=mismatch))
        definition, table = entry
        procedure = definition.procedures.get(header.proc)
        implementation = table.get(header.proc)
        if procedure is None or implementation is None:
            return encode_reply(Reply.accepted(xid, AcceptStat.PROC_UNAVAIL))
        context = CallContext(
            xid, header.prog, header.vers, procedure, header.cred, header.verf, auth_sys, peer
        )
        if self.authenticate is not None:
            try:
                verdict = self.authenticate(context)
            except Exception:
                logger.exception("RPC authenticate hook failed for xid %#x from %r", xid, peer)
                return encode_reply(Reply.accepted(xid, AcceptStat.SYSTEM_ERR))
            if verdict is not None and verdict != AuthStat.AUTH_OK:
                return encode_reply(Reply.auth_error(xid, AuthStat(verdict)))
        cache = self.duplicate_cache if not procedure.idempotent else None
        if cache is None:
            return self._run(procedure, implementation, data, header.args_offset, context)
        key = (xid, peer.client_address, header.prog, header.vers, header.proc)
        status, saved = cache.begin(key)
        if status is not CacheStatus.NEW:
            return saved  # DONE: replay; IN_PROGRESS: drop, the client will retry
        reply = None
        try:
            reply = self._run(procedure, implementation, data, header.args_offset, context)
        finally:
            cache.finish(key, reply)
        return reply

    def _run(
        self,
        procedure: Procedure,
        implementation: Implementation,
        data: Buffer,
        args_offset: int,
        context: CallContext,
    ) -> bytes:
        """Decode the arguments, run the implementation, encode its result."""
        xid = context.xid
        try:
            args, end = procedure.arg_type.decode(data, args_offset)
            if end != len(data):
                raise XDRError(f"{len(data) - end} trailing bytes after the arguments", end)
        except XDRError as exc:
            logger.debug("garbage arguments for %s from %r: %s", procedure.name, context.peer, exc)
            return encode_reply(Reply.accepted(xid, AcceptStat.GARBAGE_ARGS))
        try:
            result = implementation(args, context)
            results = procedure.result_type.encode(result)
        except Exception:
            # Isolation: the caller gets SYSTEM_ERR, the log gets the traceback and context.
            logger.exception(
                "RPC implementation failed: prog %#x vers %d proc %s xid %#x from %r",
                context.prog,
                context.vers,
                procedure.name,
                xid,
                context.peer,
            )
            return encode_reply(Reply.accepted(xid, AcceptStat.SYSTEM_ERR))
        return encode_reply(Reply.accepted(xid, AcceptStat.SUCCESS, results))
