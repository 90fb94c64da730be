"""A line-based chat room: every line a member sends is broadcast to every other member.

The long-lived, no-threads use case: the room is a dict in the reactor thread, joins and
leaves are the service's ``connection_made``/``connection_lost`` hooks, and broadcasts are
server pushes. Commands: ``/nick NAME`` renames you, ``/who`` lists the members, ``/quit``
leaves. Run it with the inline strategy (the default): its state lives in the reactor thread.
"""

from __future__ import annotations

from typing import Any

from muxserver.handlers.base import Handler, Request
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.service import Peer, PushTarget, Service

__all__ = ["ChatService", "chat_handler"]

_MAX_NICK = 32


def chat_handler() -> Handler:
    """The handler chat connections use: UTF-8 lines of at most 4 KiB."""
    return LineHandler(max_line_length=4096)


class ChatService(Service):
    """One chat room shared by every connection of the server."""

    def __init__(self) -> None:
        self.members: dict[int, tuple[PushTarget, str]] = {}

    def connection_made(self, connection: PushTarget, peer: Peer) -> None:
        """Welcome the newcomer and announce them to the room."""
        name = f"guest{connection.id}"
        taken = {other for _, other in self.members.values()}
        while name in taken:  # someone chose this name with /nick
            name += "_"
        self.members[connection.id] = (connection, name)
        connection.push(f"* welcome {name}; {len(self.members)} here; /nick NAME, /who, /quit")
        self.broadcast(f"* {name} joined", skip=connection.id)

    def connection_lost(self, connection: PushTarget, peer: Peer) -> None:
        """Announce the departure."""
        member = self.members.pop(connection.id, None)
        if member is not None:
            self.broadcast(f"* {member[1]} left")

    def handle(self, request: Request, peer: Peer) -> Any:
        """Broadcast a line, or run a command; answers go to the sender only."""
        assert isinstance(request, LineRequest)
        member = self.members.get(peer.connection_id)
        if member is None:
            return None
        connection, name = member
        text = request.line.decode("utf-8", errors="replace")
        if text.startswith("/nick "):
            new = text[6:].strip()[:_MAX_NICK]
            if not new or any(other == new for _, other in self.members.values()):
                return f"* cannot take the name {new!r}"
            self.members[connection.id] = (connection, new)
            self.broadcast(f"* {name} is now {new}", skip=connection.id)
            return f"* you are now {new}"
        if text == "/who":
            return "* here: " + ", ".join(sorted(n for _, n in self.members.values()))
        if text == "/quit":
            connection.close()
            return "* bye"
        if text:
            self.broadcast(f"{name}: {text}", skip=connection.id)
        return None

    def broadcast(self, message: str, skip: int | None = None) -> None:
        """Push ``message`` to every member except ``skip``."""
        for member_id, (connection, _) in list(self.members.items()):
            if member_id != skip:
                connection.push(message)
