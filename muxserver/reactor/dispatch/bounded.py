"""What every off-reactor strategy shares: admission, deadlines and exactly-once answers.

Theory of operation
-------------------
A request handed to a thread or process strategy becomes a :class:`Job`. From then on two
questions are answered separately, because they have different answers when things go wrong:

* **Has the request been answered?** ``Job.settle(ok, value)`` calls the connection's ``done``
  callback the first time and is a no-op afterwards. A service that finishes, a deadline that
  passes, a worker that dies and a forced shutdown all race to settle; the first one wins and
  the others are discarded (a thread's late result after its deadline is simply dropped).
* **Is the capacity still in use?** A job holds one unit of the strategy's capacity from
  admission until :meth:`BoundedStrategy._release` -- which a subclass calls when the work
  really stopped (the thread returned, the worker answered or died, the child was reaped), not
  when the answer was sent. A thread that overran its deadline still occupies a worker, so it
  still counts.

``saturated`` is ``outstanding >= capacity``. The connection submits first and asks second,
so each connection may add one job past the bound before it pauses: the true bound is
``capacity`` plus one per feeding connection, and each of those connections has stopped reading.

Every method here runs in the reactor thread.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from muxserver.handlers.base import Request
from muxserver.reactor.dispatch.base import DispatchError, DispatchStrategy, DoneCallback
from muxserver.reactor.timers import Timer
from muxserver.service import Peer, Service

__all__ = ["BoundedStrategy", "Job"]


class Job:
    """One submitted request on its way through a strategy (reactor-thread bookkeeping)."""

    __slots__ = ("done", "peer", "request", "service", "settled", "started", "timer", "worker")

    def __init__(self, service: Service, request: Request, peer: Peer, done: DoneCallback) -> None:
        self.service = service
        self.request = request
        self.peer = peer
        self.done = done
        self.settled = False
        """True once ``done`` was called; read (racily, harmlessly) by worker threads."""
        self.started: float | None = None
        """When the service began (reactor clock), set by whoever runs the job."""
        self.timer: Timer | None = None
        self.worker: Any = None
        """Whatever runs the job (a thread, a worker process record), for the subclass."""

    def settle(self, ok: bool, value: Any) -> bool:
        """Answer the request unless it was already answered; True if this call answered it."""
        if self.settled:
            return False
        self.settled = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.done(ok, value)
        return True


class BoundedStrategy(DispatchStrategy):
    """A strategy with a capacity, an optional per-request deadline and a closed state.

    Subclasses implement :meth:`_start` (begin running an admitted job) and may override
    :meth:`_expired` (a job's deadline passed: kill what runs it, or drop it from a queue).
    They call :meth:`_complete` or :meth:`_release` exactly once per admitted job.

    Args:
        capacity: jobs admitted at most before ``saturated`` is reported.
        deadline: seconds a service may run (counted from when it started, not from when
            it was queued) before its request is answered with a :class:`DispatchError`
            (``None``: no deadline).
    """

    def __init__(self, capacity: int, deadline: float | None) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError(
                f"{type(self).__name__} needs a capacity of at least 1, not {capacity}"
            )
        if deadline is not None and deadline <= 0:
            raise ValueError(f"deadline must be positive seconds or None, not {deadline!r}")
        self.capacity = capacity
        self.deadline = deadline
        self.outstanding = 0
        """Jobs admitted whose work has not stopped yet (queued or running)."""
        self.peak = 0
        """The largest ``outstanding`` seen: shows how far the bound was honoured."""
        self.completed = 0
        self.failed = 0
        self.expired = 0
        self.closed = False
        self.shutting_down = False
        self._unsaturated: collections.deque[Callable[[], None]] = collections.deque()

    # -- the DispatchStrategy interface ----------------------------------------------------

    def submit(self, service: Service, request: Request, peer: Peer, done: DoneCallback) -> None:
        """Admit the request and start (or queue) it; answer at once if the strategy closed."""
        # hot path: one allocation (the Job), one optional timer
        if self.closed or self.reactor is None:
            done(False, DispatchError(f"the {self.name} strategy is closed"))
            return
        job = Job(service, request, peer, done)
        self.outstanding += 1
        self.peak = max(self.peak, self.outstanding)
        if self.deadline is not None:
            job.timer = self.reactor.call_later(self.deadline, self._deadline_passed, job)
        self._start(job)

    @property
    def saturated(self) -> bool:
        """True while as many jobs as ``capacity`` are queued or running."""
        return self.outstanding >= self.capacity

    def when_unsaturated(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once, in the reactor thread, when a unit of capacity frees."""
        self._unsaturated.append(callback)

    def begin_shutdown(self) -> None:
        """Keep serving what was (and still is being) submitted; the reactor drains us."""
        self.shutting_down = True

    def is_idle(self) -> bool:
        """True when no admitted job is queued or running."""
        return self.outstanding == 0

    def stats(self) -> dict[str, int]:
        """Counters: capacity, outstanding, peak, completed, failed, expired."""
        return {
            "capacity": self.capacity,
            "outstanding": self.outstanding,
            "peak": self.peak,
            "completed": self.completed,
            "failed": self.failed,
            "expired": self.expired,
        }

    # -- for subclasses ----------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        raise NotImplementedError

    def _expired(self, job: Job) -> None:
        """The running ``job`` overran its deadline and was answered with an error. Default:
        nothing (the work goes on and its late result is discarded)."""

    def _complete(self, job: Job, ok: bool, value: Any) -> None:
        """The work of ``job`` finished with ``(ok, value)``: answer (if still due), release."""
        try:
            if job.settle(ok, value):
                if ok:
                    self.completed += 1
                else:
                    self.failed += 1
        finally:
            self._release()  # whatever the answer's delivery raised: never leak capacity

    def _release(self) -> None:
        """One unit of capacity is free again: wake connections waiting for room."""
        self.outstanding -= 1
        waiting = self._unsaturated
        # Each callback may submit again and saturate us; stop as soon as that happens.
        while waiting and self.outstanding < self.capacity:
            waiting.popleft()()

    def _fail_all(self, jobs: list[Job], reason: str) -> None:
        """Answer every job in ``jobs`` with a DispatchError (used by force_close)."""
        for job in jobs:
            if job.settle(False, DispatchError(reason)):
                self.failed += 1

    def _deadline_passed(self, job: Job) -> None:
        # The deadline bounds the *service* time: a job still waiting for a worker has not
        # used any of it yet. The timer was armed at submission, so look again when it could
        # have run out -- no extra wake-up per request is needed to learn when a job started.
        reactor = self.reactor
        assert reactor is not None and self.deadline is not None
        started = job.started
        if started is None or started + self.deadline > reactor.time():
            start = reactor.time() if started is None else started
            job.timer = reactor.call_at(start + self.deadline, self._deadline_passed, job)
            return
        job.timer = None
        message = f"the service did not answer within the {self.deadline}s deadline ({self.name})"
        if job.settle(False, DispatchError(message)):
            self.expired += 1
            self._expired(job)
