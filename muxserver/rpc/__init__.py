"""ONC RPC v2 (RFC 5531) with its XDR codec (RFC 4506): the pure parts and a client.

The modules, bottom up (each imports only those above it):

* :mod:`~muxserver.rpc.xdr` -- composable XDR types that encode and decode themselves;
* :mod:`~muxserver.rpc.message` -- call headers, replies, statuses, AUTH_NONE/AUTH_SYS;
* :mod:`~muxserver.rpc.record` -- TCP record marking as a sans-IO handler;
* :mod:`~muxserver.rpc.program` -- program definitions and :class:`RPCService`;
* :mod:`~muxserver.rpc.client` -- a blocking client over TCP and UDP;
* :mod:`~muxserver.rpc.rpcbind` -- portmapper v2 calls (register, unregister, look up);
* :mod:`~muxserver.rpc.demo` -- the program of ``examples/demo.x`` with an in-memory store;
* :mod:`~muxserver.rpc.server` -- :class:`~muxserver.rpc.server.RPCServer`, serving an
  :class:`RPCService` on the reactor over TCP and UDP, with rpcbind registration (the only
  module here that imports the reactor; import it from ``muxserver.rpc.server``).

Wiring: over TCP, a :class:`~muxserver.rpc.record.RecordMarkingHandler` per connection turns
the stream into :class:`~muxserver.rpc.record.RPCRecord` requests, :class:`RPCService`
answers each with reply bytes (or ``None``: send nothing), and the handler frames them. Over
UDP each datagram is one call: ``RPCService.handle_message(datagram, peer)`` gives the reply
datagram, or ``None``. :class:`~muxserver.rpc.server.RPCServer` does both on one port.
"""

from muxserver.rpc.program import Procedure, Program, RPCService, Version
from muxserver.rpc.record import RecordMarkingHandler, RPCRecord

__all__ = ["Procedure", "Program", "RPCRecord", "RPCService", "RecordMarkingHandler", "Version"]
