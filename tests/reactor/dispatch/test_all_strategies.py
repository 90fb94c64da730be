"""Properties every strategy shares: routing, order under random delays, no leaks, shutdown."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muxserver.reactor import InlineStrategy
from muxserver.reactor.dispatch import (
    DispatchStrategy,
    ForkPerRequestStrategy,
    ProcessPoolStrategy,
    ThreadPerRequestStrategy,
    ThreadPoolStrategy,
)

from .support import Harness, child_pids, live_threads, open_fds

MAKERS: dict[str, Callable[[], DispatchStrategy]] = {
    "inline": InlineStrategy,
    "thread-pool": lambda: ThreadPoolStrategy(4),
    "thread-per-request": ThreadPerRequestStrategy,
    "fork-per-request": lambda: ForkPerRequestStrategy(8),
    "process-pool": lambda: ProcessPoolStrategy(2),
}


@pytest.mark.parametrize("cpu", ["thread-pool", "fork-per-request", "process-pool"])
def test_a_handler_routes_one_kind_of_request_to_another_strategy(cpu: str) -> None:
    h = Harness(InlineStrategy(), strategies={"cpu": MAKERS[cpu]()}, routing=True)
    client = h.client()
    client.send(b"pid", b"cpu x", b"echo y")
    try:
        here, there, last = h.answers(client, 3)
    finally:
        h.stop()
    assert here == str(os.getpid()).encode()
    expected_pid = os.getpid() if cpu == "thread-pool" else None
    if expected_pid is None:
        assert there.startswith(b"x@") and there != b"x@" + here
    else:
        assert there == b"x@" + here
    assert last == b"y"


@pytest.mark.parametrize("name", ["fork-per-request", "process-pool"])
@settings(max_examples=5)
@given(delays=st.lists(st.sampled_from([0, 0.002, 0.01, 0.03]), min_size=1, max_size=8))
def test_process_strategies_keep_order_whatever_the_delays(name: str, delays: list[float]) -> None:
    h = Harness(MAKERS[name]())
    client = h.client()
    client.send(*(f"sleep {d} {i}".encode() for i, d in enumerate(delays)))
    try:
        assert h.answers(client, len(delays)) == [str(i).encode() for i in range(len(delays))]
    finally:
        h.stop()


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_a_thousand_requests_leave_no_fd_thread_or_child_behind(name: str) -> None:
    fds, threads = open_fds(), live_threads()
    h = Harness(MAKERS[name]())
    clients = [h.client() for _ in range(4)]
    per_client = 250
    for client in clients:
        client.send(*(f"echo {i}".encode() for i in range(per_client)))
    try:
        for client in clients:
            assert h.answers(client, per_client, 30) == [str(i).encode() for i in range(per_client)]
    finally:
        h.stop()
    assert child_pids() == []
    assert live_threads() == threads
    assert open_fds() == fds


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_graceful_stop_answers_every_request_in_flight(name: str) -> None:
    strategy = MAKERS[name]()
    h = Harness(strategy)
    clients = [h.client() for _ in range(3)]
    for n, client in enumerate(clients):
        client.send(f"sleep 0.1 {n}a".encode(), f"echo {n}b".encode())
    if name != "inline":
        h.run_until(lambda: strategy.stats()["outstanding"] >= 3)
    else:
        h.spin(0.05)
    h.stop()
    for n, client in enumerate(clients):
        client.pump()
        assert client.lines == [f"{n}a".encode(), f"{n}b".encode()]
    assert h.reactor.shutdown_report is not None
    assert h.reactor.shutdown_report.startswith("drained")
    assert child_pids() == []
    assert threading.active_count() == len(live_threads())
