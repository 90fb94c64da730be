"""Helpers shared by the handler specifications (and the test doubles of tests/testing)."""

from __future__ import annotations

from muxserver.handlers.base import NEED_DATA, Event, Handler, HandlerMisuseError, ProtocolError

Outcome = tuple[list[Event], tuple[str, bytes | None] | None]
"""What :func:`run` returns: the events, and the error as ``(message, reply)`` or ``None``."""


def run(handler: Handler, chunks: list[bytes]) -> Outcome:
    """Feed each chunk and pull every event, then end the input; return events and any error.

    An empty chunk only pulls events (feeding ``b""`` would mean end of input). The error is
    returned as ``(message, reply)`` so two runs can be compared.
    """
    events: list[Event] = []
    try:
        for chunk in chunks:
            if chunk:
                handler.receive_data(chunk)
            while (event := handler.next_event()) is not NEED_DATA:
                assert isinstance(event, Event)
                events.append(event)
        handler.receive_data(b"")
        while (event := handler.next_event()) is not NEED_DATA:
            assert isinstance(event, Event)
            events.append(event)
    except ProtocolError as exc:
        return events, (str(exc), exc.reply)
    return events, None


class BufferingHandler(Handler):
    """The input side of a test double: bytes go to ``buffer``, ``b""`` sets ``eof``.

    Subclasses parse ``buffer`` in ``next_event``; feeding after end of input is refused.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False

    @property
    def buffered(self) -> int:
        return len(self.buffer)

    def receive_data(self, data: bytes) -> None:
        if self.eof:
            raise HandlerMisuseError("receive_data() after end of input")
        if data:
            self.buffer += data
        else:
            self.eof = True
