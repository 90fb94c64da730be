# muxserver.auth.admission -- refusing a peer before any handler code runs.
"""Admission checks for ``StreamServer(admit=...)``: address rules and Unix peer credentials.

Theory of operation
-------------------
A server's ``admit(sock, address)`` runs on every accepted socket before a handler exists; it
returns ``None`` to admit or a reason to refuse. On refusal the server closes the socket and
logs one line naming the peer and the reason, so no handler or service code ever runs for that
peer. Each check here may also write a short ``reply`` first (best effort, non-blocking: a
line such as ``b"-ERR not allowed\\r\\n"`` where the protocol has one; leave it ``None`` on TLS
ports, where plaintext means nothing to the client).

* :class:`AddressRules` -- allow and deny lists of CIDR networks (IPv4 and IPv6). Deny wins;
  with a non-empty allow list, only listed networks are admitted. IPv4-mapped IPv6 addresses
  (``::ffff:192.0.2.1``, from dual-stack listeners) are matched as the IPv4 address. Unix
  sockets have no IP address and are not subject to these rules.
* :class:`UnixCredentialRules` -- on Unix sockets, the peer's uid/gid/pid from ``SO_PEERCRED``
  checked against allowed users and groups. Use it as ``admit`` *and* its :meth:`record` as
  the server's ``setup`` to make the credentials available to services as
  ``peer.extra["peercred"]`` (a :class:`PeerCredentials`).
* :func:`admit_all` and :func:`setup_all` combine several checks or set-up steps.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import ipaddress
import pwd
import socket
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from muxserver.reactor.stream import StreamConnection

__all__ = [
    "AddressRules",
    "AdmitCheck",
    "PeerCredentials",
    "UnixCredentialRules",
    "admit_all",
    "peer_credentials",
    "setup_all",
]

AdmitCheck = Callable[[socket.socket, Any], "str | None"]
"""``admit(sock, address) -> None | reason``, as ``StreamServer(admit=...)`` takes it."""

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_CRED = struct.Struct("3i")


def _send_reply(sock: socket.socket, reply: bytes | None) -> None:
    if reply:
        with contextlib.suppress(OSError):
            sock.send(reply)  # best effort: the socket is non-blocking and about to close


class AddressRules:
    """Admit or refuse peers by IP address (an ``admit`` check; see the module docstring).

    Args:
        allow: CIDR networks (``"10.0.0.0/8"``, ``"2001:db8::/32"``, or single addresses);
            empty means every address not denied.
        deny: CIDR networks refused whatever ``allow`` says.
        reply: bytes written to a refused peer before the close (``None``: nothing).

    Raises:
        ValueError: naming the entry that is not a network.
    """

    def __init__(
        self, allow: Iterable[str] = (), deny: Iterable[str] = (), *, reply: bytes | None = None
    ) -> None:
        self.allow = [_network(entry) for entry in allow]
        self.deny = [_network(entry) for entry in deny]
        self.reply = reply

    def check(self, host: str) -> str | None:
        """``None`` if ``host`` (an IP address string) is admitted, else the reason."""
        address = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network in self.deny:
            if address in network:
                return f"address {address} is in denied network {network}"
        if self.allow and not any(address in network for network in self.allow):
            return f"address {address} is not in an allowed network"
        return None

    def __call__(self, sock: socket.socket, address: Any) -> str | None:
        """The ``admit`` check: refuse (with ``reply``) or admit the accepted socket."""
        if not isinstance(address, tuple):
            return None  # a Unix socket: no IP address to judge
        reason = self.check(address[0])
        if reason is not None:
            _send_reply(sock, self.reply)
        return reason


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _network(entry: str) -> _Network:
    try:
        network = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{entry!r} is not an IP network: write e.g. '192.0.2.0/24', '2001:db8::/32' "
            "or a single address"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        # Written as a dual-stack listener shows IPv4 peers (::ffff:a.b.c.d): peers are
        # compared as IPv4, so the rule must be IPv4 too.
        address = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((address, network.prefixlen - 96))
    return network


class PeerCredentials(NamedTuple):
    """Who is at the other end of a Unix socket, as the kernel saw it at ``connect()``."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """The peer's ``SO_PEERCRED`` of a connected Unix socket.

    Raises:
        OSError: not a Unix socket, or the platform has no ``SO_PEERCRED`` (ENOTSUP).
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None or sock.family != socket.AF_UNIX:
        raise OSError(errno.ENOTSUP, "SO_PEERCRED needs a Unix socket on Linux")
    pid, uid, gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _CRED.size))
    return PeerCredentials(pid, uid, gid)


class UnixCredentialRules:
    """Admit Unix-socket peers by user and group (an ``admit`` check, plus :meth:`record`).

    A peer is admitted when its uid is an allowed user, its primary gid an allowed group, or
    its user is listed as a member of an allowed group. TCP peers are not judged here.

    Args:
        users: user names or numeric uids.
        groups: group names or numeric gids.
        reply: bytes written to a refused peer before the close (``None``: nothing).

    Raises:
        ValueError: a name that is not a known user or group (checked at start-up), or no
            users and no groups (which would refuse everyone).
    """

    def __init__(
        self,
        users: Iterable[str | int] = (),
        groups: Iterable[str | int] = (),
        *,
        reply: bytes | None = None,
    ) -> None:
        self.uids = frozenset(_uid(user) for user in users)
        self.gids = frozenset(_gid(group) for group in groups)
        if not self.uids and not self.gids:
            raise ValueError("UnixCredentialRules needs at least one allowed user or group")
        self.reply = reply

    def check(self, credentials: PeerCredentials) -> str | None:
        """``None`` if ``credentials`` are admitted, else the reason."""
        if credentials.uid in self.uids or credentials.gid in self.gids:
            return None
        with contextlib.suppress(KeyError):
            name = pwd.getpwuid(credentials.uid).pw_name
            for gid in self.gids:
                with contextlib.suppress(KeyError):
                    if name in grp.getgrgid(gid).gr_mem:
                        return None
        return (
            f"unix peer uid={credentials.uid} gid={credentials.gid} pid={credentials.pid} "
            "is not an allowed user or group"
        )

    def __call__(self, sock: socket.socket, address: Any) -> str | None:
        """The ``admit`` check."""
        if sock.family != socket.AF_UNIX:
            return None
        try:
            credentials = peer_credentials(sock)
        except OSError as exc:
            return f"cannot read the peer's credentials ({exc})"
        reason = self.check(credentials)
        if reason is not None:
            _send_reply(sock, self.reply)
        return reason

    @staticmethod
    def record(connection: StreamConnection) -> None:
        """A ``setup`` step: put the peer's credentials in ``peer.extra["peercred"]``."""
        if connection.sock.family == socket.AF_UNIX:
            with contextlib.suppress(OSError):
                connection.peer.extra["peercred"] = peer_credentials(connection.sock)


def _uid(user: str | int) -> int:
    if isinstance(user, int):
        return user
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ValueError(f"unknown user {user!r} (not in the password database)") from None


def _gid(group: str | int) -> int:
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"unknown group {group!r} (not in the group database)") from None


def admit_all(*checks: AdmitCheck) -> AdmitCheck:
    """One ``admit`` check that runs ``checks`` in order; the first refusal wins."""

    def admit(sock: socket.socket, address: Any) -> str | None:
        for check in checks:
            reason = check(sock, address)
            if reason is not None:
                return reason
        return None

    return admit


def setup_all(
    *steps: Callable[[StreamConnection], None],
) -> Callable[[StreamConnection], None]:
    """One ``setup`` hook that runs ``steps`` in order (e.g. credentials, then TLS)."""

    def setup(connection: StreamConnection) -> None:
        for step in steps:
            step(connection)

    return setup
