"""Fork per request: each request's service runs in a child process of its own.

Theory of operation
-------------------
This is socketserver's ``ForkingMixIn`` without its blocking ``waitpid``. For each request the
reactor forks; the child inherits the service, the request and the peer by ``fork`` (nothing
needs to be picklable on the way in), runs the service, writes one answer frame on its pipe
and leaves with ``os._exit``. The parent watches the pipe's read end in the poller. A child's
life in the parent, each step in the reactor thread::

    forked -> answered? -> pipe EOF -> reaped -> slot free

The answer settles the request; a pipe that reaches end of file without an answer (the child
crashed or was killed) fails it with a ``DispatchError``. The slot counts against
``max_children`` until the child is *reaped*, so a burst of requests can never leave more
than ``max_children`` processes (zombies included) behind. Requests beyond the limit wait in
a queue, which the ``saturated`` flag keeps short by pausing the connections that feed it.

Deadlines kill the child (SIGKILL); its request is answered with a ``DispatchError`` at once.

Fork safety and state (read this before using it): a service runs on a *copy* of the parent's
memory. Whatever it changes -- counters, caches, attributes -- disappears with the child. To
change the parent's state, return :class:`~muxserver.reactor.dispatch.children.ParentChange`;
the parent applies it in the reactor thread. Fork before starting threads where you can:
forking a process that has threads (3.12+ warns about it) copies only the forking thread, and
a lock another thread held stays locked forever in the child.
"""

from __future__ import annotations

import collections
import logging
import os
from functools import partial

from muxserver.reactor.dispatch.base import DispatchError
from muxserver.reactor.dispatch.bounded import BoundedStrategy, Job
from muxserver.reactor.dispatch.children import (
    ChildWatcher,
    FrameReader,
    answer_of,
    close_parent_fd,
    describe_status,
    fork_child,
    kill,
    own_parent_fd,
    run_service,
    send_answer,
)
from muxserver.reactor.loop import Reactor
from muxserver.reactor.poller import READ

__all__ = ["ForkPerRequestStrategy"]

log = logging.getLogger("muxserver.dispatch")


class _Child:
    """The parent's record of one child: the poller owner of its answer pipe."""

    __slots__ = ("answered", "eof", "job", "killed", "pid", "reader", "reaped", "strategy")

    def __init__(self, strategy: ForkPerRequestStrategy, job: Job, fd: int) -> None:
        self.strategy = strategy
        self.job = job
        self.pid = 0
        self.reader = FrameReader(fd)
        self.answered = False
        self.eof = False
        self.reaped = False
        self.killed = False

    def handle_read(self) -> None:
        """The answer pipe is readable (or at end of file)."""
        self.strategy._pipe_readable(self)

    def handle_write(self) -> None:
        """Unused: answer pipes are only read (hang-ups are seen by handle_read)."""

    def __repr__(self) -> str:
        return f"<child {self.pid} of {self.strategy.name}>"


class ForkPerRequestStrategy(BoundedStrategy):
    """Run each request in a freshly forked child process.

    Args:
        max_children: children alive at most (socketserver's ``max_children``); requests
            beyond it wait, and the strategy reports ``saturated``.
        deadline: seconds a child may run before it is killed and its request answered with
            a ``DispatchError``.
        name: the strategy's name for routing and logs.
    """

    def __init__(
        self,
        max_children: int = 40,
        *,
        deadline: float | None = None,
        name: str = "fork-per-request",
    ) -> None:
        super().__init__(max_children, deadline)
        self.name = name
        self.max_children = max_children
        self.forked = 0
        self._waiting: collections.deque[Job] = collections.deque()
        self._children: dict[int, _Child] = {}
        self._watcher: ChildWatcher | None = None

    def attach(self, reactor: Reactor) -> None:
        """Bind to ``reactor`` and to its child watcher (SIGCHLD when in the main thread)."""
        super().attach(reactor)
        self._watcher = ChildWatcher.of(reactor)

    @property
    def children(self) -> list[int]:
        """The pids of the children not reaped yet."""
        return list(self._children)

    def _start(self, job: Job) -> None:
        if len(self._children) < self.max_children:
            self._fork(job)
        else:
            self._waiting.append(job)

    def _fork(self, job: Job) -> None:
        reactor = self.reactor
        assert reactor is not None and self._watcher is not None
        read_fd, write_fd = os.pipe()
        own_parent_fd(read_fd)  # before the fork, so the child knows to close it
        child = _Child(self, job, read_fd)
        try:
            pid = fork_child(reactor, (write_fd,), partial(_child_main, job, write_fd))
        except OSError as exc:
            os.close(write_fd)
            close_parent_fd(read_fd)
            log.error("%s: cannot fork: %s", self.name, exc)
            self._complete(job, False, DispatchError(f"{self.name}: cannot fork: {exc}"))
            return
        os.close(write_fd)
        child.pid = pid
        job.worker = child
        job.started = reactor.time()
        self.forked += 1
        self._children[pid] = child
        reactor.poller.register(read_fd, READ, child)
        self._watcher.watch(pid, self._reaped)

    def _pipe_readable(self, child: _Child) -> None:
        reader = child.reader
        for frame in reader.read():
            if not child.answered:
                child.answered = True
                self._settle(child.job, *answer_of(child.job, frame))
        if reader.eof and not child.eof:
            child.eof = True
            assert self.reactor is not None and self._watcher is not None
            self.reactor.poller.unregister(reader.fd)
            close_parent_fd(reader.fd)
            if not child.answered:
                self._settle(
                    child.job,
                    False,
                    DispatchError(f"child process {child.pid} exited without answering"),
                )
            self._watcher.reap_soon()
            self._maybe_gone(child)

    def _settle(self, job: Job, ok: bool, value: object) -> None:
        if job.settle(ok, value):
            if ok:
                self.completed += 1
            else:
                self.failed += 1

    def _reaped(self, pid: int, status: int) -> None:
        child = self._children.get(pid)
        if child is None:
            return
        child.reaped = True
        if os.WIFSIGNALED(status) and not child.killed:
            log.warning("%s: child %d died (%s)", self.name, pid, describe_status(status))
        self._maybe_gone(child)

    def _maybe_gone(self, child: _Child) -> None:
        """Free the slot once the child both closed its pipe and was reaped."""
        if not (child.eof and child.reaped):
            return
        if self._children.pop(child.pid, None) is None:
            return  # already freed: the reaping and the pipe's end both got here
        if self.closed:
            return
        while self._waiting and len(self._children) < self.max_children:
            self._fork(self._waiting.popleft())
        self._release()

    def _expired(self, job: Job) -> None:
        child: _Child = job.worker
        child.killed = True
        kill(child.pid)

    def stats(self) -> dict[str, int]:
        """Counters, plus children alive, requests waiting and children forked."""
        return {
            **super().stats(),
            "children": len(self._children),
            "waiting": len(self._waiting),
            "forked": self.forked,
        }

    def force_close(self) -> None:
        """Kill and reap every child, close every pipe, fail whatever was not answered."""
        if self.closed:
            return
        self.closed = True
        reason = f"the {self.name} strategy closed before the request was answered"
        self._fail_all(list(self._waiting), reason)
        self._waiting.clear()
        watcher = self._watcher
        for child in list(self._children.values()):
            child.killed = True
            kill(child.pid)
            if watcher is not None:
                watcher.reap_blocking(child.pid)
            if not child.eof and self.reactor is not None:
                self.reactor.poller.unregister(child.reader.fd)
                close_parent_fd(child.reader.fd)
            self._fail_all([child.job], reason)
        self._children.clear()
        self.outstanding = 0


def _child_main(job: Job, answer_fd: int) -> None:
    """The child's whole life: serve one request, answer, return (to ``os._exit``)."""
    send_answer(answer_fd, run_service(job.service, job.request, job.peer))
