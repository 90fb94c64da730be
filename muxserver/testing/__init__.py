"""muxserver.testing: drive and check handlers in memory, as users test their own protocols.

Requires hypothesis, a dev dependency of muxserver (``pip install muxserver[dev]``); the rest
of muxserver needs only the standard library.

* :mod:`~muxserver.testing.strategies` -- hypothesis strategies: :func:`chunkings`,
  :func:`split`, :func:`mutations` (and, per built-in protocol, message streams).
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
    "mutations",
    "normalise",
    "split",
]
