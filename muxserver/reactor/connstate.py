"""The states and constants that the parts of a stream connection share.

A :class:`~muxserver.reactor.stream.StreamConnection` is one object (one record per
connection, cheap when idle), written in three modules: ``stream`` (reading, events, closing),
``responses`` (the ordered response queue) and ``output`` (writing and flow control). This
module holds what they all refer to.
"""

from __future__ import annotations

import enum
import errno

__all__ = [
    "CLOSED",
    "CLOSING",
    "DISCONNECT_ERRNOS",
    "DRAINING",
    "IOV_MAX",
    "JOIN_MAX",
    "LINGERING",
    "OPEN",
    "PAUSE_HANDLER",
    "PAUSE_IN_FLIGHT",
    "PAUSE_NAMES",
    "PAUSE_OUTPUT",
    "PAUSE_STRATEGY",
    "SERVICE_NONE",
    "SERVICE_STARTED",
    "SERVICE_WAITING",
    "SLOT_ANSWERED",
    "SLOT_BYTES",
    "SLOT_CLOSE",
    "SLOT_FAILED",
    "SLOT_WAITING",
    "Phase",
]


class Phase(enum.Enum):
    """A connection's life cycle: OPEN -> (DRAINING ->) CLOSING -> (LINGERING ->) CLOSED."""

    OPEN = "open"
    DRAINING = "draining"
    CLOSING = "closing"
    LINGERING = "lingering"
    CLOSED = "closed"


# Module-level aliases: the hot path compares phases by identity without attribute lookups.
OPEN = Phase.OPEN
DRAINING = Phase.DRAINING
CLOSING = Phase.CLOSING
LINGERING = Phase.LINGERING
CLOSED = Phase.CLOSED

# Why a connection does not read (bits of StreamConnection._paused); it reads when none is set.
PAUSE_OUTPUT = 1  # unsent output above the high-water mark (cleared at the low mark)
PAUSE_IN_FLIGHT = 2  # Limits.max_in_flight requests dispatched and unanswered
PAUSE_STRATEGY = 4  # the dispatch strategy is saturated
PAUSE_HANDLER = 8  # the handler said PAUSED (cleared when an answer is sent)
PAUSE_NAMES = {
    PAUSE_OUTPUT: "output",
    PAUSE_IN_FLIGHT: "in_flight",
    PAUSE_STRATEGY: "strategy",
    PAUSE_HANDLER: "handler",
}

# Kinds of slot in the ordered response queue.
SLOT_WAITING = 0  # a request whose service has not finished
SLOT_ANSWERED = 1  # its service returned; the value is the response
SLOT_FAILED = 2  # its service raised; the value is the exception
SLOT_BYTES = 3  # bytes the protocol itself sends (Send, a protocol error's last reply)
SLOT_CLOSE = 4  # close once everything before it is written

# Where the service's side of a connection stands (StreamConnection._lifecycle).
SERVICE_NONE = 0  # the service has no connection_made / connection_lost hooks
SERVICE_WAITING = 1  # it has; the handler or layer has not admitted the peer yet
SERVICE_STARTED = 2  # connection_made was called; connection_lost is due at close

IOV_MAX = 512
"""Buffers passed to one sendmsg() at most."""

JOIN_MAX = 16 * 1024
"""Unsent output up to this size is joined and sent with send() rather than sendmsg(): for
small buffers one copy costs less than an iovec each (16 five-byte answers: 2.6-3.2 us
against 3.4-4.2 us per send and receive on a socket pair)."""

DISCONNECT_ERRNOS = frozenset(
    {
        errno.ECONNRESET,
        errno.EPIPE,
        errno.ECONNABORTED,
        errno.ESHUTDOWN,
        errno.ETIMEDOUT,
        errno.ENOTCONN,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETRESET,
    }
)
"""Errors that mean the peer went away: ordinary closes, logged without a traceback."""
