"""systemd integration: socket activation and ``sd_notify``, with the standard library only.

Socket activation (``systemd.socket(5)``): systemd binds the listening sockets itself and starts
the service with them open as fds 3, 4, ... and three environment variables -- ``LISTEN_PID``
(the pid they are meant for: a child that inherited the environment must not take them),
``LISTEN_FDS`` (how many) and ``LISTEN_FDNAMES`` (their ``FileDescriptorName=``, colon
separated). :func:`listen_fds` takes them and, like ``sd_listen_fds(1)``, removes the
variables so that nothing started later mistakes them for its own.

Notification (``sd_notify(3)``): with ``Type=notify`` systemd waits for ``READY=1`` before it
considers the service started, shows ``STATUS=`` lines in ``systemctl status``, learns about
reloads (``RELOADING=1``) and stops (``STOPPING=1``), and -- with ``WatchdogSec=`` -- restarts
the service unless it hears ``WATCHDOG=1`` at least every ``WATCHDOG_USEC`` microseconds.
:class:`Notifier` sends these datagrams to ``NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract socket); without that variable every call does nothing, so the same command line runs
under systemd and in a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from muxserver.reactor import Reactor

__all__ = ["LISTEN_FDS_START", "ActivatedSocket", "Notifier", "listen_fds"]

log = logging.getLogger("muxserver.systemd")

LISTEN_FDS_START = 3
"""The first file descriptor systemd passes (``SD_LISTEN_FDS_START``)."""


class ActivatedSocket:
    """One socket systemd passed: its ``FileDescriptorName=`` and the socket object."""

    __slots__ = ("name", "sock")

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        self.sock = sock

    @property
    def is_stream(self) -> bool:
        """True for a listening stream socket (TCP or Unix), false for a datagram socket."""
        return self.sock.type == socket.SOCK_STREAM

    def __repr__(self) -> str:
        return f"<ActivatedSocket {self.name} fd={self.sock.fileno()} {self.sock.getsockname()!r}>"


def listen_fds(
    environ: MutableMapping[str, str] | None = None, *, unset_environment: bool = True
) -> list[ActivatedSocket]:
    """The sockets systemd passed to this process, in order (empty if none were).

    A socket without a name in ``LISTEN_FDNAMES`` is called ``"unknown"`` (systemd's own
    default). Each fd is marked close-on-exec.

    Raises:
        ValueError: ``LISTEN_FDS`` or ``LISTEN_PID`` is not a number, or an fd is not open --
            a broken unit file, said at start-up.
    """
    env = os.environ if environ is None else environ
    pid_text = env.get("LISTEN_PID")
    count_text = env.get("LISTEN_FDS")
    names_text = env.get("LISTEN_FDNAMES", "")
    if unset_environment:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if pid_text is None or count_text is None:
        return []
    try:
        pid, count = int(pid_text), int(count_text)
    except ValueError:
        raise ValueError(
            f"LISTEN_PID={pid_text!r} / LISTEN_FDS={count_text!r} are not numbers; "
            "they should come from systemd socket activation"
        ) from None
    if pid != os.getpid():
        return []
    names = names_text.split(":") if names_text else []
    sockets = []
    for index in range(count):
        fd = LISTEN_FDS_START + index
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ValueError(
                f"LISTEN_FDS says fd {fd} was passed, but it is unusable: {exc}"
            ) from None
        name = names[index] if index < len(names) and names[index] else "unknown"
        sockets.append(ActivatedSocket(name, sock))
    return sockets


class Notifier:
    """Send ``sd_notify`` messages to ``NOTIFY_SOCKET`` (nothing at all without it).

    ``watchdog_interval`` is how often systemd wants ``WATCHDOG=1`` (half of
    ``WATCHDOG_USEC``, as sd_watchdog_enabled(3) recommends), or ``None`` when no watchdog is
    configured for this process.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval: float | None = None
        usec = env.get("WATCHDOG_USEC")
        watchdog_pid = env.get("WATCHDOG_PID")
        if usec and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            with contextlib.suppress(ValueError):
                if int(usec) > 0:
                    self.watchdog_interval = int(usec) / 2e6
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=serving"``) as one message.

        Returns whether a message was sent. Failures are logged, never raised: a service
        must not die because its manager went away.
        """
        if self.address is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (and ``MAINPID``), with an optional ``STATUS=`` line."""
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            fields.append(f"STATUS={status}")
        return self.notify(*fields)

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (systemd 253's ``Type=notify-reload``)."""
        return self.notify(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: a graceful stop began."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """A free-form ``STATUS=`` line for ``systemctl status``."""
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: still alive."""
        return self.notify("WATCHDOG=1")

    def keep_alive(self, reactor: Reactor) -> None:
        """Send ``WATCHDOG=1`` from ``reactor``'s loop every ``watchdog_interval`` seconds.

        A stuck loop stops the pings, which is exactly what the watchdog is for. Nothing is
        scheduled when no watchdog is configured.
        """
        interval = self.watchdog_interval
        if interval is None or self.address is None:
            return

        def ping() -> None:
            self.watchdog()
            reactor.call_later(interval, ping)

        ping()

    def close(self) -> None:
        """Release the socket used to send."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
