"""Shared test support: a line server on 127.0.0.1 driven from the test's own thread.

The reactor runs in the main thread (``run_until`` turns it pass by pass while pumping the
clients), so the process strategies fork from a thread-free process and SIGCHLD reaches the
reactor through its wake-up fd -- the production path. Clients are non-blocking sockets that
pipeline every request at once and collect the answer lines.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
from typing import Any

from muxserver.handlers.base import Request
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.reactor import Limits, Reactor, ReactorState, StreamServer
from muxserver.reactor.dispatch import DispatchStrategy
from muxserver.service import Peer


class ErrorLineHandler(LineHandler):
    """LineHandler answering a failed service with ``ERR <type>: <message>``."""

    __slots__ = ()

    def encode_error(self, error: BaseException) -> bytes:
        self._answered()
        return f"ERR {type(error).__name__}: {error}".encode() + b"\n"


class RoutingLineHandler(ErrorLineHandler):
    """Sends lines starting with ``cpu`` to the strategy named ``cpu``."""

    __slots__ = ()

    def _request(self, line: bytes) -> LineRequest:
        request = super()._request(line)
        return CpuRequest(request.line) if request.line.startswith(b"cpu") else request


class CpuRequest(LineRequest):
    __slots__ = ()
    strategy = "cpu"


def line_service(request: Request, peer: Peer) -> Any:
    """A module-level (picklable) service speaking a tiny command language.

    ``echo X`` -> X; ``sleep S X`` -> X after S seconds; ``fail`` raises; ``pid`` -> the
    serving process; ``die`` -> SIGKILLs the serving process; ``hash N`` -> sha256 of 64 KiB
    hashed N times; ``cpu X`` -> ``X@pid``.
    """
    assert isinstance(request, LineRequest)
    command, _, rest = request.line.partition(b" ")
    if command == b"echo":
        return rest
    if command == b"sleep":
        delay, _, text = rest.partition(b" ")
        time.sleep(float(delay))
        return text
    if command == b"fail":
        raise ValueError("the service failed on purpose")
    if command == b"pid":
        return str(os.getpid()).encode()
    if command == b"die":
        os.kill(os.getpid(), signal.SIGKILL)
    if command == b"hash":
        return hash_work(int(rest))
    if command == b"cpu":
        return rest + b"@" + str(os.getpid()).encode()
    return b"?" + request.line


def hash_work(rounds: int) -> bytes:
    """CPU-bound work: hash 64 KiB ``rounds`` times."""
    block = b"x" * 65536
    digest = b""
    for _ in range(rounds):
        digest = hashlib.sha256(block + digest).digest()
    return digest.hex().encode()


class Client:
    """A non-blocking pipelining client: queue lines, pump, read answer lines."""

    def __init__(self, address: Any) -> None:
        self.sock = socket.create_connection(address)
        self.sock.setblocking(False)
        self.out = bytearray()
        self.received = bytearray()
        self.closed = False

    def send(self, *lines: bytes) -> None:
        self.out += b"".join(line + b"\n" for line in lines)

    def pump(self) -> None:
        if self.out:
            try:
                sent = self.sock.send(self.out)
                del self.out[:sent]
            except (BlockingIOError, InterruptedError):
                pass
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            self.received += data

    @property
    def lines(self) -> list[bytes]:
        return bytes(self.received).split(b"\n")[:-1]

    def close(self) -> None:
        self.sock.close()


class Harness:
    """A reactor and a line server on 127.0.0.1 with the given strategies."""

    def __init__(
        self,
        strategy: DispatchStrategy,
        *,
        strategies: dict[str, DispatchStrategy] | None = None,
        limits: Limits | None = None,
        routing: bool = False,
        service: Any = line_service,
    ) -> None:
        self.reactor = Reactor()
        self.server = StreamServer(
            self.reactor,
            RoutingLineHandler if routing else ErrorLineHandler,
            service,
            strategy=strategy,
            strategies=strategies,
            limits=limits or Limits(linger=0),
        )
        self.server.listen_tcp("127.0.0.1", 0)
        self.address = self.server.addresses[0]
        self.clients: list[Client] = []

    def client(self) -> Client:
        client = Client(self.address)
        self.clients.append(client)
        return client

    def run_until(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
            self.reactor.run_once(0.005)
            for client in self.clients:
                client.pump()

    def spin(self, seconds: float) -> None:
        """Run the reactor and the clients for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.reactor.run_once(0.005)
            for client in self.clients:
                client.pump()

    def answers(self, client: Client, count: int, timeout: float = 10.0) -> list[bytes]:
        self.run_until(lambda: len(client.lines) >= count, timeout)
        return client.lines

    def stop(self, grace: float = 5.0) -> None:
        """Graceful shutdown, then close everything (clients included)."""
        if self.reactor.state is not ReactorState.CLOSED:
            self.reactor.shutdown(grace)
            self.run_until(lambda: self.reactor.state is ReactorState.STOPPED, grace + 5)
            self.reactor.close()
        for client in self.clients:
            client.close()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def live_threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def child_pids() -> list[int]:
    """Pids of this process's children, zombies included (from /proc, reaping nothing)."""
    me = str(os.getpid())
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may contain spaces: the fields after its closing paren are fixed
        fields = stat[stat.rindex(b")") + 2 :].split()
        if fields[1].decode() == me:
            children.append(int(entry))
    return children
