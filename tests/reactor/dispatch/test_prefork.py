"""The pre-forked process pool end to end over 127.0.0.1."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from muxserver.handlers.base import Request
from muxserver.reactor import Limits
from muxserver.reactor.dispatch import ParentChange, ProcessPoolStrategy
from muxserver.service import Peer, Service

from .support import Harness, child_pids, open_fds


def test_requests_are_spread_over_the_workers_and_answered_in_order() -> None:
    pool = ProcessPoolStrategy(2)
    h = Harness(pool)
    assert sorted(child_pids()) == sorted(pool.pids)
    client = h.client()
    client.send(b"sleep 0.15 first", b"pid", b"echo third")
    try:
        first, pid, third = h.answers(client, 3)
    finally:
        h.stop()
    assert (first, third) == (b"first", b"third")
    assert int(pid) in pool.pids or pool.closed
    assert child_pids() == []


def test_a_worker_killed_mid_request_fails_only_that_request_and_is_replaced(
    caplog: Any,
) -> None:
    pool = ProcessPoolStrategy(2)
    h = Harness(pool)
    before = set(pool.pids)
    client = h.client()
    client.send(b"sleep 0.05 a", b"die", b"echo b", b"sleep 0.05 c")
    try:
        lines = h.answers(client, 4)
        assert lines[0] == b"a"
        assert lines[1].startswith(b"ERR DispatchError: worker process")
        assert lines[2:] == [b"b", b"c"]
        h.run_until(lambda: len(pool.pids) == 2 and set(pool.pids) != before)
        assert pool.restarts == 1
        assert len(set(pool.pids) & before) == 1
    finally:
        h.stop()
    assert child_pids() == []


def test_a_worker_killed_from_outside_while_idle_is_replaced() -> None:
    pool = ProcessPoolStrategy(1)
    h = Harness(pool)
    (victim,) = pool.pids
    os.kill(victim, signal.SIGKILL)
    try:
        h.run_until(lambda: pool.pids and pool.pids != [victim])
        client = h.client()
        client.send(b"echo still here")
        assert h.answers(client, 1) == [b"still here"]
    finally:
        h.stop()
    assert child_pids() == []


def test_a_request_past_its_deadline_is_answered_and_its_worker_replaced() -> None:
    pool = ProcessPoolStrategy(1, deadline=0.1)
    h = Harness(pool)
    client = h.client()
    client.send(b"sleep 5 never", b"echo after")
    started = time.monotonic()
    try:
        lines = h.answers(client, 2)
        assert time.monotonic() - started < 1.5
    finally:
        h.stop()
    assert lines[0].startswith(b"ERR DispatchError: the service did not answer within")
    assert lines[1] == b"after"
    assert pool.restarts == 1


def test_service_exceptions_become_error_replies() -> None:
    h = Harness(ProcessPoolStrategy(1))
    client = h.client()
    client.send(b"fail", b"echo ok")
    try:
        assert h.answers(client, 2) == [b"ERR ValueError: the service failed on purpose", b"ok"]
    finally:
        h.stop()


def test_an_unpicklable_service_fails_the_request_with_a_clear_error() -> None:
    h = Harness(ProcessPoolStrategy(1), service=lambda request, peer: b"never")
    client = h.client()
    client.send(b"x")
    try:
        (line,) = h.answers(client, 1)
    finally:
        h.stop()
    assert line.startswith(b"ERR DispatchError: process-pool could not pickle")


def test_a_pool_of_two_under_a_thousand_pipelined_requests_pauses_reading() -> None:
    pool = ProcessPoolStrategy(2, queue_size=2)
    h = Harness(pool, limits=Limits(linger=0, max_in_flight=1000))
    client = h.client()
    client.send(*(f"echo {i}".encode() for i in range(1000)))
    paused = False

    def done() -> bool:
        nonlocal paused
        for snapshot in h.reactor.table.snapshot():
            paused = paused or "strategy" in snapshot.reading_paused
            assert snapshot.input_buffered <= h.server.limits.read_size
        return len(client.lines) >= 1000

    try:
        h.run_until(done, 30)
    finally:
        h.stop()
    assert client.lines == [str(i).encode() for i in range(1000)]
    assert paused
    assert pool.peak <= pool.capacity + 1


class CountingService(Service):
    def __init__(self) -> None:
        self.naive = 0
        self.counted = 0

    def handle(self, request: Request, peer: Peer) -> Any:
        self.naive += 1
        return ParentChange(b"ok", 1)

    def apply_change(self, change: int) -> None:
        self.counted += change


def test_state_changes_stay_in_the_worker_unless_returned_as_a_parent_change() -> None:
    service = CountingService()
    h = Harness(ProcessPoolStrategy(1), service=service)
    client = h.client()
    client.send(b"a", b"b", b"c")
    try:
        assert h.answers(client, 3) == [b"ok"] * 3
    finally:
        h.stop()
    assert (service.naive, service.counted) == (0, 3)


def test_graceful_stop_finishes_requests_in_flight_and_reaps_every_worker() -> None:
    fds = open_fds()
    pool = ProcessPoolStrategy(2)
    h = Harness(pool)
    client = h.client()
    client.send(b"sleep 0.2 a", b"sleep 0.1 b", b"echo c")
    h.run_until(lambda: pool.outstanding == 3)
    h.stop()
    client.pump()
    assert client.lines == [b"a", b"b", b"c"]
    h.clients.clear()
    client.close()
    assert child_pids() == []
    assert open_fds() == fds
