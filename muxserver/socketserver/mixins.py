"""ThreadingMixIn and ForkingMixIn: run each request on a thread or in a child process.

The mix-in must come first in the bases (``class S(ThreadingMixIn, TCPServer)``) so that its
``process_request`` overrides the server's.

ThreadingMixIn keeps the standard library's contract to the letter: one ``threading.Thread``
per request running ``process_request_thread``; ``daemon_threads`` makes them daemons;
with ``block_on_close`` (the default) the non-daemon ones are kept in ``_threads`` so that
``server_close()`` joins them, and finished ones are dropped whenever a request starts
(bpo-37193) -- and here also on every ``service_actions()``, so an idle server does not hold
on to the threads of its last burst.

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
import threading
from typing import TYPE_CHECKING, Any

from muxserver.reactor.loop import ReactorState
from muxserver.reactor.poller import READ

if TYPE_CHECKING:
    from muxserver.socketserver.servers import BaseServer as _ServerBase
else:
    _ServerBase = object

__all__ = ["ForkingMixIn", "ThreadingMixIn"]


class _Threads(list[threading.Thread]):
    """The non-daemon request threads still worth joining; finished ones are dropped on add."""

    def append(self, thread: threading.Thread) -> None:
        """Drop finished threads, then keep ``thread`` unless it is a daemon."""
        self.reap()
        if thread.daemon:
            return
        super().append(thread)

    def pop_all(self) -> list[threading.Thread]:
        """Empty the list and return what it held."""
        self[:], result = [], self[:]
        return result

    def join(self) -> None:
        """Wait for every kept thread."""
        for thread in self.pop_all():
            thread.join()

    def reap(self) -> None:
        """Forget the threads that have finished."""
        self[:] = (thread for thread in self if thread.is_alive())


class _NoThreads:
    """Stands for ``_Threads`` when ``block_on_close`` is false: keeps nothing, joins nothing."""

    def append(self, thread: threading.Thread) -> None:
        """Keep nothing."""

    def join(self) -> None:
        """Nothing to wait for."""

    def reap(self) -> None:
        """Nothing to forget."""


class ThreadingMixIn(_ServerBase):
    """Handle each request in a new thread.

    Class variables: ``daemon_threads`` (threads do not keep the process alive; they are not
    joined), ``block_on_close`` (``server_close()`` waits for the non-daemon threads).
    """

    daemon_threads = False
    block_on_close = True
    _threads: _Threads | _NoThreads = _NoThreads()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """The thread's body: handle the request, report errors, always shut the request down.

        ``SystemExit`` and other non-``Exception`` errors are not passed to ``handle_error``;
        they end the thread and reach ``threading.excepthook``.
        """
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a thread to handle the request."""
        if self.block_on_close:
            vars(self).setdefault("_threads", _Threads())
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address)
        )
        thread.daemon = self.daemon_threads
        self._threads.append(thread)
        thread.start()

    def service_actions(self) -> None:
        """Forget finished threads while idle too, not only when the next request starts."""
        super().service_actions()
        self._threads.reap()

    def server_close(self) -> None:
        """Close the server, then join the non-daemon request threads (``block_on_close``)."""
        super().server_close()
        self._threads.join()


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
