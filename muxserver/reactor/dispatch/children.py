"""Child processes for the process strategies: forking safely, pipes, frames, reaping.

Theory of operation
-------------------
The process strategies add **no thread** to the parent. Everything between the reactor and
its children travels over pipes, and the parent's ends of those pipes are ordinary owners in
the reactor's poller:

* **Frames.** A message is a pickle behind a 4-byte big-endian length. The parent reads
  result pipes without blocking (:class:`FrameReader` keeps a partial frame between reads)
  and writes request pipes without blocking (:class:`FrameWriter` keeps what the pipe did not
  take and asks for writability); the child uses plain blocking reads and writes.
* **Answers.** A child sends ``(True, value)`` or ``(False, exception, traceback_text)``. A
  value or exception that cannot be pickled becomes a ``DispatchError`` saying so. A result
  wrapped in :class:`ParentChange` carries a change of service state for the parent to apply
  (state changed in a child never reaches the parent otherwise).
* **Forking.** :func:`fork_child` forks; in the child it frees everything inherited from the
  parent's reactor (the poller's fds and the poller itself, closed *without unregistering*,
  since the epoll set is shared; the waker; the parent ends of every strategy pipe), resets
  the signals, freezes the garbage collector (so a stale socket object is never finalized
  onto a reused fd), reseeds ``random`` and leaves with ``os._exit`` -- never by returning
  into the parent's stack.
* **Reaping.** :class:`ChildWatcher` (one per reactor) waits for exactly the pids it was
  given, never ``waitpid(-1)``, always with ``WNOHANG``. SIGCHLD reaches it through the
  reactor's wake-up fd when the reactor was set up in the main thread; otherwise, and as a
  safety net against lost signals, a child whose pipe reached end of file is polled on a
  short, backing-off timer until it is reaped.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import gc
import logging
import os
import pickle
import random
import signal
import struct
import traceback
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from muxserver.handlers.base import Request
from muxserver.reactor.dispatch.base import DispatchError
from muxserver.reactor.timers import Timer
from muxserver.service import Peer, Service

if TYPE_CHECKING:
    from muxserver.reactor.dispatch.bounded import Job
    from muxserver.reactor.loop import Reactor

__all__ = [
    "ChildWatcher",
    "FrameReader",
    "FrameWriter",
    "ParentChange",
    "RemoteTracebackError",
    "answer_of",
    "apply_change",
    "close_parent_fd",
    "decode_answer",
    "describe_status",
    "encode_frame",
    "fork_child",
    "kill",
    "own_parent_fd",
    "read_frame",
    "run_service",
    "send_answer",
    "write_frame",
]

log = logging.getLogger("muxserver.dispatch")

_HEADER = struct.Struct(">I")
_READ_SIZE = 64 * 1024  # below glibc's mmap threshold: see Limits.read_size

# The parent ends of every strategy pipe in this process. A child closes them all: a worker
# holding another worker's request pipe would keep that worker from ever seeing end of file.
_parent_fds: set[int] = set()


class ParentChange:
    """A worker's answer plus a change for the parent's service, applied in the reactor thread.

    A service running in a child process works on the child's copy of its own state: what it
    changes dies with the child. Return ``ParentChange(response, change)`` instead; the
    process strategy calls ``service.apply_change(change)`` on the parent's service object,
    in the reactor thread, then sends ``response``. ``change`` must be picklable.
    """

    __slots__ = ("change", "response")

    def __init__(self, response: Any, change: Any) -> None:
        self.response = response
        self.change = change

    def __reduce__(self) -> tuple[Any, ...]:
        return (ParentChange, (self.response, self.change))


class RemoteTracebackError(Exception):
    """Attached as ``__cause__`` of a service exception raised in a child: its traceback."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def describe_status(status: int) -> str:
    """``waitpid`` status as words: ``"exit code 0"``, ``"signal SIGKILL"``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"signal {signal.Signals(number).name}"
        except ValueError:
            return f"signal {number}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


# -- frames ----------------------------------------------------------------------------------


def encode_frame(message: object) -> bytes:
    """Pickle ``message`` behind its length. Raises whatever pickling raises."""
    body = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def write_frame(fd: int, message: object) -> None:
    """Send one frame on a blocking fd (child side)."""
    data = memoryview(encode_frame(message))
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts = []
    while size:
        chunk = os.read(fd, min(size, _READ_SIZE))
        if not chunk:
            return None
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def read_frame(fd: int) -> bytes | None:
    """Read one frame's body from a blocking fd (child side); ``None`` at end of file."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    return _read_exactly(fd, _HEADER.unpack(header)[0])


class FrameReader:
    """Non-blocking reading of frames from a pipe (parent side, reactor thread).

    ``read()`` returns the complete frame bodies that arrived, and sets ``eof`` once the
    writer is gone (every copy of the write end closed: the child exited or was killed).
    """

    __slots__ = ("_buffer", "eof", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self.eof = False

    def read(self) -> list[bytes]:
        """Drain the pipe up to EAGAIN and return the complete frames."""
        buffer = self._buffer
        while True:
            try:
                chunk = os.read(self.fd, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                self.eof = True
                break
            buffer += chunk
        frames = []
        start = 0
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + size
            if end > len(buffer):
                break
            frames.append(bytes(buffer[start + _HEADER.size : end]))
            start = end
        if start:
            del buffer[:start]
        return frames


class FrameWriter:
    """Non-blocking writing of frames to a pipe (parent side, reactor thread).

    ``write()`` sends what the pipe takes now and keeps the rest; the owner registers the fd
    for WRITE while ``pending`` and calls ``flush()`` when it is writable.
    """

    __slots__ = ("_out", "fd", "pending")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._out: collections.deque[memoryview] = collections.deque()
        self.pending = 0

    def write(self, data: bytes) -> None:
        """Queue ``data`` after what is pending and send as much as possible.

        Raises:
            OSError: EPIPE when the reader (the child) is gone.
        """
        self._out.append(memoryview(data))
        self.pending += len(data)
        self.flush()

    def flush(self) -> None:
        """Send pending bytes until the pipe is full. Raises ``OSError`` (EPIPE) like write."""
        out = self._out
        while out:
            try:
                sent = os.write(self.fd, out[0])
            except (BlockingIOError, InterruptedError):
                return
            self.pending -= sent
            if sent == len(out[0]):
                out.popleft()
            else:
                out[0] = out[0][sent:]


def own_parent_fd(fd: int) -> None:
    """Record ``fd`` as a parent-side pipe end (closed in every later child); non-blocking."""
    os.set_blocking(fd, False)
    _parent_fds.add(fd)


def close_parent_fd(fd: int) -> None:
    """Close a parent-side pipe end recorded with :func:`own_parent_fd`."""
    _parent_fds.discard(fd)
    with contextlib.suppress(OSError):
        os.close(fd)


# -- the child side ------------------------------------------------------------------------


def run_service(service: Service, request: Request, peer: Peer) -> object:
    """Call the service and return the answer message ready to pickle (child side)."""
    try:
        return (True, service.handle(request, peer))
    except Exception as exc:
        return (False, exc, traceback.format_exc())


def send_answer(fd: int, answer: object) -> None:
    """Write an answer frame; an unpicklable value or exception becomes a DispatchError."""
    try:
        data = encode_frame(answer)
    except Exception as exc:
        what = "result" if answer[0] else "exception"  # type: ignore[index]
        data = encode_frame(
            (False, DispatchError(f"the service's {what} could not be pickled: {exc!r}"), "")
        )
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fork_child(reactor: Reactor, keep: tuple[int, ...], body: Callable[[], None]) -> int:
    """Fork; in the child, release the parent's resources and run ``body`` then ``os._exit``.

    ``keep`` are the child's own pipe ends. Returns the child's pid in the parent; never
    returns in the child. Raises ``OSError`` if the fork fails.
    """
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        gc.freeze()  # objects inherited from the parent are never collected (nor finalized)
        reactor.close_after_fork()
        for fd in _parent_fds:
            if fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        _parent_fds.clear()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
        random.seed()
        body()
        code = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        os._exit(code)


# -- reaping -----------------------------------------------------------------------------


class ChildWatcher:
    """Reaps this reactor's children with ``WNOHANG``; one per reactor (:meth:`of`).

    ``watch(pid, callback)`` arranges for ``callback(pid, status)`` in the reactor thread once
    the child is reaped. ``reap_soon()`` says a child is known to be exiting (its pipe reached
    end of file, or it was killed): it is reaped now or on a short timer if not yet a zombie.
    """

    _instances: ClassVar[weakref.WeakKeyDictionary[Reactor, ChildWatcher]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self._children: dict[int, Callable[[int, int], None]] = {}
        self._timer: Timer | None = None
        self._delay = 0.001
        self.uses_sigchld = True
        try:
            reactor.add_signal_handler(signal.SIGCHLD, self._on_sigchld)
        except (RuntimeError, ValueError):
            # Not the main thread: pipe end-of-file plus the polling timer must do.
            self.uses_sigchld = False

    @classmethod
    def of(cls, reactor: Reactor) -> ChildWatcher:
        """The reactor's watcher (created on first use)."""
        watcher = cls._instances.get(reactor)
        if watcher is None:
            watcher = cls._instances[reactor] = cls(reactor)
        return watcher

    def watch(self, pid: int, callback: Callable[[int, int], None]) -> None:
        """Call ``callback(pid, status)`` once ``pid`` has been reaped."""
        self._children[pid] = callback

    def _on_sigchld(self, signum: int) -> None:
        self.reap()

    def reap(self) -> None:
        """Reap every watched child that has exited, without blocking."""
        for pid in list(self._children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0  # reaped by someone else: nothing more to learn
            except InterruptedError:
                continue
            if done:
                callback = self._children.pop(pid)
                callback(pid, status)

    def reap_soon(self) -> None:
        """Reap now, and keep polling (1 ms, doubling to 50 ms) while children remain."""
        self.reap()
        if self._children and self._timer is None:
            self._timer = self.reactor.call_later(self._delay, self._poll)

    def _poll(self) -> None:
        self._timer = None
        self._delay = min(self._delay * 2, 0.05)
        self.reap()
        if self._children:
            self._timer = self.reactor.call_later(self._delay, self._poll)
        else:
            self._delay = 0.001

    def reap_blocking(self, pid: int) -> None:
        """Wait for ``pid`` (only after killing it, or when it is known to be exiting)."""
        callback = self._children.pop(pid, None)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = 0
        if callback is not None:
            callback(pid, status)


def kill(pid: int) -> None:
    """SIGKILL ``pid``, ignoring a child that is already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def decode_answer(frame: bytes) -> tuple[bool, Any]:
    """Turn an answer frame into ``(ok, value)``; a remote traceback becomes ``__cause__``."""
    try:
        message = pickle.loads(frame)
    except Exception as exc:
        return False, DispatchError(f"the worker's answer could not be unpickled: {exc!r}")
    if message[0]:
        return True, message[1]
    error, text = message[1], message[2]
    if text and isinstance(error, BaseException):
        error.__cause__ = RemoteTracebackError(text)
    return False, error


def answer_of(job: Job, frame: bytes) -> tuple[bool, Any]:
    """The ``(ok, value)`` an answer frame settles ``job`` with (reactor thread).

    A :class:`ParentChange` is applied to the parent's service only while the job is still
    due: an answer that arrives after its deadline failed the request changes nothing.
    """
    ok, value = decode_answer(frame)
    if job.settled:
        return ok, value
    return apply_change(job.service, ok, value)


def apply_change(service: Service, ok: bool, value: Any) -> tuple[bool, Any]:
    """Apply a :class:`ParentChange` to the parent's service (reactor thread) and unwrap it."""
    if not ok or type(value) is not ParentChange:
        return ok, value
    apply = getattr(service, "apply_change", None)
    if apply is None:
        return False, DispatchError(
            f"{type(service).__name__} returned a ParentChange but has no apply_change() method"
        )
    try:
        apply(value.change)
    except Exception as exc:
        return False, exc
    return True, value.response
