"""A pre-forked process pool: N long-lived workers for CPU-bound services.

Theory of operation
-------------------
``attach`` forks ``workers`` processes at once -- as early as possible, before thread
strategies start threads. Each worker has two pipes: requests in, answers out. The parent's
answer end is watched by the reactor's poller; its request end is written without blocking
and watched for writability only while a frame is still pending. No thread is added to the
parent, and there is no ``ProcessPoolExecutor`` management thread.

A worker serves one request at a time, so a worker that dies takes exactly one request with
it. The life of a worker, in the parent::

    IDLE <-> BUSY -> GONE        (GONE: answer pipe at EOF, or request pipe broken)

Requests wait in a queue (``queue_size``) for an idle worker; ``saturated`` pauses the
connections that feed the pool while ``workers + queue_size`` requests are in hand.

What travels: each request frame is ``(service key, service or None, request, peer)``,
pickled. A worker receives each service object once and keeps it by key, so a
``FunctionService`` (pickled by reference to its module-level function) costs a few bytes.
Services, requests, peers and results must be picklable; a failure to pickle fails only that
request, with a ``DispatchError`` that says so.

Failure: a worker that dies (killed, crashed) fails the request it held with a
``DispatchError``, is reaped (SIGCHLD through the wake-up fd, or polling after its pipe's EOF)
and is replaced at once, up to ``max_restarts`` replacements over the pool's life. A request
whose service overruns its deadline is answered with a ``DispatchError`` and its worker is
killed and replaced (time spent queued does not count).

State: workers serve copies of the service. See :class:`~.children.ParentChange`.
"""

from __future__ import annotations

import collections
import enum
import logging
import os
import pickle
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from muxserver.reactor.dispatch.base import DispatchError
from muxserver.reactor.dispatch.bounded import BoundedStrategy, Job
from muxserver.reactor.dispatch.children import (
    ChildWatcher,
    FrameReader,
    FrameWriter,
    answer_of,
    close_parent_fd,
    describe_status,
    encode_frame,
    fork_child,
    kill,
    own_parent_fd,
    read_frame,
    run_service,
    send_answer,
)
from muxserver.reactor.poller import READ, WRITE
from muxserver.service import Service

if TYPE_CHECKING:
    from muxserver.reactor.loop import Reactor

__all__ = ["ProcessPoolStrategy", "WorkerState"]

log = logging.getLogger("muxserver.dispatch")


class WorkerState(enum.Enum):
    """A pool worker as the parent sees it: IDLE <-> BUSY -> GONE."""

    IDLE = "idle"
    BUSY = "busy"
    GONE = "gone"


class _Worker:
    """The parent's record of one worker; the poller owner of both its pipe ends."""

    __slots__ = ("job", "killed", "pid", "reader", "services", "state", "strategy", "writer")

    def __init__(self, strategy: ProcessPoolStrategy, requests_fd: int, answers_fd: int) -> None:
        self.strategy = strategy
        self.pid = 0
        self.state = WorkerState.IDLE
        self.job: Job | None = None
        self.writer = FrameWriter(requests_fd)
        self.reader = FrameReader(answers_fd)
        self.services: set[int] = set()
        self.killed = False

    def handle_read(self) -> None:
        """The answer pipe is readable (or at EOF: the worker is gone)."""
        self.strategy._answers_readable(self)

    def handle_write(self) -> None:
        """The request pipe can take the rest of a pending frame."""
        self.strategy._requests_writable(self)

    def __repr__(self) -> str:
        return f"<worker {self.pid} of {self.strategy.name} ({self.state.value})>"


class ProcessPoolStrategy(BoundedStrategy):
    """Run services in a pool of pre-forked worker processes.

    Args:
        workers: worker processes (default: the number of CPUs).
        queue_size: requests that may wait for an idle worker (default ``2 * workers``).
        deadline: seconds a service may run before its request is answered with a
            ``DispatchError``; the worker serving it is killed and replaced.
        max_restarts: workers replaced at most over the pool's life (``None``: no limit);
            a service that kills every worker it touches must not make the reactor fork
            forever.
        name: the strategy's name for routing and logs.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        queue_size: int | None = None,
        deadline: float | None = None,
        max_restarts: int | None = 100,
        name: str = "process-pool",
    ) -> None:
        workers = workers if workers is not None else os.cpu_count() or 1
        if workers < 1:
            raise ValueError(f"ProcessPoolStrategy needs at least 1 worker, not {workers}")
        if queue_size is None:
            queue_size = 2 * workers
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, not {queue_size}")
        super().__init__(workers + queue_size, deadline)
        self.name = name
        self.workers = workers
        self.max_restarts = max_restarts
        self.restarts = 0
        self._pool: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._queue: collections.deque[Job] = collections.deque()
        self._services: dict[int, Service] = {}  # keeps keyed services alive: ids stay unique
        self._gone: dict[int, _Worker] = {}  # pid -> worker whose pipes closed, not yet reaped
        self._watcher: ChildWatcher | None = None

    def attach(self, reactor: Reactor) -> None:
        """Bind to ``reactor`` and fork the workers now."""
        first = self.reactor is None
        super().attach(reactor)
        if first:
            self._watcher = ChildWatcher.of(reactor)
            for _ in range(self.workers):
                self._spawn()

    @property
    def pids(self) -> list[int]:
        """The pids of the live workers."""
        return [worker.pid for worker in self._pool]

    # -- workers ------------------------------------------------------------------------------

    def _spawn(self) -> None:
        reactor = self.reactor
        assert reactor is not None and self._watcher is not None
        requests_read, requests_write = os.pipe()
        answers_read, answers_write = os.pipe()
        own_parent_fd(requests_write)  # before the fork, so the child closes them
        own_parent_fd(answers_read)
        worker = _Worker(self, requests_write, answers_read)
        try:
            pid = fork_child(
                reactor,
                (requests_read, answers_write),
                partial(_worker_main, requests_read, answers_write),
            )
        except OSError as exc:
            log.error("%s: cannot fork a worker: %s", self.name, exc)
            for fd in (requests_read, answers_write):
                os.close(fd)
            close_parent_fd(requests_write)
            close_parent_fd(answers_read)
            return
        os.close(requests_read)
        os.close(answers_write)
        worker.pid = pid
        self._pool.append(worker)
        self._idle.append(worker)
        reactor.poller.register(answers_read, READ, worker)
        self._watcher.watch(pid, self._reaped)

    def _lost(self, worker: _Worker) -> None:
        """The worker is gone (pipe EOF or EPIPE): fail its request, replace it."""
        if worker.state is WorkerState.GONE:
            return
        reactor = self.reactor
        assert reactor is not None and self._watcher is not None
        worker.state = WorkerState.GONE
        self._pool.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        reactor.poller.unregister(worker.reader.fd)
        if worker.writer.pending:
            reactor.poller.unregister(worker.writer.fd)
        close_parent_fd(worker.reader.fd)
        close_parent_fd(worker.writer.fd)
        self._gone[worker.pid] = worker
        self._watcher.reap_soon()
        if not self.closed:
            if self.max_restarts is None or self.restarts < self.max_restarts:
                self.restarts += 1
                self._spawn()
            elif not self._pool:
                log.error("%s: every worker died and max_restarts is spent", self.name)
                self._fail_all(list(self._queue), f"{self.name} has no worker left")
                for _ in range(len(self._queue)):
                    self._queue.popleft()
                    self._release()
        job, worker.job = worker.job, None
        if job is not None:
            message = f"worker process {worker.pid} of {self.name} died while serving the request"
            self._complete(job, False, DispatchError(message))
        self._dispatch()

    def _reaped(self, pid: int, status: int) -> None:
        worker = self._gone.pop(pid, None)
        if worker is None:
            # Reaped before its pipe reported EOF (SIGCHLD came first). The process is gone,
            # so its pipe holds whatever it wrote, then EOF: read that, which ends in _lost.
            for candidate in self._pool:
                if candidate.pid == pid:
                    self._answers_readable(candidate)
                    self._lost(candidate)  # no-op if the read above saw EOF
                    worker = self._gone.pop(pid, None)
                    break
        if worker is not None and not worker.killed and not self.closed:
            log.warning(
                "%s: worker %d exited (%s); replaced", self.name, pid, describe_status(status)
            )

    # -- requests --------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        if not self._pool and not self.closed and self._spent():
            # Every worker died and none will be started again: answer now, never queue.
            self._complete(job, False, DispatchError(f"{self.name} has no worker left"))
            return
        self._queue.append(job)
        self._dispatch()

    def _spent(self) -> bool:
        return self.max_restarts is not None and self.restarts >= self.max_restarts

    def _dispatch(self) -> None:
        """Give queued requests to idle workers."""
        while self._queue and self._idle:
            self._send(self._idle.pop(), self._queue.popleft())

    def _send(self, worker: _Worker, job: Job) -> None:
        key = id(job.service)
        first = key not in worker.services
        try:
            frame = encode_frame((key, job.service if first else None, job.request, job.peer))
        except Exception as exc:
            self._idle.append(worker)
            message = f"{self.name} could not pickle the request or its service: {exc!r}"
            self._complete(job, False, DispatchError(message))
            return
        self._services[key] = job.service
        worker.services.add(key)
        worker.state = WorkerState.BUSY
        worker.job = job
        job.worker = worker
        assert self.reactor is not None
        job.started = self.reactor.time()
        had_pending = worker.writer.pending
        try:
            worker.writer.write(frame)
        except OSError:
            # The worker died before it could take this request (its end of the pipe is
            # gone, nothing was written): the request goes back to the head of the queue for
            # another worker; only a request a worker held may fail with it.
            worker.job = None
            job.worker = None
            self._queue.appendleft(job)
            self._lost(worker)
            self._dispatch()
            return
        if worker.writer.pending and not had_pending:
            assert self.reactor is not None
            self.reactor.poller.register(worker.writer.fd, WRITE, worker)

    def _requests_writable(self, worker: _Worker) -> None:
        if worker.state is WorkerState.GONE or not worker.writer.pending:
            return
        try:
            worker.writer.flush()
        except OSError:
            self._lost(worker)
            return
        if not worker.writer.pending:
            assert self.reactor is not None
            self.reactor.poller.unregister(worker.writer.fd)

    def _answers_readable(self, worker: _Worker) -> None:
        if worker.state is WorkerState.GONE:
            return
        for frame in worker.reader.read():
            job, worker.job = worker.job, None
            if job is None:
                continue  # cannot happen: one request at a time
            if not worker.killed:
                worker.state = WorkerState.IDLE
                self._idle.append(worker)
            self._complete(job, *answer_of(job, frame))
        if worker.reader.eof:
            self._lost(worker)
        else:
            self._dispatch()

    def _expired(self, job: Job) -> None:
        worker: _Worker = job.worker
        if worker.state is WorkerState.BUSY and worker.job is job:
            worker.killed = True
            kill(worker.pid)

    # -- life cycle ------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters, plus workers alive and busy, requests queued and workers replaced."""
        return {
            **super().stats(),
            "workers": len(self._pool),
            "busy": len(self._pool) - len(self._idle),
            "queued": len(self._queue),
            "restarts": self.restarts,
        }

    def is_idle(self) -> bool:
        """True when no request is queued or being served."""
        return self.outstanding == 0

    def force_close(self, grace: float = 1.0) -> None:
        """Stop every worker (EOF on its request pipe; SIGKILL after ``grace``) and reap it."""
        if self.closed:
            return
        self.closed = True
        self._fail_all(list(self._queue), f"the {self.name} strategy closed")
        self._queue.clear()
        for worker in list(self._pool):
            worker.killed = True
            if worker.state is WorkerState.BUSY:
                kill(worker.pid)
            self._lost(worker)  # closes the pipes: an idle worker reads EOF and exits
        deadline = time.monotonic() + grace
        watcher = self._watcher
        while self._gone and watcher is not None:
            watcher.reap()
            if time.monotonic() > deadline:
                for pid in list(self._gone):
                    kill(pid)
                    watcher.reap_blocking(pid)
                break
            time.sleep(0.001)
        self._gone.clear()
        self.outstanding = 0


def _worker_main(requests_fd: int, answers_fd: int) -> None:
    """A worker's whole life: serve request frames until the parent closes the pipe."""
    services: dict[int, Any] = {}
    while True:
        frame = read_frame(requests_fd)
        if frame is None:
            return
        try:
            key, service, request, peer = pickle.loads(frame)
        except Exception as exc:
            message = f"the worker could not unpickle the request: {exc!r}"
            send_answer(answers_fd, (False, DispatchError(message), ""))
            continue
        if service is not None:
            services[key] = service
        else:
            service = services.get(key)
        if service is None:
            message = "the worker never received this service (it failed to unpickle earlier)"
            send_answer(answers_fd, (False, DispatchError(message), ""))
            continue
        send_answer(answers_fd, run_service(service, request, peer))
