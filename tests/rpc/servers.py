"""Tiny blocking test servers that put an RPCService on a real socket.

They stand in for the reactor (which the RPC package must not depend on): plain sockets on
127.0.0.1 port 0, one thread per listener and per TCP connection, all joined by ``stop()``.
The TCP side is driven through RecordMarkingHandler exactly as the reactor will drive it.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from muxserver.handlers.base import NEED_DATA, EndOfInput, ProtocolError
from muxserver.rpc.program import RPCService
from muxserver.rpc.record import RecordMarkingHandler, RPCRecord
from muxserver.service import Peer

_POLL = 0.02  # how often the threads look at the stop flag


class ThreadedRPCServer:
    """Serve ``service`` over ``transport`` ("tcp" or "udp") on 127.0.0.1, port chosen by the OS.

    ``drop_calls`` datagrams are ignored on arrival and ``drop_replies`` replies are computed but
    not sent (UDP only), to make clients retransmit.
    """

    def __init__(
        self,
        service: RPCService,
        transport: str,
        *,
        drop_calls: int = 0,
        drop_replies: int = 0,
    ) -> None:
        self.service = service
        self.transport = transport
        self.drop_calls = drop_calls
        self.drop_replies = drop_replies
        self.calls_received = 0
        kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        if transport == "tcp":
            self.sock.listen()
        self.sock.settimeout(_POLL)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        target = self._accept_loop if transport == "tcp" else self._datagram_loop
        self._spawn(target)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def __enter__(self) -> ThreadedRPCServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every thread, join them, and close the listener."""
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
            assert not thread.is_alive(), "test server thread did not stop"
        self.sock.close()

    def _accept_loop(self) -> None:
        number = 0
        while not self._stop.is_set():
            try:
                conn, address = self.sock.accept()
            except TimeoutError:
                continue
            number += 1
            self._spawn(self._serve_connection, conn, Peer(number, address))

    def _serve_connection(self, conn: socket.socket, peer: Peer) -> None:
        handler = RecordMarkingHandler()
        conn.settimeout(_POLL)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                handler.receive_data(data)
                try:
                    while (event := handler.next_event()) is not NEED_DATA:
                        if isinstance(event, EndOfInput):
                            return
                        assert isinstance(event, RPCRecord)
                        self.calls_received += 1
                        conn.sendall(handler.send(self.service.handle(event, peer)))
                except ProtocolError:
                    return

    def _datagram_loop(self) -> None:
        while not self._stop.is_set():
            try:
                datagram, address = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.calls_received += 1
            if self.drop_calls > 0:
                self.drop_calls -= 1
                continue
            reply = self.service.handle_message(datagram, Peer(0, address))
            if reply is None:
                continue
            if self.drop_replies > 0:
                self.drop_replies -= 1
                continue
            self.sock.sendto(reply, address)
