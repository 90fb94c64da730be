"""The reactor layer: the event loop and everything that touches a socket."""

from muxserver.reactor.datagram import Datagram, DatagramEndpoint
from muxserver.reactor.dispatch import DispatchStrategy, InlineStrategy
from muxserver.reactor.limits import Limits, UrgentPolicy
from muxserver.reactor.loop import Reactor, ReactorClosedError, ReactorState
from muxserver.reactor.server import StreamServer
from muxserver.reactor.stream import Phase, StreamConnection
from muxserver.reactor.table import ConnectionSnapshot, ConnectionState, ConnectionTable

__all__ = [
    "ConnectionSnapshot",
    "ConnectionState",
    "ConnectionTable",
    "Datagram",
    "DatagramEndpoint",
    "DispatchStrategy",
    "InlineStrategy",
    "Limits",
    "Phase",
    "Reactor",
    "ReactorClosedError",
    "ReactorState",
    "StreamConnection",
    "StreamServer",
    "UrgentPolicy",
]
