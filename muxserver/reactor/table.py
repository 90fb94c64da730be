"""The connection table: the explicit table of partially finished requests.

One record per open connection (the :class:`~muxserver.reactor.stream.StreamConnection`
itself: there is no second object to keep in step). The table is the single source of truth
for limits, graceful shutdown, the status page and metrics. Only the reactor thread touches
it; everyone else reads :meth:`ConnectionTable.snapshot`, which copies the facts into
immutable :class:`ConnectionSnapshot` values.

A record's state is derived from what it holds, so it can never disagree with it:

======================  =========================================================
state                   meaning
======================  =========================================================
IDLE                    open, between requests, nothing buffered
READING                 part of a request has arrived
DISPATCHED              requests handed to a service and not answered yet
WRITING                 answers written to the socket's buffer only in part
DRAINING                shutting down: finishing what was received, reading no more
CLOSING                 no more requests: flushing the last output, then closing
CLOSED                  gone (seen only in snapshots taken as it closed)
======================  =========================================================
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from muxserver.reactor.stream import StreamConnection

__all__ = ["ConnectionSnapshot", "ConnectionState", "ConnectionTable"]


class ConnectionState(enum.Enum):
    """Where a connection's partially finished request stands (see the module table)."""

    IDLE = "idle"
    READING = "reading"
    DISPATCHED = "dispatched"
    WRITING = "writing"
    DRAINING = "draining"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True)
class ConnectionSnapshot:
    """A read-only copy of one record, safe to hand to any thread."""

    id: int
    server: str
    state: ConnectionState
    handler_state: str
    peer: Any
    client_address: Any
    bytes_in: int
    bytes_out: int
    input_buffered: int
    output_buffered: int
    requests: int
    in_flight: int
    created: float
    last_activity: float
    reading_paused: tuple[str, ...]


class ConnectionTable:
    """Every open stream connection of one reactor, by id, plus lifetime totals."""

    __slots__ = ("_ids", "_records", "accepted", "closed")

    def __init__(self) -> None:
        self._records: dict[int, StreamConnection] = {}
        self._ids = itertools.count(1)
        self.accepted = 0
        """Connections ever added."""
        self.closed = 0
        """Connections ever removed."""

    def new_id(self) -> int:
        """A connection number never used before on this reactor."""
        return next(self._ids)

    def add(self, record: StreamConnection) -> None:
        """Enter an open connection."""
        self._records[record.id] = record
        self.accepted += 1

    def remove(self, record: StreamConnection) -> None:
        """Drop a closed connection. Unknown records are ignored."""
        if self._records.pop(record.id, None) is not None:
            self.closed += 1

    def get(self, connection_id: int) -> StreamConnection | None:
        """The open connection with this id, or ``None``."""
        return self._records.get(connection_id)

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[StreamConnection]:
        """The live records (reactor thread only), as a list safe to iterate while closing."""
        return list(self._records.values())

    def snapshot(self, limit: int | None = None) -> list[ConnectionSnapshot]:
        """Immutable copies of (at most ``limit``) records, oldest first."""
        records = self._records.values()
        if limit is not None:
            records = itertools.islice(records, limit)  # type: ignore[assignment]
        return [record.snapshot() for record in records]

    def count_by_state(self) -> dict[ConnectionState, int]:
        """How many connections are in each state (every state present, zero or not)."""
        counts = dict.fromkeys(ConnectionState, 0)
        for record in self._records.values():
            counts[record.state] += 1
        return counts
