"""ThreadingMixIn and ForkingMixIn: run each request on a thread or in a child process.

The mix-in must come first in the bases (``class S(ThreadingMixIn, TCPServer)``) so that its
``process_request`` overrides the server's.

ThreadingMixIn keeps the standard library's contract: one thread per request running
``process_request_thread``; ``daemon_threads`` makes them daemons; with ``block_on_close`` (the
default) ``server_close()`` joins the non-daemon ones. The threads belong to muxserver's
thread-per-request dispatch strategy, attached to the server's reactor: a thread that finishes
says so through the reactor's wake-up channel and is forgotten at once, and the strategy's
capacity gives the optional ``max_threads`` cap that the standard library lacks.

ForkingMixIn forks per request. Its differences from the standard library are in how the parent
waits for children:

* only its own children are ever waited for (the standard library's ``waitpid(-1)`` at
  ``max_children`` can reap a child that belongs to the rest of the program);
* each child gets a pidfd (Linux) registered in the server's reactor, so a child is reaped as
  soon as it exits, while ``serve_forever`` or ``handle_request`` is waiting -- no zombie
  lingers until the next request or ``poll_interval`` tick;
* ``max_children`` is a cap checked *before* forking, so it is never exceeded; the wait for a
  free slot blocks the serving thread, as in the standard library.

Where pidfds are unavailable, children are reaped (with ``WNOHANG``, per pid) in
``service_actions()`` and ``handle_timeout()``, as the standard library does.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
from typing import TYPE_CHECKING, Any

from muxserver.handlers.base import Request
from muxserver.reactor.dispatch.threads import ThreadPerRequestStrategy
from muxserver.reactor.loop import ReactorState
from muxserver.reactor.poller import READ
from muxserver.service import Peer, Service

if TYPE_CHECKING:
    from muxserver.socketserver.servers import BaseServer as _ServerBase
else:
    _ServerBase = object

__all__ = ["ForkingMixIn", "ThreadingMixIn"]


class _RequestInHand(Request):
    """A socketserver request as the dispatch strategy carries it."""

    __slots__ = ("client_address", "request", "started")

    def __init__(self, request: Any, client_address: Any) -> None:
        self.request = request
        self.client_address = client_address
        self.started = False
        """Set by the worker thread when it begins; a request never started must be closed."""


class _ProcessRequestThread(Service):
    """The service a request thread runs: the server's ``process_request_thread``.

    Whatever escapes it -- an error from ``handle_error`` or ``shutdown_request``, or a
    ``SystemExit`` from the handler -- ends a standard-library request thread and reaches
    ``threading.excepthook``. The strategy would turn such an exception into a quiet result
    (or, for ``SystemExit``, lose track of the thread), so it is reported the standard way here
    and the thread then ends normally.
    """

    def __init__(self, server: ThreadingMixIn) -> None:
        self.server = server

    def handle(self, request: Request, peer: Peer) -> None:
        """Run the request (in the strategy's worker thread)."""
        assert isinstance(request, _RequestInHand)
        request.started = True
        try:
            self.server.process_request_thread(request.request, request.client_address)
        except BaseException:
            exc_type, exc, tb = sys.exc_info()
            threading.excepthook(
                threading.ExceptHookArgs((exc_type, exc, tb, threading.current_thread()))
            )


class _ThreadsInFlight:
    """What the standard library's private ``_threads`` list tells: request threads not yet
    finished (finished ones are never kept -- bpo-37193). Read from the strategy."""

    def __init__(self, strategy: ThreadPerRequestStrategy | None) -> None:
        self._strategy = strategy

    def __len__(self) -> int:
        return 0 if self._strategy is None else self._strategy.stats()["running"]


class ThreadingMixIn(_ServerBase):
    """Handle each request in a new thread.

    Class variables: ``daemon_threads`` (threads do not keep the process alive and are not
    joined), ``block_on_close`` (``server_close()`` waits for the non-daemon threads), and
    muxserver's ``max_threads`` (``None``, the standard library's "no limit", by default; with
    a number, a request arriving while that many threads run waits for one to finish).

    The threads are a :class:`~muxserver.reactor.dispatch.threads.ThreadPerRequestStrategy`
    attached to the server's reactor; each finished thread reports back through the reactor's
    wake-up channel and is forgotten then.
    """

    daemon_threads = False
    block_on_close = True
    max_threads: int | None = None

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """The thread's body: handle the request, report errors, always shut the request down.

        ``SystemExit`` and other non-``Exception`` errors are not passed to ``handle_error``;
        they end the request and reach ``threading.excepthook``.
        """
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a thread to handle the request (after waiting for one, at ``max_threads``)."""
        strategy = self._request_threads()
        while strategy.saturated:
            self._reactor.run_once(None)  # finished threads report through the wake-up fd
        in_hand = _RequestInHand(request, client_address)

        def done(ok: bool, value: Any) -> None:
            if not in_hand.started:  # the strategy refused it (closed): nobody else will
                self.shutdown_request(request)

        strategy.submit(_ProcessRequestThread(self), in_hand, Peer(0, client_address), done)

    @property
    def _threads(self) -> _ThreadsInFlight:
        return _ThreadsInFlight(vars(self).get("_thread_strategy"))

    def _request_threads(self) -> ThreadPerRequestStrategy:
        """The server's thread strategy, made on first use with the current settings."""
        strategy: ThreadPerRequestStrategy | None = vars(self).get("_thread_strategy")
        if strategy is None:
            strategy = ThreadPerRequestStrategy(self.max_threads, name="socketserver-threads")
            strategy.attach(self._reactor)
            self._thread_strategy = strategy
        # The standard library reads these per request, so a change after __init__ counts.
        strategy.daemon_threads = self.daemon_threads
        strategy.block_on_close = self.block_on_close
        return strategy

    def server_close(self) -> None:
        """Close the server; closing its reactor joins the non-daemon request threads."""
        strategy: ThreadPerRequestStrategy | None = vars(self).get("_thread_strategy")
        if strategy is not None:
            strategy.block_on_close = self.block_on_close
        super().server_close()


class _ChildExit:
    """Poller owner for one child's pidfd: readable once the child has exited."""

    __slots__ = ("pid", "server")

    def __init__(self, server: ForkingMixIn, pid: int) -> None:
        self.server = server
        self.pid = pid

    def handle_read(self) -> None:
        """The child exited: reap it now."""
        self.server._reap(self.pid, blocking=False)

    def handle_write(self) -> None:
        """Never called: only read interest is registered."""


class ForkingMixIn(_ServerBase):
    """Handle each request in a new child process.

    Class variables: ``timeout`` (300: ``handle_request`` waits at most that long, then
    ``handle_timeout`` reaps children), ``max_children`` (40), ``block_on_close``
    (``server_close()`` waits for every child). Instance variable: ``active_children``, the
    set of pids not yet reaped (``None`` before the first fork).

    Changes made by a child (to the server, to globals) stay in that child.
    """

    timeout: float | None = 300
    active_children: set[int] | None = None
    max_children = 40
    block_on_close = True

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap finished children; with ``blocking``, wait for all of them.

        While ``max_children`` or more are running, first wait for one of them to exit.
        Only this server's children are waited for.
        """
        if self.active_children is None:
            return
        while len(self.active_children) >= self.max_children:
            self._wait_for_a_child()
        for pid in list(self.active_children):
            self._reap(pid, blocking=blocking)

    def handle_timeout(self) -> None:
        """``handle_request`` timed out: reap finished children."""
        self.collect_children()

    def service_actions(self) -> None:
        """Reap finished children (and wait for a free slot at ``max_children``)."""
        super().service_actions()
        self.collect_children()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Fork; the child handles the request and exits, the parent closes its copy of it.

        The child exits with status 0 after a successful request, 1 otherwise; it never
        returns into the server loop.
        """
        if self.active_children is None:
            self.active_children = set()
        while len(self.active_children) >= self.max_children:
            self._wait_for_a_child()
        pid = os.fork()
        if pid:
            self.active_children.add(pid)
            self._watch_child(pid)
            self.close_request(request)
            return
        # The child. It must never return into the server loop, hence os._exit. It leaves the
        # inherited reactor alone: its epoll set is shared with the parent, so unregistering
        # anything here would change what the parent watches.
        status = 1
        try:
            self.finish_request(request, client_address)
            status = 0
        except Exception:
            self.handle_error(request, client_address)
        finally:
            try:
                self.shutdown_request(request)
            finally:
                os._exit(status)

    def server_close(self) -> None:
        """Close the server, then reap the children (waiting for them with ``block_on_close``)."""
        super().server_close()
        self.collect_children(blocking=self.block_on_close)
        for fd in self._child_fds().values():
            os.close(fd)
        self._child_fds().clear()

    # -- reaping --------------------------------------------------------------------------------

    def _child_fds(self) -> dict[int, int]:
        """pid -> pidfd of the children being watched in the reactor."""
        fds: dict[int, int] = vars(self).setdefault("_pidfds", {})
        return fds

    def _watch_child(self, pid: int) -> None:
        """Register a pidfd for ``pid`` so the reactor reaps it the moment it exits."""
        reactor = self._reactor
        if not hasattr(os, "pidfd_open") or reactor.state is ReactorState.CLOSED:
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return  # an old kernel: service_actions() reaps instead
        self._child_fds()[pid] = fd
        reactor.poller.register(fd, READ, _ChildExit(self, pid))

    def _reap(self, pid: int, *, blocking: bool) -> None:
        """``waitpid`` one of our children; forget it if it has exited."""
        try:
            done, _ = os.waitpid(pid, 0 if blocking else os.WNOHANG)
        except ChildProcessError:
            done = pid  # already reaped elsewhere (or SIGCHLD is ignored): it is gone
        if not done:
            return
        if self.active_children is not None:
            self.active_children.discard(pid)
        fd = self._child_fds().pop(pid, None)
        if fd is not None:
            if self._reactor.state is not ReactorState.CLOSED:
                self._reactor.poller.unregister(fd)
            os.close(fd)

    def _wait_for_a_child(self) -> None:
        """Block until at least one of our children has exited, and reap it."""
        assert self.active_children
        fds = self._child_fds()
        waiter = select.poll()
        for fd in fds.values():
            waiter.register(fd, select.POLLIN)
        # Children without a pidfd cannot wake the poll: look at them again every 50 ms.
        with contextlib.suppress(InterruptedError):
            waiter.poll(None if len(fds) == len(self.active_children) else 50)
        for pid in list(self.active_children):
            self._reap(pid, blocking=False)
