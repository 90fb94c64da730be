"""The PROXY protocol (versions 1 and 2), as a wrapper around any other handler.

Theory of operation
-------------------
A load balancer (HAProxy, AWS NLB, Google Cloud, ...) that relays a TCP connection can
prepend one header saying who the real client is. :class:`ProxyProtocolHandler` reads that
header, reports it as a single :class:`~muxserver.handlers.base.PeerUpdate`, and then steps
aside: every byte after the header -- including bytes that arrived in the same chunk as the
header -- goes to the wrapped *inner* handler, which from then on answers every call.

The life of one wrapper::

    READING_HEADER --header parsed--> HANDED_OVER   (PeerUpdate, then the inner's events)
    READING_HEADER --bad header-----> ERROR         (ProtocolError, no reply, sticky)
    READING_HEADER --EOF, no bytes--> CLOSED        (EndOfInput: a bare TCP health check)
    READING_HEADER --header, EOF----> CLOSED        (EndOfInput; only with ``upgrade``)

Buffering, the hand-over and delegation are :class:`~muxserver.handlers.wrapper.PreambleWrapper`'s.
``state`` reports the wrapper's own :class:`ProxyState` until the header is parsed and the
inner handler's ``state`` afterwards, so the status page shows the protocol actually being
spoken; :attr:`ProxyProtocolHandler.proxy_state` always reports the wrapper's own state.

The PeerUpdate carries ``"proxy_version"`` (1 or 2) and ``"proxy_tlvs"`` (a dict, empty for
version 1), and -- only when the header names the real endpoints -- ``"proxy_address"`` (the
client) and ``"proxy_destination"`` (the address the client connected to). A version 1
``UNKNOWN`` header, a version 2 ``LOCAL`` command (the proxy's own health check) and a version
2 header with an unspecified family or transport carry no address keys: the socket's own
address stays the client address, as the specification requires.

TLS behind the header (a load balancer passing TLS through, HAProxy ``mode tcp`` with
``send-proxy-v2``): the header is cleartext and the TLS handshake starts right after it, so the
layer cannot be installed when the connection opens. Give the wrapper ``upgrade``, a function
of the bytes that followed the header that returns the event putting the layer in place --
:meth:`muxserver.tls.TLSAcceptor.upgrade` is one. Those bytes then go to the new layer instead
of the inner handler, and the event comes right after the PeerUpdate::

    acceptor = TLSAcceptor(server_context("cert.pem", "key.pem"))
    StreamServer(reactor, lambda: ProxyProtocolHandler(LineHandler(), upgrade=acceptor.upgrade),
                 service)                                   # no setup=: the header comes first

With ``upgrade`` the wrapper does not admit the peer while that event is still to be pulled, so
the service's ``connection_made`` waits for the layer (a finished, authorized handshake). End of
input right after the header ends the connection cleanly, like end of input before it.

The header format itself -- parsing, TLVs, CRC32C, encoders -- is
:mod:`muxserver.handlers.proxy_header`; its public names are re-exported here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from typing import Any

from muxserver.handlers.base import NEED_DATA, Event, Handler, NeedData, PeerUpdate, ProtocolError
from muxserver.handlers.proxy_header import (
    V1_MAX_LENGTH,
    V1_PREFIX,
    V2_FIXED_LENGTH,
    V2_SIGNATURE,
    Address,
    SSLInfo,
    TLVType,
    encode_v1,
    encode_v2,
    parse_v1_line,
    parse_v2_header,
)
from muxserver.handlers.wrapper import PreambleWrapper

__all__ = [
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "Address",
    "ProxyProtocolHandler",
    "ProxyState",
    "SSLInfo",
    "TLVType",
    "encode_v1",
    "encode_v2",
]


class ProxyState(enum.Enum):
    """Where a :class:`ProxyProtocolHandler` stands before (and after) the hand-over."""

    READING_HEADER = "reading_header"
    """Waiting for the complete PROXY header; nothing has reached the inner handler."""
    HANDED_OVER = "handed_over"
    """The header was reported; the inner handler now receives every byte and call."""
    CLOSED = "closed"
    """End of input arrived before any byte: EndOfInput was produced, no inner handler ran."""
    ERROR = "error"
    """The header was malformed; the same ProtocolError is raised on every call."""


class ProxyProtocolHandler(PreambleWrapper[ProxyState]):
    """Read a PROXY header, report it as a PeerUpdate, then delegate to ``inner``.

    Args:
        inner: the handler for the protocol spoken after the header.
        versions: which header versions to accept (1, 2 or both). Per the specification a
            receiver must never guess whether a header is present: the header is required.
        max_header_bytes: the longest version 2 header (16 fixed bytes, addresses and TLVs)
            accepted; a longer one is a ProtocolError as soon as its length field arrives.
            Version 1 lines are capped at 107 bytes by the specification. At least 107.
        upgrade: for a layer that starts after the header (TLS passthrough): called once,
            with the bytes that followed the header, instead of giving them to ``inner``; the
            event it returns (an ``UpgradeLayer``) comes right after the PeerUpdate. See the
            module docstring.

    Raises:
        ValueError: if ``versions`` is empty or names a version other than 1 or 2, or if
            ``max_header_bytes`` is below 107.
    """

    __slots__ = ("_scanned", "max_header_bytes", "upgrade", "versions")

    _HANDED_OVER = ProxyState.HANDED_OVER
    _CLOSED = ProxyState.CLOSED
    _FAILED = ProxyState.ERROR

    def __init__(
        self,
        inner: Handler,
        versions: Collection[int] = (1, 2),
        max_header_bytes: int = 4096,
        *,
        upgrade: Callable[[bytes], Event] | None = None,
    ) -> None:
        accepted = frozenset(versions)
        if not accepted or not accepted <= {1, 2}:
            raise ValueError(f"versions must be 1, 2 or both, e.g. (1, 2); got {versions!r}")
        if max_header_bytes < V1_MAX_LENGTH:
            raise ValueError(
                f"max_header_bytes must be at least {V1_MAX_LENGTH}, got {max_header_bytes}"
            )
        super().__init__(inner, ProxyState.READING_HEADER)
        self.versions = accepted
        self.max_header_bytes = max_header_bytes
        self.upgrade = upgrade
        self._scanned = 0  # version 1: bytes already searched for LF (keeps scanning linear)

    @property
    def proxy_state(self) -> ProxyState:
        """This wrapper's own state, whatever the inner handler's is."""
        return self._state

    @property
    def admitted(self) -> bool:
        """After the hand-over, and with ``upgrade`` only once its event has been pulled: the
        layer it installs decides from then on."""
        return super().admitted and not self._pending

    def _step(self) -> Event | NeedData:
        """The PeerUpdate once the header is complete (the hand-over), else NEED_DATA.

        Raises:
            ProtocolError: the header is malformed or truncated by end of input (no reply).
        """
        parsed = self._parse()
        if parsed is None:
            if not self._eof:
                return NEED_DATA
            if self._buffer:
                raise ProtocolError("PROXY protocol: end of input inside the header")
            return self._end()
        extra, length = parsed
        del self._buffer[:length]
        if self.upgrade is None:
            return self._hand_over(PeerUpdate(extra))
        if self._eof:
            return self._end()  # gone before the layer could start: nothing to serve
        rest = bytes(self._buffer)  # the layer's first bytes, never the inner handler's
        self._buffer = bytearray()
        return self._hand_over(PeerUpdate(extra), self.upgrade(rest))

    def _parse(self) -> tuple[dict[str, Any], int] | None:
        """Return (PeerUpdate extra, header length), or None while the header is incomplete."""
        buf = self._buffer
        if not buf:
            return None
        # The first byte tells the versions apart: "P" of "PROXY" or CR of the v2 signature.
        # Any prefix that cannot grow into a header is refused at once, whatever the chunking.
        if buf[0] == V2_SIGNATURE[0]:
            if 2 not in self.versions:
                raise ProtocolError("PROXY protocol: a version 2 header, but only 1 is accepted")
            return self._parse_v2(buf)
        if buf[0] == V1_PREFIX[0]:
            if 1 not in self.versions:
                raise ProtocolError("PROXY protocol: a version 1 header, but only 2 is accepted")
            return self._parse_v1(buf)
        raise ProtocolError("PROXY protocol: no PROXY header where one is required")

    def _parse_v1(self, buf: bytearray) -> tuple[dict[str, Any], int] | None:
        head = bytes(buf[: len(V1_PREFIX)])
        if not V1_PREFIX.startswith(head):
            raise ProtocolError("PROXY protocol: bad version 1 signature")
        end = buf.find(b"\n", self._scanned, V1_MAX_LENGTH)
        if end < 0:
            self._scanned = min(len(buf), V1_MAX_LENGTH)
            if self._scanned >= V1_MAX_LENGTH:
                raise ProtocolError("PROXY protocol: no CRLF within 107 bytes")
            return None
        if buf[end - 1] != 0x0D:
            raise ProtocolError("PROXY protocol: version 1 line ends in LF without CR")
        return parse_v1_line(bytes(buf[len(V1_PREFIX) : end - 1])), end + 1

    def _parse_v2(self, buf: bytearray) -> tuple[dict[str, Any], int] | None:
        head = bytes(buf[: len(V2_SIGNATURE)])
        if not V2_SIGNATURE.startswith(head):
            raise ProtocolError("PROXY protocol: bad version 2 signature")
        if len(buf) < V2_FIXED_LENGTH:
            return None
        length = V2_FIXED_LENGTH + int.from_bytes(buf[14:16], "big")
        if length > self.max_header_bytes:
            raise ProtocolError(
                f"PROXY protocol: version 2 header of {length} bytes exceeds the limit of "
                f"{self.max_header_bytes}"
            )
        if len(buf) < length:
            return None
        return parse_v2_header(bytes(buf[:length])), length
