"""muxserver as a benchmark server, in two variants (see bench/peers/cli.py for the contract).

``--handlers minimal``: the reactor drives the same minimal sessions every peer uses (framework
against framework). ``--handlers own``: muxserver's own handlers -- ``RespHandler`` with the kv
demo service, ``HTTPHandler`` with a fixed response -- which is what users actually get.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from bench.peers.cli import BACKLOG, HOST, announce_ready, parse_listeners
from bench.peers.minimal import HTTP_BODY, Session
from muxserver.handlers.base import NEED_DATA, Close, Event, Handler, HandlerState, NeedData, Send
from muxserver.reactor import Limits, Reactor, StreamServer


class SessionHandler(Handler):
    """Adapts a minimal ``Session`` (bytes in, bytes out) to the handler contract."""

    __slots__ = ("_ended", "_reply", "_session")

    def __init__(self, session: Session) -> None:
        self._session = session
        self._reply = b""
        self._ended = False

    @property
    def state(self) -> HandlerState:
        return HandlerState.CLOSED if self._ended else HandlerState.IDLE

    def receive_data(self, data: bytes) -> None:
        if data:
            self._reply += self._session.feed(data)
        else:
            self._ended = True

    def next_event(self) -> Event | NeedData:
        # hot path: at most one Send per read, then NEED_DATA
        reply = self._reply
        if reply:
            self._reply = b""
            return Send(reply)
        if self._ended or self._session.close_after:
            self._ended = True
            return Close()
        return NEED_DATA

    def send(self, response: Any) -> bytes:
        raise AssertionError("minimal sessions answer by themselves")


def own_handlers() -> dict[str, tuple[Callable[[], Handler], Any]]:
    """muxserver's own RESP and HTTP handlers with their services."""
    from muxserver.handlers.http import HTTPHandler, HTTPResponse
    from muxserver.handlers.resp import RespHandler
    from muxserver.services.kv import KVService

    response = HTTPResponse(200, [(b"content-type", b"text/plain")], HTTP_BODY)
    return {
        "resp": (RespHandler, KVService()),
        "http": (HTTPHandler, lambda request, peer: response),
    }


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--handlers", choices=["minimal", "own"], default="minimal")
    args, rest = parser.parse_known_args(argv)
    listeners = parse_listeners("muxserver benchmark server", rest)
    reactor = Reactor()
    limits = Limits(request_timeout=None)
    own = own_handlers() if args.handlers == "own" else {}
    for listener in listeners:
        if listener.name in own:
            factory, service = own[listener.name]
        else:
            new_session = listener.new_session
            factory, service = (lambda f=new_session: SessionHandler(f())), None
        server = StreamServer(reactor, factory, service, limits=limits, name=listener.name)
        server.listen_tcp(HOST, listener.port, backlog=BACKLOG)
    reactor.stop_on_signals(grace=1.0)
    announce_ready()
    reactor.run()
    reactor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
