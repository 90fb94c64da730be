# muxserver.tls -- TLS as a sans-IO stream layer (ssl.SSLObject over memory BIOs).
"""TLS for every stream server: a :class:`~muxserver.reactor.layer.StreamLayer` over memory BIOs.

Theory of operation
-------------------
:class:`TLSLayer` wraps one ``ssl.SSLObject`` made with ``context.wrap_bio(incoming, outgoing,
server_side=True)``. It never touches a socket: the connection hands it every chunk it reads
(``receive``) and every chunk it writes (``send``), in the reactor thread, and the layer answers
with plaintext for the handler and ciphertext for the socket. The handshake is therefore driven
by readiness like any other input -- no thread per connection, no blocking call -- and the
handlers, services and dispatch strategies above it run unchanged.

The life of one layer (:class:`TLSState`)::

    HANDSHAKING --handshake done-----> OPEN --peer's close_notify--> PEER_CLOSED
    HANDSHAKING --bad bytes / refused-> FAILED (LayerError: logged, connection dropped)
    OPEN | PEER_CLOSED --close()-----> CLOSED (our close_notify written)

* Until the handshake is done the handler sees nothing; output queued meanwhile (a service's
  greeting push) is encrypted as soon as it completes, in order.
* When it completes, what the handshake taught us -- ``tls_version``, ``cipher``, ``alpn``,
  ``server_name`` (SNI), ``peercert`` (the verified client certificate as a dict, or ``None``),
  ``client_subject`` (``"CN=alice,O=Example"``) and, with a verified client certificate,
  ``auth_user`` (its commonName) -- is merged into ``Peer.extra`` before the first plaintext
  byte reaches the handler, so every request's service can see it (even in a worker process:
  the values are plain picklable data).
* End of input: the peer's close_notify ends the plaintext stream cleanly (the handler sees end
  of input, earlier answers are flushed, our close_notify follows). A TCP end *without*
  close_notify is not a clean end -- a truncation attack looks exactly the same -- so it is a
  :class:`~muxserver.reactor.layer.LayerError` and the connection is dropped. TLS has no
  half-close.
* Garbage (a plaintext client on the TLS port, an unsupported protocol version, a certificate
  that does not verify) fails the handshake: OpenSSL's alert is written, then ``LayerError``
  drops the connection with one log line naming the peer and the reason. No one else notices.

:class:`TLSAcceptor` is the glue with the reactor: used as ``StreamServer(setup=...)`` it
installs a layer on every accepted connection and arms one reactor timer per *handshaking*
connection (handshakes are short-lived, so this is cheap; the timer is cancelled the moment the
handshake settles), which drops a client that stalls mid-handshake without affecting anyone
else. The same object is the ``install`` of a STARTTLS upgrade (:class:`StartTLSLineHandler`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from muxserver.reactor.layer import LayerError, StreamLayer, UpgradeLayer
from muxserver.reactor.stream import Phase
from muxserver.tls_context import common_name, format_subject, requested_server_name, server_context
from muxserver.tls_starttls import StartTLSLineHandler

if TYPE_CHECKING:
    from muxserver.reactor.stream import StreamConnection

__all__ = [
    "Authorizer",
    "StartTLSLineHandler",
    "TLSAcceptor",
    "TLSLayer",
    "TLSState",
    "format_subject",
    "server_context",
]

log = logging.getLogger("muxserver.tls")

Authorizer = Callable[[Mapping[str, Any]], "str | None"]
"""``authorize(info) -> None | reason``: called with the handshake facts; a reason refuses."""

_READ_SIZE = 64 * 1024  # below glibc's mmap threshold: see Limits.read_size


def _describe(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    reason = exc.reason or exc.strerror or str(exc)
    return str(reason).lower().replace("_", " ")


class TLSState(enum.Enum):
    """Where a :class:`TLSLayer` stands (see the module docstring for the transitions)."""

    HANDSHAKING = "handshaking"
    """No plaintext yet; handler output is queued."""
    OPEN = "open"
    """Handshake done: records flow both ways."""
    PEER_CLOSED = "peer_closed"
    """The peer's close_notify arrived: its stream ended; we may still write."""
    CLOSED = "closed"
    """Our close_notify is written; nothing more is sent."""
    FAILED = "failed"
    """The handshake failed or the client was refused; the connection is being dropped."""


class TLSLayer(StreamLayer):
    """The server side of one TLS connection, sans-IO (see the module docstring).

    Args:
        context: a server context (see :func:`server_context`).
        authorize: optional ``authorize(info)`` called when the handshake completes with the
            facts that will go into ``Peer.extra``; returning a reason refuses the client
            (close_notify, then ``LayerError``), before any plaintext reaches the handler.
    """

    __slots__ = (
        "_authorize",
        "_incoming",
        "_outgoing",
        "_queued",
        "_ssl",
        "_state",
        "_update_peer",
        "_write_raw",
        "info",
        "on_settled",
    )

    def __init__(self, context: ssl.SSLContext, *, authorize: Authorizer | None = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._authorize = authorize
        self._state = TLSState.HANDSHAKING
        self._queued: list[bytes] = []
        self._write_raw: Callable[[bytes], None] = _nowhere
        self._update_peer: Callable[[dict[str, Any]], None] = _ignore
        self.info: dict[str, Any] | None = None
        """The handshake facts merged into ``Peer.extra`` (``None`` until the handshake)."""
        self.on_settled: Callable[[], None] | None = None
        """Called once when the handshake completes or fails (e.g. to cancel a timer)."""

    @property
    def state(self) -> TLSState:
        """The layer's :class:`TLSState`."""
        return self._state

    @property
    def ended(self) -> bool:
        """True once the peer's close_notify has been read."""
        return self._state is TLSState.PEER_CLOSED

    @property
    def admitted(self) -> bool:
        """True once the handshake completed and the peer was authorized."""
        return self._state is TLSState.OPEN or self._state is TLSState.PEER_CLOSED

    def attach(
        self, write_raw: Callable[[bytes], None], update_peer: Callable[[dict[str, Any]], None]
    ) -> None:
        """Remember how to write below the layer and where peer facts go."""
        self._write_raw = write_raw
        self._update_peer = update_peer

    def receive(self, data: bytes) -> bytes | None:
        """Decrypt ``data`` (advancing the handshake first); see :meth:`StreamLayer.receive`.

        Raises:
            LayerError: the handshake failed, the client was refused, the records are bad,
                or input ended without close_notify.
        """
        # hot path once OPEN: one BIO write, reads until the BIO is empty
        if not data:
            self._end_of_input()
            return None
        state = self._state
        if state is TLSState.OPEN:
            self._incoming.write(data)
            return self._decrypt()
        if state is TLSState.HANDSHAKING:
            self._incoming.write(data)
            if not self._handshake():
                return b""
            return self._decrypt()
        return None if state is TLSState.PEER_CLOSED else b""

    def send(self, data: bytes) -> bytes:
        """Encrypt ``data``; queued while handshaking, dropped once closed."""
        # hot path: one SSL_write into the memory BIO, one read of the records
        state = self._state
        if state is TLSState.OPEN or state is TLSState.PEER_CLOSED:
            try:
                self._ssl.write(data)
            except ssl.SSLError as exc:
                log.debug("TLS write failed (%s); dropping %d bytes", _describe(exc), len(data))
                self._state = TLSState.FAILED
            return self._outgoing.read()
        if state is TLSState.HANDSHAKING:
            self._queued.append(data)
        return b""

    def close(self) -> bytes:
        """Our close_notify (nothing if the handshake never completed)."""
        state = self._state
        if state is TLSState.HANDSHAKING:
            self._settle()
        if state is not TLSState.OPEN and state is not TLSState.PEER_CLOSED:
            self._state = TLSState.CLOSED if state is TLSState.HANDSHAKING else state
            return b""
        self._state = TLSState.CLOSED
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # close_notify written; the peer's answer is not awaited (lingering close)
        except ssl.SSLError:
            return b""
        return self._outgoing.read()

    # -- internals ----------------------------------------------------------------------

    def _flush(self) -> None:
        if self._outgoing.pending:
            self._write_raw(self._outgoing.read())

    def _settle(self) -> None:
        callback, self.on_settled = self.on_settled, None
        if callback is not None:
            callback()

    def _fail(self, reason: str) -> LayerError:
        self._state = TLSState.FAILED
        self._queued = []
        self._settle()
        return LayerError(reason)

    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except ssl.SSLError as exc:
            self._flush()  # the alert tells the peer why
            raise self._fail(f"TLS handshake failed: {_describe(exc)}") from None
        self._flush()
        info = self._peer_info()
        if self._authorize is not None:
            reason = self._authorize(info)
            if reason is not None:
                with contextlib.suppress(ssl.SSLError):
                    self._ssl.unwrap()  # close_notify: the clearest "no" TLS can say here
                self._flush()
                raise self._fail(f"TLS client refused: {reason}")
        self._state = TLSState.OPEN
        self.info = info
        self._update_peer(info)
        self._settle()
        if self._queued:
            queued, self._queued = self._queued, []
            self._write_raw(self.send(b"".join(queued)))
        return True

    def _decrypt(self) -> bytes | None:
        chunks = []
        ended = False
        read = self._ssl.read
        try:
            while True:
                chunk = read(_READ_SIZE)
                if not chunk:
                    ended = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            ended = True
        except ssl.SSLError as exc:
            self._flush()
            raise self._fail(f"TLS error: {_describe(exc)}") from None
        self._flush()  # post-handshake messages (session tickets, key updates)
        if ended:
            self._state = TLSState.PEER_CLOSED
            if not chunks:
                return None
        return b"".join(chunks)

    def _end_of_input(self) -> None:
        state = self._state
        if state is TLSState.HANDSHAKING:
            raise self._fail("peer closed the connection during the TLS handshake")
        if state is TLSState.OPEN:
            raise self._fail(
                "peer closed the connection without TLS close_notify (possible truncation)"
            )

    def _peer_info(self) -> dict[str, Any]:
        ssl_object = self._ssl
        cipher = ssl_object.cipher()
        peercert = ssl_object.getpeercert() or None
        subject = format_subject(peercert)
        info: dict[str, Any] = {
            "tls_version": ssl_object.version(),
            "cipher": cipher[0] if cipher else None,
            "alpn": ssl_object.selected_alpn_protocol(),
            "server_name": requested_server_name(ssl_object),
            "peercert": peercert,
            "client_subject": subject,
        }
        if peercert is not None:
            user = common_name(peercert)
            if user is not None:
                info["auth_user"] = user
        return info


def _nowhere(data: bytes) -> None:
    raise RuntimeError("TLSLayer used before attach()")


def _ignore(extra: dict[str, Any]) -> None:
    return None


class TLSAcceptor:
    """Put a :class:`TLSLayer` on a connection: ``StreamServer(setup=...)``, STARTTLS, or
    after a PROXY header (:meth:`upgrade`).

    Args:
        context: a server context (see :func:`server_context`).
        handshake_timeout: seconds a client may take to finish the handshake; past it the
            connection is dropped with one log line (``None``: no limit). One reactor timer
            per handshaking connection, cancelled as soon as the handshake settles.
        authorize: see :class:`TLSLayer` (e.g. :class:`muxserver.auth.CertificateRules`).

    Raises:
        ValueError: a client-side context or a non-positive timeout.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        handshake_timeout: float | None = 10.0,
        authorize: Authorizer | None = None,
    ) -> None:
        if context.protocol is ssl.PROTOCOL_TLS_CLIENT:
            raise ValueError("TLSAcceptor needs a server context: use server_context(...)")
        if handshake_timeout is not None and handshake_timeout <= 0:
            raise ValueError(f"handshake_timeout must be positive or None, not {handshake_timeout}")
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.authorize = authorize

    def __call__(self, connection: StreamConnection) -> None:
        """Install a fresh layer on ``connection`` and arm its handshake deadline."""
        layer = TLSLayer(self.context, authorize=self.authorize)
        connection.install_layer(layer)
        if self.handshake_timeout is not None:
            timer = connection.reactor.call_later(
                self.handshake_timeout, self._expire, connection, layer
            )
            layer.on_settled = timer.cancel

    def upgrade(self, buffered: bytes) -> UpgradeLayer:
        """The event that starts TLS mid-stream with no plaintext reply, ``buffered`` being
        the first bytes of the handshake: ``ProxyProtocolHandler(inner, upgrade=acceptor.upgrade)``
        serves TLS behind a PROXY header (see :mod:`muxserver.handlers.proxy`)."""
        return UpgradeLayer(b"", self, buffered)

    def _expire(self, connection: StreamConnection, layer: TLSLayer) -> None:
        if layer.state is TLSState.HANDSHAKING and connection.phase is not Phase.CLOSED:
            log.info(
                "%r: TLS handshake not finished after %ss; dropping it",
                connection,
                self.handshake_timeout,
            )
            connection.server.timeouts += 1
            connection.abort()
