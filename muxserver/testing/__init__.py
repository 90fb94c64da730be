"""muxserver.testing: drive and check handlers in memory, as users test their own protocols.

Requires hypothesis, a dev dependency of muxserver (``pip install muxserver[dev]``); the rest
of muxserver needs only the standard library.

* :mod:`~muxserver.testing.strategies` -- hypothesis strategies: :func:`chunkings`,
  :func:`split`, :func:`mutations`.
* :mod:`~muxserver.testing.protocols` -- per built-in protocol (lines, RESP, HTTP), streams of
  valid messages with the events they must give, and damaged ones: ``line_streams``,
  ``resp_messages``, ``http_mutated``, ...
* :mod:`~muxserver.testing.harness` -- :class:`HandlerHarness`, a reactor and connection in
  memory: feed bytes, pull events, answer requests, read the output.
* :mod:`~muxserver.testing.properties` -- the oracles: :func:`assert_chunking_invariant`,
  :func:`check_only_protocol_errors`, :func:`check_grammar`, :func:`check_contract`.
* :mod:`~muxserver.testing.stateful` -- :class:`HandlerStateMachine`, a base for hypothesis
  stateful tests of a connection's lifecycle.
"""

from muxserver.testing.harness import HandlerHarness, Trace
from muxserver.testing.properties import (
    ContractViolationError,
    assert_chunking_invariant,
    check_contract,
    check_grammar,
    check_only_protocol_errors,
    default_key,
    drive,
    normalise,
)
from muxserver.testing.protocols import (
    http_messages,
    http_mutated,
    http_requests,
    http_streams,
    line_messages,
    line_mutated,
    line_streams,
    resp_commands,
    resp_messages,
    resp_mutated,
    resp_streams,
)
from muxserver.testing.stateful import HandlerStateMachine
from muxserver.testing.strategies import chunkings, mutations, split

__all__ = [
    "ContractViolationError",
    "HandlerHarness",
    "HandlerStateMachine",
    "Trace",
    "assert_chunking_invariant",
    "check_contract",
    "check_grammar",
    "check_only_protocol_errors",
    "chunkings",
    "default_key",
    "drive",
    "http_messages",
    "http_mutated",
    "http_requests",
    "http_streams",
    "line_messages",
    "line_mutated",
    "line_streams",
    "mutations",
    "normalise",
    "resp_commands",
    "resp_messages",
    "resp_mutated",
    "resp_streams",
    "split",
]
