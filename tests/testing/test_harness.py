"""Tests for muxserver.testing.harness: HandlerHarness keeps the reactor's side of the contract."""

from __future__ import annotations

from typing import Any

import pytest

from muxserver.handlers.base import (
    Close,
    EndOfInput,
    HandlerMisuseError,
    PeerUpdate,
    ProtocolError,
    Request,
    Send,
)
from muxserver.service import Peer, PushTarget, Service
from muxserver.testing import HandlerHarness
from tests.testing import Command, TinyHandler, TinyState, echo


def test_requests_are_answered_inline_in_order_and_output_collected() -> None:
    harness = HandlerHarness(TinyHandler(), echo)
    harness.feed(b"one\ntwo\nthr")
    assert harness.events() == [Send(b"hi\n"), Command(b"one"), Command(b"two")]
    harness.feed(b"ee\n")
    assert harness.events() == [Command(b"three")]
    assert harness.take_output() == b"hi\none\ntwo\nthree\n"
    assert harness.output == b""
    assert not harness.pending


def test_empty_feed_is_an_empty_read_not_end_of_input() -> None:
    harness = HandlerHarness(TinyHandler(), echo)
    harness.feed(b"")
    harness.events()
    assert not harness.closing
    harness.feed_eof()
    assert harness.events() == [EndOfInput()]
    assert harness.closed
    with pytest.raises(HandlerMisuseError):
        harness.feed(b"late")


def test_without_a_service_requests_wait_and_later_sends_wait_behind_them() -> None:
    harness = HandlerHarness(TinyHandler())
    harness.feed(b"a\nb\n")
    harness.events()
    assert list(harness.pending) == [Command(b"a"), Command(b"b")]
    assert harness.output == b"hi\n"
    assert harness.answer(b"A") == b"A\n"
    harness.answer(b"B")
    assert harness.output == b"hi\nA\nB\n"
    with pytest.raises(HandlerMisuseError):
        harness.answer(b"C")


def test_close_waits_for_earlier_answers() -> None:
    harness = HandlerHarness(TinyHandler())
    harness.feed(b"a\nQUIT\nnever\n")
    assert harness.events()[-1] == Close()
    assert harness.closing and not harness.closed
    harness.answer(b"A")
    assert harness.closed
    assert harness.output == b"hi\nA\n"


def test_protocol_error_writes_its_reply_after_earlier_answers_and_ends() -> None:
    harness = HandlerHarness(TinyHandler())
    harness.feed(b"a\nBAD\nb\n")
    assert harness.events() == [Send(b"hi\n"), Command(b"a")]
    assert isinstance(harness.error, ProtocolError)
    assert harness.trace[-1] is harness.error
    assert harness.output == b"hi\n"
    harness.answer(b"A")
    assert harness.output == b"hi\nA\n-ERR bad command\n"
    assert harness.closed
    assert harness.handler.state is TinyState.ERROR


def test_peer_update_is_merged_into_peer_extra_at_once() -> None:
    seen: list[dict[str, Any]] = []

    def service(request: Request, peer: Peer) -> bytes:
        seen.append(dict(peer.extra))
        return b"ok"

    harness = HandlerHarness(TinyHandler(), service)
    harness.feed(b"AUTH ann\nx\n")
    assert PeerUpdate({"user": "ann"}) in harness.events()
    assert seen == [{"user": "ann"}]
    assert harness.peer.extra == {"user": "ann"}


def test_paused_request_is_answered_before_parsing_goes_on() -> None:
    harness = HandlerHarness(TinyHandler())
    harness.feed(b"SLOW\nnext\n")
    assert harness.events() == [Send(b"hi\n"), Command(b"SLOW")]
    assert harness.events() == []
    harness.answer(b"done")
    assert harness.events() == [Command(b"next")]


def test_service_errors_are_answered_with_encode_error_or_close() -> None:
    def service(request: Request, peer: Peer) -> bytes:
        assert isinstance(request, Command)
        if request.line == b"boom":
            raise RuntimeError("boom")
        if request.line == b"gone":
            raise KeyError("gone")
        return request.line

    harness = HandlerHarness(TinyHandler(), service)
    harness.feed(b"boom\nok\ngone\nafter\n")
    harness.events()
    assert harness.output == b"hi\n-FAIL\nok\n"
    assert harness.closed
    assert [type(e) for e in harness.service_errors] == [RuntimeError, KeyError]


def test_write_pressure_holds_input_and_answers_until_resumed() -> None:
    harness = HandlerHarness(TinyHandler(), echo)
    harness.pause()
    assert harness.paused
    harness.feed(b"a\n")
    harness.feed_eof()
    assert harness.events() == []
    assert harness.handler.buffered == 0
    harness.resume()
    assert harness.events() == [Send(b"hi\n"), Command(b"a"), EndOfInput()]
    assert harness.output == b"hi\na\n"


class Lifecycle(Service):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.connection: PushTarget | None = None

    def connection_made(self, connection: PushTarget, peer: Peer) -> None:
        self.calls.append("made")
        self.connection = connection

    def handle(self, request: Request, peer: Peer) -> Any:
        self.calls.append("handle")
        assert peer.connection is not None
        peer.connection.push(b"pushed\n")
        if isinstance(request, Command) and request.line == b"bye":
            peer.connection.close()
        return b"r"

    def connection_lost(self, connection: PushTarget, peer: Peer) -> None:
        self.calls.append("lost")


def test_the_harness_is_the_services_connection() -> None:
    service = Lifecycle()
    harness = HandlerHarness(TinyHandler(), service)
    assert isinstance(harness, PushTarget)
    assert service.calls == ["made"]
    harness.feed(b"x\nbye\nignored\n")
    harness.events()
    assert service.calls == ["made", "handle", "handle", "lost"]
    assert harness.output == b"hi\npushed\nr\npushed\nr\n"
    assert harness.closed
