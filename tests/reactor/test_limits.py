"""Limits: idle and request timeouts, max connections, input caps."""

import contextlib
import socket
import time

import pytest

from muxserver.handlers.lines import LineHandler
from muxserver.reactor import Limits
from muxserver.testing.live import ReactorThread, connect

from .support import lines, recv_all, recv_until, upper, wait_for


def test_an_idle_connection_is_closed_after_the_idle_timeout(live: ReactorThread):
    server, address = live.serve(lines, upper, limits=Limits(idle_timeout=0.3))
    with connect(address) as idle, connect(address) as busy:
        started = time.monotonic()
        for _ in range(6):  # keep one connection active past the timeout
            busy.sendall(b"ping\n")
            assert recv_until(busy, 5) == b"PING\n"
            time.sleep(0.1)
        assert recv_all(idle) == b""
        assert time.monotonic() - started > 0.25
        busy.sendall(b"still\n")
        assert recv_until(busy, 6) == b"STILL\n"
    assert live.call(lambda: server.timeouts) >= 1


def test_a_slow_drip_request_is_closed_after_the_request_timeout(live: ReactorThread):
    _, address = live.serve(lines, upper, limits=Limits(request_timeout=0.4, idle_timeout=60))
    with connect(address) as client:
        started = time.monotonic()
        closed = False
        for byte in b"never ending line":
            try:
                client.sendall(bytes([byte]))  # one byte every 50 ms: never idle, never done
            except OSError:
                closed = True
                break
            time.sleep(0.05)
            client.settimeout(0.001)
            try:
                if client.recv(10) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed
        assert 0.35 < time.monotonic() - started < 2.0


def test_past_max_connections_new_clients_wait_until_a_slot_frees(live: ReactorThread):
    _, address = live.serve(lines, upper, limits=Limits(max_connections=2))
    first, second = connect(address), connect(address)
    with first, second:
        for client in (first, second):
            client.sendall(b"in\n")
            assert recv_until(client, 3) == b"IN\n"
        third = connect(address)  # the kernel backlog takes it; the server does not
        with third:
            third.sendall(b"waiting\n")
            third.settimeout(0.3)
            try:
                early = third.recv(10)
            except TimeoutError:
                early = None
            assert early is None
            first.close()
            assert recv_until(third, 8) == b"WAITING\n"
            assert live.call(len, live.reactor.table) == 2


def test_buffered_input_without_a_complete_request_is_capped(live: ReactorThread):
    _, address = live.serve(
        lambda: LineHandler(max_line_length=10_000_000),
        upper,
        limits=Limits(max_input=50_000, read_size=16_384),
    )
    with connect(address) as client:
        with contextlib.suppress(OSError):  # the server may close before all of it is sent
            client.sendall(b"z" * 200_000)
        assert recv_all(client) == b""
    assert wait_for(lambda: live.call(len, live.reactor.table) == 0)


def test_limits_reject_nonsense_with_a_message_naming_the_field():
    with pytest.raises(ValueError, match="low_water"):
        Limits(high_water=10, low_water=20)
    with pytest.raises(ValueError, match="idle_timeout"):
        Limits(idle_timeout=0)
    with pytest.raises(ValueError, match="max_output"):
        Limits(high_water=100, low_water=0, max_output=10)


def test_reset_connections_are_ordinary_closes_not_tracebacks(live: ReactorThread, caplog):
    _, address = live.serve(lines, lambda r, p: b"a" * 100_000)
    for _ in range(5):
        client = connect(address)
        client.sendall(b"x\n" * 50)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()  # RST
    assert wait_for(lambda: live.call(len, live.reactor.table) == 0)
    assert "Traceback" not in caplog.text
