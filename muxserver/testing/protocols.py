"""Hypothesis strategies for the built-in protocols: valid message streams and damaged ones.

Requires hypothesis (a dev dependency of muxserver, not a runtime one).

Each built-in protocol has three strategies, named for it:

* ``<protocol>_streams()`` -- ``(data, expected)``: one or more valid messages, concatenated
  as a client would pipeline them, and the events a fresh handler must produce for ``data``
  before end of input (the "expected events" oracle);
* ``<protocol>_messages()`` -- the same ``data`` alone;
* ``<protocol>_mutated()`` -- that data damaged by :func:`~muxserver.testing.strategies.mutations`
  (for the "only ProtocolError escapes" oracle: a mutation may by chance still be valid).

=========  ============================  ==================================================
protocol   handler                       one message
=========  ============================  ==================================================
``line``   :class:`~muxserver.handlers.lines.LineHandler`  a line and its delimiter
``resp``   :class:`~muxserver.handlers.resp.RespHandler`   :func:`resp_commands`: multibulk
                                                           or inline
``http``   :class:`~muxserver.handlers.http.HTTPHandler`   :func:`http_requests`: any
                                                           framing, maybe 100-continue
=========  ============================  ==================================================

Combine them with :func:`~muxserver.testing.strategies.chunkings` and the oracles of
:mod:`muxserver.testing.properties`::

    @given(st.data())
    def test_resp_events_do_not_depend_on_chunking(data):
        raw = data.draw(resp_messages())
        assert_chunking_invariant(RespHandler, raw, data.draw(chunkings(raw)))
"""

from __future__ import annotations

from typing import Final

from hypothesis import strategies as st

from muxserver.handlers.base import Close, Event, Send
from muxserver.handlers.http import CONTINUE, HTTPRequest
from muxserver.handlers.lines import LineRequest
from muxserver.handlers.resp import Command, encode_command
from muxserver.testing.strategies import mutations

__all__ = [
    "http_messages",
    "http_mutated",
    "http_requests",
    "http_streams",
    "line_messages",
    "line_mutated",
    "line_streams",
    "resp_commands",
    "resp_messages",
    "resp_mutated",
    "resp_streams",
]


# --- lines -----------------------------------------------------------------------------------


@st.composite
def line_streams(
    draw: st.DrawFn, *, delimiter: bytes = b"\n", strip_cr: bool = True, max_lines: int = 5
) -> tuple[bytes, list[Event]]:
    """Lines for a ``LineHandler(delimiter=..., strip_cr=...)`` and their ``LineRequest``\\ s.

    The last line is sometimes left without its delimiter: the handler still delivers it
    once end of input comes, so it is in ``expected`` only when it is terminated.
    """

    def ends_at_its_delimiter(line: bytes) -> bool:
        return (line + delimiter).find(delimiter) == len(line)

    lines = draw(
        st.lists(
            st.binary(max_size=20).filter(ends_at_its_delimiter), min_size=1, max_size=max_lines
        )
    )
    unterminated = bool(lines[-1]) and draw(st.booleans())
    data = delimiter.join(lines) + (b"" if unterminated else delimiter)
    expected: list[Event] = []
    for line in lines[:-1] if unterminated else lines:
        expected.append(LineRequest(line[:-1] if strip_cr and line.endswith(b"\r") else line))
    return data, expected


def line_messages(*, delimiter: bytes = b"\n") -> st.SearchStrategy[bytes]:
    """Valid input for a ``LineHandler`` with ``delimiter``."""
    return line_streams(delimiter=delimiter).map(lambda stream: stream[0])


def line_mutated(*, delimiter: bytes = b"\n") -> st.SearchStrategy[bytes]:
    """:func:`line_messages`, damaged."""
    return line_messages(delimiter=delimiter).flatmap(mutations)


# --- RESP ------------------------------------------------------------------------------------

_INLINE_WORD: Final = st.binary(min_size=1, max_size=8).filter(
    lambda word: not any(byte in b" \t\r\n\x0b\x0c" for byte in word)
)


@st.composite
def resp_commands(draw: st.DrawFn, *, inline: bool | None = None) -> tuple[bytes, Command]:
    """One command as a client sends it and the :class:`Command` it must give.

    A multibulk array of bulk strings (any bytes), or -- with ``inline`` true, or by chance
    when it is ``None`` -- an inline command: words separated by spaces or tabs, ending in
    ``\\n`` or ``\\r\\n``.
    """
    if inline is None:
        inline = draw(st.integers(0, 3)) == 0
    if not inline:
        args = draw(st.lists(st.binary(max_size=16), min_size=1, max_size=5))
        return encode_command(args), Command(args)
    words = draw(st.lists(_INLINE_WORD, min_size=1, max_size=4).filter(lambda w: w[0][:1] != b"*"))
    gaps = [draw(st.sampled_from([b" ", b"  ", b"\t"])) for _ in words[1:]]
    line = words[0] + b"".join(gap + word for gap, word in zip(gaps, words[1:], strict=True))
    return line + draw(st.sampled_from([b"\n", b"\r\n"])), Command(words)


@st.composite
def resp_streams(draw: st.DrawFn, *, max_commands: int = 5) -> tuple[bytes, list[Event]]:
    """Pipelined commands, with the empty commands Redis skips (``*0``, a blank line)."""
    data = b""
    expected: list[Event] = []
    for raw, command in draw(st.lists(resp_commands(), min_size=1, max_size=max_commands)):
        if draw(st.integers(0, 7)) == 0:
            data += draw(st.sampled_from([b"*0\r\n", b"*-1\r\n", b"\r\n"]))
        data += raw
        expected.append(command)
    return data, expected


def resp_messages() -> st.SearchStrategy[bytes]:
    """Valid input for a ``RespHandler``."""
    return resp_streams().map(lambda stream: stream[0])


def resp_mutated() -> st.SearchStrategy[bytes]:
    """:func:`resp_messages`, damaged."""
    return resp_messages().flatmap(mutations)


# --- HTTP/1.1 --------------------------------------------------------------------------------

_TCHAR: Final = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_FRAMING_FIELDS: Final = frozenset(
    b"host content-length transfer-encoding connection expect upgrade te trailer".split()
)
_tokens: Final = st.text(_TCHAR, min_size=1, max_size=8).map(str.encode)
_names: Final = _tokens.filter(lambda name: name.lower() not in _FRAMING_FIELDS)
_values: Final = st.lists(
    st.sampled_from([9, *range(0x20, 0x7F), *range(0x80, 0x100)]), max_size=12
).map(bytes)
_targets: Final = st.lists(st.integers(0x21, 0x7E), min_size=1, max_size=12).map(bytes)
_methods: Final = st.sampled_from(
    [b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS"]
) | _tokens.filter(lambda method: method != b"CONNECT")
_ows: Final = st.sampled_from([b"", b" ", b"\t", b"  "])


@st.composite
def _field_lines(draw: st.DrawFn, fields: list[tuple[bytes, bytes]]) -> bytes:
    """Field lines for ``fields``, with random name case and whitespace around each value."""
    out = []
    for name, value in fields:
        cased = bytes(c ^ 0x20 if draw(st.booleans()) and chr(c).isalpha() else c for c in name)
        out.append(cased + b":" + draw(_ows) + value + draw(_ows) + b"\r\n")
    return b"".join(out)


def _fields(draw: st.DrawFn, max_size: int) -> list[tuple[bytes, bytes]]:
    pairs = draw(st.lists(st.tuples(_names, _values), max_size=max_size))
    return [(name.lower(), value.strip(b" \t")) for name, value in pairs]


@st.composite
def http_requests(
    draw: st.DrawFn, *, closing: bool = False, version: bytes | None = None
) -> tuple[bytes, HTTPRequest]:
    """One valid request and the :class:`HTTPRequest` it must give.

    HTTP/1.1 or 1.0 (or ``version``); no body, a Content-Length body or (1.1) a chunked one
    with extensions and trailers; sometimes ``Expect: 100-continue``. With ``closing`` the
    request ends the connection (``Connection: close``, or 1.0 without keep-alive).
    """
    method, target = draw(_methods), draw(_targets)
    version = version or draw(st.sampled_from([b"1.1", b"1.0"]))
    fields = _fields(draw, 4)
    if version == b"1.1":
        fields.insert(draw(st.integers(0, len(fields))), (b"host", b"example.org"))
        if closing:
            fields.append((b"connection", b"close"))
    elif not closing:
        fields.append((b"connection", b"keep-alive"))
    framing = draw(st.sampled_from(["none", "length", "chunked"][: 3 if version == b"1.1" else 2]))
    body = draw(st.binary(max_size=24)) if framing != "none" else b""
    trailers: list[tuple[bytes, bytes]] = []
    encoded = body
    if framing == "length":
        fields.append((b"content-length", b"%d" % len(body)))
    elif framing == "chunked":
        fields.append((b"transfer-encoding", b"chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        parts = []
        for piece in pieces:
            if piece:
                size = b"%x" % len(piece) if draw(st.booleans()) else b"%04X" % len(piece)
                ext = draw(st.sampled_from([b"", b";a", b";a=b", b';q="x y"']))
                parts.append(size + ext + b"\r\n" + piece + b"\r\n")
        trailers = _fields(draw, 2)
        encoded = b"".join(parts) + b"0\r\n" + draw(_field_lines(trailers)) + b"\r\n"
    if version == b"1.1" and bool(body or framing == "chunked") and draw(st.booleans()):
        fields.append((b"expect", b"100-continue"))
    head = method + b" " + target + b" HTTP/" + version + b"\r\n" + draw(_field_lines(fields))
    request = HTTPRequest(method, target, version, fields, body, not closing, trailers)
    return head + b"\r\n" + encoded, request


@st.composite
def http_streams(draw: st.DrawFn, *, blank_lines: bool = True) -> tuple[bytes, list[Event]]:
    """Pipelined valid requests, maybe ending with one that closes; and the expected events.

    The events are each request (after a ``Send(CONTINUE)`` when it expects 100-continue),
    and ``Close`` after one that ends the connection. With ``blank_lines`` some requests
    follow an empty line, which servers skip (RFC 9112 section 2.2; h11 refuses it).
    """
    items = draw(st.lists(http_requests(), min_size=1, max_size=3))
    if draw(st.booleans()):
        items.append(draw(http_requests(closing=True)))
    else:
        items = [
            draw(http_requests(closing=False, version=b"1.1")) if not r.keep_alive else (d, r)
            for d, r in items
        ]
    data = b""
    expected: list[Event] = []
    for raw, request in items:
        if blank_lines and draw(st.integers(0, 3)) == 0:
            data += b"\r\n"
        data += raw
        if request.header(b"expect") is not None:
            expected.append(Send(CONTINUE))
        expected.append(request)
        if not request.keep_alive:
            expected.append(Close())
            break
    return data, expected


def http_messages() -> st.SearchStrategy[bytes]:
    """Valid input for an ``HTTPHandler``."""
    return http_streams().map(lambda stream: stream[0])


def http_mutated() -> st.SearchStrategy[bytes]:
    """:func:`http_messages`, damaged."""
    return http_messages().flatmap(mutations)
