"""The reactor loop: callbacks, timers, cross-thread wake-ups, stop and close."""

import os
import threading
import time

import pytest

from muxserver.reactor import Reactor, ReactorState
from muxserver.reactor.poller import Poller
from muxserver.testing.live import ReactorThread


def test_call_soon_runs_callbacks_in_order(poller: Poller):
    with Reactor(poller=poller) as reactor:
        seen: list[int] = []
        for i in range(5):
            reactor.call_soon(seen.append, i)
        reactor.call_soon(reactor.stop)
        reactor.run()
        assert seen == [0, 1, 2, 3, 4]


def test_callbacks_queued_during_a_pass_wait_for_the_next_pass(poller: Poller):
    with Reactor(poller=poller) as reactor:
        seen: list[str] = []

        def first() -> None:
            seen.append("first")
            reactor.call_soon(seen.append, "later")

        reactor.call_soon(first)
        reactor.run_once(timeout=0)
        assert seen == ["first"]
        reactor.run_once(timeout=0)
        assert seen == ["first", "later"]


def test_timers_fire_in_order_and_cancelled_ones_do_not(poller: Poller):
    with Reactor(poller=poller) as reactor:
        seen: list[str] = []
        reactor.call_later(0.03, seen.append, "b")
        reactor.call_later(0.01, seen.append, "a")
        reactor.call_later(0.02, seen.append, "cancelled").cancel()
        reactor.call_later(0.05, reactor.stop)
        started = time.monotonic()
        reactor.run()
        assert seen == ["a", "b"]
        assert time.monotonic() - started >= 0.05


def test_an_exception_in_a_callback_is_logged_and_the_loop_goes_on(poller, caplog):
    with Reactor(poller=poller) as reactor:
        seen: list[str] = []
        reactor.call_soon(lambda: 1 / 0)
        reactor.call_soon(seen.append, "after")
        reactor.call_soon(reactor.stop)
        reactor.run()
        assert seen == ["after"]
        assert "ZeroDivisionError" in caplog.text


@pytest.mark.timeout(20)
def test_eight_threads_waking_the_reactor_at_once_lose_nothing(poller: Poller):
    per_thread = 2000
    with ReactorThread(poller=poller) as live:
        counts: list[int] = []
        barrier = threading.Barrier(8)

        def producer() -> None:
            barrier.wait()
            for i in range(per_thread):
                live.reactor.call_soon_threadsafe(counts.append, i)

        threads = [threading.Thread(target=producer) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert live.call(len, counts) == 8 * per_thread


def test_a_wake_up_interrupts_a_long_wait(poller: Poller):
    with ReactorThread(poller=poller) as live:
        live.call(lambda: None)  # the reactor is now waiting with nothing to do
        started = time.monotonic()
        assert live.call(lambda: "ran") == "ran"
        assert time.monotonic() - started < 1.0


def test_posting_to_a_closed_reactor_returns_false(poller: Poller):
    reactor = Reactor(poller=poller)
    reactor.close()
    assert reactor.state is ReactorState.CLOSED
    assert reactor.call_soon_threadsafe(print) is False
    with pytest.raises(RuntimeError, match="closed"):
        reactor.run()


def test_closing_releases_every_descriptor(poller: Poller):
    before = set(os.listdir("/proc/self/fd"))
    reactor = Reactor(poller=poller)
    reactor.call_soon(reactor.stop)
    reactor.run()
    reactor.close()
    assert set(os.listdir("/proc/self/fd")) - before == set()


def test_signal_handlers_need_the_main_thread(poller: Poller):
    reactor = Reactor(poller=poller)
    errors: list[BaseException] = []

    def install() -> None:
        try:
            reactor.add_signal_handler(15, print)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join()
    reactor.close()
    assert errors and "main thread" in str(errors[0])
