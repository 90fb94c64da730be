"""Portmapper client, against an in-test portmapper built from RPCService (never port 111)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from muxserver.rpc.program import CallContext, RPCService
from muxserver.rpc.rpcbind import PMAP_PROGRAM, Mapping, PortmapperClient, Protocol

from .servers import ThreadedRPCServer


class FakePortmapper:
    """The portmapper's rules, in memory: SET refuses a taken (prog, vers, prot)."""

    def __init__(self) -> None:
        self.table: dict[tuple[int, int, int], int] = {}

    def set(self, m: Mapping, context: CallContext) -> bool:
        return self.table.setdefault((m.prog, m.vers, m.prot), m.port) == m.port

    def unset(self, m: Mapping, context: CallContext) -> bool:
        keys = [k for k in self.table if k[:2] == (m.prog, m.vers)]
        for key in keys:
            del self.table[key]
        return bool(keys)

    def getport(self, m: Mapping, context: CallContext) -> int:
        return self.table.get((m.prog, m.vers, m.prot), 0)

    def dump(self, args: None, context: CallContext) -> list[Mapping]:
        return [Mapping(*key, port) for key, port in sorted(self.table.items())]


@pytest.fixture(params=["udp", "tcp"])
def portmapper(request: pytest.FixtureRequest) -> Iterator[PortmapperClient]:
    fake = FakePortmapper()
    service = RPCService()
    service.register(
        PMAP_PROGRAM,
        2,
        {
            "PMAPPROC_SET": fake.set,
            "PMAPPROC_UNSET": fake.unset,
            "PMAPPROC_GETPORT": fake.getport,
            "PMAPPROC_DUMP": fake.dump,
        },
    )
    transport = request.param
    with (
        ThreadedRPCServer(service, transport) as server,
        PortmapperClient(port=server.port, transport=transport, timeout=2) as client,
    ):
        yield client


def test_set_getport_dump_unset(portmapper: PortmapperClient) -> None:
    assert portmapper.dump() == []
    assert portmapper.set(0x20000001, 1, Protocol.TCP, 4000)
    assert portmapper.set(0x20000001, 1, Protocol.UDP, 4001)
    assert not portmapper.set(0x20000001, 1, Protocol.TCP, 4002)  # taken
    assert portmapper.getport(0x20000001, 1, Protocol.UDP) == 4001
    assert portmapper.getport(0x20000001, 2, Protocol.UDP) == 0
    assert portmapper.dump() == [
        Mapping(0x20000001, 1, Protocol.TCP, 4000),
        Mapping(0x20000001, 1, Protocol.UDP, 4001),
    ]
    assert portmapper.unset(0x20000001, 1)
    assert not portmapper.unset(0x20000001, 1)
    assert portmapper.dump() == []
