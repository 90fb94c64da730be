"""The server classes: BaseServer and the TCP, UDP and Unix servers built on it.

Theory of operation
-------------------
A server here is the standard library's: one request at a time, handled by blocking code in a
``RequestHandlerClass`` instance, with template methods (``get_request``, ``verify_request``,
``process_request``, ``finish_request``, ``shutdown_request``, ``close_request``,
``handle_error``, ``handle_timeout``, ``service_actions``) for subclasses and mix-ins to
override. What changes is *how the server waits*:

* Each server owns a :class:`~muxserver.reactor.loop.Reactor`. ``serve_forever`` and
  ``handle_request`` register ``self.fileno()`` in the reactor's poller and wait in
  ``Reactor.run_once`` -- the same wait that also watches the reactor's wake-up channel, fires
  its timers and runs calls posted from other threads (dispatch results, child reaping).
* ``shutdown()`` sets the stop flag and then wakes the reactor through that channel, so
  ``serve_forever`` leaves at once instead of at the next ``poll_interval`` tick, and a wake-up
  sent before the loop starts waiting is not lost (the byte stays in the channel).
* ``poll_interval`` keeps its one remaining meaning: the longest time between two calls of
  ``service_actions()``.

The reactor sees only the listening (or datagram) socket; accepted connections are handed to the
blocking handler exactly as the standard library does, because that is the contract every
existing ``RequestHandlerClass`` was written against.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import traceback
from typing import Any

from muxserver.reactor.loop import Reactor, ReactorState
from muxserver.reactor.poller import READ

__all__ = ["BaseServer", "TCPServer", "UDPServer", "UnixDatagramServer", "UnixStreamServer"]

_PEER_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class _Readiness:
    """The poller owner standing for the server's fd: it only notes that the fd is readable.

    The request is handled by the serving loop after ``run_once`` returns, never inside the
    reactor's dispatch, so exceptions from handlers and ``handle_error`` propagate out of
    ``serve_forever``/``handle_request`` exactly as they do in the standard library.
    """

    __slots__ = ("fd", "readable")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.readable = False

    def handle_read(self) -> None:
        """The fd is readable: a request (or datagram) is waiting."""
        self.readable = True

    def handle_write(self) -> None:
        """Never called: only read interest is registered."""


class BaseServer:
    """Base class for servers: the request loop, shutdown and the template methods.

    Methods for the caller: ``__init__(server_address, RequestHandlerClass)``,
    ``serve_forever(poll_interval=0.5)``, ``shutdown()``, ``handle_request()``,
    ``server_close()``, and use as a context manager (leaving it calls ``server_close``).

    Methods that may be overridden: ``server_bind``, ``server_activate``, ``get_request``,
    ``handle_timeout``, ``verify_request``, ``process_request``, ``finish_request``,
    ``shutdown_request``, ``close_request``, ``service_actions``, ``handle_error``.
    ``fileno()`` must be provided by a subclass: serving waits for it to become readable.

    Class variables: ``timeout`` (seconds ``handle_request`` waits; ``None`` waits forever).
    Instance variables: ``server_address``, ``RequestHandlerClass``.
    """

    timeout: float | None = None

    def __init__(self, server_address: Any, RequestHandlerClass: Any) -> None:  # noqa: N803
        """Remember the address and handler class; create the reactor the server waits in."""
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass
        self._reactor = Reactor()
        self._lock = threading.Lock()
        self._is_shut_down = threading.Event()
        self._is_shut_down.set()
        self._shutdown_request = False
        self._serving: threading.Thread | None = None

    def server_activate(self) -> None:
        """Called by the constructor to activate the server (listen); may be overridden."""

    # -- the request loop ---------------------------------------------------------------------

    def serve_forever(self, poll_interval: float | None = 0.5) -> None:
        """Handle one request at a time until :meth:`shutdown` is called.

        ``poll_interval`` is the longest wait between two :meth:`service_actions` calls;
        it does not delay shutdown, which wakes the wait at once.

        Raises:
            RuntimeError: if ``serve_forever`` is already running in another thread.
        """
        with self._lock:
            if self._serving is not None:
                raise RuntimeError(
                    f"serve_forever() is already running in thread {self._serving.name!r}; "
                    "a server can only be served by one thread at a time"
                )
            self._serving = threading.current_thread()
            self._is_shut_down.clear()
        try:
            if self._shutdown_request:  # asked before this thread got here: return at once
                return
            with self._watching() as readiness:
                while not self._shutdown_request:
                    ready = self._wait(readiness, poll_interval)
                    if self._shutdown_request:  # asked during the wait: serve no one else
                        break
                    if ready:
                        self._handle_request_noblock()
                    self.service_actions()
        finally:
            with self._lock:
                self._shutdown_request = False
                self._serving = None
                self._is_shut_down.set()

    def shutdown(self) -> None:
        """Stop the ``serve_forever`` loop and wait until it has returned.

        Called while ``serve_forever`` is not running, it returns at once and the next
        ``serve_forever`` returns immediately (the standard library would block until then).
        Called from inside the serving thread (from a handler), it asks the loop to stop after
        the current request and returns without waiting (the standard library deadlocks).
        """
        with self._lock:
            self._shutdown_request = True
            serving = self._serving
        if serving is None:
            return
        self._reactor.call_soon_threadsafe(_nothing)  # wakes the wait, even from a signal handler
        if serving is not threading.current_thread():
            self._is_shut_down.wait()

    def service_actions(self) -> None:
        """Called by ``serve_forever`` after every wait; mix-ins reap workers here."""

    def handle_request(self) -> None:
        """Wait for and handle one request, or call :meth:`handle_timeout` after ``timeout``.

        The wait is the smaller of the socket's own timeout and :attr:`timeout`.
        """
        sock = getattr(self, "socket", None)
        timeout = sock.gettimeout() if sock is not None else None
        if timeout is None:
            timeout = self.timeout
        elif self.timeout is not None:
            timeout = min(timeout, self.timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._watching() as readiness:
            while not self._wait(readiness, timeout):
                if deadline is not None:
                    timeout = deadline - time.monotonic()
                    if timeout < 0:
                        self.handle_timeout()
                        return
        self._handle_request_noblock()

    def _handle_request_noblock(self) -> None:
        """Handle one request that is known to be waiting (``get_request`` will not block)."""
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        if self.verify_request(request, client_address):
            try:
                self.process_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
                self.shutdown_request(request)
            except BaseException:
                self.shutdown_request(request)
                raise
        else:
            self.shutdown_request(request)

    def _watching(self) -> _Watch:
        """Register ``fileno()`` in the reactor's poller for the duration of a ``with``."""
        return _Watch(self._reactor, self.fileno())

    def _wait(self, readiness: _Readiness, timeout: float | None) -> bool:
        """One reactor pass of at most ``timeout`` seconds; True if the server fd is readable."""
        readiness.readable = False
        self._reactor.run_once(timeout)
        return readiness.readable

    # -- template methods -----------------------------------------------------------------------

    def fileno(self) -> int:
        """The fd that becomes readable when a request is waiting; subclasses must provide it."""
        raise NotImplementedError(
            f"{type(self).__name__} must define fileno(): serve_forever() and handle_request() "
            "wait for that fd to become readable"
        )

    def get_request(self) -> tuple[Any, Any]:
        """Take the waiting request: return ``(request, client_address)``; may raise OSError."""
        raise NotImplementedError

    def handle_timeout(self) -> None:
        """Called when ``handle_request`` waited ``timeout`` seconds for nothing."""

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Return False to refuse the request (it is then shut down unhandled)."""
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """Handle the request (mix-ins run this on a thread or in a child process)."""
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def server_close(self) -> None:
        """Release the server's resources; here, the reactor it waits in."""
        self._reactor.close()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Handle the request by instantiating ``RequestHandlerClass``."""
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request: Any) -> None:
        """End one request and clean up after it."""
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Clean up after one request."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Report an exception raised while handling a request (called inside ``except``).

        Prints the traceback to stderr like the standard library -- except when the peer went
        away (reset, broken pipe), which is an ordinary close and gets one line.
        """
        exc = sys.exc_info()[1]
        if isinstance(exc, _PEER_GONE):
            print(f"Client {client_address} went away during its request: {exc}", file=sys.stderr)
            return
        print("-" * 40, file=sys.stderr)
        print(
            "Exception occurred during processing of request from", client_address, file=sys.stderr
        )
        traceback.print_exc()
        print("-" * 40, file=sys.stderr)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *args: object) -> None:
        self.server_close()


class _Watch:
    """Context manager: the server fd in the reactor's poller, for one serving call."""

    __slots__ = ("_reactor", "_readiness")

    def __init__(self, reactor: Reactor, fd: int) -> None:
        self._reactor = reactor
        self._readiness = _Readiness(fd)

    def __enter__(self) -> _Readiness:
        if self._reactor.state is ReactorState.CLOSED:
            raise ValueError("the server is closed (server_close() was called)")
        self._reactor.poller.register(self._readiness.fd, READ, self._readiness)
        return self._readiness

    def __exit__(self, *args: object) -> None:
        if self._reactor.state is not ReactorState.CLOSED:
            self._reactor.poller.unregister(self._readiness.fd)


def _nothing() -> None:
    """Posted by ``shutdown()``: running it is not the point, waking the reactor is."""


class TCPServer(BaseServer):
    """A stream-socket server: TCP by default, the base of the Unix stream server.

    Class variables that may be overridden: ``address_family``, ``socket_type``,
    ``request_queue_size`` (the ``listen()`` backlog), ``allow_reuse_address`` and, from
    Python 3.11, ``allow_reuse_port``. Instance variables: ``socket``, ``server_address``.
    """

    address_family = socket.AF_INET
    socket_type = socket.SOCK_STREAM
    request_queue_size = 5
    allow_reuse_address = False
    if sys.version_info >= (3, 11):
        allow_reuse_port = False

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: Any,  # noqa: N803
        bind_and_activate: bool = True,
    ) -> None:
        """Create the socket and, unless ``bind_and_activate`` is false, bind and listen.

        If binding or listening fails the socket and the reactor are closed before the error
        propagates, so a failed constructor leaks nothing.
        """
        super().__init__(server_address, RequestHandlerClass)
        try:
            self.socket = socket.socket(self.address_family, self.socket_type)
        except BaseException:
            BaseServer.server_close(self)
            raise
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self) -> None:
        """Apply the reuse options, bind to ``server_address`` and record the bound address."""
        if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if getattr(self, "allow_reuse_port", False) and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        """Listen with a backlog of ``request_queue_size``."""
        self.socket.listen(self.request_queue_size)

    def server_close(self) -> None:
        """Close the listening socket and the reactor."""
        self.socket.close()
        super().server_close()

    def fileno(self) -> int:
        """The listening socket's fd."""
        return self.socket.fileno()

    def get_request(self) -> tuple[Any, Any]:
        """Accept a connection: ``(socket, client_address)``."""
        return self.socket.accept()

    def shutdown_request(self, request: Any) -> None:
        """Send FIN, then close.

        The FIN reaches the peer even while a forked child still holds a copy of the socket.
        A peer that already closed makes ``shutdown`` fail; closing is all that is left then.
        """
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Close the connection's socket."""
        request.close()


class UDPServer(TCPServer):
    """A datagram server: each datagram is one request ``(data, socket)``.

    Class variables: ``max_packet_size`` (the largest datagram read, default 8192).
    """

    allow_reuse_address = False
    if sys.version_info >= (3, 11):
        allow_reuse_port = False
    socket_type = socket.SOCK_DGRAM
    max_packet_size = 8192

    def get_request(self) -> tuple[Any, Any]:
        """Read one datagram: ``((data, socket), client_address)``."""
        data, client_addr = self.socket.recvfrom(self.max_packet_size)
        return (data, self.socket), client_addr

    def server_activate(self) -> None:
        """Nothing to do: datagram sockets do not listen."""

    def shutdown_request(self, request: Any) -> None:
        """Nothing to shut down for a datagram; just the close hook."""
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Nothing to close: the socket is the server's."""


if hasattr(socket, "AF_UNIX"):

    class UnixStreamServer(TCPServer):
        """A stream server on a Unix socket path (the file is left behind, as in the stdlib)."""

        address_family = socket.AF_UNIX

    class UnixDatagramServer(UDPServer):
        """A datagram server on a Unix socket path."""

        address_family = socket.AF_UNIX
