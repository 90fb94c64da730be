"""RPCServer: one RPCService on the reactor over TCP and UDP, through every dispatch strategy.

The reactor runs on a background thread (``ReactorThread``); clients are the package's own
blocking :class:`RPCClient` or raw sockets. Registration is checked against an in-test
portmapper (never port 111 here; tests/rpc/test_rpcinfo.py uses the real rpcbind).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from muxserver.reactor.dispatch import DispatchStrategy, InlineStrategy
from muxserver.reactor.limits import Limits
from muxserver.rpc.client import (
    ProcedureUnavailableError,
    ProgramMismatchError,
    RPCClient,
)
from muxserver.rpc.demo import DEMO_PROGRAM, Figure, PutArgs, Rect, ShapeKind
from muxserver.rpc.message import encode_call
from muxserver.rpc.program import (
    CallContext,
    DuplicateRequestCache,
    Procedure,
    Program,
    RPCService,
    Version,
)
from muxserver.rpc.record import frame_record
from muxserver.rpc.rpcbind import PMAP_PROGRAM, Mapping
from muxserver.rpc.server import RegistrationError, RPCServer, bind_tcp_and_udp
from muxserver.rpc.xdr import INT, UINT, String, Struct, UnionValue
from muxserver.services.rpc_demo import start_rpc_demo
from muxserver.testing.live import ReactorThread

from .servers import ThreadedRPCServer
from .test_rpcbind import FakePortmapper

# -- a small stateless program, so that it can run in a worker process too -------------------


@dataclasses.dataclass(frozen=True)
class Pair:
    """Two integers to add."""

    a: int
    b: int


PAIR = Struct(Pair, [("a", INT), ("b", INT)])
TEXT = String(1024)

ECHO = Procedure(1, "ECHO", TEXT, TEXT)
ADD = Procedure(2, "ADD", PAIR, INT)
WHERE = Procedure(3, "WHERE", UINT, TEXT)  # sleeps (milliseconds), says where it ran
COUNT = Procedure(4, "COUNT", TEXT, UINT, idempotent=False)
MISSING = Procedure(5, "MISSING")

CALC = Program(0x2000_0F00, "CALC", [Version(1, "CALC_V1", [ECHO, ADD, WHERE, COUNT, MISSING])])


def echo(text: str, context: CallContext) -> str:
    return text


def add(pair: Pair, context: CallContext) -> int:
    return pair.a + pair.b


def where(milliseconds: int, context: CallContext) -> str:
    time.sleep(milliseconds / 1000)
    return f"{os.getpid()} {threading.current_thread().name}"


class Counter:
    """COUNT: how many times a (non-idempotent) call really ran."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, label: str, context: CallContext) -> int:
        self.runs += 1
        return self.runs


def calc_service(duplicate_cache: DuplicateRequestCache | None = None) -> RPCService:
    service = RPCService(duplicate_cache=duplicate_cache)
    service.register(CALC, 1, {"ECHO": echo, "ADD": add, "WHERE": where, "COUNT": Counter()})
    return service


# -- strategies -------------------------------------------------------------------------------


def _strategy(module: str, name: str, **options: Any) -> Callable[[], DispatchStrategy]:
    """A factory for a strategy class that may not have landed yet (then: skip, saying so)."""

    def make() -> DispatchStrategy:
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            pytest.skip(f"{module}.{name} does not exist yet (dispatch strategy not landed)")
        strategy: DispatchStrategy = cls(**options)
        return strategy

    return make


STRATEGIES = {
    "inline": InlineStrategy,
    "thread-pool": _strategy("muxserver.reactor.dispatch.threads", "ThreadPoolStrategy", workers=2),
    "fork-per-request": _strategy(
        "muxserver.reactor.dispatch.fork", "ForkPerRequestStrategy", max_children=2
    ),
    "process-pool": _strategy(
        "muxserver.reactor.dispatch.prefork", "ProcessPoolStrategy", workers=2
    ),
}


def serve(live: ReactorThread, service: RPCService, **options: Any) -> RPCServer:
    """Start an RPCServer before the reactor thread runs (as registration requires)."""
    server = RPCServer(live.reactor, service, **options)
    live.start()
    return server


Transport = Literal["tcp", "udp"]


def client(server: RPCServer, transport: Transport) -> RPCClient:
    """A client of CALC version 1 on ``server``."""
    return RPCClient.for_program("127.0.0.1", server.port, CALC, 1, transport=transport)


# -- serving ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("strategy_name", list(STRATEGIES))
def test_a_client_calls_every_procedure_over_each_transport_and_strategy(
    live: ReactorThread, transport: Transport, strategy_name: str
) -> None:
    strategy = STRATEGIES[strategy_name]()
    server = serve(live, calc_service(), strategy=strategy)
    with client(server, transport) as calc:
        calc.null()
        assert calc.call_procedure(ECHO, "héllo") == "héllo"
        assert calc.call_procedure(ADD, Pair(40, 2)) == 42
        pid, thread_name = calc.call_procedure(WHERE, 0).split(" ", 1)
        with pytest.raises(ProcedureUnavailableError):
            calc.call_procedure(MISSING)
    if strategy_name == "inline":
        assert (int(pid), thread_name) == (os.getpid(), "muxserver-reactor")
    elif strategy_name == "thread-pool":
        assert int(pid) == os.getpid() and thread_name != "muxserver-reactor"
    else:
        assert int(pid) != os.getpid()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_an_unserved_version_is_answered_with_the_served_range(
    live: ReactorThread, transport: Transport
) -> None:
    server = serve(live, calc_service())
    wrong = RPCClient("127.0.0.1", server.port, CALC.number, 7, transport=transport)
    with wrong, pytest.raises(ProgramMismatchError) as caught:
        wrong.null()
    assert (caught.value.low, caught.value.high) == (1, 1)


def test_both_transports_share_one_port_number(live: ReactorThread) -> None:
    server = serve(live, calc_service())
    assert server.tcp_address == server.udp_address == ("127.0.0.1", server.port)
    assert server.stream.name == "rpc" and server.datagram.name == "rpc-udp"


def test_a_port_taken_for_udp_only_is_refused_with_its_address() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    with blocker, pytest.raises(OSError, match=f"127.0.0.1:{port}"):
        bind_tcp_and_udp("127.0.0.1", port)


def test_pipelined_tcp_calls_are_answered_in_order_even_when_they_finish_out_of_order(
    live: ReactorThread,
) -> None:
    strategy = STRATEGIES["thread-pool"]()
    server = serve(live, calc_service(), strategy=strategy)
    sleeps = [300, 150, 0]
    calls = b"".join(
        frame_record(encode_call(100 + i, CALC.number, 1, WHERE.number, UINT.encode(ms)))
        for i, ms in enumerate(sleeps)
    )
    with socket.create_connection(server.tcp_address, timeout=5) as sock:
        sock.sendall(calls)
        xids = [struct.unpack(">I", _read_record(sock)[:4])[0] for _ in sleeps]
    assert xids == [100, 101, 102]


def test_an_oversized_record_closes_the_connection_without_reply(live: ReactorThread) -> None:
    server = serve(live, calc_service(), limits=Limits(max_input=1024))
    with socket.create_connection(server.tcp_address, timeout=5) as sock:
        sock.sendall(struct.pack(">I", 0x8000_0000 | 4096) + b"x" * 64)
        assert sock.recv(100) == b""


def test_a_udp_retransmission_of_a_non_idempotent_call_is_answered_from_the_cache(
    live: ReactorThread,
) -> None:
    service = calc_service(DuplicateRequestCache())
    server = serve(live, service)
    call = encode_call(7, CALC.number, 1, COUNT.number, TEXT.encode("once"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(server.udp_address)
        replies = []
        for _ in range(2):
            sock.send(call)
            replies.append(sock.recv(65535))
    assert replies[0] == replies[1]
    assert UINT.decode_all(replies[0][-4:]) == 1  # the call ran once


def test_garbage_datagrams_get_no_reply_and_do_not_disturb_the_server(
    live: ReactorThread,
) -> None:
    server = serve(live, calc_service())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(b"\x00\x01", server.udp_address)
        with pytest.raises(TimeoutError):
            sock.recv(65535)
    with client(server, "udp") as calc:
        assert calc.call_procedure(ADD, Pair(1, 2)) == 3


def test_the_demo_service_stores_over_tcp_and_answers_over_udp(live: ReactorThread) -> None:
    lines = start_rpc_demo(live.reactor, "127.0.0.1", 0)
    live.start()
    port = int(lines[0].rsplit(":", 1)[1])
    assert lines == [f"rpc   tcp 127.0.0.1:{port}", f"rpc   udp 127.0.0.1:{port}"]
    with (
        RPCClient.for_program("127.0.0.1", port, DEMO_PROGRAM, 1, transport="tcp") as tcp,
        RPCClient.for_program("127.0.0.1", port, DEMO_PROGRAM, 1, transport="udp") as udp,
    ):
        version = DEMO_PROGRAM.version(1)
        tcp.call_procedure(version.procedure("DEMO_PUT"), PutArgs("colour", b"blue"))
        assert udp.call_procedure(version.procedure("DEMO_GET"), "colour") == b"blue"
        assert udp.call_procedure(version.procedure("DEMO_GET"), "size") is None
        assert udp.call_procedure(version.procedure("DEMO_LIST")) == ["colour"]
        box = Figure("box", UnionValue(ShapeKind.SHAPE_RECT, Rect(3, 4)))
        measured = tcp.call_procedure(version.procedure("DEMO_MEASURE"), box)
        assert measured.area == 12.0


# -- rpcbind registration (against an in-test portmapper) --------------------------------------


class RefusingPortmapper(FakePortmapper):
    """The in-memory portmapper, which can be told to refuse every SET."""

    refuse = False

    def set(self, m: Mapping, context: CallContext) -> bool:
        return not self.refuse and super().set(m, context)


@pytest.fixture
def portmapper() -> Iterator[tuple[RefusingPortmapper, int]]:
    fake = RefusingPortmapper()
    service = RPCService()
    service.register(
        PMAP_PROGRAM,
        2,
        {"PMAPPROC_SET": fake.set, "PMAPPROC_UNSET": fake.unset, "PMAPPROC_DUMP": fake.dump},
    )
    with ThreadedRPCServer(service, "tcp") as server:
        yield fake, server.port


def test_registration_at_start_and_unregistration_on_graceful_shutdown(
    portmapper: tuple[RefusingPortmapper, int],
) -> None:
    fake, pmap_port = portmapper
    fake.table[CALC.number, 1, 6] = 1  # a stale entry from an earlier run: replaced
    live = ReactorThread()
    try:
        server = RPCServer(live.reactor, calc_service(), register=True, rpcbind_port=pmap_port)
        assert server.registered == [(CALC.number, 1)]
        assert fake.dump(None, None) == [  # type: ignore[arg-type]
            Mapping(CALC.number, 1, 6, server.port),
            Mapping(CALC.number, 1, 17, server.port),
        ]
        live.start()
    finally:
        live.stop(grace=2.0)
    assert fake.table == {}
    assert server.registered == []
    assert not any(t.name == "muxserver-rpc-unregister" for t in threading.enumerate())


def test_close_unregisters_at_once(portmapper: tuple[RefusingPortmapper, int]) -> None:
    fake, pmap_port = portmapper
    live = ReactorThread()
    try:
        server = RPCServer(live.reactor, calc_service(), register=True, rpcbind_port=pmap_port)
        assert len(fake.table) == 2
        server.close()
        assert fake.table == {}
        with socket.socket() as probe:
            probe.bind(server.tcp_address)  # the listener is gone
    finally:
        live.stop()


def test_a_refused_registration_raises_and_releases_the_port(
    portmapper: tuple[RefusingPortmapper, int],
) -> None:
    fake, pmap_port = portmapper
    fake.refuse = True
    tcp, udp = bind_tcp_and_udp("127.0.0.1", 0)
    port = tcp.getsockname()[1]
    tcp.close()
    udp.close()
    live = ReactorThread()
    try:
        with pytest.raises(RegistrationError, match="refused to register program"):
            RPCServer(
                live.reactor, calc_service(), port=port, register=True, rpcbind_port=pmap_port
            )
        tcp, udp = bind_tcp_and_udp("127.0.0.1", port)  # both sockets were released
        tcp.close()
        udp.close()
    finally:
        live.stop()


def test_registration_without_a_portmapper_fails_fast_and_says_what_to_do() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]
    live = ReactorThread()
    started = time.monotonic()
    try:
        with pytest.raises(RegistrationError, match="is rpcbind running"):
            RPCServer(live.reactor, calc_service(), register=True, rpcbind_port=nobody)
    finally:
        live.stop()
    assert time.monotonic() - started < 1.0


# -- helpers ----------------------------------------------------------------------------------


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "server closed the connection early"
        data += chunk
    return bytes(data)


def _read_record(sock: socket.socket) -> bytes:
    (header,) = struct.unpack(">I", _read_exactly(sock, 4))
    assert header & 0x8000_0000, "the server sends each reply as one fragment"
    return _read_exactly(sock, header & 0x7FFF_FFFF)
