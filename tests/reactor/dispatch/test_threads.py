"""Thread strategies end to end over 127.0.0.1: order, failures, deadlines, saturation, leaks."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muxserver.reactor import Limits
from muxserver.reactor.dispatch import ThreadPerRequestStrategy, ThreadPoolStrategy

from .support import Harness, live_threads, open_fds

STRATEGIES = {
    "pool": lambda **kw: ThreadPoolStrategy(4, **kw),
    "per-request": ThreadPerRequestStrategy,
}


@pytest.fixture(params=sorted(STRATEGIES))
def make(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return STRATEGIES[request.param]


def test_pipelined_requests_are_answered_in_order_though_later_ones_finish_first(make) -> None:
    h = Harness(make())
    client = h.client()
    client.send(b"sleep 0.2 first", b"sleep 0.1 second", b"echo third", b"sleep 0.05 fourth")
    try:
        assert h.answers(client, 4) == [b"first", b"second", b"third", b"fourth"]
    finally:
        h.stop()


@settings(max_examples=8)
@given(delays=st.lists(st.sampled_from([0, 0.001, 0.005, 0.02]), min_size=1, max_size=12))
def test_order_survives_any_per_request_delays(delays: list[float]) -> None:
    h = Harness(ThreadPoolStrategy(8))
    client = h.client()
    client.send(*(f"sleep {d} {i}".encode() for i, d in enumerate(delays)))
    try:
        assert h.answers(client, len(delays)) == [str(i).encode() for i in range(len(delays))]
    finally:
        h.stop()


def test_a_service_exception_becomes_an_error_reply_and_a_log_line_with_context(
    make, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(make())
    client = h.client()
    client.send(b"echo a", b"fail", b"echo b")
    try:
        lines = h.answers(client, 3)
    finally:
        h.stop()
    assert lines == [b"a", b"ERR ValueError: the service failed on purpose", b"b"]
    assert any("service failed on connection #" in r.getMessage() for r in caplog.records)


def test_a_request_past_its_deadline_is_answered_with_an_error_and_its_late_result_dropped(
    make,
) -> None:
    strategy = make(deadline=0.1)
    h = Harness(strategy)
    client = h.client()
    client.send(b"sleep 0.4 late", b"echo next")
    started = time.monotonic()
    try:
        lines = h.answers(client, 2)
        assert time.monotonic() - started < 0.35
        assert lines[0].startswith(b"ERR DispatchError: the service did not answer within")
        assert lines[1] == b"next"
        # the thread runs on and still holds its capacity until it really returns
        assert strategy.outstanding == 1
        h.run_until(lambda: strategy.outstanding == 0)
        h.spin(0.05)
        assert client.lines == lines  # the late result went nowhere
    finally:
        h.stop()


def test_a_saturated_pool_pauses_reading_and_bounds_what_it_holds() -> None:
    strategy = ThreadPoolStrategy(2, queue_size=2)
    h = Harness(strategy, limits=Limits(linger=0, max_in_flight=1000))
    client = h.client()
    client.send(*(f"sleep 0.001 {i}".encode() for i in range(1000)))
    paused = []

    def note_pause() -> bool:
        for snapshot in h.reactor.table.snapshot():
            if "strategy" in snapshot.reading_paused:
                paused.append(True)
        return len(client.lines) >= 1000

    try:
        h.run_until(note_pause, 30)
        assert client.lines == [str(i).encode() for i in range(1000)]
        # one connection may add one request past the bound before it pauses
        assert strategy.peak <= strategy.capacity + 1
        assert paused
    finally:
        h.stop()


def test_thread_per_request_honours_max_threads() -> None:
    strategy = ThreadPerRequestStrategy(max_threads=3)
    h = Harness(strategy, limits=Limits(linger=0, max_in_flight=1000))
    client = h.client()
    client.send(*(f"sleep 0.005 {i}".encode() for i in range(40)))
    try:
        assert h.answers(client, 40) == [str(i).encode() for i in range(40)]
        assert strategy.peak <= 4
        assert strategy.started == 40
    finally:
        h.stop()


def test_graceful_stop_waits_for_requests_in_flight(make) -> None:
    h = Harness(make())
    client = h.client()
    client.send(b"sleep 0.2 a", b"sleep 0.1 b")
    h.run_until(lambda: h.server.strategy.outstanding == 2)
    h.stop()
    h.clients.clear()
    client.pump()
    assert client.lines == [b"a", b"b"]
    assert h.reactor.shutdown_report is not None
    assert h.reactor.shutdown_report.startswith("drained")
    client.close()


def test_no_threads_or_fds_leak_after_a_thousand_requests(make) -> None:
    fds, threads = open_fds(), live_threads()
    h = Harness(make())
    clients = [h.client() for _ in range(4)]
    for c in clients:
        c.send(*(f"echo {i}".encode() for i in range(250)))
    try:
        for c in clients:
            assert h.answers(c, 250) == [str(i).encode() for i in range(250)]
    finally:
        h.stop()
    assert live_threads() == threads
    assert open_fds() == fds


def test_daemon_threads_are_not_joined_on_close() -> None:
    strategy = ThreadPerRequestStrategy(daemon_threads=True)
    h = Harness(strategy)
    client = h.client()
    client.send(b"sleep 0.3 slow")
    h.run_until(lambda: strategy.outstanding == 1)
    (thread,) = strategy._running
    assert thread.daemon
    started = time.monotonic()
    h.reactor.close()  # no graceful stop: close at once
    assert time.monotonic() - started < 0.2
    thread.join()  # the test still cleans up after itself
    client.close()
    assert threading.active_count() >= 1
