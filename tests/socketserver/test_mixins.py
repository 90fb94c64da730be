"""ThreadingMixIn on the thread strategy, ForkingMixIn reaping through the reactor."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from muxserver import socketserver


def serve_in_thread(srv: socketserver.BaseServer, poll_interval: float = 30.0) -> threading.Thread:
    thread = threading.Thread(target=srv.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    return thread


def wait_until(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


class SlowThreaded(socketserver.ThreadingTCPServer):
    finished: list[int]
    running = 0
    most = 0

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.finished = []
        self.lock = threading.Lock()


class Slow(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        with server.lock:
            server.running += 1
            server.most = max(server.most, server.running)
        time.sleep(0.2)
        with server.lock:
            server.running -= 1
            server.finished.append(1)


def connect_many(address: tuple[str, int], n: int) -> list[socket.socket]:
    return [socket.create_connection(address, timeout=5) for _ in range(n)]


def test_server_close_joins_the_request_threads() -> None:
    srv = SlowThreaded(("127.0.0.1", 0), Slow)
    thread = serve_in_thread(srv)
    clients = connect_many(srv.server_address, 3)
    assert wait_until(lambda: srv.most == 3)  # all three accepted and running
    srv.shutdown()
    thread.join(5)
    srv.server_close()  # must wait for the three handlers
    assert len(srv.finished) == 3
    for client in clients:
        client.close()


def test_daemon_threads_are_not_joined_on_close() -> None:
    srv = SlowThreaded(("127.0.0.1", 0), Slow)
    srv.daemon_threads = True  # set after construction, as http.server users do
    clients = connect_many(srv.server_address, 1)
    srv.handle_request()
    started = time.monotonic()
    srv.server_close()
    assert time.monotonic() - started < 0.15
    assert wait_until(lambda: srv.finished)  # let the daemon thread end before the test does
    for client in clients:
        client.close()


def test_max_threads_caps_the_threads_running_at_once() -> None:
    class Capped(SlowThreaded):
        max_threads = 2

    srv = Capped(("127.0.0.1", 0), Slow)
    thread = serve_in_thread(srv)
    clients = connect_many(srv.server_address, 6)
    assert wait_until(lambda: len(srv.finished) == 6)
    srv.shutdown()
    thread.join(5)
    srv.server_close()
    assert srv.most == 2
    for client in clients:
        client.close()


def test_finished_threads_are_not_kept() -> None:
    class Quick(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            pass

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Quick) as srv:
        thread = serve_in_thread(srv)
        for _ in range(20):
            socket.create_connection(srv.server_address, timeout=5).close()
        assert wait_until(lambda: len(srv._threads) == 0)
        srv.shutdown()
        thread.join(5)


forking = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


class Pid(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"%d\n" % os.getpid())


@forking
def test_children_are_reaped_as_soon_as_they_exit_without_another_request() -> None:
    with socketserver.ForkingTCPServer(("127.0.0.1", 0), Pid) as srv:
        thread = serve_in_thread(srv, poll_interval=30.0)  # no service_actions tick to help
        with socket.create_connection(srv.server_address, timeout=5) as client:
            child = int(client.makefile("rb").readline())
        assert child != os.getpid()
        assert wait_until(lambda: not srv.active_children, timeout=2.0)
        with pytest.raises(ChildProcessError):
            os.waitpid(child, os.WNOHANG)  # already reaped: no zombie left
        srv.shutdown()
        thread.join(5)


@forking
def test_other_children_of_the_process_are_left_alone() -> None:
    foreign = os.fork()
    if foreign == 0:
        time.sleep(0.3)
        os._exit(7)
    try:

        class Capped(socketserver.ForkingTCPServer):
            max_children = 1

        with Capped(("127.0.0.1", 0), Pid) as srv:
            for _ in range(3):  # each request waits for the previous child: only ours
                with socket.create_connection(srv.server_address, timeout=5) as client:
                    srv.handle_request()
                    client.makefile("rb").readline()
            srv.collect_children(blocking=True)
    finally:
        _, status = os.waitpid(foreign, 0)
    assert os.waitstatus_to_exitcode(status) == 7


@forking
def test_max_children_is_never_exceeded() -> None:
    class Sleepy(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            time.sleep(0.2)

    class Capped(socketserver.ForkingTCPServer):
        max_children = 2
        most = 0

        def process_request(self, request: object, client_address: object) -> None:
            super().process_request(request, client_address)
            self.most = max(self.most, len(self.active_children or ()))

    with Capped(("127.0.0.1", 0), Sleepy) as srv:
        clients = connect_many(srv.server_address, 5)
        for _ in range(5):
            srv.handle_request()
        srv.server_close()
        assert srv.most == 2
        assert not srv.active_children
        for client in clients:
            client.close()


@forking
def test_server_close_waits_for_children() -> None:
    class Sleepy(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            time.sleep(0.2)

    srv = socketserver.ForkingTCPServer(("127.0.0.1", 0), Sleepy)
    client = socket.create_connection(srv.server_address, timeout=5)
    srv.handle_request()
    assert srv.active_children
    srv.server_close()
    assert not srv.active_children
    client.close()
