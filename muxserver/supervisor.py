"""The supervisor: pre-forked worker processes sharing the listening sockets.

Theory of operation
-------------------
The supervisor binds nothing itself and serves nothing: the command line binds every socket
first, then :class:`Supervisor` forks ``workers`` processes that inherit them. Each worker runs
its own reactor (``work(link)``) and accepts on the shared sockets; the kernel gives each new
connection to whichever worker accepts first. The listening sockets stay open in the
supervisor for its whole life, which is what makes restarts and reloads lossless: while any
worker lives, or none, the kernel keeps queueing new connections -- nobody is ever refused.

Each worker holds the write end of a pipe to the supervisor and writes two lines on it:
``ready`` once it listens, ``summary {json}`` when it has drained. The supervisor's own reactor
watches the pipes and the signals:

==========  ===================================================================================
SIGCHLD     reap; a worker that died unasked is restarted after a back-off that doubles (from
            0.1 s up to 30 s) while workers keep dying young (< 5 s), and resets otherwise
SIGTERM,    drain: SIGTERM to every worker, wait until all have exited (SIGKILL after
SIGINT      ``grace`` + 5 s), then return; a second signal forwards a second SIGTERM, which
            makes the workers close at once
SIGHUP      graceful reload: call ``before_reload`` (e.g. re-import the application), start a
            new generation of workers, and once every one of them is ready -- accepting --
            SIGTERM the old generation, which drains. If the new ones are not ready within
            ``ready_timeout``, they are stopped and the old ones keep serving.
==========  ===================================================================================

Workers are forked from the supervisor's reactor thread; in the child the supervisor's reactor
is let go with :meth:`~muxserver.reactor.Reactor.close_after_fork` (its epoll set is shared with
the parent) before ``work`` runs, and the child always leaves with ``os._exit``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from muxserver.reactor import Reactor
from muxserver.reactor.poller import READ
from muxserver.systemd import Notifier

__all__ = ["Supervisor", "SupervisorReport", "WorkerLink"]

log = logging.getLogger("muxserver.supervisor")

_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 30.0
_YOUNG = 5.0  # a worker that dies younger than this counts towards a crash loop
_KILL_AFTER = 5.0  # seconds past the grace before stragglers are killed


class WorkerLink:
    """A worker's end of its pipe to the supervisor: its number and the two messages."""

    def __init__(self, index: int, generation: int, fd: int) -> None:
        self.index = index
        self.generation = generation
        self._fd = fd

    def ready(self) -> None:
        """Tell the supervisor this worker accepts connections."""
        self._send("ready")

    def summary(self, values: dict[str, Any]) -> None:
        """Send the worker's final numbers (JSON-able)."""
        self._send("summary " + json.dumps(values))

    def _send(self, line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self._fd, (line + "\n").encode())


@dataclass
class _Worker:
    index: int
    generation: int
    pid: int
    fd: int
    started: float
    ready: bool = False
    stopping: bool = False
    summary: dict[str, Any] | None = None
    buffer: bytes = b""
    supervisor: Supervisor | None = field(default=None, repr=False)

    def handle_read(self) -> None:
        """The worker's pipe is readable: collect lines (EOF when it exits)."""
        assert self.supervisor is not None
        self.supervisor._pipe_readable(self)

    def handle_write(self) -> None:
        """Never called: the pipe is only read."""


@dataclass
class SupervisorReport:
    """What the workers did: their summaries, restarts, reloads and the drain time."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0
    reloads: int = 0
    drain_seconds: float = 0.0
    killed: int = 0


class Supervisor:
    """Run ``workers`` copies of ``work(link) -> exit status`` and keep them running.

    Args:
        work: runs in each forked worker; it must call ``link.ready()`` once it accepts and
            may call ``link.summary(...)`` before returning its exit status.
        workers: how many workers to keep.
        grace: how long a draining worker may take (its own graceful stop deadline).
        before_reload: called in the supervisor on SIGHUP, before new workers are forked;
            if it raises, the reload is abandoned (logged) and the old workers keep serving.
        notifier: systemd notifications (READY after the first generation is ready,
            RELOADING/READY around a reload, STOPPING on shutdown).
        on_ready: called once, when the first generation is ready.
        ready_timeout: how long a new generation may take to become ready on reload.
        on_exit: called with a worker's pid once it has been reaped, whatever the reason
            (e.g. to drop what the worker left behind: its metrics snapshot).
    """

    def __init__(
        self,
        work: Callable[[WorkerLink], int],
        workers: int,
        *,
        grace: float = 10.0,
        before_reload: Callable[[], None] | None = None,
        notifier: Notifier | None = None,
        on_ready: Callable[[], None] | None = None,
        ready_timeout: float = 30.0,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.work = work
        self.workers = workers
        self.grace = grace
        self.before_reload = before_reload
        self.notifier = notifier
        self.on_ready = on_ready
        self.ready_timeout = ready_timeout
        self.on_exit = on_exit
        self.generation = 0
        self.report = SupervisorReport()
        self.reactor = Reactor()
        self._workers: dict[int, _Worker] = {}  # pid -> worker
        self._backoff: dict[int, float] = {}  # index -> next restart delay
        self._stopping = False
        self._stop_started = 0.0
        self._reloading = False
        self._announced = False

    # -- public -----------------------------------------------------------------------------

    def run(self) -> SupervisorReport:
        """Start the workers and supervise them until they have all drained after SIGTERM."""
        reactor = self.reactor
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                reactor.add_signal_handler(signum, self._on_stop_signal)
            reactor.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
            reactor.add_signal_handler(signal.SIGCHLD, self._on_sigchld)
            self.generation = 1
            for index in range(self.workers):
                self._spawn(index)
            if self.notifier is not None:
                self.notifier.keep_alive(reactor)
            reactor.run()
        finally:
            self._kill_all()
            reactor.close()
        return self.report

    @property
    def pids(self) -> list[int]:
        """The pids of the live workers (of every generation)."""
        return sorted(self._workers)

    # -- starting ---------------------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        if self._stopping:
            return
        read_fd, write_fd = os.pipe()
        generation = self.generation
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                os.close(read_fd)
                # A process group of its own: a terminal's Ctrl-C or a group-wide SIGTERM
                # reaches the supervisor only, which relays it once (a second SIGTERM would
                # make the worker close at once instead of draining).
                os.setpgid(0, 0)
                self.reactor.close_after_fork()
                status = self.work(WorkerLink(index, generation, write_fd))
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        worker = _Worker(index, generation, pid, read_fd, time.monotonic(), supervisor=self)
        self._workers[pid] = worker
        self.reactor.poller.register(read_fd, READ, worker)
        log.info("worker %d (pid %d, generation %d) started", index, pid, generation)

    def _pipe_readable(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_pipe(worker)
            return
        worker.buffer += data
        while b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            if line == b"ready":
                worker.ready = True
                self._check_generation_ready()
            elif line.startswith(b"summary "):
                with contextlib.suppress(ValueError):
                    worker.summary = json.loads(line[8:])

    def _close_pipe(self, worker: _Worker) -> None:
        if worker.fd >= 0:
            self.reactor.poller.unregister(worker.fd)
            os.close(worker.fd)
            worker.fd = -1

    def _check_generation_ready(self) -> None:
        current = [w for w in self._workers.values() if w.generation == self.generation]
        if len(current) < self.workers or not all(w.ready for w in current):
            return
        if not self._announced:
            self._announced = True
            if self.notifier is not None:
                self.notifier.ready(f"{self.workers} workers serving")
            if self.on_ready is not None:
                self.on_ready()
        if self._reloading:
            self._reloading = False
            old = [w for w in self._workers.values() if w.generation < self.generation]
            log.info(
                "reload: generation %d ready; draining %d old worker(s)", self.generation, len(old)
            )
            for worker in old:
                self._stop_worker(worker)
            if self.notifier is not None:
                self.notifier.ready(f"{self.workers} workers serving (reloaded)")

    # -- signals ----------------------------------------------------------------------------

    def _on_stop_signal(self, signum: int) -> None:
        if self._stopping:
            log.warning("second %s: workers close now", signal.Signals(signum).name)
            for pid in list(self._workers):
                _signal(pid, signal.SIGTERM)
            return
        log.info("%s received: draining %d worker(s)", signal.Signals(signum).name, len(self))
        self._stopping = True
        self._stop_started = time.monotonic()
        if self.notifier is not None:
            self.notifier.stopping()
        for worker in list(self._workers.values()):
            if not worker.stopping:  # an old generation already draining: a second SIGTERM
                self._stop_worker(worker)  # would make it close its connections at once
        self.reactor.call_later(self.grace + _KILL_AFTER, self._kill_stragglers)
        self._maybe_done()

    def _on_reload_signal(self, signum: int) -> None:
        if self._stopping or self._reloading:
            log.warning("SIGHUP ignored: %s", "stopping" if self._stopping else "reload running")
            return
        if self.before_reload is not None:
            try:
                self.before_reload()
            except Exception:
                log.exception("reload abandoned: preparing it failed; the workers keep serving")
                return
        if self.notifier is not None:
            self.notifier.reloading()
        self._reloading = True
        self.report.reloads += 1
        self.generation += 1
        log.info("SIGHUP: starting generation %d", self.generation)
        for index in range(self.workers):
            self._spawn(index)
        self.reactor.call_later(self.ready_timeout, self._reload_deadline, self.generation)

    def _reload_deadline(self, generation: int) -> None:
        if not self._reloading or generation != self.generation:
            return
        log.error(
            "reload abandoned: generation %d not ready after %ss; old workers keep serving",
            generation,
            self.ready_timeout,
        )
        self._reloading = False
        for worker in list(self._workers.values()):
            if worker.generation == generation:
                self._stop_worker(worker)
        self.generation -= 1

    def _on_sigchld(self, signum: int) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            self._pipe_readable(worker)  # a summary written just before exiting
            self._close_pipe(worker)
            if self.on_exit is not None:
                try:
                    self.on_exit(pid)
                except Exception:
                    log.exception("on_exit failed for worker %d", pid)
            if worker.summary is not None:
                self.report.summaries.append(worker.summary)
            if not worker.stopping and not self._stopping:
                self._restart_later(worker, status)
        self._maybe_done()

    # -- restarts and stopping ------------------------------------------------------------

    def _restart_later(self, worker: _Worker, status: int) -> None:
        lived = time.monotonic() - worker.started
        delay = self._backoff.get(worker.index, _BACKOFF_MIN)
        if lived >= _YOUNG:
            delay = _BACKOFF_MIN
        self._backoff[worker.index] = min(delay * 2, _BACKOFF_MAX)
        log.error(
            "worker %d (pid %d) died (%s) after %.1fs; restarting in %.1fs",
            worker.index,
            worker.pid,
            _describe(status),
            lived,
            delay,
        )
        self.report.restarts += 1
        self.reactor.call_later(delay, self._respawn, worker.index, worker.generation)

    def _respawn(self, index: int, generation: int) -> None:
        if self._stopping or generation != self.generation:
            return
        alive = [
            w for w in self._workers.values() if w.generation == generation and w.index == index
        ]
        if not alive:
            self._spawn(index)

    def _stop_worker(self, worker: _Worker) -> None:
        worker.stopping = True
        _signal(worker.pid, signal.SIGTERM)

    def _maybe_done(self) -> None:
        if self._stopping and not self._workers:
            self.report.drain_seconds = time.monotonic() - self._stop_started
            self.reactor.stop()

    def _kill_stragglers(self) -> None:
        for pid in list(self._workers):
            log.error("worker pid %d did not drain in time; killing it", pid)
            self.report.killed += 1
            _signal(pid, signal.SIGKILL)

    def _kill_all(self) -> None:
        """Last resort on the way out (an exception in the supervisor): no orphan survives."""
        for pid, worker in list(self._workers.items()):
            _signal(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self._close_pipe(worker)
        self._workers.clear()

    def __len__(self) -> int:
        return len(self._workers)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
