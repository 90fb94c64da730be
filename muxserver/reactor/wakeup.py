"""The wake-up channel: how other threads and signal handlers interrupt the reactor's wait.

A non-blocking socketpair. Writers (``wake()`` from any thread, and the C-level signal handler
through ``signal.set_wakeup_fd``) put one byte in; a full buffer means the reactor is already
awake, so that write error is ignored -- any other error is not. The reactor drains the read
end to EAGAIN on each wake. Signal numbers arrive as their byte value; thread wake-ups write a
zero byte, which no signal uses.
"""

from __future__ import annotations

import socket

__all__ = ["Waker"]

_WAKE_BYTE = b"\0"


class Waker:
    """A socketpair registered in the poller; ``wake()`` is safe from any thread."""

    __slots__ = ("_reader", "_writer", "reader_fd", "writer_fd")

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self.reader_fd = self._reader.fileno()
        self.writer_fd = self._writer.fileno()

    def wake(self) -> None:
        """Make the reactor's current or next wait return at once."""
        try:
            self._writer.send(_WAKE_BYTE)
        except (BlockingIOError, InterruptedError):
            pass  # the buffer is full: the reader has bytes pending, so it will wake anyway
        except OSError:
            if self._writer.fileno() != -1:
                raise
            # Closed: the reactor is gone and nobody is left to wake.

    def drain(self) -> bytes:
        """Read everything pending; return the non-zero bytes (signal numbers)."""
        signals = b""
        while True:
            try:
                data = self._reader.recv(4096)
            except (BlockingIOError, InterruptedError):
                return signals
            if not data:
                return signals
            if data.count(0) != len(data):
                signals += data.replace(_WAKE_BYTE, b"")

    def close(self) -> None:
        """Close both ends."""
        self._reader.close()
        self._writer.close()
