"""Property checks every handler should pass: the oracles of the design's fuzzing lessons.

Requires nothing beyond the standard library (the package as a whole needs hypothesis).

* :func:`assert_chunking_invariant` -- the same bytes, split differently, give the same events
  and the same output.
* :func:`check_only_protocol_errors` -- whatever the input, the only exception that escapes
  the handler is :class:`~muxserver.handlers.base.ProtocolError`, and it is sticky.
* :func:`check_grammar` and :func:`check_contract` -- what a handler produced follows the
  grammar of :mod:`muxserver.handlers.base`: nothing after ``EndOfInput``, ``Close`` or a
  ``ProtocolError``, and nothing more from the handler once it has ended.

They combine with :func:`muxserver.testing.strategies.chunkings`::

    @given(chunkings(DATA))
    def test_my_handler_ignores_chunking(chunks):
        assert_chunking_invariant(MyHandler, DATA, chunks)

Comparing events: traces are normalised by merging adjacent ``Send`` events (a handler may
send a greeting in one piece or two) and then mapping each item through ``key``.
:func:`default_key` uses ``repr`` where the event class defines one, and otherwise the class
name and attribute values (``object.__repr__`` shows an address, which differs every run).
Pass your own ``key`` when your events need a different notion of "the same".
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Sequence
from typing import Any

from muxserver.handlers.base import (
    Close,
    EndOfInput,
    Event,
    Handler,
    NeedData,
    Paused,
    PeerUpdate,
    ProtocolError,
    Request,
    Send,
)
from muxserver.service import Peer, Service
from muxserver.testing.harness import ContractViolationError, HandlerHarness, Trace

__all__ = [
    "ContractViolationError",
    "assert_chunking_invariant",
    "check_contract",
    "check_grammar",
    "check_only_protocol_errors",
    "default_key",
    "drive",
    "normalise",
]

ServiceLike = Service | Callable[[Request, Peer], Any] | None


def default_key(item: Event | ProtocolError) -> Any:
    """How two trace items are compared unless you pass ``key``; see the module docstring."""
    if isinstance(item, ProtocolError):
        return ("ProtocolError", type(item).__qualname__, str(item), item.reply)
    if type(item).__repr__ is not object.__repr__:
        return repr(item)
    return _fields_key(item)


def _fields_key(value: Any) -> Any:
    # An object without a repr of its own is compared by its attributes, recursively: its
    # default repr shows only its address, which differs between two identical runs.
    fields = dict(getattr(value, "__dict__", {}))
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(value, name):
                fields[name] = getattr(value, name)
    shown = [(name, _value_key(field)) for name, field in sorted(fields.items())]
    return (type(value).__qualname__, repr(shown))


def _value_key(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return (type(value).__qualname__, [_value_key(item) for item in value])
    if isinstance(value, dict):
        return ("dict", sorted((repr(k), _value_key(v)) for k, v in value.items()))
    if _has_default_repr(value):
        return _fields_key(value)
    return repr(value)


def _has_default_repr(value: object) -> bool:
    return type(value).__repr__ is object.__repr__


def normalise(trace: Trace, key: Callable[[Event | ProtocolError], Any] = default_key) -> list[Any]:
    """Merge adjacent ``Send`` events, then map every item through ``key``."""
    merged: list[Event | ProtocolError] = []
    for item in trace:
        if isinstance(item, Send) and merged and isinstance(merged[-1], Send):
            merged[-1] = Send(merged[-1].data + item.data)
        else:
            merged.append(item)
    return [key(item) for item in merged]


def drive(
    handler_factory: Callable[[], Handler],
    chunks: Sequence[bytes],
    *,
    eof: bool = True,
    service: ServiceLike = None,
) -> HandlerHarness:
    """Feed ``chunks`` to a fresh handler in a :class:`HandlerHarness`, pulling after each.

    With ``eof`` the input ends with end of input. Returns the harness (its ``trace``,
    ``output``, ``error``, ...). Exceptions other than ProtocolError propagate.
    """
    harness = HandlerHarness(handler_factory(), service)
    for chunk in chunks:
        harness.feed(chunk)
        harness.events()
    if eof:
        harness.feed_eof()
        harness.events()
    return harness


def check_grammar(trace: Trace) -> None:
    """Check a trace against the connection grammar.

    Raises:
        ContractViolationError: an item is not an Event (a sentinel or ``None`` slipped in), a
            ``Send`` carries no bytes object, a ``PeerUpdate`` no dict, or anything follows
            ``EndOfInput``, ``Close`` or a ``ProtocolError``.
    """
    for index, item in enumerate(trace):
        if not isinstance(item, (Event, ProtocolError)):
            raise ContractViolationError(f"trace[{index}] is {item!r}, not an Event")
        if isinstance(item, Send) and not isinstance(item.data, bytes):
            raise ContractViolationError(f"trace[{index}]: Send.data is {type(item.data).__name__}")
        if isinstance(item, PeerUpdate) and not isinstance(item.extra, dict):
            raise ContractViolationError(f"trace[{index}]: PeerUpdate.extra is not a dict")
        if isinstance(item, (EndOfInput, Close, ProtocolError)) and index + 1 < len(trace):
            raise ContractViolationError(
                f"trace[{index + 1}] = {trace[index + 1]!r} follows {item!r}, which ends "
                "the connection"
            )


def check_contract(harness: HandlerHarness) -> None:
    """:func:`check_grammar` on ``harness.trace``, plus what the handler does after the end.

    After ``EndOfInput`` or ``Close`` another ``next_event()`` must give no event; after a
    ProtocolError it must raise a ProtocolError again (the error state is sticky). The
    handler's ``state`` must be an :class:`enum.Enum` member.

    Raises:
        ContractViolationError: on any breach.
    """
    check_grammar(harness.trace)
    handler = harness.handler
    if not isinstance(handler.state, enum.Enum):
        raise ContractViolationError(f"state is {handler.state!r}, not an enum member")
    if not harness.trace:
        return
    last = harness.trace[-1]
    if isinstance(last, ProtocolError):
        try:
            again = handler.next_event()
        except ProtocolError:
            return
        raise ContractViolationError(f"after {last!r}, next_event() returned {again!r}: not sticky")
    if isinstance(last, (EndOfInput, Close)):
        try:
            after = handler.next_event()
        except ProtocolError as error:
            raise ContractViolationError(f"next_event() raised {error!r} after {last!r}") from None
        if not isinstance(after, (NeedData, Paused)):
            raise ContractViolationError(f"next_event() gave {after!r} after {last!r}")
        return
    if harness.stalled_after_end:
        # Every request answered and the peer gone: only the handler can end the connection.
        raise ContractViolationError(
            "end of input was fed and every request answered, but the handler gave no "
            "EndOfInput, Close or ProtocolError: the connection would never close"
        )


def assert_chunking_invariant(
    handler_factory: Callable[[], Handler],
    data: bytes,
    chunks: Sequence[bytes],
    *,
    eof: bool = True,
    service: ServiceLike = None,
    key: Callable[[Event | ProtocolError], Any] = default_key,
) -> list[Any]:
    """Assert that feeding ``chunks`` gives what feeding ``data`` in one piece gives.

    Both runs use a fresh handler from ``handler_factory`` in a :class:`HandlerHarness`
    (with ``service`` answering requests inline, if given), pull after every chunk and, with
    ``eof``, end with end of input. Their normalised traces (see the module docstring) and
    their output bytes must be equal, and both must pass :func:`check_contract`. Returns the
    normalised trace.

    Raises:
        ValueError: if ``chunks`` do not join to ``data``.
        AssertionError: if the runs differ (the message shows where), or a
            :class:`ContractViolationError`.
    """
    if b"".join(chunks) != data:
        raise ValueError("assert_chunking_invariant: the chunks do not join to data")
    # Each run answers with its own copy of the service: state one run leaves in it (a
    # counter, a store) must not change what the other run gets.
    whole = drive(handler_factory, [data], eof=eof, service=_fresh(service))
    split = drive(handler_factory, chunks, eof=eof, service=_fresh(service))
    check_contract(whole)
    check_contract(split)
    expected, actual = normalise(whole.trace, key), normalise(split.trace, key)
    if expected != actual:
        at = next(
            (i for i, pair in enumerate(zip(expected, actual, strict=False)) if pair[0] != pair[1]),
            min(len(expected), len(actual)),
        )
        raise AssertionError(
            f"events depend on chunking: first difference at event {at}\n"
            f"  in one piece: {expected[at : at + 3]!r}\n"
            f"  in {len(chunks)} chunks {list(chunks)[:8]!r}: {actual[at : at + 3]!r}"
        )
    if whole.output != split.output:
        raise AssertionError(
            f"output depends on chunking:\n  in one piece: {whole.output[:200]!r}\n"
            f"  in {len(chunks)} chunks: {split.output[:200]!r}"
        )
    return expected


def check_only_protocol_errors(
    handler_factory: Callable[[], Handler],
    data: bytes,
    chunks: Sequence[bytes] | None = None,
    *,
    eof: bool = True,
    service: ServiceLike = None,
) -> HandlerHarness:
    """Drive ``data`` (in ``chunks``, or in one piece) and assert only ProtocolError escapes.

    Meant for hostile input (see :func:`muxserver.testing.strategies.mutations`): the
    handler may accept it or raise ProtocolError, but any other exception is a bug. Also
    runs :func:`check_contract`. Returns the harness.

    Raises:
        AssertionError: another exception escaped (chained as the cause), or a
            :class:`ContractViolationError`.
    """
    try:
        harness = drive(
            handler_factory, [data] if chunks is None else chunks, eof=eof, service=service
        )
        check_contract(harness)
    except ContractViolationError:
        raise
    except Exception as error:
        raise AssertionError(
            f"{type(error).__name__} escaped the handler for input {data[:100]!r}: {error}"
        ) from error
    return harness


def _fresh(service: ServiceLike) -> ServiceLike:
    """A deep copy of ``service``, or ``service`` itself when it cannot be copied."""
    try:
        return copy.deepcopy(service)
    except Exception:  # a lock, a socket, a generator...: share it, as before
        return service
