"""HTTP/1.1 responses: the :class:`HTTPResponse` value and how it becomes bytes.

Theory of operation
-------------------
The handler owns framing; the service owns content. :func:`encode_response` therefore takes
what the service said (status, headers, body) plus what the handler knows about the request
(HEAD or not, HTTP/1.0 or 1.1, whether the connection already has to close) and writes the
framing itself:

==========================  =====================================  =====================
body given as               HTTP/1.1 client                        HTTP/1.0 client
==========================  =====================================  =====================
``bytes`` / ``str``         ``Content-Length``                     ``Content-Length``
iterable of ``bytes``       ``Transfer-Encoding: chunked``         close-delimited
anything, HEAD request      headers only (no body, no chunks)      headers only
204 / 304 status            no body allowed, no Content-Length     same
==========================  =====================================  =====================

``Connection: close`` is written whenever the connection ends after this response (the
request asked for it, the body is close-delimited, or the service put ``close`` in its own
Connection header); an HTTP/1.0 client that asked for keep-alive gets
``Connection: keep-alive``. The service's own Connection header is replaced by this one.

A service that sets ``Transfer-Encoding`` or a wrong ``Content-Length``, a header with a CR
or LF in it (response splitting), a 1xx status (protocol switching is not supported) or a
body on a 204/304 is a caller's bug: :class:`~muxserver.handlers.base.HandlerMisuseError`.
``Content-Length`` may be given for a HEAD or 304 response, where it describes the body a GET
would have had. No ``Date`` header is added: handlers have no clock.

Cost. Checking every header against the grammar is most of the work, and services answer with
a handful of shapes (one status, the same few headers). So the checked status line and header
lines are kept by ``(status, reason, headers)`` -- up to :data:`_HEADS_MAX` shapes, the first
ones seen -- and a response whose shape was seen before costs one dict lookup plus its
framing. A shape that cannot be a dict key (a ``bytearray`` value) is simply checked every time.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from typing import Final, TypeAlias

from muxserver.handlers.base import HandlerMisuseError
from muxserver.handlers.http_parse import reason_phrase

__all__ = ["Body", "HTTPResponse", "HeaderItems", "encode_response"]

HeaderItems = Iterable[tuple[bytes | str, bytes | str]]
"""Response headers: ``(name, value)`` pairs of ``bytes`` or ``str`` (latin-1)."""

Body = bytes | bytearray | memoryview | str | Iterable[bytes]
"""A response body: bytes (``str`` is UTF-8 encoded), or an iterable of byte chunks."""

_NAME: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE: Final = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_NO_BODY_STATUSES: Final = frozenset((204, 304))

_Head: TypeAlias = tuple[bytes, bytes | None, bool]
"""A response's checked status line and header lines, its Content-Length, its own close."""
_HEADS: Final[dict[Hashable, _Head]] = {}
_HEADS_MAX: Final = 256


class HTTPResponse:
    """A response from a service: status, headers and body.

    ``reason`` defaults to the standard phrase for ``status``. ``body`` may be ``bytes``
    (sent with Content-Length), ``str`` (UTF-8), or an iterable of ``bytes`` chunks (sent
    chunked to HTTP/1.1 clients; the iterable is consumed when the handler encodes it).
    """

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(
        self,
        status: int = 200,
        headers: HeaderItems = (),
        body: Body = b"",
        reason: bytes | str | None = None,
    ) -> None:
        self.status = status
        self.headers = list(headers)
        self.body = body
        self.reason = reason

    def __repr__(self) -> str:
        return f"HTTPResponse({self.status}, {self.headers!r}, {self.body!r})"


def _as_bytes(value: bytes | str, what: str) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise HandlerMisuseError(f"{what} {value!r} is not latin-1: pass bytes") from None
    return bytes(value)


def encode_response(
    response: HTTPResponse, is_head: bool, is_http11: bool, close: bool
) -> tuple[bytes, bool]:
    """Encode ``response`` for a request; ``close`` says the connection ends after it anyway.

    Returns:
        ``(data, close)``: the bytes to write, and whether the connection must close after
        them (``close`` as given, or forced by the response itself).

    Raises:
        HandlerMisuseError: for the caller's mistakes listed in the module docstring.
    """
    # hot path: one call per response; a shape seen before costs one dict lookup
    status = response.status
    if not isinstance(status, int) or not 200 <= status <= 999:
        raise HandlerMisuseError(f"status must be an int in 200..999, not {status!r}")
    try:
        key: Hashable = (status, response.reason, tuple(response.headers))
        head = _HEADS.get(key)
    except TypeError:  # an unhashable header: check this response's head without the cache
        key = None
        head = None
    if head is None:
        head = _encode_head(status, response.reason, response.headers)
        if key is not None and len(_HEADS) < _HEADS_MAX:
            _HEADS[key] = head
    start, length, own_close = head
    close = close or own_close
    body = response.body
    if (
        type(body) is bytes
        and length is None
        and is_http11
        and not (close or is_head or status in _NO_BODY_STATUSES)
    ):
        # hot path: what the general case below writes for a plain keep-alive answer
        return b"%sContent-Length: %d\r\n\r\n%s" % (start, len(body), body), False

    lines = [start]
    if isinstance(body, str):
        body = body.encode()
    chunks: Iterable[bytes] | None = None
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body)
        exempt = is_head or status == 304
        if length is not None and not exempt and (length.lstrip(b"0") or b"0") != b"%d" % len(body):
            raise HandlerMisuseError("Content-Length does not match the body")
    else:
        if length is not None and not is_head:
            raise HandlerMisuseError("Content-Length cannot be given with a chunk iterable")
        chunks, body = body, b""

    if status in _NO_BODY_STATUSES:
        if body or chunks is not None:
            raise HandlerMisuseError(f"a {status} response cannot have a body")
        if length is not None and status == 304:
            lines.append(b"Content-Length: %s\r\n" % length)
    elif chunks is None:
        lines.append(b"Content-Length: %s\r\n" % (length or b"%d" % len(body)))
    elif is_head:
        pass  # a HEAD response has no body to frame; leave the iterable unconsumed
    elif is_http11:
        lines.append(b"Transfer-Encoding: chunked\r\n")
        body = _chunked(chunks)
    else:
        # HTTP/1.0 has no chunked coding: the end of the body is the end of the connection.
        close = True
        body = b"".join(_check_chunk(c) for c in chunks)

    if close:
        lines.append(b"Connection: close\r\n")
    elif not is_http11:
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(b"\r\n")
    if body and not is_head:
        lines.append(body)
    return b"".join(lines), close


def _encode_head(status: int, reason: bytes | str | None, headers: HeaderItems) -> _Head:
    """Check and encode the status line and the service's header lines (framing excluded).

    Raises:
        HandlerMisuseError: for a bad reason phrase or header, or a Transfer-Encoding header.
    """
    reason = reason_phrase(status) if reason is None else reason
    reason = _as_bytes(reason, "reason")
    if _VALUE.fullmatch(reason) is None:
        raise HandlerMisuseError(f"invalid reason phrase {reason!r}")
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    length: bytes | None = None
    close = False
    for raw_name, raw_value in headers:
        name = _as_bytes(raw_name, "header name")
        value = _as_bytes(raw_value, "header value")
        if _NAME.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
            raise HandlerMisuseError(f"invalid response header {name!r}: {value!r}")
        lower = name.lower()
        if lower == b"connection":
            close = close or b"close" in (v.strip(b" \t").lower() for v in value.split(b","))
            continue
        if lower == b"transfer-encoding":
            raise HandlerMisuseError("the handler frames responses: do not set Transfer-Encoding")
        if lower == b"content-length":
            length = value.strip(b" \t")
            if not length.isdigit():
                raise HandlerMisuseError(f"invalid Content-Length {value!r}")
            continue
        lines.append(b"%s: %s\r\n" % (name, value.strip(b" \t")))
    return b"".join(lines), length, close


def _check_chunk(chunk: object) -> bytes:
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise HandlerMisuseError(f"body chunks must be bytes, not {type(chunk).__name__}")


def _chunked(chunks: Iterable[bytes]) -> bytes:
    parts = []
    for chunk in chunks:
        data = _check_chunk(chunk)
        if data:  # an empty chunk would read as the last-chunk marker
            parts.append(b"%x\r\n%s\r\n" % (len(data), data))
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)
