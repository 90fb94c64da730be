"""The readiness poller: the only code that talks to epoll (or another selector).

Two backends with one small interface. :class:`EpollPoller` calls ``select.epoll`` directly:
it is what Linux runs, it costs no ``SelectorKey`` per fd and no per-event key lookup, and it
can watch for TCP urgent data (``EPOLLPRI``), which the ``selectors`` module cannot express.
:class:`SelectorPoller` wraps ``selectors.DefaultSelector`` for every other platform (and for
the test matrix on Linux); it reports urgent data as ordinary readability.

Interest masks use the constants below. Each fd is registered once with the object that owns
it (kept in ``poller.owners``); ``poll()`` returns ``(fd, mask)`` pairs -- epoll's own list,
untouched, on Linux -- and never calls back. A ready mask may also carry ``HANGUP`` (error or
hang-up), which owners discover by reading or writing. Owners must be unregistered before
their fd is closed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import selectors
from typing import Any

__all__ = [
    "HANGUP",
    "PRIORITY",
    "READ",
    "WRITE",
    "EpollPoller",
    "Poller",
    "SelectorPoller",
    "best_poller",
]

READ = 0x001
"""Interest in (and readiness for) reading; also reported for hang-ups and errors."""
PRIORITY = 0x002
"""Interest in TCP urgent data (EpollPoller only)."""
WRITE = 0x004
"""Interest in (and readiness for) writing."""

HANGUP = 0x018
"""EPOLLERR | EPOLLHUP: reported whatever the interest; treat as readable and writable."""

_MAX_TIMEOUT = 24 * 3600.0  # epoll takes int milliseconds; far futures must not overflow


class Poller:
    """Interface of the readiness backends."""

    supports_priority = False
    """Whether PRIORITY interest is reported separately from READ."""

    owners: dict[int, Any]
    """The owner registered for each watched fd."""

    def register(self, fd: int, mask: int, owner: Any) -> None:
        """Start watching ``fd`` for ``mask`` on behalf of ``owner``."""
        raise NotImplementedError

    def modify(self, fd: int, mask: int, owner: Any) -> None:
        """Change the interest of a registered fd."""
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed). Unknown fds are ignored."""
        raise NotImplementedError

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds (``None``: forever); return ready ``(fd, mask)``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the backend's own fd."""
        raise NotImplementedError

    def close_after_fork(self) -> None:
        """In a forked child: close every watched fd and the backend's own, unregistering nothing.

        An epoll set is shared between parent and child: unregistering here would deafen the
        parent, while closing the child's copies of the fds leaves the parent's intact.
        """
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class EpollPoller(Poller):
    """Linux epoll, used directly."""

    supports_priority = True

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.owners: dict[int, Any] = {}

    def register(self, fd: int, mask: int, owner: Any) -> None:
        """Start watching ``fd``."""
        self._epoll.register(fd, mask)
        self.owners[fd] = owner

    def modify(self, fd: int, mask: int, owner: Any) -> None:
        """Change the interest of ``fd``."""
        self._epoll.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``."""
        if self.owners.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except OSError as exc:
                # Already closed elsewhere: the kernel dropped it from the set by itself.
                if exc.errno not in (errno.EBADF, errno.ENOENT):
                    raise

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait for readiness; epoll's masks are this module's masks."""
        if timeout is None:
            timeout = -1
        elif timeout > _MAX_TIMEOUT:
            timeout = _MAX_TIMEOUT
        return self._epoll.poll(timeout)

    def close(self) -> None:
        """Close the epoll fd."""
        self.owners.clear()
        self._epoll.close()

    def close_after_fork(self) -> None:
        """Close the watched fds and the epoll fd without unregistering (see :class:`Poller`)."""
        for fd in self.owners:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.close()

    def __len__(self) -> int:
        return len(self.owners)


class SelectorPoller(Poller):
    """The portable backend on ``selectors.DefaultSelector`` (or a given selector class)."""

    def __init__(self, selector_class: type[selectors.BaseSelector] | None = None) -> None:
        self._selector = (selector_class or selectors.DefaultSelector)()
        # Every registered fd, including those parked outside the selector (no interest).
        self.owners = {}

    @staticmethod
    def _events(mask: int) -> int:
        return (selectors.EVENT_READ if mask & (READ | PRIORITY) else 0) | (
            selectors.EVENT_WRITE if mask & WRITE else 0
        )

    def register(self, fd: int, mask: int, owner: Any) -> None:
        """Start watching ``fd``."""
        self._selector.register(fd, self._events(mask), owner)
        self.owners[fd] = owner

    def modify(self, fd: int, mask: int, owner: Any) -> None:
        """Change the interest of ``fd``."""
        events = self._events(mask)
        if events:
            try:
                self._selector.modify(fd, events, owner)
            except KeyError:
                self._selector.register(fd, events, owner)
        else:
            # selectors cannot hold an fd with no interest: park it outside the selector.
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``."""
        self.owners.pop(fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait for readiness."""
        if timeout is not None and timeout > _MAX_TIMEOUT:
            timeout = _MAX_TIMEOUT
        return [
            (
                key.fd,
                (READ if events & selectors.EVENT_READ else 0)
                | (WRITE if events & selectors.EVENT_WRITE else 0),
            )
            for key, events in self._selector.select(timeout)
        ]

    def close(self) -> None:
        """Close the selector."""
        self._selector.close()

    def close_after_fork(self) -> None:
        """Close the watched fds and the selector without unregistering (see :class:`Poller`)."""
        for fd in self.owners:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._selector.close()

    def __len__(self) -> int:
        return len(self.owners)


def best_poller() -> Poller:
    """Epoll where the platform has it, else the ``selectors`` default."""
    if hasattr(select, "epoll"):
        return EpollPoller()
    return SelectorPoller()
