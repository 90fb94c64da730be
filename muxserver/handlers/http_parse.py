"""HTTP/1.1 request grammar: the pure parsing functions behind :mod:`muxserver.handlers.http`.

Theory of operation
-------------------
This module knows the RFC 9112 / RFC 9110 grammar of a *request* and nothing about buffers,
states or connections. :class:`~muxserver.handlers.http.HTTPHandler` finds the boundaries
(request line, end of the field section, chunk lines) in its receive buffer and hands each
complete piece to a function here, which either returns its meaning or raises
:class:`HTTPProtocolError` carrying the status code and a full error response.

The rules, in the order the handler applies them to a request head:

1. The request line is ``method SP request-target SP HTTP-version CRLF``; it is at most
   ``max_request_line`` bytes long (CRLF included in the count below) or the answer is 414.
2. The version is ``HTTP/1.x``; any other major version (``HTTP/2.0``, ``HTTP/3``) is 505.
3. The field section (header lines plus the empty line) is at most ``max_header_size`` bytes
   and ``max_header_count`` lines, or 431.
4. Each field line is ``token ":" OWS value OWS`` with no control characters; an obs-fold
   (a line starting with SP or HTAB) or whitespace before the colon is 400.
5. Framing (RFC 9112 section 6.3): Transfer-Encoding must be exactly ``chunked`` (a coding we
   do not implement before it is 501, anything else 400) and must not appear with
   Content-Length or in an HTTP/1.0 request; Content-Length is digits only, and repeated values
   must agree; a declared body above ``max_body_size`` is 413.
6. HTTP/1.1 requests carry exactly one Host field.

Line ends are strictly CRLF (see the decision in :mod:`muxserver.handlers.http`).

Cost. Clients repeat themselves: the same request lines, the same ``Host``, ``User-Agent`` and
``Accept`` lines, request after request and client after client. So a request line or field
line that passed its check is remembered with its meaning (up to :data:`_SEEN_MAX` of each,
the first ones seen, none longer than :data:`_SEEN_LINE_MAX` bytes) and is parsed next time
by one dict lookup on its exact bytes. Only lines that passed are remembered, so the checks
and the errors are the same as without the memory; a client sending ever-new lines fills it
once and then pays for the regular expressions, as everyone did before.

=================================  ======  =========================================
problem                            status  where detected
=================================  ======  =========================================
request line too long              414     handler, before the line is complete
malformed request line / bare LF   400     :func:`parse_request_line`
HTTP version not 1.x               505     :func:`parse_request_line`
field section too large / many     431     handler (size), :func:`parse_fields` (count)
bad field line, obs-fold           400     :func:`parse_fields`
CL + TE, bad CL, bad TE, no Host   400     :func:`frame_request`
unknown transfer coding            501     :func:`frame_request`
declared or chunked body too big   413     :func:`frame_request`, handler
bad chunk size line / CRLF         400     :func:`parse_chunk_size`, handler
=================================  ======  =========================================
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Final

from muxserver.handlers.base import ProtocolError

__all__ = [
    "CHUNKED",
    "HTTPProtocolError",
    "frame_request",
    "http_error",
    "parse_chunk_size",
    "parse_fields",
    "parse_request_line",
    "reason_phrase",
]

# RFC 9110 section 5.6.2: tchar.
_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE: Final = re.compile(
    rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9]{1,3})(?:\.([0-9]{1,3}))?"
)
# The value part allows HTAB, SP, VCHAR and obs-text and nothing else (no CR, LF, NUL, DEL).
# Surrounding OWS is stripped afterwards with bytes.strip: doing it inside the regex invites
# quadratic backtracking on long runs of spaces.
_FIELD_LINE: Final = re.compile(rb"(" + _TOKEN + rb"):([\t\x20-\x7e\x80-\xff]*)")
# RFC 9112 section 7.1.1 chunk-ext, quoted-string per RFC 9110 section 5.6.4. Deliberately
# without the grammar's BWS (whitespace around ";" and "="): clients send no extensions at
# all in practice, and whitespace next to a chunk size is a classic smuggling discrepancy.
# Both alternatives in the quoted string start with distinct bytes, so matching is linear.
_QUOTED: Final = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_CHUNK_EXT: Final = rb"(?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
_MAX_CHUNK_SIZE_DIGITS: Final = 16
_CHUNK_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]{1," + str(_MAX_CHUNK_SIZE_DIGITS).encode() + rb"})" + _CHUNK_EXT
)
_DIGITS: Final = re.compile(rb"[0-9]+")
# Content-Length values longer than this (after leading zeros) exceed any sane body limit;
# checking the length first also keeps int() away from its 4300-digit ValueError.
_MAX_LENGTH_DIGITS: Final = 18
_FRAMING_FIELDS: Final = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", b"expect")
)

CHUNKED: Final = -1
"""``frame_request`` returns this as the body length of a chunked request."""

_REASONS: Final = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}

_SEEN_MAX: Final = 512
"""Most request lines, and most field lines, remembered after passing their check."""
_SEEN_LINE_MAX: Final = 256
"""Longest line remembered."""
_REQUEST_LINES: Final[dict[bytes, tuple[bytes, bytes, bytes, bool]]] = {}
_FIELD_LINES: Final[dict[bytes, tuple[bytes, bytes]]] = {}


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase for ``status`` (``b""`` for an unregistered code)."""
    return _REASONS.get(status, b"")


class HTTPProtocolError(ProtocolError):
    """The client sent an invalid request; ``status`` is the HTTP status of ``reply``.

    ``reply`` is always a complete response with ``Connection: close``: after it the
    connection must be closed, because the framing of anything that follows is unknown.
    """

    def __init__(self, status: int, message: str) -> None:
        body = f"{status} {reason_phrase(status).decode()}: {message}\n".encode()
        reply = b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n" % (
            status,
            reason_phrase(status),
        )
        reply += b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        super().__init__(message, reply)
        self.status = status


http_error = HTTPProtocolError
"""Alias used at raise sites: ``raise http_error(400, "...")`` reads as what it sends."""


def parse_request_line(line: bytes) -> tuple[bytes, bytes, bytes, bool]:
    """Parse a request line without its CRLF.

    Returns:
        ``(method, target, http_version, is_http11)``; ``is_http11`` is false for HTTP/1.0
        only (HTTP/1.2 and up are answered as HTTP/1.1, RFC 9110 section 6.2).

    Raises:
        HTTPProtocolError: 400 for a malformed line, 505 for a major version other than 1.
    """
    # hot path: a request line seen before is one dict lookup
    parsed = _REQUEST_LINES.get(line)
    if parsed is not None:
        return parsed
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise http_error(400, "malformed request line")
    method, target, major, minor = match.groups()
    if major != b"1":
        raise http_error(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    if minor is None or len(minor) != 1:
        raise http_error(400, "malformed HTTP version")
    parsed = method, target, b"1." + minor, minor != b"0"
    if len(line) <= _SEEN_LINE_MAX and len(_REQUEST_LINES) < _SEEN_MAX:
        _REQUEST_LINES[line] = parsed
    return parsed


def parse_fields(block: bytes, max_count: int) -> list[tuple[bytes, bytes]]:
    """Parse a field section (header or trailer lines, CRLF-separated, without the empty line).

    Returns:
        ``(name, value)`` pairs in order, names lower-cased, values stripped of OWS.

    Raises:
        HTTPProtocolError: 431 for more than ``max_count`` lines, 400 for an invalid line.
    """
    lines = block.split(b"\r\n")
    if len(lines) > max_count:
        raise http_error(431, "too many header fields")
    # hot path: one dict lookup per field line seen before
    fields = []
    seen = _FIELD_LINES.get
    for line in lines:
        field = seen(line)
        if field is None:
            m = _FIELD_LINE.fullmatch(line)
            if m is None:
                raise http_error(400, _field_problem(line))
            field = m[1].lower(), m[2].strip(b" \t")
            if len(line) <= _SEEN_LINE_MAX and len(_FIELD_LINES) < _SEEN_MAX:
                _FIELD_LINES[line] = field
        fields.append(field)
    return fields


def _field_problem(line: bytes) -> str:
    # Only on the error path: say which rule the line broke, for the log and the 400 body.
    if line[:1] in (b" ", b"\t"):
        return "obsolete line folding is not allowed"
    name, colon, _ = line.partition(b":")
    if not colon:
        return "header line without a colon"
    if name != name.rstrip(b" \t"):
        return "whitespace between header name and colon"
    if re.fullmatch(_TOKEN, name) is None:
        return "invalid header name"
    return "invalid character in header value"


def frame_request(
    fields: list[tuple[bytes, bytes]], is_http11: bool, max_body_size: int
) -> tuple[int, bool, bool]:
    """Decide how the body of a request is framed and whether the connection persists.

    Returns:
        ``(length, keep_alive, expect_continue)`` where ``length`` is the Content-Length,
        ``0`` for no body, or :data:`CHUNKED`.

    Raises:
        HTTPProtocolError: 400, 413 or 501; see the module table.
    """
    hosts = 0
    length: bytes | None = None
    codings: list[bytes] | None = None
    connection: list[bytes] = []
    expect = False
    for name, value in fields:
        if name not in _FRAMING_FIELDS:
            continue
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            for item in value.split(b","):
                digits = item.strip(b" \t")
                if _DIGITS.fullmatch(digits) is None:
                    raise http_error(400, "invalid Content-Length")
                digits = digits.lstrip(b"0") or b"0"
                if length is not None and digits != length:
                    raise http_error(400, "conflicting Content-Length values")
                length = digits
        elif name == b"transfer-encoding":
            codings = codings or []
            codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
        elif name == b"connection":
            connection.extend(c.strip(b" \t").lower() for c in value.split(b","))
        elif value.lower() == b"100-continue":
            expect = True
    if is_http11 and hosts != 1:
        raise http_error(400, "HTTP/1.1 requests need exactly one Host header")
    if is_http11:
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    if codings is not None:
        # Smuggling defences (RFC 9112 sections 6.1 and 6.3): never guess which framing wins.
        if length is not None:
            raise http_error(400, "both Content-Length and Transfer-Encoding")
        if not is_http11:
            raise http_error(400, "Transfer-Encoding in an HTTP/1.0 request")
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise http_error(400, "Transfer-Encoding must end with a single chunked")
        if len(codings) != 1:
            raise http_error(501, "only the chunked transfer coding is supported")
        return CHUNKED, keep_alive, expect
    if length is None:
        return 0, keep_alive, False
    if len(length) > _MAX_LENGTH_DIGITS or int(length) > max_body_size:
        raise http_error(413, "request body too large")
    size = int(length)
    return size, keep_alive, expect and size > 0


def parse_chunk_size(line: bytes) -> int:
    """Parse a chunk-size line without its CRLF; extensions are checked, then ignored.

    Raises:
        HTTPProtocolError: 400 unless the line is 1 to 16 hex digits plus valid chunk-ext
            (no sign, no ``0x``, no whitespace anywhere outside quoted strings).
    """
    match = _CHUNK_LINE.fullmatch(line)
    if match is None:
        raise http_error(400, "invalid chunk size line")
    return int(match[1], 16)
