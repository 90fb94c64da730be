"""A real reactor on a background thread, for tests that use real sockets.

:class:`ReactorThread` runs a :class:`~muxserver.reactor.Reactor` in a thread of its own so a
test can talk to it with ordinary blocking sockets. Everything that touches the reactor is run
*in* its thread through :meth:`ReactorThread.call`, which waits for the result (or re-raises
the exception) -- the one-thread-owns-I/O invariant holds in tests too.

Stopping is complete: :meth:`ReactorThread.stop` drains gracefully (or stops at once), joins
the thread and closes the reactor, so no fd, thread or child outlives a test.
"""

from __future__ import annotations

import queue
import socket
import tempfile
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from muxserver.handlers.base import Handler, Request
from muxserver.reactor import Reactor, StreamServer
from muxserver.reactor.poller import Poller
from muxserver.service import Peer, Service

__all__ = ["ReactorThread", "connect"]

T = TypeVar("T")


class ReactorThread:
    """Run a reactor on a daemon thread; configure and inspect it with :meth:`call`."""

    def __init__(self, reactor: Reactor | None = None, *, poller: Poller | None = None) -> None:
        self.reactor = reactor if reactor is not None else Reactor(poller=poller)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> ReactorThread:
        """Start the reactor thread; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("this ReactorThread is already started")
        self._thread = threading.Thread(target=self._run, name="muxserver-reactor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.reactor.run()
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def call(self, function: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run ``function(*args)`` in the reactor thread and return its result.

        Raises:
            TimeoutError: if the reactor did not run it within ``timeout`` seconds.
            Exception: whatever ``function`` raised.
        """
        if self._thread is None or not self._thread.is_alive():
            if self._error is not None:  # the loop died: nothing would serve what we set up
                raise RuntimeError("the reactor thread died") from self._error
            return function(*args)  # not started yet, or stopped: no other thread to race
        results: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def run() -> None:
            try:
                results.put((True, function(*args)))
            except BaseException as exc:
                results.put((False, exc))

        if not self.reactor.call_soon_threadsafe(run):
            raise RuntimeError("the reactor is closed")
        try:
            ok, value = results.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"the reactor did not run {function!r} in {timeout}s") from None
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def serve(
        self,
        handler_factory: Callable[[], Handler],
        service: Service | Callable[[Request, Peer], Any] | None = None,
        *,
        family: str = "tcp",
        **server_options: Any,
    ) -> tuple[StreamServer, Any]:
        """Start a :class:`StreamServer` on a free loopback address; return it and the address.

        ``family`` is ``"tcp"`` (127.0.0.1), ``"tcp6"`` (::1) or ``"unix"`` (a path in a
        temporary directory removed by :meth:`stop`).
        """

        def make() -> tuple[StreamServer, Any]:
            server = StreamServer(self.reactor, handler_factory, service, **server_options)
            if family == "tcp":
                listener = server.listen_tcp("127.0.0.1", 0)
            elif family == "tcp6":
                listener = server.listen_tcp("::1", 0)
            elif family == "unix":
                listener = server.listen_unix(self.temp_path("server.sock"))
            else:
                raise ValueError(f"family must be 'tcp', 'tcp6' or 'unix', not {family!r}")
            return server, listener.address

        return self.call(make)

    def temp_path(self, name: str) -> str:
        """A path for ``name`` inside a temporary directory owned by this object."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="muxserver-")
        return f"{self._tmpdir.name}/{name}"

    def stop(self, grace: float | None = None, timeout: float = 30.0) -> None:
        """Stop the reactor (draining gracefully if ``grace`` is given), join, and close.

        Raises:
            RuntimeError: if the thread did not finish within ``timeout`` seconds, or the
                reactor's run() raised.
        """
        thread = self._thread
        if thread is not None and thread.is_alive():
            if grace is None:
                self.reactor.stop_threadsafe()
            else:
                self.reactor.call_soon_threadsafe(self.reactor.shutdown, grace)
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"the reactor thread did not stop within {timeout}s")
        self.reactor.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        if self._error is not None:
            raise RuntimeError("the reactor stopped with an error") from self._error

    def __enter__(self) -> ReactorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def connect(address: Any, timeout: float = 5.0) -> socket.socket:
    """A blocking client socket connected to ``address`` (TCP tuple or Unix path)."""
    if isinstance(address, (str, bytes)):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection(address[:2], timeout=timeout)
