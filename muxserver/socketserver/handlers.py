"""Request handlers: one instance per request, doing the whole request in its constructor.

The constructor calls ``setup()``, then ``handle()``, then ``finish()`` -- the last even when
``handle()`` raised. The handler sees ``self.request``, ``self.client_address`` and
``self.server``. These classes are the standard library's contract, unchanged; they do
blocking I/O, which is why a slow handler on a plain (non-mix-in) server stalls every other
client, exactly as with the standard library.
"""

from __future__ import annotations

import contextlib
import io
import socket
from typing import Any

__all__ = ["BaseRequestHandler", "DatagramRequestHandler", "StreamRequestHandler"]


class BaseRequestHandler:
    """Base class for request handlers: override ``handle()`` (and ``setup``/``finish``).

    A new instance is made for every request, so per-request state can live on ``self``.
    State that must outlive the request belongs on the server (not in a forking server's
    child, where changes stay in the child).
    """

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        """Handle the request: ``setup()``, ``handle()``, and ``finish()`` in any case."""
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self) -> None:
        """Prepare for ``handle()``; the default does nothing."""

    def handle(self) -> None:
        """Serve the request; the default does nothing."""

    def finish(self) -> None:
        """Clean up after ``handle()``; the default does nothing."""


class StreamRequestHandler(BaseRequestHandler):
    """A handler for stream sockets, with ``self.rfile`` and ``self.wfile`` file objects.

    Class variables: ``rbufsize`` (the read buffer, -1 = default), ``wbufsize`` (0: every
    ``wfile.write`` is sent at once, unbuffered), ``timeout`` (applied to the socket with
    ``settimeout``), ``disable_nagle_algorithm`` (sets ``TCP_NODELAY``).
    """

    rbufsize = -1
    wbufsize = 0
    timeout: float | None = None
    disable_nagle_algorithm = False

    def setup(self) -> None:
        """Apply the socket options and make ``rfile`` and ``wfile``."""
        self.connection = self.request
        if self.timeout is not None:
            self.connection.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.rfile: Any = self.connection.makefile("rb", self.rbufsize)
        self.wfile: Any
        if self.wbufsize == 0:
            self.wfile = _SocketWriter(self.connection)
        else:
            self.wfile = self.connection.makefile("wb", self.wbufsize)

    def finish(self) -> None:
        """Flush ``wfile`` (a peer that went away is not an error here) and close both files."""
        if not self.wfile.closed:
            # A peer that is gone cannot take the rest; that is not this handler's error.
            with contextlib.suppress(OSError):
                self.wfile.flush()
        self.wfile.close()
        self.rfile.close()


class _SocketWriter(io.BufferedIOBase):
    """An unbuffered writable file over a socket: each ``write`` is one ``sendall``.

    ``sendall`` retries after signals and short sends, so ``write`` always reports the whole
    buffer written (or raises).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        """Always writable."""
        return True

    def write(self, b: Any) -> int:
        """Send all of ``b`` now; return its length in bytes."""
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes

    def fileno(self) -> int:
        """The socket's fd."""
        return self._sock.fileno()


class DatagramRequestHandler(BaseRequestHandler):
    """A handler for datagrams: ``rfile`` reads the datagram, ``wfile`` collects the reply.

    Whatever was written to ``wfile`` is sent back to the client in ``finish()``, as one
    datagram.
    """

    def setup(self) -> None:
        """Unpack ``(data, socket)`` and make the in-memory files."""
        self.packet, self.socket = self.request
        self.rfile = io.BytesIO(self.packet)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        """Send the reply datagram."""
        self.socket.sendto(self.wfile.getvalue(), self.client_address)
