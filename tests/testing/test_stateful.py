"""Tests for muxserver.testing.stateful: HandlerStateMachine drives a handler's lifecycle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from muxserver.handlers.base import NEED_DATA, Event, Handler, NeedData, Paused, Request, Send
from muxserver.testing import HandlerStateMachine
from tests.testing import MAX_LINE, Command, TinyHandler

lines = st.sampled_from([b"a", b"SLOW", b"AUTH bob", b"QUIT", b"BAD", b"x" * 40]).map(
    lambda line: line + b"\n"
)


class TinyLifecycle(HandlerStateMachine):
    """The example from the module docstring, on the tiny handler."""

    max_buffered = MAX_LINE + 1

    def make_handler(self) -> Handler:
        return TinyHandler()

    def messages(self) -> st.SearchStrategy[bytes]:
        return st.lists(lines, min_size=1, max_size=3).map(b"".join)

    def respond(self, request: Request) -> Any:
        assert isinstance(request, Command)
        return request.line.upper()


TestTinyLifecycle = TinyLifecycle.TestCase
TestTinyLifecycle.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)


class Hoarder(TinyHandler):
    """Deliberately wrong: after its greeting it never parses, so its buffer grows."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.greeted:
            return NEED_DATA
        return super().next_event()


class HoarderLifecycle(TinyLifecycle):
    def make_handler(self) -> Handler:
        return Hoarder()


class EventAfterClose(TinyHandler):
    """Deliberately wrong: a Send after Close."""

    def next_event(self) -> Event | NeedData | Paused:
        if self.done:
            self.done = False
            return Send(b"late\n")
        return super().next_event()


class EventAfterCloseLifecycle(TinyLifecycle):
    def make_handler(self) -> Handler:
        return EventAfterClose()


@pytest.mark.parametrize("machine", [HoarderLifecycle, EventAfterCloseLifecycle])
def test_the_machine_catches_broken_handlers(machine: type[HandlerStateMachine]) -> None:
    # The buffer limit catches the Hoarder; probing after the end catches EventAfterClose.
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            machine,
            # derandomize: the search is the same on every run, so finding the bug is not luck
            settings=settings(
                max_examples=500,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                derandomize=True,
            ),
        )
