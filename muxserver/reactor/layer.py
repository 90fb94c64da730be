"""Stream layers: byte transforms that sit between a socket and its handler (TLS).

A layer sees every byte that crosses the socket, in order, in the reactor thread: what was
received passes through :meth:`StreamLayer.receive` before the handler sees it, and what the
connection writes passes through :meth:`StreamLayer.send` at the moment it is queued -- so a
layer that numbers its records (TLS does) always emits them in socket order. Handlers and
services run unchanged above it.

The order of calls, as a grammar::

    attach  ->  (receive | send)*  ->  close?

A layer is installed by the server's ``setup`` hook on every accepted connection, or mid-stream
when the handler produces :class:`UpgradeLayer` (STARTTLS): the connection writes the
event's last plaintext reply, installs the new layer, and passes the bytes the handler had
buffered after the upgrade command through it -- they are the first bytes of the new layer's
stream, never plaintext requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from muxserver.handlers.base import Event

if TYPE_CHECKING:
    from muxserver.reactor.stream import StreamConnection

__all__ = ["LayerError", "StreamLayer", "UpgradeLayer"]


class LayerError(Exception):
    """The layer cannot go on (a failed handshake, garbage instead of TLS records).

    The connection logs the message with its context and is dropped at once.
    """


class StreamLayer:
    """Base class (and contract) of stream layers."""

    def attach(
        self, write_raw: Callable[[bytes], None], update_peer: Callable[[dict[str, Any]], None]
    ) -> None:
        """Called once when installed: ``write_raw`` sends bytes below the layer (handshake
        records); ``update_peer`` merges facts into the connection's ``Peer.extra``."""
        raise NotImplementedError

    def receive(self, data: bytes) -> bytes | None:
        """Take bytes from the socket (``b""`` at end of input) and return the plaintext for
        the handler: ``b""`` when there is none yet (a handshake in progress), ``None`` when
        the plaintext stream has ended -- ``None`` for ``data == b""`` unless the end is
        itself an error (TLS: end of input without close_notify raises). When the stream
        ends in the same bytes as its last plaintext (TLS: data and close_notify in one
        read), that plaintext is returned and :attr:`ended` turns true.

        Raises:
            LayerError: the peer's bytes cannot be processed; the connection is dropped.
        """
        raise NotImplementedError

    def send(self, data: bytes) -> bytes:
        """Transform handler output into the bytes to write."""
        raise NotImplementedError

    def close(self) -> bytes:
        """Bytes to write before the connection half-closes (e.g. TLS close_notify)."""
        return b""

    @property
    def ended(self) -> bool:
        """Whether the plaintext stream has ended: no plaintext will follow what
        :meth:`receive` returned last. The default never ends before end of input."""
        return False

    @property
    def admitted(self) -> bool:
        """Whether the layer has let the peer in (TLS: handshake done and authorized).

        Checked when the layer calls ``update_peer``; the service's ``connection_made`` waits
        for it (see ``Handler.admitted``). The default is true from the start.
        """
        return True


class UpgradeLayer(Event):
    """Handler event: put a new layer under this handler from the next byte on (STARTTLS).

    The connection writes ``reply`` under the current layer (in plaintext, after every
    earlier answer), calls ``install(connection)`` -- which must call
    :meth:`~muxserver.reactor.stream.StreamConnection.install_layer` -- and then passes
    ``buffered``, the bytes the handler held after the upgrade command, through the new layer.
    The handler must not produce this event while answers to earlier requests are due
    (return ``PAUSED`` until they are sent); the connection drops it if it does.
    """

    __slots__ = ("buffered", "install", "reply")

    def __init__(
        self, reply: bytes, install: Callable[[StreamConnection], None], buffered: bytes = b""
    ) -> None:
        self.reply = reply
        self.install = install
        self.buffered = buffered

    def __repr__(self) -> str:
        return f"UpgradeLayer(reply={self.reply!r}, buffered={len(self.buffered)} bytes)"
