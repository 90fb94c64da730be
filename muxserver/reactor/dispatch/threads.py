"""Thread strategies: services that block (sleep, disk, a database) run on threads.

Theory of operation
-------------------
The reactor thread admits a request as a :class:`~muxserver.reactor.dispatch.bounded.Job` and
hands it to a thread; the thread calls ``service.handle`` and posts the outcome back with
``reactor.call_soon_threadsafe`` -- the wake-up channel -- so the answer, the capacity
bookkeeping and the ``done`` callback all happen in the reactor thread. Worker threads never
touch a socket, the connection table or the strategy's counters.

Two shapes, for the two habits socketserver users have:

* :class:`ThreadPoolStrategy` -- ``workers`` threads (started on demand, kept until close) fed
  from a queue of at most ``queue_size`` requests. The default choice.
* :class:`ThreadPerRequestStrategy` -- a new thread per request, like ``ThreadingMixIn``,
  with its ``daemon_threads`` and ``block_on_close`` switches and an optional ``max_threads``.

Deadlines: a thread cannot be killed. When a service has run longer than the deadline its
request is answered with a :class:`~muxserver.reactor.dispatch.base.DispatchError` at once;
the thread runs on, still counts against the capacity, and its late result is discarded.

Threads are started lazily, on the first request that needs one, so a process strategy
attached to the same reactor can pre-fork its workers before any thread exists.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from typing import Any

from muxserver.reactor.dispatch.base import DispatchError
from muxserver.reactor.dispatch.bounded import BoundedStrategy, Job

__all__ = ["ThreadPerRequestStrategy", "ThreadPoolStrategy"]

log = logging.getLogger("muxserver.dispatch")

_thread_numbers = itertools.count(1)


def _run(job: Job) -> tuple[bool, Any]:
    """Call the job's service (in a worker thread)."""
    try:
        return True, job.service.handle(job.request, job.peer)
    except Exception as exc:
        return False, exc
    except BaseException as exc:  # sys.exit() in a service must not kill the pool's thread
        return False, DispatchError(f"the service raised {exc!r}")


class ThreadPoolStrategy(BoundedStrategy):
    """Run services on a bounded pool of threads fed by a bounded queue.

    Args:
        workers: the most threads that run services at once.
        queue_size: requests that may wait for a free thread (default ``2 * workers``); the
            strategy reports ``saturated`` at ``workers + queue_size`` requests in hand.
        deadline: seconds a service may run before its request is answered with a
            ``DispatchError`` (its late result is discarded; see the module docstring).
        join_timeout: how long :meth:`force_close` waits for each busy thread to finish.
        name: the strategy's name for routing and logs.

    Raises:
        ValueError: for a non-positive ``workers``, a negative ``queue_size`` or ``deadline``.
    """

    def __init__(
        self,
        workers: int = 8,
        *,
        queue_size: int | None = None,
        deadline: float | None = None,
        join_timeout: float = 5.0,
        name: str = "thread-pool",
    ) -> None:
        if workers < 1:
            raise ValueError(f"ThreadPoolStrategy needs at least 1 worker, not {workers}")
        if queue_size is None:
            queue_size = 2 * workers
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, not {queue_size}")
        super().__init__(workers + queue_size, deadline)
        self.name = name
        self.workers = workers
        self.join_timeout = join_timeout
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def _start(self, job: Job) -> None:
        # Enough threads for every admitted job, up to `workers`: no thread is idle while
        # work waits, and none is started that could not have work.
        if len(self._threads) < self.workers and len(self._threads) < self.outstanding:
            thread = threading.Thread(
                target=self._work, name=f"muxserver-{self.name}-{next(_thread_numbers)}"
            )
            thread.daemon = True  # a stuck service must not keep the process alive forever
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": out of threads or memory
                if not self._threads:  # no thread would ever take the job
                    self._complete(job, False, DispatchError(f"cannot start a thread: {exc}"))
                    return
                log.warning("%s: cannot start another thread (%s); queueing", self.name, exc)
            else:
                self._threads.append(thread)
        self._queue.put(job)

    def _work(self) -> None:
        """A worker thread's loop: take a job, run it, post the outcome to the reactor."""
        reactor = self.reactor
        assert reactor is not None
        get = self._queue.get
        clock = reactor.time
        while True:
            job = get()
            if job is None:
                return
            job.started = clock()  # read by the deadline timer: a plain store is enough
            outcome = _run(job)
            if not reactor.call_soon_threadsafe(self._complete, job, *outcome):
                return  # the reactor is closed: nobody is left to answer

    def stats(self) -> dict[str, int]:
        """Counters, plus the number of threads started."""
        return {**super().stats(), "threads": len(self._threads)}

    def force_close(self) -> None:
        """Drop queued requests, stop and join every thread (each within ``join_timeout``)."""
        if self.closed:
            return
        self.closed = True
        dropped = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                dropped.append(job)
        self._fail_all(dropped, f"the {self.name} strategy closed before running the request")
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(self.join_timeout)
            if thread.is_alive():
                log.warning(
                    "%s: thread %s still busy after %.1fs; leaving it (daemon) behind",
                    self.name,
                    thread.name,
                    self.join_timeout,
                )
        self._threads.clear()


class ThreadPerRequestStrategy(BoundedStrategy):
    """Run each request's service on a thread of its own (socketserver's ``ThreadingMixIn``).

    Args:
        max_threads: threads running at once before ``saturated`` is reported (``None``: no
            limit -- socketserver's behaviour, fine for trusted, light traffic only).
        daemon_threads: make the threads daemons (the process may exit while they run).
        block_on_close: :meth:`force_close` joins every non-daemon thread it started, however
            long they take -- as ``ThreadingMixIn.server_close`` does.
        deadline: seconds a service may run before its request is answered with a
            ``DispatchError`` (the thread runs on; its result is discarded).
        name: the strategy's name for routing and logs.
    """

    def __init__(
        self,
        max_threads: int | None = None,
        *,
        daemon_threads: bool = False,
        block_on_close: bool = True,
        deadline: float | None = None,
        name: str = "thread-per-request",
    ) -> None:
        if max_threads is not None and max_threads < 1:
            raise ValueError(f"max_threads must be at least 1 or None, not {max_threads}")
        super().__init__(max_threads if max_threads is not None else 2**62, deadline)
        self.name = name
        self.max_threads = max_threads
        self.daemon_threads = daemon_threads
        self.block_on_close = block_on_close
        self.started = 0
        self._running: set[threading.Thread] = set()
        self._exiting: list[threading.Thread] = []

    def _start(self, job: Job) -> None:
        thread = threading.Thread(
            target=self._work,
            args=(job,),
            name=f"muxserver-{self.name}-{next(_thread_numbers)}",
            daemon=self.daemon_threads,
        )
        job.worker = thread
        assert self.reactor is not None
        job.started = self.reactor.time()
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": fail this request only
            self._complete(job, False, DispatchError(f"cannot start a thread: {exc}"))
            return
        self._running.add(thread)
        self.started += 1

    def _work(self, job: Job) -> None:
        """The body of one request's thread."""
        ok, value = _run(job)
        reactor = self.reactor
        assert reactor is not None
        reactor.call_soon_threadsafe(self._finished, job, ok, value)

    def _finished(self, job: Job, ok: bool, value: Any) -> None:
        # The thread has posted its last word and is exiting; keep it to join later, and
        # forget the ones that are gone so a long-running server does not accumulate them.
        thread: threading.Thread = job.worker
        self._running.discard(thread)
        self._exiting.append(thread)
        if len(self._exiting) >= 64:
            self._exiting = [t for t in self._exiting if t.is_alive()]
        self._complete(job, ok, value)

    def stats(self) -> dict[str, int]:
        """Counters, plus threads started and running."""
        return {**super().stats(), "started": self.started, "running": len(self._running)}

    def force_close(self) -> None:
        """Join the threads (if ``block_on_close`` and not ``daemon_threads``), then close."""
        if self.closed:
            return
        self.closed = True
        threads = [*self._running, *self._exiting]
        self._exiting.clear()
        if self.block_on_close and not self.daemon_threads:
            for thread in threads:
                thread.join()
        self._running.clear()
