"""Listening sockets: binding (TCP v4/v6, Unix paths and abstract names) and the accept loop.

The accept loop takes at most ``Limits.accept_burst`` connections per readiness event, so a
flood of connects cannot starve established clients. When the process runs out of file
descriptors (EMFILE/ENFILE) it does what Twisted does: release a reserved descriptor, accept
and immediately close whatever is waiting (those clients get a clean close instead of hanging
in the backlog), re-reserve, and stop watching the listener for a back-off period that doubles
up to a second -- so the reactor never spins at the limit, and accepts again as soon as
descriptors are free. The log line for it is rate-limited.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from typing import TYPE_CHECKING, Any

from muxserver.reactor.poller import READ

if TYPE_CHECKING:
    from muxserver.reactor.server import StreamServer
    from muxserver.reactor.timers import Timer

__all__ = [
    "Listener",
    "bind_tcp",
    "bind_udp",
    "bind_unix",
    "format_address",
    "prepare_unix_path",
    "remove_socket_file",
]

log = logging.getLogger("muxserver.listen")

_FD_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_SKIP = (errno.ECONNABORTED, errno.EPERM, errno.EPROTO, errno.ENOPROTOOPT)
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 1.0
_LOG_EVERY = 10.0


def _resolve(host: str, port: int, kind: int) -> tuple[int, Any]:
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, kind, 0, socket.AI_PASSIVE)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, _, _, _, address = infos[0]
    return family, address


def bind_tcp(
    host: str,
    port: int,
    *,
    dual_stack: bool = False,
    reuse_port: bool = False,
    backlog: int = 1024,
) -> socket.socket:
    """A non-blocking listening TCP socket on ``host``:``port`` (port 0 picks one).

    ``dual_stack`` on an IPv6 address ("::") also accepts IPv4 clients (as mapped addresses);
    otherwise an IPv6 socket is IPv6-only, so v4 and v6 listeners can share a port.

    Raises:
        OSError: with the address in the message when it cannot be bound.
    """
    family, address = _resolve_or_explain(host, port, socket.SOCK_STREAM)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot listen on {format_address(address)}: {exc.strerror}"
        ) from exc
    return sock


def bind_udp(host: str, port: int, *, dual_stack: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to ``host``:``port``."""
    family, address = _resolve_or_explain(host, port, socket.SOCK_DGRAM)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot bind UDP {format_address(address)}: {exc.strerror}"
        ) from exc
    return sock


def _resolve_or_explain(host: str, port: int, kind: int) -> tuple[int, Any]:
    try:
        return _resolve(host, port, kind)
    except OSError as exc:  # socket.gaierror included: say which address it was
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def prepare_unix_path(path: str, kind: int = socket.SOCK_STREAM) -> None:
    """Remove a *stale* socket file at ``path``; refuse anything else that is in the way.

    A socket file is stale when connecting to it (with a socket of ``kind``) is refused:
    nothing is bound to it any more. Any other outcome -- a connection, a full backlog, a
    socket of another type, a timeout -- leaves the file alone.

    Raises:
        OSError: if ``path`` is a live socket (another server uses it) or not a socket.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, kind)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    except FileNotFoundError:
        return  # removed meanwhile
    except OSError as exc:
        raise OSError(
            errno.EADDRINUSE, f"{path} is in use (probing it gave: {exc.strerror or exc})"
        ) from None
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path} is in use by a running server")


def bind_unix(
    path: str, *, kind: int = socket.SOCK_STREAM, mode: int | None = None, backlog: int = 1024
) -> socket.socket:
    """A non-blocking Unix socket bound to ``path``.

    A path starting with ``"\\0"`` or ``"@"`` is a Linux abstract name (no file, no stale-file
    problem). For a file path a stale socket file is removed first and ``mode`` (e.g.
    ``0o660``) is applied to the new one.
    """
    abstract = path.startswith(("\0", "@"))
    address = "\0" + path[1:] if abstract else path
    if not abstract:
        prepare_unix_path(path, kind)
    sock = socket.socket(socket.AF_UNIX, kind)
    try:
        sock.bind(address)
        if mode is not None and not abstract:
            os.chmod(path, mode)
        if kind == socket.SOCK_STREAM:
            sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind unix:{path}: {exc.strerror}") from exc
    return sock


def format_address(address: Any) -> str:
    """A human form of a socket address: ``host:port``, ``[v6]:port`` or ``unix:path``."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(address, bytes):
        address = address.decode(errors="replace")
    if isinstance(address, str):
        return "unix:@" + address[1:] if address.startswith("\0") else f"unix:{address}"
    return repr(address)


class Listener:
    """A listening socket in the poller, accepting for one :class:`StreamServer`."""

    __slots__ = (
        "_backoff",
        "_kind",
        "_last_log",
        "_reserve",
        "_retry",
        "address",
        "fd",
        "owns_path",
        "paused",
        "server",
        "sock",
        "suppressed",
    )

    def __init__(self, server: StreamServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.address = sock.getsockname()
        # (family, type, proto) as plain ints for new sockets: reading them from the socket
        # object converts each to an enum, which costs more than the accept itself
        self._kind = (int(sock.family), int(sock.type), sock.proto)
        self.paused = False
        self.owns_path = True
        """Remove a Unix socket's file on close; false for a socket someone else bound and
        still shares (systemd, a supervisor's workers)."""
        self._reserve: int | None = _open_reserve()
        self._backoff = _BACKOFF_MIN
        self._retry: Timer | None = None
        self._last_log = -_LOG_EVERY
        self.suppressed = 0
        server.reactor.poller.register(self.fd, READ, self)

    def __repr__(self) -> str:
        return f"<Listener {format_address(self.address)} of {self.server.name}>"

    def handle_read(self) -> None:
        """Accept up to a burst of waiting connections."""
        # hot path under connection churn: one call per connection
        server = self.server
        family, kind, proto = self._kind
        tcp = family != socket.AF_UNIX
        for _ in range(server.limits.accept_burst):
            if self.paused:
                return
            try:
                # socket.accept() is _accept() plus the enum conversions avoided here
                fd, address = self.sock._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                self._backoff = _BACKOFF_MIN
                return
            except OSError as exc:
                if exc.errno in _FD_EXHAUSTED:
                    self._out_of_descriptors(exc)
                    return
                if exc.errno in _SKIP:
                    continue
                raise
            server.accepted(socket.socket(family, kind, proto, fileno=fd), address, tcp)

    def handle_write(self) -> None:
        """Never called: listeners are not watched for writing."""

    def pause(self) -> None:
        """Stop accepting (the kernel backlog holds new clients meanwhile)."""
        if not self.paused:
            self.paused = True
            self.server.reactor.poller.modify(self.fd, 0, self)

    def resume(self) -> None:
        """Accept again."""
        if self.paused and self.sock.fileno() != -1:
            self.paused = False
            self.server.reactor.poller.modify(self.fd, READ, self)

    def _out_of_descriptors(self, exc: OSError) -> None:
        shed = 0
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
            while True:
                try:
                    extra, _ = self.sock.accept()
                except OSError:
                    break
                extra.close()
                shed += 1
            self._reserve = _open_reserve()
        self.server.refused += shed
        now = self.server.reactor.time()
        if now - self._last_log >= _LOG_EVERY:
            log.error(
                "%r: out of file descriptors (%s); closed %d waiting client(s), %d more "
                "since the last report; pausing accepts for %.2fs",
                self,
                exc.strerror,
                shed,
                self.suppressed,
                self._backoff,
            )
            self._last_log = now
            self.suppressed = 0
        else:
            self.suppressed += shed
        self.server.at_fd_limit(self)
        self.pause()
        self._retry = self.server.reactor.call_later(self._backoff, self._retry_accept)
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    def _retry_accept(self) -> None:
        self._retry = None
        if self._reserve is None:
            self._reserve = _open_reserve()
        if not self.server.full():
            self.resume()

    def close(self) -> None:
        """Stop listening and release the socket (and remove a Unix socket file)."""
        if self._retry is not None:
            self._retry.cancel()
        if self.sock.fileno() != -1:
            self.server.reactor.poller.unregister(self.fd)
            self.sock.close()
            if self.owns_path:
                remove_socket_file(self.address)
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None


def remove_socket_file(address: Any) -> None:
    """Remove the file of a Unix socket address we bound (nothing for other addresses)."""
    if isinstance(address, str) and address and not address.startswith("\0"):
        with contextlib.suppress(OSError):
            os.unlink(address)


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
