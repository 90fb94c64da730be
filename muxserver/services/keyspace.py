"""The kv demo's data: string keys and values with deadlines, expired lazily and in bounded sweeps.

Theory of operation
-------------------
Deadlines are integer milliseconds on an injected clock (seconds, like ``time.monotonic``), as
Redis keeps them; a key is expired once ``now > deadline``. Two mechanisms remove expired keys:

* *Lazily*: every read goes through :meth:`KeySpace.get` (or a method built on it), which
  deletes the key it finds expired. A key nobody reads stays in memory until...
* *the sweep*: each deadline set is also pushed on a heap of ``(deadline, key)``.
  :meth:`KeySpace.sweep` pops due entries, at most ``limit`` per call, and deletes a key only
  if the popped deadline is still its deadline (overwritten or removed deadlines leave stale
  entries behind: lazy cancellation, as in the reactor's timer heap). When stale entries
  outnumber the live ones the heap is rebuilt from the deadlines, which costs O(n) once per
  O(n) pushes.

Single-threaded: only the thread that owns the service (the reactor thread) may touch it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

__all__ = ["KeySpace"]


class KeySpace:
    """The data: string keys to string values, with optional deadlines (ms on ``clock``).

    Every read goes through :meth:`get` (or :meth:`deadline`), which removes a key whose
    deadline has passed: expiry is lazy, and :meth:`sweep` does the rest in bounded steps.
    """

    __slots__ = ("_clock", "_heap", "data", "expires")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.data: dict[bytes, bytes] = {}
        """Every key and its value (including expired keys not yet removed)."""
        self.expires: dict[bytes, int] = {}
        """Deadlines (ms on the clock) of the keys that have one."""
        self._heap: list[tuple[int, bytes]] = []

    def now_ms(self) -> int:
        """The clock, in whole milliseconds."""
        return int(self._clock() * 1000)

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, or ``None`` if it is absent or has just expired."""
        # hot path: one dict lookup when no key has a deadline
        value = self.data.get(key)
        if value is not None and self.expires:
            when = self.expires.get(key)
            if when is not None and self.now_ms() > when:
                del self.data[key], self.expires[key]
                return None
        return value

    def set(self, key: bytes, value: bytes, keep_ttl: bool = False) -> None:
        """Store ``value``; its deadline goes unless ``keep_ttl``."""
        self.data[key] = value
        if not keep_ttl and self.expires:
            self.expires.pop(key, None)

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; whether a live key was removed."""
        if self.get(key) is None:
            return False
        del self.data[key]
        self.expires.pop(key, None)
        return True

    def deadline(self, key: bytes) -> int | None:
        """The deadline of a live ``key`` (ms on the clock), or ``None`` for none."""
        return self.expires.get(key) if self.get(key) is not None else None

    def set_deadline(self, key: bytes, when: int) -> None:
        """Make the existing ``key`` expire at ``when`` (ms on the clock)."""
        self.expires[key] = when
        heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 2 * len(self.expires) + 1024:
            # Stale entries (overwritten or removed deadlines) dominate: rebuild, amortised O(1).
            self._heap = [(when, key) for key, when in self.expires.items()]
            heapq.heapify(self._heap)

    def persist(self, key: bytes) -> bool:
        """Remove the deadline of a live ``key``; whether it had one."""
        return self.get(key) is not None and self.expires.pop(key, None) is not None

    def flush(self) -> None:
        """Remove every key."""
        self.data.clear()
        self.expires.clear()
        self._heap.clear()

    def sweep(self, limit: int) -> bool:
        """Remove expired keys, looking at ``limit`` deadlines at most; whether more are due."""
        now = self.now_ms()
        heap, expires, data = self._heap, self.expires, self.data
        for _ in range(limit):
            if not heap or heap[0][0] >= now:
                return False
            when, key = heapq.heappop(heap)
            if expires.get(key) == when:
                del data[key], expires[key]
        return bool(heap) and heap[0][0] < now

    def __len__(self) -> int:
        return len(self.data)
