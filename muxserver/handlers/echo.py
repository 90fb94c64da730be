"""The echo protocol: every byte received is sent straight back.

Theory of operation
-------------------
:class:`EchoHandler` has no requests and no service. Whatever has been received since the last
``next_event()`` comes back as one :class:`~muxserver.handlers.base.Send` event holding those
bytes (usually exactly the chunk that arrived, with no copy); end of input gives
:class:`~muxserver.handlers.base.EndOfInput` once everything before it has been echoed.

Chunking invariance holds in the h11 sense after normalisation: the *concatenation* of the
``Send`` payloads is the input, whatever the chunking, but how it is split into ``Send`` events
follows how it arrived. Merge adjacent ``Send`` events before comparing two runs.
"""

from __future__ import annotations

from typing import Any

from muxserver.handlers.base import HandlerMisuseError, Send
from muxserver.handlers.framing import FramedHandler

__all__ = ["EchoHandler"]


class EchoHandler(FramedHandler):
    """A sans-IO echo handler: received bytes become ``Send`` events, never requests."""

    __slots__ = ()

    def _parse(self) -> Send | None:
        reader = self._reader
        if not reader.buffered:
            return None
        return Send(reader.read_rest())

    def send(self, response: Any) -> bytes:
        """Echo produces no requests, so there is never anything to answer.

        Raises:
            HandlerMisuseError: always.
        """
        raise HandlerMisuseError("EchoHandler produces no requests; there is nothing to answer")
