# muxserver.auth.challenge -- a shared-secret HMAC challenge-response in front of any handler.
"""Shared-secret challenge-response authentication, as a wrapper around any other handler.

Theory of operation
-------------------
:class:`ChallengeResponseHandler` speaks a short line protocol before handing the stream to the
wrapped *inner* handler (a :class:`~muxserver.handlers.wrapper.PreambleWrapper`, like
:class:`~muxserver.handlers.proxy.ProxyProtocolHandler`, which reads its header first)::

    C: AUTH <user>
    S: CHALLENGE <nonce, 64 hex digits>          (32 random bytes from the server)
    C: RESPONSE <HMAC-SHA256(secret, "muxserver-auth-v1" NUL user NUL nonce), hex>
    S: OK                                         -> PeerUpdate({"auth_user": user, ...}),
                                                     then the inner protocol
    S: RETRY <new nonce>                          (a wrong response, attempts left)
    S: DENIED                                     (then the connection closes)

Lines end with LF (a CR before it is ignored) and are at most 256 bytes. The secret never
crosses the wire; each attempt gets a fresh nonce, so a recorded response cannot be replayed;
responses are compared in constant time (``hmac.compare_digest``); an unknown user gets a
challenge like anyone else and always fails, so the replies do not reveal which users exist.

Bounds: at most ``max_attempts`` responses, then DENIED. Time is bounded by the connection,
not by this handler (handlers have no clock): while the exchange is unfinished the wrapper
reports buffered input, so the connection's ``Limits.request_timeout`` deadline runs from the
``AUTH`` line and drops a client that stalls. Set it short on authenticated servers.

Refusal is a :class:`~muxserver.handlers.base.ProtocolError` carrying ``DENIED``: the
connection writes it, closes, and logs one line with the peer and the reason. The inner
handler never receives a byte from a refused peer, so no service ever sees its requests.
Bytes pipelined after the RESPONSE line are kept and given to the inner handler only on
success. Server pushes to a peer that has not authenticated yet are dropped.

States (:class:`ChallengeState`)::

    AWAITING_HELLO --AUTH--> CHALLENGED --right response--> AUTHENTICATED (inner's events)
    CHALLENGED --wrong, attempts left--> CHALLENGED (RETRY)
    AWAITING_HELLO | CHALLENGED --bad line / wrong, none left / EOF--> REFUSED (sticky)
    AWAITING_HELLO --EOF, nothing sent--> CLOSED (EndOfInput)
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from muxserver.handlers.base import (
    NEED_DATA,
    Event,
    Handler,
    NeedData,
    PeerUpdate,
    ProtocolError,
    Send,
)
from muxserver.handlers.wrapper import PreambleWrapper

__all__ = [
    "MAX_LINE",
    "AuthenticationError",
    "ChallengeResponseHandler",
    "ChallengeState",
    "SecretLookup",
    "authenticate",
    "compute_response",
]

MAX_LINE: Final = 256
"""The longest authentication line, in bytes, LF included."""

SecretLookup = Mapping[str, bytes] | Callable[[str], "bytes | None"]
"""Where secrets come from: a mapping of user to secret, or a function (``None``: unknown)."""

_CONTEXT = b"muxserver-auth-v1"
_NONCE_SIZE = 32
_DENIED = b"DENIED\n"


def compute_response(secret: bytes, user: str, nonce: bytes) -> bytes:
    """The hex HMAC-SHA256 a client sends for ``nonce`` (raw bytes) as ``user``."""
    message = b"\0".join((_CONTEXT, user.encode("utf-8"), nonce))
    return hmac.new(secret, message, hashlib.sha256).hexdigest().encode("ascii")


class ChallengeState(enum.Enum):
    """Where the authentication exchange stands (see the module docstring)."""

    AWAITING_HELLO = "awaiting_hello"
    CHALLENGED = "challenged"
    AUTHENTICATED = "authenticated"
    REFUSED = "refused"
    CLOSED = "closed"


class ChallengeResponseHandler(PreambleWrapper[ChallengeState]):
    """Authenticate the peer with a shared secret, then delegate to ``inner``.

    Args:
        inner: the handler for the protocol spoken after authentication.
        secrets: a mapping of user name to secret, or a function returning the secret (or
            ``None`` for an unknown user).
        max_attempts: responses allowed before DENIED (at least 1).
        nonce_source: ``n -> n random bytes`` (``os.urandom``; injectable for tests).

    Raises:
        ValueError: ``max_attempts`` below 1.
    """

    __slots__ = (
        "_attempts",
        "_dummy_secret",
        "_lookup",
        "_nonce",
        "_nonce_source",
        "_scanned",
        "_user",
        "max_attempts",
    )

    _HANDED_OVER = ChallengeState.AUTHENTICATED
    _CLOSED = ChallengeState.CLOSED
    _FAILED = ChallengeState.REFUSED

    def __init__(
        self,
        inner: Handler,
        secrets: SecretLookup,
        *,
        max_attempts: int = 3,
        nonce_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        super().__init__(inner, ChallengeState.AWAITING_HELLO)
        self.max_attempts = max_attempts
        self._lookup: Callable[[str], bytes | None] = (
            secrets.get if isinstance(secrets, Mapping) else secrets
        )
        self._nonce_source = nonce_source
        self._dummy_secret = nonce_source(_NONCE_SIZE)
        self._scanned = 0
        self._user = ""
        self._nonce = b""
        self._attempts = 0

    @property
    def challenge_state(self) -> ChallengeState:
        """This wrapper's own state."""
        return self._state

    @property
    def buffered(self) -> int:
        """Unconsumed bytes; at least 1 while challenged, so the request deadline runs."""
        if self._state is ChallengeState.CHALLENGED:
            return max(1, len(self._buffer))
        return super().buffered

    def encode_push(self, message: Any) -> bytes:
        """Delegate once authenticated; drop pushes to a peer that has not authenticated."""
        if self._state is not ChallengeState.AUTHENTICATED:
            return b""
        return self.inner.encode_push(message)

    # -- the exchange ---------------------------------------------------------------------

    def _refuse(self, reason: str) -> ProtocolError:
        return ProtocolError(f"authentication refused: {reason}", _DENIED)

    def _line(self) -> bytes | None:
        buf = self._buffer
        end = buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(buf)
            if len(buf) >= MAX_LINE:
                raise self._refuse(f"authentication line longer than {MAX_LINE} bytes")
            return None
        if end + 1 > MAX_LINE:
            raise self._refuse(f"authentication line longer than {MAX_LINE} bytes")
        line = bytes(buf[:end])
        del buf[: end + 1]
        self._scanned = 0
        return line[:-1] if line.endswith(b"\r") else line

    def _step(self) -> Event | NeedData:
        line = self._line()
        if line is None:
            if not self._eof:
                return NEED_DATA
            if self._state is ChallengeState.AWAITING_HELLO and not self._buffer:
                return self._end()
            raise self._refuse("end of input before authentication finished")
        if self._state is ChallengeState.AWAITING_HELLO:
            return self._hello(line)
        return self._response(line)

    def _challenge(self, word: bytes) -> Send:
        self._nonce = self._nonce_source(_NONCE_SIZE)
        return Send(word + b" " + self._nonce.hex().encode("ascii") + b"\n")

    def _hello(self, line: bytes) -> Send:
        verb, _, user = line.partition(b" ")
        if verb != b"AUTH" or not user or not _is_user(user):
            raise self._refuse("expected 'AUTH <user>'")
        self._user = user.decode("ascii")
        self._state = ChallengeState.CHALLENGED
        return self._challenge(b"CHALLENGE")

    def _response(self, line: bytes) -> Event:
        verb, _, given = line.partition(b" ")
        if verb != b"RESPONSE":
            raise self._refuse(f"expected 'RESPONSE <hmac>' from user {self._user!r}")
        secret = self._lookup(self._user)
        expected = compute_response(
            secret if secret is not None else self._dummy_secret, self._user, self._nonce
        )
        # constant time whatever the input; the known-user test comes after, on purpose
        if hmac.compare_digest(expected, given.lower()) and secret is not None:
            return self._authenticated()
        self._attempts += 1
        if self._attempts >= self.max_attempts:
            what = "wrong response for user" if secret is not None else "unknown user"
            raise self._refuse(f"{what} {self._user!r} after {self._attempts} attempt(s)")
        return self._challenge(b"RETRY")

    def _authenticated(self) -> Event:
        update = PeerUpdate({"auth_user": self._user, "auth_scheme": "hmac-sha256"})
        return self._hand_over(Send(b"OK\n"), update)


def _is_user(name: bytes) -> bool:
    return len(name) <= 64 and all(0x21 <= byte <= 0x7E for byte in name)


class AuthenticationError(Exception):
    """The server refused the client (``DENIED``) or did not speak the protocol."""


def authenticate(sock: socket.socket, user: str, secret: bytes, *, timeout: float = 10.0) -> bytes:
    """Run the client side of the exchange on a connected blocking socket.

    Returns the bytes that arrived after ``OK`` (normally ``b""``): the start of the inner
    protocol, for the caller to use.

    Raises:
        AuthenticationError: DENIED, or an unexpected reply.
        TimeoutError / OSError: the server is too slow, or the connection failed.
    """
    deadline = time.monotonic() + timeout
    received = bytearray()

    def read_line() -> bytes:
        while b"\n" not in received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("authentication took longer than the timeout")
            sock.settimeout(remaining)
            chunk = sock.recv(4096)
            if not chunk:
                raise AuthenticationError("server closed the connection during authentication")
            received.extend(chunk)
        end = received.index(b"\n")
        line = bytes(received[:end]).rstrip(b"\r")
        del received[: end + 1]
        return line

    sock.sendall(b"AUTH " + user.encode("ascii") + b"\n")
    word, _, argument = read_line().partition(b" ")
    while word in (b"CHALLENGE", b"RETRY"):
        if word == b"RETRY":
            raise AuthenticationError(f"server refused the response for user {user!r}")
        response = compute_response(secret, user, bytes.fromhex(argument.decode("ascii")))
        sock.sendall(b"RESPONSE " + response + b"\n")
        word, _, argument = read_line().partition(b" ")
    if word == b"OK":
        sock.settimeout(None)
        return bytes(received)
    if word == b"DENIED":
        raise AuthenticationError(f"server denied user {user!r}")
    raise AuthenticationError(f"unexpected reply {word!r} during authentication")
