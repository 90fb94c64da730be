"""The reactor: one thread, one poller, timers, cross-thread calls, signals, run and stop.

One pass of the loop (:meth:`Reactor.run_once`):

1. compute how long to wait: zero if callbacks are ready, else until the earliest timer;
2. wait in the poller (the only place the reactor thread blocks);
3. handle every ready fd (the owners' ``handle_read``/``handle_write``/``handle_priority``);
4. run the timers that are due;
5. run the callbacks that were queued *when this step began* -- later ones wait for the next
   pass, so a thread that posts callbacks in a loop cannot starve I/O.

Everything registered in the poller is an *owner*: an object with ``handle_read()``,
``handle_write()`` and (for urgent data) ``handle_priority()``. Listeners, connections,
datagram endpoints, dispatch pipes and the waker are all owners.

Graceful shutdown is coordinated here: :meth:`Reactor.shutdown` stops every listener, asks
every connection to finish what it received and close, waits for the dispatch strategies, and
stops the loop -- or, at the deadline, closes whatever is left and says so in the log.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from muxserver.reactor.poller import HANGUP, PRIORITY, READ, WRITE, Poller, best_poller
from muxserver.reactor.table import ConnectionTable
from muxserver.reactor.timers import Timer, TimerHeap
from muxserver.reactor.wakeup import Waker

__all__ = ["Reactor", "ReactorClosedError", "ReactorState", "Stoppable"]

log = logging.getLogger("muxserver.reactor")

# An error or hang-up is dispatched as both readable and writable: the owner's next read or
# write discovers what happened.
_READABLE = READ | HANGUP
_WRITABLE = WRITE | HANGUP


class ReactorState(enum.Enum):
    """The reactor's life cycle: IDLE -> RUNNING -> (DRAINING ->) STOPPED -> CLOSED."""

    IDLE = "idle"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"
    CLOSED = "closed"


class ReactorClosedError(RuntimeError):
    """The reactor has been closed; nothing can be scheduled on it any more."""


class Stoppable(Protocol):
    """A part the reactor drains on shutdown (listeners, dispatch strategies)."""

    def begin_shutdown(self) -> None:
        """Stop taking new work; finish what is in hand."""
        ...

    def is_idle(self) -> bool:
        """True once nothing is left in hand."""
        ...

    def force_close(self) -> None:
        """Drop whatever is still in hand (the deadline passed); release every resource."""
        ...


class Reactor:
    """A single-threaded event loop over a readiness poller.

    Every method is for the reactor thread except :meth:`call_soon_threadsafe` and
    :meth:`stop_threadsafe`. ``clock`` returns monotonic seconds; tests may inject one.
    """

    def __init__(
        self, *, poller: Poller | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.poller = poller if poller is not None else best_poller()
        self.time = clock
        self.table = ConnectionTable()
        self.state = ReactorState.IDLE
        self.now = clock()
        """The clock's reading when the current pass's wait ended (cheaper than calling it)."""
        self._timers = TimerHeap()
        self._ready: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._waker = Waker()
        self.poller.register(self._waker.reader_fd, READ, self)
        self._signal_handlers: dict[int, Callable[[int], None]] = {}
        self._previous_signal_handlers: dict[int, Any] = {}
        self._previous_wakeup_fd: int | None = None
        self._stoppables: list[Stoppable] = []
        self._thread_id: int | None = None
        self._pid = os.getpid()
        self._stopping = False
        self._shutdown_deadline: Timer | None = None
        self._shutdown_started = 0.0
        self.shutdown_report: str | None = None
        """One line describing how the last graceful shutdown went, once it has."""
        self.pass_observer: Callable[[float], None] | None = None
        """Called after each pass with the seconds spent handling what the wait returned (the
        wait itself excluded); metrics use it for the loop latency histogram. ``None`` (the
        default) costs one attribute read and a test per pass."""

    # -- scheduling -----------------------------------------------------------------------

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` in the next pass (reactor thread only)."""
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> bool:
        """Run ``callback(*args)`` in the reactor thread soon; callable from any thread.

        Returns ``False`` (and schedules nothing) if the reactor is already closed, so a
        late worker thread can tell that its result has nowhere to go.
        """
        if self.state is ReactorState.CLOSED:
            return False
        self._ready.append((callback, args))
        self._waker.wake()
        return True

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` after ``delay`` seconds; returns a cancellable handle."""
        return self._timers.push(self.time() + delay, callback, args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` at ``when`` on the reactor's clock."""
        return self._timers.push(when, callback, args)

    # -- owners ---------------------------------------------------------------------------

    def add_stoppable(self, part: Stoppable) -> None:
        """Include ``part`` in graceful shutdown."""
        self._stoppables.append(part)

    def remove_stoppable(self, part: Stoppable) -> None:
        """Forget ``part`` (it closed by itself)."""
        if part in self._stoppables:
            self._stoppables.remove(part)

    def handle_read(self) -> None:
        """The waker is readable: drain it and run the handlers of any signals it carried."""
        for signum in self._waker.drain():
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                self._run_callback(handler, (signum,))

    def handle_write(self) -> None:
        """Never called: the waker is not watched for writing."""

    # -- signals --------------------------------------------------------------------------

    def add_signal_handler(self, signum: int, handler: Callable[[int], None]) -> None:
        """Run ``handler(signum)`` in the reactor thread when ``signum`` arrives.

        Raises:
            RuntimeError: if called outside the main thread (Python delivers signals only
                there).
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "signal handlers can only be installed from the main thread; run the "
                "reactor in the main thread or handle signals there"
            )
        if self._previous_wakeup_fd is None:
            self._previous_wakeup_fd = signal.set_wakeup_fd(
                self._waker.writer_fd, warn_on_full_buffer=False
            )
        if signum not in self._previous_signal_handlers:
            self._previous_signal_handlers[signum] = signal.getsignal(signum)
        self._signal_handlers[signum] = handler
        # The Python-level handler only has to exist: the C handler writes the signal number
        # to the wake-up fd, and handle_read() dispatches it in the reactor thread.
        signal.signal(signum, _note_signal)

    def stop_on_signals(
        self, signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM), grace: float = 10.0
    ) -> None:
        """Shut down gracefully (within ``grace`` seconds) on each of ``signums``.

        A second signal while draining closes everything at once.
        """

        def on_signal(signum: int) -> None:
            if self.state is ReactorState.DRAINING:
                log.warning("second %s while draining: closing now", signal.Signals(signum).name)
                self._finish_shutdown(forced=True)
            else:
                log.info("%s received: shutting down", signal.Signals(signum).name)
                self.shutdown(grace)

        for signum in signums:
            self.add_signal_handler(signum, on_signal)

    def _restore_signals(self) -> None:
        for signum, previous in self._previous_signal_handlers.items():
            signal.signal(signum, previous)
        self._previous_signal_handlers.clear()
        self._signal_handlers.clear()
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None

    # -- running --------------------------------------------------------------------------

    def run(self) -> None:
        """Run passes until :meth:`stop` (or a finished :meth:`shutdown`)."""
        if self.state is ReactorState.CLOSED:
            raise ReactorClosedError("this reactor is closed; create a new one")
        if self._thread_id is not None:
            raise RuntimeError("the reactor is already running")
        self._thread_id = threading.get_ident()
        if self.state is not ReactorState.DRAINING:
            self.state = ReactorState.RUNNING
        self._stopping = False
        try:
            while not self._stopping:
                self.run_once()
        finally:
            self._thread_id = None
            if self.state is not ReactorState.CLOSED:
                self.state = ReactorState.STOPPED

    def run_once(self, timeout: float | None = None) -> None:
        """One pass: wait for I/O or the next timer (at most ``timeout``), then run due work."""
        if self._ready or self._stopping:
            wait: float | None = 0.0
        else:
            due = self._timers.next_due()
            wait = None if due is None else max(0.0, due - self.time())
            if timeout is not None and (wait is None or wait > timeout):
                wait = timeout
        events = self.poller.poll(wait)
        self.now = self.time()
        observer = self.pass_observer
        started = time.perf_counter() if observer is not None else 0.0
        # hot path: one readiness dispatch per ready fd; keep allocation out of this loop
        owners = self.poller.owners
        for fd, mask in events:
            owner = owners.get(fd)
            if owner is None:
                continue  # closed earlier in this pass
            try:
                if mask == READ:  # the common case: readable, nothing else
                    owner.handle_read()
                else:
                    if mask & _READABLE:
                        owner.handle_read()
                    if mask & _WRITABLE:
                        owner.handle_write()
                    if mask & PRIORITY:
                        owner.handle_priority()
            except Exception:
                log.exception("unhandled error in %r; the reactor goes on", owner)
        if self._timers:
            for timer in self._timers.pop_due(self.now):
                if not timer.cancelled:  # an earlier callback of this pass may cancel it
                    self._run_callback(timer.callback, timer.args)
        ready = self._ready
        for _ in range(len(ready)):
            callback, args = ready.popleft()
            self._run_callback(callback, args)
        if observer is not None:
            observer(time.perf_counter() - started)

    def _run_callback(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("unhandled error in callback %r; the reactor goes on", callback)

    def in_reactor_thread(self) -> bool:
        """True when called from the thread currently running the reactor."""
        return self._thread_id == threading.get_ident()

    def stop(self) -> None:
        """Stop :meth:`run` after the current pass. Connections stay open."""
        self._stopping = True

    def stop_threadsafe(self) -> None:
        """:meth:`stop`, callable from any thread."""
        self.call_soon_threadsafe(self.stop)

    # -- graceful shutdown ------------------------------------------------------------------

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, finish every request received, flush, close; then stop the loop.

        After ``grace`` seconds whatever is left is closed hard and logged. The loop keeps
        running until then, so call this from a callback (or before :meth:`run`).
        """
        if self.state in (ReactorState.DRAINING, ReactorState.CLOSED):
            return
        self.state = ReactorState.DRAINING
        self._shutdown_started = self.time()
        for part in list(self._stoppables):
            part.begin_shutdown()
        for connection in self.table.records():
            connection.drain()
        self._shutdown_deadline = self.call_later(grace, self._finish_shutdown, True)
        self.call_soon(self._check_drained)

    def _check_drained(self) -> None:
        if self.state is not ReactorState.DRAINING:
            return
        if len(self.table) == 0 and all(part.is_idle() for part in self._stoppables):
            self._finish_shutdown(forced=False)
        else:
            self.call_later(0.01, self._check_drained)

    def _finish_shutdown(self, forced: bool) -> None:
        if self.state is not ReactorState.DRAINING:
            return
        if self._shutdown_deadline is not None:
            self._shutdown_deadline.cancel()
        left = len(self.table)
        for connection in self.table.records():
            connection.abort()
        for part in list(self._stoppables):
            part.force_close()
        took = self.time() - self._shutdown_started
        if forced:
            self.shutdown_report = (
                f"shutdown deadline passed after {took:.2f}s: closed {left} connection(s) hard"
            )
            log.warning("%s", self.shutdown_report)
        else:
            self.shutdown_report = f"drained in {took:.3f}s"
            log.info("%s", self.shutdown_report)
        self.state = ReactorState.STOPPED
        self._stopping = True

    def close(self) -> None:
        """Release everything: open connections, listeners, strategies, poller, waker, signals.

        Call it after :meth:`run` returned. Closing twice is harmless.
        """
        if self.state is ReactorState.CLOSED:
            return
        if self._thread_id is not None:
            raise RuntimeError("close() the reactor after run() has returned")
        for connection in self.table.records():
            connection.abort()
        for part in list(self._stoppables):
            part.force_close()
        self._stoppables.clear()
        # Callbacks may release resources (e.g. late worker results); run what is queued.
        while self._ready:
            callback, args = self._ready.popleft()
            self._run_callback(callback, args)
        if os.getpid() == self._pid:
            self._restore_signals()
        self.state = ReactorState.CLOSED
        self.poller.unregister(self._waker.reader_fd)
        self.poller.close()
        self._waker.close()

    def close_after_fork(self) -> None:
        """In a child forked from this reactor's process: let go of the parent's reactor.

        Closes every fd the poller watches (listeners, connections, pipes), the poller and
        the waker *without unregistering anything* -- an epoll set is shared with the parent
        -- and puts back the default disposition of the signals the reactor handled, so a
        signal sent to the child is not written into the parent's wake-up channel. The
        reactor must not be used in the child afterwards.
        """
        for connection in self.table.records():  # a paused fd may sit outside the poller
            with contextlib.suppress(OSError):
                os.close(connection.fd)
        self.poller.close_after_fork()
        with contextlib.suppress(OSError):
            os.close(self._waker.writer_fd)
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(-1)
        for signum in self._signal_handlers:
            signal.signal(signum, signal.SIG_DFL)

    def __enter__(self) -> Reactor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Reactor {self.state.value} connections={len(self.table)}>"


def _note_signal(signum: int, frame: object) -> None:
    """Python-level handler: nothing to do, the wake-up fd carries the signal to the loop."""
