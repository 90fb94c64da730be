# muxserver.tls_starttls -- a line protocol whose clients may upgrade to TLS in mid-stream.
"""STARTTLS for line protocols: :class:`StartTLSLineHandler` (re-exported by ``muxserver.tls``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from muxserver.handlers.base import PAUSED, Event, NeedData, Paused, Send
from muxserver.handlers.lines import LineHandler
from muxserver.reactor.layer import UpgradeLayer

if TYPE_CHECKING:
    from muxserver.reactor.stream import StreamConnection

__all__ = ["StartTLSLineHandler"]


class StartTLSLineHandler(LineHandler):
    """A line protocol whose clients may upgrade to TLS with a command line (STARTTLS).

    Every other line is a :class:`~muxserver.handlers.lines.LineRequest` as usual. The command
    line is never given to the service: once every earlier request is answered (the handler
    returns ``PAUSED`` until then), it becomes an
    :class:`~muxserver.reactor.layer.UpgradeLayer` event: ``ready_reply`` goes out in plaintext
    and ``install`` (a :class:`~muxserver.tls.TLSAcceptor`) puts TLS under the handler. Bytes
    the client sent after the command line in the same breath are the start of its TLS
    handshake and go to the TLS layer -- never to the line parser, so plaintext injected after
    the command (CVE-2011-0411) cannot become a request; it fails the handshake instead. The
    command again under TLS is answered with ``active_reply`` and otherwise ignored.

    Args:
        install: called with the connection to install the layer (a
            :class:`~muxserver.tls.TLSAcceptor`).
        command: the upgrade command (matched case-insensitively, surrounding blanks ignored).
        ready_reply: the plaintext line that tells the client to start its handshake.
        active_reply: the line answering the command when TLS is already on.
        **options: :class:`~muxserver.handlers.lines.LineHandler` options.
    """

    __slots__ = ("_active_reply", "_command", "_held", "_install", "_ready_reply", "tls_started")

    def __init__(
        self,
        install: Callable[[StreamConnection], None],
        *,
        command: bytes = b"STARTTLS",
        ready_reply: bytes = b"220 ready to start TLS",
        active_reply: bytes = b"454 TLS already active",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._install = install
        self._command = command.strip().upper()
        self._ready_reply = ready_reply
        self._active_reply = active_reply
        self._held: UpgradeLayer | None = None
        self.tls_started = False
        """True once the upgrade event has been produced."""

    def next_event(self) -> Event | NeedData | Paused:
        """Like :meth:`LineHandler.next_event`, with the upgrade held until answers are out."""
        held = self._held
        if held is not None:
            if self._unanswered:
                return PAUSED
            self._held = None
            # Whatever arrived while the upgrade waited belongs to the new layer too: it is
            # never parsed as lines (CVE-2011-0411).
            held.buffered += self._reader.read_rest()
            return held
        event = super().next_event()
        if type(event) is UpgradeLayer and self._unanswered:
            self._held = event
            return PAUSED
        return event

    def _parse(self) -> Event | None:  # type: ignore[override]
        request = super()._parse()
        if request is None or request.line.strip().upper() != self._command:
            return request
        if self.tls_started:
            return Send(self._line(self._active_reply))
        self.tls_started = True
        return UpgradeLayer(self._line(self._ready_reply), self._install, self._reader.read_rest())
