"""The echo service: what a client sends comes back, over TCP and UDP."""

from __future__ import annotations

from muxserver.handlers.base import Request
from muxserver.reactor.datagram import Datagram
from muxserver.service import Peer

__all__ = ["echo_datagram"]


def echo_datagram(request: Request, peer: Peer) -> bytes:
    """Answer a datagram with its own bytes."""
    assert isinstance(request, Datagram)
    return request.data
