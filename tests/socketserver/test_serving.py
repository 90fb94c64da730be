"""BaseServer's loop on the reactor: shutdown is immediate, never deadlocks, never lost."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from muxserver import socketserver


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.readline())


@pytest.fixture
def server() -> Iterator[socketserver.TCPServer]:
    with socketserver.TCPServer(("127.0.0.1", 0), Echo) as srv:
        yield srv


def serve_in_thread(srv: socketserver.BaseServer, poll_interval: float) -> threading.Thread:
    thread = threading.Thread(target=srv.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    return thread


def echo(address: tuple[str, int], line: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as client:
        client.sendall(line)
        return client.makefile("rb").readline()


def test_shutdown_returns_promptly_whatever_the_poll_interval(
    server: socketserver.TCPServer,
) -> None:
    thread = serve_in_thread(server, poll_interval=30.0)
    assert echo(server.server_address, b"ping\n") == b"ping\n"
    started = time.monotonic()
    server.shutdown()
    took = time.monotonic() - started
    thread.join(5)
    assert not thread.is_alive()
    assert took < 0.5


def test_shutdown_works_even_with_no_poll_interval(server: socketserver.TCPServer) -> None:
    # The standard library's select(None) would never return: shutdown() would hang forever.
    thread = serve_in_thread(server, poll_interval=None)  # type: ignore[arg-type]
    time.sleep(0.05)
    server.shutdown()
    thread.join(5)
    assert not thread.is_alive()


def test_shutdown_before_serve_forever_returns_and_the_next_serve_forever_stops_at_once(
    server: socketserver.TCPServer,
) -> None:
    server.shutdown()  # the standard library blocks here until some serve_forever() ends
    started = time.monotonic()
    server.serve_forever(poll_interval=30.0)
    assert time.monotonic() - started < 0.5


def test_shutdown_from_a_handler_in_the_serving_thread_does_not_deadlock() -> None:
    class StopHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.server.shutdown()  # the standard library deadlocks here

    with socketserver.TCPServer(("127.0.0.1", 0), StopHandler) as srv:
        thread = serve_in_thread(srv, poll_interval=30.0)
        socket.create_connection(srv.server_address, timeout=5).close()
        thread.join(5)
        assert not thread.is_alive()


def test_serve_forever_can_run_again_after_shutdown(server: socketserver.TCPServer) -> None:
    for _ in range(3):
        thread = serve_in_thread(server, poll_interval=30.0)
        assert echo(server.server_address, b"again\n") == b"again\n"
        server.shutdown()
        thread.join(5)
        assert not thread.is_alive()


def test_a_second_serve_forever_at_the_same_time_is_refused(
    server: socketserver.TCPServer,
) -> None:
    thread = serve_in_thread(server, poll_interval=30.0)
    time.sleep(0.05)
    with pytest.raises(RuntimeError, match="already running"):
        server.serve_forever()
    server.shutdown()
    thread.join(5)


def test_service_actions_still_run_every_poll_interval(server: socketserver.TCPServer) -> None:
    calls: list[float] = []
    server.service_actions = lambda: calls.append(time.monotonic())  # type: ignore[method-assign]
    thread = serve_in_thread(server, poll_interval=0.02)
    time.sleep(0.3)
    server.shutdown()
    thread.join(5)
    assert len(calls) >= 5


def test_handle_request_times_out_into_handle_timeout() -> None:
    class Timed(socketserver.TCPServer):
        timeout = 0.05
        timed_out = 0

        def handle_timeout(self) -> None:
            self.timed_out += 1

    with Timed(("127.0.0.1", 0), Echo) as srv:
        started = time.monotonic()
        srv.handle_request()
        assert srv.timed_out == 1
        assert time.monotonic() - started < 2


def test_a_peer_that_hangs_up_mid_request_is_reported_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Gone(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            raise ConnectionResetError(104, "Connection reset by peer")

    with socketserver.TCPServer(("127.0.0.1", 0), Gone) as srv:
        socket.create_connection(srv.server_address, timeout=5).close()
        srv.handle_request()
    err = capsys.readouterr().err
    assert "went away" in err
    assert "Traceback" not in err


def test_other_handler_errors_still_print_the_standard_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Broken(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            raise ValueError("boom")

    with socketserver.TCPServer(("127.0.0.1", 0), Broken) as srv:
        socket.create_connection(srv.server_address, timeout=5).close()
        srv.handle_request()
    err = capsys.readouterr().err
    assert "Exception occurred during processing of request from" in err
    assert "ValueError: boom" in err


def test_serving_a_closed_server_says_so(server: socketserver.TCPServer) -> None:
    server.server_close()
    with pytest.raises(ValueError, match="closed"):
        server.handle_request()


def test_a_base_server_without_fileno_gets_a_clear_error() -> None:
    srv = socketserver.BaseServer(("127.0.0.1", 0), Echo)
    try:
        with pytest.raises(NotImplementedError, match="must define fileno"):
            srv.handle_request()
    finally:
        srv.server_close()
