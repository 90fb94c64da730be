"""Per-server limits: buffer water marks, input caps, timeouts and connection counts.

Every number here bounds memory or time for one connection or one server. The defaults suit a
server of many long-lived, mostly idle clients; they are documented in the README.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Limits", "UrgentPolicy"]


class UrgentPolicy(enum.Enum):
    """What to do with TCP urgent ("out-of-band") data.

    TCP has one urgent pointer, not a second channel: each ``send(..., MSG_OOB)`` marks a
    single byte, and a newer mark replaces an unread older one. Few protocols use it (telnet's
    interrupt, FTP's abort), so the default is to drop it where it stands.
    """

    DISCARD = "discard"
    """The urgent byte is dropped; the rest of the stream is unaffected (Linux's default)."""
    INLINE = "inline"
    """The urgent byte stays in the stream where it was sent (``SO_OOBINLINE``)."""
    EVENT = "event"
    """The urgent byte is read apart and given to ``handler.receive_urgent(byte)``."""


@dataclass(frozen=True)
class Limits:
    """Limits applied to every connection of one server. All sizes are bytes, times seconds.

    Raises:
        ValueError: at construction, naming the offending field, when a value is unusable.
    """

    max_connections: int | None = None
    """Open connections at most; past it the listener pauses until one closes."""
    idle_timeout: float | None = None
    """Close a connection that sent and received nothing for this long (none: never)."""
    request_timeout: float | None = 60.0
    """Close a connection whose request is still incomplete this long after its first byte."""
    high_water: int = 64 * 1024
    """Above this much unsent output, stop reading (and dispatching) for the connection."""
    low_water: int = 16 * 1024
    """Resume reading once unsent output drops to this."""
    max_output: int = 8 * 1024 * 1024
    """Hard cap on unsent output (server push included): past it the connection is dropped."""
    max_input: int = 1024 * 1024
    """Cap on received bytes a handler holds without having completed a request."""
    max_in_flight: int = 64
    """Requests of one connection dispatched and not yet answered; past it reading pauses."""
    read_size: int = 64 * 1024
    """Largest single read from a socket (never more than ``max_input``). Reads allocate
    this much first: at 128 KiB and above, glibc may serve each one with its own ``mmap``
    (measured at 7x the cost of a small send and receive)."""
    accept_burst: int = 64
    """Connections accepted per readiness event of a listener."""
    linger: float = 2.0
    """After a server-side close, how long to read and discard input so the last reply is
    not destroyed by a reset (lingering close)."""
    urgent: UrgentPolicy = UrgentPolicy.DISCARD
    """The policy for TCP urgent data."""

    def __post_init__(self) -> None:
        positive = {
            "high_water": self.high_water,
            "max_output": self.max_output,
            "max_input": self.max_input,
            "max_in_flight": self.max_in_flight,
            "read_size": self.read_size,
            "accept_burst": self.accept_burst,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"Limits.{name} must be positive, not {value!r}")
        for name, maybe in (
            ("max_connections", self.max_connections),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
        ):
            if maybe is not None and maybe <= 0:
                raise ValueError(f"Limits.{name} must be positive or None, not {maybe!r}")
        if not 0 <= self.low_water <= self.high_water:
            raise ValueError(
                f"Limits.low_water ({self.low_water}) must be between 0 and high_water "
                f"({self.high_water})"
            )
        if self.max_output < self.high_water:
            raise ValueError(
                f"Limits.max_output ({self.max_output}) must be at least high_water "
                f"({self.high_water})"
            )
        if self.linger < 0:
            raise ValueError(f"Limits.linger must be >= 0, not {self.linger!r}")
