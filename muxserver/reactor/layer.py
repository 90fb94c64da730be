"""Stream layers: byte transforms that sit between a socket and its handler (TLS).

A layer sees every byte that crosses the socket, in order, in the reactor thread: what was
received passes through :meth:`StreamLayer.receive` before the handler sees it, and what the
connection writes passes through :meth:`StreamLayer.send` at the moment it is queued -- so a
layer that numbers its records (TLS does) always emits them in socket order. Handlers and
services run unchanged above it.

The order of calls, as a grammar::

    attach  ->  (receive | send)*  ->  close?
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["LayerError", "StreamLayer"]


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
        the plaintext stream has ended -- always ``None`` for ``data == b""``.

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
