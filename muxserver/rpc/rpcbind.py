"""Portmapper (rpcbind) version 2 client: register, unregister and look up RPC services.

Theory of operation
-------------------
An RPC server listens on any port and tells the local portmapper (program 100000, port 111)
which (program, version, protocol) it serves there; clients ask the portmapper for the port.
This module holds the protocol's definition (:data:`PMAP_PROGRAM`, RFC 1833 section 3) and
:class:`PortmapperClient`, a thin wrapper over :class:`~muxserver.rpc.client.RPCClient`, with
the four calls a server needs: SET, UNSET, GETPORT and DUMP. Registration is normally allowed
only from the local host (and, for rpcbind, often only as root or for ports it can verify),
so a False from :meth:`PortmapperClient.set` usually means "already registered" or "not
permitted" -- unset first, or check the rpcbind configuration.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal

from muxserver.rpc.client import RPCClient
from muxserver.rpc.program import Procedure, Program, Version
from muxserver.rpc.xdr import BOOL, UINT, VOID, LinkedList, Struct

__all__ = [
    "PMAP_PORT",
    "PMAP_PROGRAM",
    "Mapping",
    "PortmapperClient",
    "Protocol",
]

PMAP_PORT = 111
"""The portmapper's well-known port, on TCP and UDP."""


class Protocol(enum.IntEnum):
    """The ``prot`` field of a mapping: the IP protocol number."""

    TCP = 6
    UDP = 17


@dataclasses.dataclass(frozen=True)
class Mapping:
    """One portmapper entry: (program, version, protocol) is served on ``port``."""

    prog: int
    vers: int
    prot: int
    port: int


MAPPING = Struct(Mapping, [("prog", UINT), ("vers", UINT), ("prot", UINT), ("port", UINT)])
"""XDR ``struct mapping``."""

PMAPLIST = LinkedList(MAPPING)
"""XDR ``pmaplist *``: the linked list PMAPPROC_DUMP returns."""

PMAPPROC_SET = Procedure(1, "PMAPPROC_SET", MAPPING, BOOL, idempotent=False)
PMAPPROC_UNSET = Procedure(2, "PMAPPROC_UNSET", MAPPING, BOOL, idempotent=False)
PMAPPROC_GETPORT = Procedure(3, "PMAPPROC_GETPORT", MAPPING, UINT)
PMAPPROC_DUMP = Procedure(4, "PMAPPROC_DUMP", VOID, PMAPLIST)

PMAP_PROGRAM = Program(
    100000,
    "PMAP_PROG",
    [Version(2, "PMAP_VERS", [PMAPPROC_SET, PMAPPROC_UNSET, PMAPPROC_GETPORT, PMAPPROC_DUMP])],
)
"""The portmapper program, version 2 (CALLIT, procedure 5, is deliberately left out)."""


class PortmapperClient:
    """Talk to the portmapper at ``host:port`` (by default the local one, over UDP).

    ``options`` are passed to :class:`RPCClient` (``timeout``, ``retransmit``, ...). Methods
    raise what :meth:`RPCClient.call` raises.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = PMAP_PORT,
        *,
        transport: Literal["tcp", "udp"] = "udp",
        **options: Any,
    ) -> None:
        self.client = RPCClient.for_program(
            host, port, PMAP_PROGRAM, 2, transport=transport, **options
        )

    def __enter__(self) -> PortmapperClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying client."""
        self.client.close()

    def set(self, prog: int, vers: int, prot: Protocol, port: int) -> bool:
        """PMAPPROC_SET: register ``port`` for (prog, vers, prot); False if refused."""
        result: bool = self.client.call_procedure(
            PMAPPROC_SET, Mapping(prog, vers, int(prot), port)
        )
        return result

    def unset(self, prog: int, vers: int) -> bool:
        """PMAPPROC_UNSET: remove every protocol's registration of (prog, vers)."""
        result: bool = self.client.call_procedure(PMAPPROC_UNSET, Mapping(prog, vers, 0, 0))
        return result

    def getport(self, prog: int, vers: int, prot: Protocol) -> int:
        """PMAPPROC_GETPORT: the port serving (prog, vers, prot), or 0 if none is."""
        result: int = self.client.call_procedure(
            PMAPPROC_GETPORT, Mapping(prog, vers, int(prot), 0)
        )
        return result

    def dump(self) -> list[Mapping]:
        """PMAPPROC_DUMP: every registration the portmapper holds."""
        result: list[Mapping] = self.client.call_procedure(PMAPPROC_DUMP)
        return result
