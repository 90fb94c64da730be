"""muxserver.testing.protocols: the message streams really are valid, and damage stays contained."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxserver.handlers.base import NEED_DATA, PAUSED, Event, Handler, Request
from muxserver.handlers.http import HTTPHandler, HTTPRequest
from muxserver.handlers.lines import LineHandler
from muxserver.handlers.resp import RespHandler
from muxserver.testing import (
    assert_chunking_invariant,
    check_only_protocol_errors,
    chunkings,
    http_mutated,
    http_streams,
    line_mutated,
    line_streams,
    resp_mutated,
    resp_streams,
)


def events_for(handler: Handler, chunks: list[bytes]) -> list[Event]:
    """Feed ``chunks`` (no end of input), answering every request at once; the events."""
    got: list[Event] = []
    for chunk in chunks:
        if chunk:
            handler.receive_data(chunk)
        while (event := handler.next_event()) not in (NEED_DATA, PAUSED):
            assert isinstance(event, Event)
            got.append(event)
            if isinstance(event, Request):
                handler.send(b"" if isinstance(event, HTTPRequest) else None)
    return got


PROTOCOLS: list[tuple[str, Callable[[], Handler], Any, Any]] = [
    ("lines", LineHandler, line_streams(), line_mutated()),
    ("crlf lines", lambda: LineHandler(delimiter=b"\r\n"), line_streams(delimiter=b"\r\n"), None),
    ("resp", RespHandler, resp_streams(), resp_mutated()),
    ("http", HTTPHandler, http_streams(), http_mutated()),
]


@pytest.mark.parametrize(
    ("factory", "streams"), [(p[1], p[2]) for p in PROTOCOLS], ids=[p[0] for p in PROTOCOLS]
)
@given(data=st.data())
def test_streams_give_exactly_the_expected_events_under_any_chunking(
    factory: Callable[[], Handler], streams: Any, data: st.DataObject
) -> None:
    raw, expected = data.draw(streams)
    chunks = data.draw(chunkings(raw))
    assert events_for(factory(), chunks) == expected
    assert_chunking_invariant(factory, raw, chunks)


@pytest.mark.parametrize(
    ("factory", "mutated"),
    [(p[1], p[3]) for p in PROTOCOLS if p[3] is not None],
    ids=[p[0] for p in PROTOCOLS if p[3] is not None],
)
@given(data=st.data())
def test_mutated_streams_raise_nothing_but_protocol_errors(
    factory: Callable[[], Handler], mutated: Any, data: st.DataObject
) -> None:
    damaged = data.draw(mutated)
    check_only_protocol_errors(factory, damaged, data.draw(chunkings(damaged)))
