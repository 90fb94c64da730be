"""Timers: the heap with lazy cancellation and the deadline wheel."""

import math

from muxserver.reactor.timers import DeadlineWheel, TimerHeap


def test_due_timers_come_out_in_time_order():
    heap = TimerHeap()
    for when in (3.0, 1.0, 2.0):
        heap.push(when, print, (when,))
    assert [t.when for t in heap.pop_due(2.5)] == [1.0, 2.0]
    assert heap.next_due() == 3.0


def test_a_cancelled_timer_never_comes_due():
    heap = TimerHeap()
    keep = heap.push(1.0, print, ())
    drop = heap.push(0.5, print, ())
    drop.cancel()
    assert heap.next_due() == 1.0
    assert heap.pop_due(10.0) == [keep]
    assert len(heap) == 0


def test_mass_cancellation_compacts_the_heap():
    heap = TimerHeap()
    timers = [heap.push(float(i), print, ()) for i in range(1000)]
    for timer in timers[:900]:
        timer.cancel()
    assert len(heap._heap) < 500
    assert len(heap) == 100


class Member:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.wheel_slot = None
        self.expired_at: float | None = None

    def current_deadline(self) -> float:
        return self.deadline

    def deadline_expired(self, now: float) -> None:
        self.expired_at = now


def test_the_wheel_expires_members_whose_deadline_passed():
    wheel = DeadlineWheel(granularity=0.5)
    early, late = Member(1.0), Member(5.0)
    wheel.file(early)
    wheel.file(late)
    assert wheel.next_due() == 1.0
    wheel.sweep(1.0)
    assert early.expired_at == 1.0
    assert late.expired_at is None
    assert wheel.next_due() == 5.0


def test_a_member_whose_deadline_moved_is_refiled_not_expired():
    wheel = DeadlineWheel(granularity=1.0)
    member = Member(2.0)
    wheel.file(member)
    member.deadline = 7.5  # activity pushed the deadline out; the wheel was not told
    wheel.sweep(2.0)
    assert member.expired_at is None
    assert wheel.next_due() == 8.0
    wheel.sweep(8.0)
    assert member.expired_at == 8.0


def test_members_without_a_deadline_and_removed_members_are_not_tracked():
    wheel = DeadlineWheel(granularity=1.0)
    never, gone = Member(math.inf), Member(3.0)
    wheel.file(never)
    wheel.file(gone)
    wheel.remove(gone)
    assert wheel.next_due() is None
    assert len(wheel) == 0
