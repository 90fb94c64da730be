"""Fork per request end to end over 127.0.0.1: order, crashes, deadlines, limits, reaping."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from muxserver.handlers.base import Request
from muxserver.reactor import Limits
from muxserver.reactor.dispatch import ForkPerRequestStrategy, ParentChange
from muxserver.service import Peer, Service

from .support import Harness, child_pids, open_fds


def test_each_request_runs_in_its_own_child_and_answers_come_back_in_order() -> None:
    h = Harness(ForkPerRequestStrategy())
    client = h.client()
    client.send(b"sleep 0.15 first", b"pid", b"pid", b"sleep 0.05 last")
    try:
        first, pid1, pid2, last = h.answers(client, 4)
    finally:
        h.stop()
    assert (first, last) == (b"first", b"last")
    assert pid1 != pid2
    assert str(os.getpid()).encode() not in (pid1, pid2)
    assert child_pids() == []


def test_a_service_exception_in_a_child_is_an_error_reply_with_the_remote_traceback(
    caplog: Any,
) -> None:
    h = Harness(ForkPerRequestStrategy())
    client = h.client()
    client.send(b"fail", b"echo ok")
    try:
        assert h.answers(client, 2) == [
            b"ERR ValueError: the service failed on purpose",
            b"ok",
        ]
    finally:
        h.stop()
    assert any("line_service" in r.exc_text for r in caplog.records if r.exc_text)


def test_a_child_killed_mid_request_fails_only_that_request() -> None:
    h = Harness(ForkPerRequestStrategy())
    client = h.client()
    client.send(b"sleep 0.05 a", b"die", b"echo b")
    try:
        lines = h.answers(client, 3)
    finally:
        h.stop()
    assert lines[0] == b"a"
    assert lines[1].startswith(b"ERR DispatchError: child process")
    assert lines[2] == b"b"
    assert child_pids() == []


def test_a_child_past_its_deadline_is_killed_and_reaped() -> None:
    strategy = ForkPerRequestStrategy(deadline=0.1)
    h = Harness(strategy)
    client = h.client()
    client.send(b"sleep 5 never", b"echo after")
    started = time.monotonic()
    try:
        lines = h.answers(client, 2)
        assert time.monotonic() - started < 1.0
        h.run_until(lambda: not strategy.children)
    finally:
        h.stop()
    assert lines[0].startswith(b"ERR DispatchError: the service did not answer within the 0.1s")
    assert lines[1] == b"after"
    assert child_pids() == []


def test_max_children_bounds_the_processes_alive_at_once() -> None:
    strategy = ForkPerRequestStrategy(max_children=2)
    h = Harness(strategy, limits=Limits(linger=0, max_in_flight=1000))
    client = h.client()
    client.send(*(f"sleep 0.01 {i}".encode() for i in range(20)))
    most = 0

    def done() -> bool:
        nonlocal most
        most = max(most, len(child_pids()))
        return len(client.lines) >= 20

    try:
        h.run_until(done)
    finally:
        h.stop()
    assert client.lines == [str(i).encode() for i in range(20)]
    assert most <= 2
    assert strategy.peak <= 3


class CountingService(Service):
    """Counts requests two ways: naively (lost in the child) and with ParentChange."""

    def __init__(self) -> None:
        self.naive = 0
        self.counted = 0

    def handle(self, request: Request, peer: Peer) -> Any:
        self.naive += 1  # changes the child's copy only
        return ParentChange(str(self.naive).encode(), 1)

    def apply_change(self, change: int) -> None:
        self.counted += change


def test_state_changed_in_a_child_is_lost_but_a_parent_change_is_applied() -> None:
    service = CountingService()
    h = Harness(ForkPerRequestStrategy(), service=service)
    client = h.client()
    client.send(b"a", b"b", b"c")
    try:
        # every child started from naive == 0, so each one answers 1
        assert h.answers(client, 3) == [b"1", b"1", b"1"]
    finally:
        h.stop()
    assert service.naive == 0
    assert service.counted == 3


def test_children_are_reaped_even_when_the_reactor_runs_outside_the_main_thread() -> None:
    result: list[Any] = []

    def build() -> None:
        result.append(Harness(ForkPerRequestStrategy()))

    builder = threading.Thread(target=build)
    builder.start()
    builder.join()
    (h,) = result
    assert not h.server.strategy._watcher.uses_sigchld
    client = h.client()
    client.send(*(f"echo {i}".encode() for i in range(10)))
    try:
        assert h.answers(client, 10) == [str(i).encode() for i in range(10)]
        h.run_until(lambda: not h.server.strategy.children)
    finally:
        h.stop()
    assert child_pids() == []


def test_graceful_stop_waits_for_children_in_flight_and_leaks_nothing() -> None:
    fds = open_fds()
    h = Harness(ForkPerRequestStrategy())
    client = h.client()
    client.send(b"sleep 0.2 a", b"echo b")
    h.run_until(lambda: h.server.strategy.outstanding == 2)
    h.stop()
    client.pump()
    assert client.lines == [b"a", b"b"]
    h.clients.clear()
    client.close()
    assert child_pids() == []
    assert open_fds() == fds
