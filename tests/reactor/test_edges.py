"""Reactor edges found in review: timers cancelled within a pass, output that pauses and drains
at once, hang-ups while not reading, request clocks during pauses, resumption inside a batch,
answers larger than max_output, Unix connects to a full backlog; and the closing paths over
IPv6 and Unix sockets.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.reactor import Limits, Reactor, StreamServer
from muxserver.reactor.dispatch import ThreadPoolStrategy
from muxserver.reactor.poller import EpollPoller
from muxserver.testing.live import ReactorThread, connect

from .support import DelayedStrategy, lines, recv_all, recv_until, upper, wait_for

HAS_IPV6 = socket.has_ipv6 and os.path.exists("/proc/net/if_inet6")
FAMILIES = [
    pytest.param("tcp6", marks=pytest.mark.skipif(not HAS_IPV6, reason="no IPv6")),
    "unix",
]


def _in_flight(live: ReactorThread) -> int:
    return live.call(lambda: sum(c.in_flight for c in live.reactor.table.records()))


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# -- defects ----------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_timer_cancelled_by_an_earlier_timer_of_the_same_pass_does_not_run():
    now = [100.0]
    with Reactor(clock=lambda: now[0]) as reactor:
        seen: list[str] = []
        second = None

        def first() -> None:
            seen.append("first")
            assert second is not None
            second.cancel()

        reactor.call_later(1.0, first)
        second = reactor.call_later(1.0, seen.append, "second")
        now[0] += 2.0  # both are due in the same pass
        reactor.run_once(timeout=0)
        assert seen == ["first"]


@pytest.mark.timeout(30)
def test_answers_that_cross_high_water_but_drain_at_once_do_not_stall_the_connection(
    live: ReactorThread,
):
    # Every answer is above high_water, so each one pauses reading; each is tiny, so the
    # socket takes it whole and the pause ends at once -- one level deeper every time.
    limits = Limits(high_water=16, low_water=0)
    answer = b"y" * 31
    _, address = live.serve(lines, lambda request, peer: answer, limits=limits)
    requests = 2000
    with connect(address, timeout=10) as client:
        client.sendall(b"a\n" * requests)
        expected = requests * (len(answer) + 1)
        assert len(recv_until(client, expected, timeout=5)) == expected


@pytest.mark.timeout(15)
def test_a_unix_peer_that_closes_with_a_request_in_flight_does_not_make_the_reactor_spin():
    with ReactorThread(poller=EpollPoller()) as live:
        _, path = live.serve(lines, upper, strategy=DelayedStrategy(3.0), family="unix")
        client = connect(path)
        client.sendall(b"slow\n")
        assert wait_for(lambda: _in_flight(live) == 1)
        client.close()
        # The hang-up stays reported while reading is off (input ended, a request in
        # flight): the connection must end on it, or the loop spins until the answer.
        assert wait_for(lambda: live.call(lambda: len(live.reactor.table)) == 0, timeout=2.0)


@pytest.mark.timeout(15)
def test_request_timeout_spares_complete_requests_held_back_by_max_in_flight(
    live: ReactorThread,
):
    limits = Limits(request_timeout=0.3, max_in_flight=1)
    server, address = live.serve(lines, upper, strategy=DelayedStrategy(0.6), limits=limits)
    with connect(address) as client:
        client.sendall(b"first\nsecond\n")  # both complete, in one segment
        assert recv_until(client, 13, timeout=5) == b"FIRST\nSECOND\n"
    assert live.call(lambda: server.timeouts) == 0


class _SlowLine(LineRequest):
    __slots__ = ()
    strategy = "delayed"


class _RoutingLines(LineHandler):
    """Lines starting with ``slow`` go to the "delayed" strategy, the rest inline."""

    def _request(self, line: bytes) -> LineRequest:
        if line.startswith(b"slow"):
            return _SlowLine(line)
        return super()._request(line)


@pytest.mark.timeout(15)
def test_reading_resumes_after_an_in_flight_pause_that_ends_during_processing(
    live: ReactorThread,
):
    _, address = live.serve(
        _RoutingLines,
        upper,
        strategies={"delayed": DelayedStrategy(0.05)},
        limits=Limits(max_in_flight=2),
    )
    with connect(address) as client:
        client.sendall(b"slow\nfast\n")  # the inline "fast" hits max_in_flight, then answers
        assert recv_until(client, 10) == b"SLOW\nFAST\n"
        client.sendall(b"more\n")
        assert recv_until(client, 5, timeout=2) == b"MORE\n"


@pytest.mark.timeout(20)
def test_an_inline_answer_larger_than_max_output_reaches_a_reading_client():
    limits = Limits(max_output=1024 * 1024)
    payload = b"z" * (limits.max_output + 1024)
    with ReactorThread() as live:
        _, address = live.serve(lines, lambda request, peer: payload, limits=limits)
        with connect(address, timeout=10) as client:
            client.sendall(b"big\n")
            received = recv_until(client, len(payload) + 1, timeout=10)
            assert len(received) == len(payload) + 1


@pytest.mark.timeout(20)
def test_the_same_large_answer_from_a_thread_pool_is_delivered():
    """The contrast for the test above: only the inline path drops it."""
    limits = Limits(max_output=1024 * 1024)
    payload = b"z" * (limits.max_output + 1024)
    with ReactorThread() as live:
        _, address = live.serve(
            lines, lambda request, peer: payload, limits=limits, strategy=ThreadPoolStrategy(1)
        )
        with connect(address, timeout=10) as client:
            client.sendall(b"big\n")
            received = recv_until(client, len(payload) + 1, timeout=10)
            assert received == payload + b"\n"


@pytest.mark.timeout(15)
def test_a_unix_connect_to_a_full_backlog_is_reported_as_a_failure(tmp_path):
    path = str(tmp_path / "full.sock")
    fillers: list[socket.socket] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(0)  # never accepts
        try:
            while True:  # fill the backlog until a connect would block
                filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                filler.setblocking(False)
                try:
                    filler.connect(path)
                except BlockingIOError:
                    filler.close()
                    break
                fillers.append(filler)
            results: list[str] = []
            with ReactorThread() as live:

                def dial() -> None:
                    server = StreamServer(live.reactor, lines, upper, name="client")
                    server.connect(
                        path,
                        lines(),
                        lambda connection: results.append("connected"),
                        lambda error: results.append("failed"),
                    )

                live.call(dial)
                assert wait_for(lambda: results)
            assert results == ["failed"]  # today: ["connected", "connected"]
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.timeout(15)
def test_a_connection_aborted_with_a_partial_request_buffered_is_not_counted_as_a_timeout(
    live: ReactorThread,
):
    # The service answers with something the line handler cannot encode: the connection is
    # aborted in the middle of the read that also left a partial line behind.
    server, address = live.serve(lines, lambda request, peer: 5, limits=Limits(request_timeout=0.2))
    with connect(address) as client:
        client.sendall(b"x\npartial")
        assert recv_all(client) == b""
    assert wait_for(lambda: live.call(len, live.reactor.table) == 0)
    time.sleep(0.5)  # past the request timeout: nothing may expire for a closed connection
    assert live.call(lambda: server.timeouts) == 0
    assert live.call(lambda: len(server.wheel)) == 0


# -- behaviour checked correct, not covered elsewhere ------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("family", FAMILIES)
def test_a_graceful_shutdown_answers_every_request_in_flight_over_ipv6_and_unix(family: str):
    live = ReactorThread().start()
    try:
        _, address = live.serve(lines, upper, strategy=DelayedStrategy(0.2), family=family)
        clients = [connect(address, timeout=10) for _ in range(3)]
        try:
            for number, client in enumerate(clients):
                client.sendall(b"".join(b"c%d r%d\n" % (number, i) for i in range(10)))
            assert wait_for(lambda: _in_flight(live) == 30)
            live.call(live.reactor.shutdown, 5.0)
            for number, client in enumerate(clients):
                expected = b"".join(b"C%d R%d\n" % (number, i) for i in range(10))
                assert recv_all(client, timeout=10) == expected  # every answer, then EOF
        finally:
            for client in clients:
                client.close()
        # The clients closed, so the lingering closes end and the loop stops by itself.
        assert wait_for(lambda: live.reactor.shutdown_report is not None, timeout=10)
        assert live.reactor.shutdown_report.startswith("drained")
        if family == "unix":
            assert not os.path.exists(address)  # the listener's file is gone
    finally:
        live.stop()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("family", FAMILIES)
def test_after_a_half_close_over_ipv6_or_unix_every_answer_is_delivered(
    live: ReactorThread, family: str
):
    _, address = live.serve(lines, upper, strategy=DelayedStrategy(0.05), family=family)
    with connect(address) as client:
        client.sendall(b"one\ntwo\nthree")  # the last line is ended by the half-close
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b"ONE\nTWO\nTHREE\n"
    assert wait_for(lambda: live.call(len, live.reactor.table) == 0)


@pytest.mark.timeout(30)
def test_every_way_of_closing_releases_descriptors_records_and_deadlines():
    before = _open_fds()
    live = ReactorThread().start()
    try:
        server, address = live.serve(
            lambda: LineHandler(max_line_length=16),
            upper,
            limits=Limits(idle_timeout=5.0, request_timeout=5.0, linger=0.5),
        )
        for _ in range(5):
            with connect(address) as client:  # plain request, client closes
                client.sendall(b"hi\n")
                assert recv_until(client, 3) == b"HI\n"
            with connect(address) as client:  # half-close
                client.sendall(b"bye")
                client.shutdown(socket.SHUT_WR)
                assert recv_all(client) == b"BYE\n"
            with connect(address) as client:  # protocol error: reply, linger, close
                client.sendall(b"x" * 40 + b"\n")
                assert recv_all(client) == b"line too long\n"
            client = connect(address)  # reset by the client mid-request
            client.sendall(b"partial")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            client.close()
        assert wait_for(lambda: live.call(len, live.reactor.table) == 0)
        assert live.call(lambda: server.connections) == 0
        assert live.call(lambda: len(server.wheel)) == 0
        assert live.call(lambda: live.reactor.table.accepted) == 20
    finally:
        live.stop()
    assert _open_fds() - before == set()


@pytest.mark.timeout(20)
def test_a_slot_freed_by_a_server_side_timeout_lets_a_waiting_client_in(live: ReactorThread):
    _, address = live.serve(lines, upper, limits=Limits(max_connections=1, idle_timeout=0.3))
    with connect(address) as first:
        first.sendall(b"in\n")
        assert recv_until(first, 3) == b"IN\n"
        with connect(address) as second:  # waits in the backlog
            second.sendall(b"waiting\n")
            assert recv_all(first) == b""  # the idle timeout closes the first one...
            assert recv_until(second, 8) == b"WAITING\n"  # ...and the listener re-arms


@pytest.mark.timeout(20)
def test_a_push_to_a_lingering_connection_is_dropped_quietly(live: ReactorThread, caplog):
    connections: list = []

    def service(request, peer):
        connections.append(peer.connection)
        peer.connection.close()
        return b"bye"

    _, address = live.serve(lines, service, limits=Limits(linger=5.0))
    with connect(address) as client:
        client.sendall(b"quit\n")
        assert recv_all(client) == b"bye\n"  # answer, then the server's half-close
        (connection,) = connections
        assert live.call(lambda: connection.phase.value) == "lingering"
        live.call(connection.push, b"too late")  # nothing may follow the half-close
        connection.push_threadsafe(b"later still")
        live.call(lambda: None)  # the thread-safe push has run
        client.settimeout(0.2)
        assert client.recv(100) == b""
    assert wait_for(lambda: live.call(len, live.reactor.table) == 0)
    assert "Traceback" not in caplog.text
