"""Addresses on the command line: parse them, bind them once, share them with every worker.

An address is written as

=====================  =======================================================================
``HOST:PORT``          TCP or UDP on an IPv4 address or a name (``127.0.0.1:9000``)
``[V6]:PORT``          on an IPv6 address (``[::1]:9000``; ``[::]:9000`` takes IPv4 too)
``:PORT`` or ``PORT``  on the ``--host`` address
``unix:PATH``          a Unix socket file (a stale one is replaced; a live one is an error)
``unix:@NAME``         a Linux abstract Unix socket (no file)
``systemd:NAME``       the socket systemd passed with ``FileDescriptorName=NAME``
``systemd``            every socket systemd passed that no ``systemd:NAME`` took
=====================  =======================================================================

Sockets are bound by the process that parses the command line, *before* any worker exists:
an address in use is reported at once (exit status 2), workers inherit the very same listening
sockets (the kernel hands each new connection to whichever worker accepts first), and a worker
restart or a graceful reload never closes a listening socket -- so no client is ever refused
while workers come and go.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from muxserver.reactor.listen import (
    bind_tcp,
    bind_udp,
    bind_unix,
    format_address,
    remove_socket_file,
)
from muxserver.systemd import ActivatedSocket

__all__ = ["Address", "BoundSocket", "bind_all", "parse_address"]


@dataclass(frozen=True)
class Address:
    """A parsed address: ``kind`` is ``"inet"``, ``"unix"`` or ``"systemd"``."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    text: str = ""

    def __str__(self) -> str:
        return self.text


def parse_address(text: str, default_host: str = "127.0.0.1") -> Address:
    """Parse one address (see the module docstring).

    Raises:
        argparse.ArgumentTypeError: saying what was expected, for anything else.
    """
    if text == "systemd" or text.startswith("systemd:"):
        return Address("systemd", path=text.partition(":")[2], text=text)
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise argparse.ArgumentTypeError("unix: needs a path, e.g. unix:/run/muxserver.sock")
        return Address("unix", path=path, text=text)
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"write IPv6 addresses in brackets: [{host}]:{port_text}")
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT, [V6]:PORT, :PORT, unix:PATH or systemd[:NAME], not {text!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535 in {text!r}")
    host = host or default_host
    return Address("inet", host=host, port=port, text=f"{host}:{port}" if sep else text)


@dataclass
class BoundSocket:
    """A socket bound for one service: ``stream`` (listening) or datagram.

    ``shared`` is true when the path of a Unix socket belongs to someone else (systemd), so
    nobody here may remove it.
    """

    service: str
    sock: socket.socket
    stream: bool
    shared: bool = False

    @property
    def address_text(self) -> str:
        """The bound address, for banners and logs (``tcp 127.0.0.1:9000``, ``unix:/x``)."""
        name = self.sock.getsockname()
        if self.sock.family == socket.AF_UNIX:
            return format_address(name) + ("" if self.stream else " (datagram)")
        return f"{'tcp' if self.stream else 'udp'} {format_address(name)}"

    def close(self) -> None:
        """Close the socket, removing its Unix socket file unless it is shared."""
        name = self.sock.getsockname() if self.sock.fileno() != -1 else None
        self.sock.close()
        if not self.shared:
            remove_socket_file(name)


def bind_all(
    wanted: Iterable[tuple[str, Address, bool]],
    activated: list[ActivatedSocket],
    *,
    reuse_port: bool = False,
    backlog: int = 1024,
    claimed: set[str] | None = None,
) -> list[BoundSocket]:
    """Bind every ``(service, address, stream)`` in order; on failure close what was bound.

    ``activated`` are systemd's sockets; ``systemd:NAME`` takes the one of that name, a bare
    ``systemd`` every stream (or datagram) socket not taken by name (by this call, or in
    ``claimed`` when the addresses are bound in several calls).

    Raises:
        OSError: naming the address, when one cannot be bound or systemd did not pass it.
    """
    bound: list[BoundSocket] = []
    wanted = list(wanted)
    named = {a.path for _, a, _ in wanted if a.kind == "systemd" and a.path} | (claimed or set())
    try:
        for service, address, stream in wanted:
            if address.kind == "systemd":
                bound += _from_systemd(service, address, stream, activated, named)
                continue
            if address.kind == "unix":
                kind = socket.SOCK_STREAM if stream else socket.SOCK_DGRAM
                sock = bind_unix(address.path, kind=kind, backlog=backlog)
            elif stream:
                sock = bind_tcp(
                    address.host,
                    address.port,
                    dual_stack=address.host == "::",
                    reuse_port=reuse_port,
                    backlog=backlog,
                )
            else:
                sock = bind_udp(address.host, address.port, dual_stack=address.host == "::")
            bound.append(BoundSocket(service, sock, stream))
    except BaseException:
        for item in bound:
            item.close()
        raise
    return bound


def _from_systemd(
    service: str,
    address: Address,
    stream: bool,
    activated: list[ActivatedSocket],
    named: set[str],
) -> list[BoundSocket]:
    if not activated:
        raise OSError(
            f"{address.text}: no sockets were passed by systemd (LISTEN_FDS is not set for "
            "this process); start it from a .socket unit or bind an address instead"
        )
    if address.path:
        chosen = [a for a in activated if a.name == address.path]
        if not chosen:
            names = ", ".join(sorted({a.name for a in activated}))
            raise OSError(f"{address.text}: systemd passed no socket named so (it passed {names})")
    else:
        chosen = [a for a in activated if a.name not in named and a.is_stream == stream]
        if not chosen:
            raise OSError(f"{address.text}: systemd passed no unclaimed socket of this kind")
    result = []
    for item in chosen:
        if item.is_stream != stream:
            kind = "stream" if item.is_stream else "datagram"
            raise OSError(f"{address.text} is a {kind} socket; use it with the matching flag")
        item.sock.setblocking(False)
        result.append(BoundSocket(service, item.sock, stream, shared=True))
    return result
