"""Timers: one heap with lazy cancellation, and a deadline wheel for per-connection timeouts.

The reactor keeps a single binary heap of :class:`Timer` handles ordered by due time.
Cancelling a timer only marks it; the heap drops marked entries when they reach the top, and
compacts itself when more than half of a large heap is cancelled, so a program that arms and
cancels many timers does not leak them.

Idle and request timeouts do *not* get a timer each: a connection only stores deadlines, and a
:class:`DeadlineWheel` groups connections into coarse time buckets. When a bucket comes due the
wheel asks each member for its *current* deadline: members whose deadline moved (because they
were active since) are re-filed, the others have expired. Activity therefore costs one float
store, and tens of thousands of idle connections cost one set entry each.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["DeadlineWheel", "Deadlined", "Timer", "TimerHeap"]

_COMPACT_MIN_SIZE = 100


class Timer:
    """A scheduled call. Returned by ``call_later``/``call_at``; :meth:`cancel` it to drop it."""

    __slots__ = ("_heap", "args", "callback", "cancelled", "when")

    def __init__(
        self, when: float, callback: Callable[..., Any], args: tuple[Any, ...], heap: TimerHeap
    ) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._heap: TimerHeap | None = heap

    def cancel(self) -> None:
        """Prevent the call. Harmless if it already ran or was cancelled."""
        if not self.cancelled:
            self.cancelled = True
            if self._heap is not None:
                self._heap._note_cancel()
                self._heap = None

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else f"at {self.when:.3f}"
        return f"<Timer {getattr(self.callback, '__qualname__', self.callback)} {state}>"


class TimerHeap:
    """A min-heap of :class:`Timer` with lazy cancellation. Reactor-thread only."""

    __slots__ = ("_cancelled", "_heap")

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def push(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> Timer:
        """Schedule ``callback(*args)`` at monotonic time ``when``; return its handle."""
        timer = Timer(when, callback, args, self)
        heapq.heappush(self._heap, timer)
        return timer

    def next_due(self) -> float | None:
        """The due time of the earliest live timer, or ``None`` if there is none."""
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0].when if heap else None

    def pop_due(self, now: float) -> list[Timer]:
        """Remove and return, in due order, every live timer due at or before ``now``."""
        heap = self._heap
        due: list[Timer] = []
        while heap and heap[0].when <= now:
            timer = heapq.heappop(heap)
            if timer.cancelled:
                self._cancelled -= 1
            else:
                timer._heap = None
                due.append(timer)
        return due

    def _note_cancel(self) -> None:
        self._cancelled += 1
        if len(self._heap) > _COMPACT_MIN_SIZE and self._cancelled * 2 > len(self._heap):
            self._heap = [t for t in self._heap if not t.cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0


class Deadlined(Protocol):
    """What a :class:`DeadlineWheel` member must offer."""

    wheel_slot: int | None

    def current_deadline(self) -> float:
        """The member's earliest deadline now (``math.inf`` for none)."""
        ...

    def deadline_expired(self, now: float) -> None:
        """Called once when the member's deadline has passed; the member leaves the wheel."""
        ...


class DeadlineWheel:
    """Coarse buckets of members with deadlines, swept by one reactor timer.

    ``granularity`` bounds how late an expiry may be noticed. The owner calls :meth:`file`
    when a member gets a deadline, :meth:`remove` when it goes away, and :meth:`sweep` when
    :meth:`next_due` comes; it never needs to call anything on ordinary activity.
    """

    __slots__ = ("_buckets", "_order", "granularity")

    def __init__(self, granularity: float) -> None:
        if granularity <= 0:
            raise ValueError(f"granularity must be positive, not {granularity!r}")
        self.granularity = granularity
        self._buckets: dict[int, set[Deadlined]] = {}
        self._order: list[int] = []

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def file(self, member: Deadlined) -> None:
        """(Re)file ``member`` under its current deadline; no-op if it has none."""
        self.remove(member)
        deadline = member.current_deadline()
        if deadline == math.inf:
            return
        slot = math.ceil(deadline / self.granularity)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = set()
            heapq.heappush(self._order, slot)
        bucket.add(member)
        member.wheel_slot = slot

    def remove(self, member: Deadlined) -> None:
        """Take ``member`` out of the wheel, if it is in it."""
        slot = member.wheel_slot
        if slot is not None:
            member.wheel_slot = None
            bucket = self._buckets.get(slot)
            if bucket is not None:
                bucket.discard(member)

    def next_due(self) -> float | None:
        """When the earliest non-empty bucket comes due, or ``None``."""
        order = self._order
        while order:
            slot = order[0]
            if self._buckets.get(slot):
                return slot * self.granularity
            heapq.heappop(order)
            self._buckets.pop(slot, None)
        return None

    def sweep(self, now: float) -> None:
        """Expire or re-file the members of every bucket due at ``now``."""
        order = self._order
        limit = math.floor(now / self.granularity)
        while order and order[0] <= limit:
            slot = heapq.heappop(order)
            members: Iterable[Deadlined] = self._buckets.pop(slot, ())
            for member in members:
                member.wheel_slot = None
                if member.current_deadline() <= now:
                    member.deadline_expired(now)
                else:
                    self.file(member)
