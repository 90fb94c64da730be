"""Reading RESP2 replies off a byte stream: the client side the tests of the kv demo need."""

from __future__ import annotations

import socket


def reply_end(data: bytes, at: int = 0) -> int | None:
    """The offset just past the complete RESP2 reply that starts at ``at``, or ``None``."""
    eol = data.find(b"\r\n", at)
    if eol < 0:
        return None
    kind, size = data[at : at + 1], eol + 2
    if kind in (b"+", b"-", b":"):
        return size
    count = int(data[at + 1 : eol])
    if kind == b"$":
        end = size + count + 2 if count >= 0 else size
        return end if len(data) >= end else None
    assert kind == b"*", f"not a RESP2 reply: {data[at : at + 40]!r}"
    position: int | None = size
    for _ in range(max(count, 0)):
        assert position is not None
        position = reply_end(data, position)
        if position is None:
            return None
    return position


def split_replies(data: bytes) -> list[bytes]:
    """Every complete reply in ``data``, in order (a trailing partial reply is an error)."""
    replies, at = [], 0
    while at < len(data):
        end = reply_end(data, at)
        assert end is not None, f"partial reply at the end: {data[at:]!r}"
        replies.append(data[at:end])
        at = end
    return replies


def read_replies(sock: socket.socket, count: int) -> list[bytes]:
    """Read exactly ``count`` replies from ``sock`` (which has a timeout)."""
    data = b""
    while True:
        replies, at = [], 0
        while len(replies) < count and (end := reply_end(data, at)) is not None:
            replies.append(data[at:end])
            at = end
        if len(replies) == count:
            assert at == len(data), f"more than {count} replies: {data[at:]!r}"
            return replies
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(replies)} of {count} replies")
        data += chunk
