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
from muxserver.handlers.base import (
    NEED_DATA,
    Close,
    Event,
    Handler,
    HandlerMisuseError,
    HandlerState,
    NeedData,
    Send,
)
from muxserver.reactor import Limits, Reactor, StreamServer


class SessionHandler(Handler):
    """Adapts a minimal ``Session`` (bytes in, bytes out) to the handler contract.

    Each read's replies come out as one :class:`Send`, then ``NEED_DATA``. The ``Send`` is
    made on the first reply and refilled after that: a driver takes its ``data`` as soon as
    it pulls the event (the reactor does), and an idle connection never pays for one.
    """

    __slots__ = ("_reply", "_send", "_session")

    def __init__(self, session: Session) -> None:
        self._session: Session | None = session  # None once ended (end of input or Close)
        self._reply = b""
        self._send: Send | None = None

    @property
    def state(self) -> HandlerState:
        return HandlerState.CLOSED if self._session is None else HandlerState.IDLE

    def receive_data(self, data: bytes) -> None:
        # hot path: once per read
        session = self._session
        if session is None:
            raise HandlerMisuseError("data fed after the end of input")
        if data:
            self._reply += session.feed(data)
        else:
            self._session = None

    def next_event(self) -> Event | NeedData:
        # hot path: twice per read -- the read's replies, then NEED_DATA
        reply = self._reply
        if reply:
            self._reply = b""
            send = self._send
            if send is None:
                send = self._send = Send(reply)
            else:
                send.data = reply
            return send
        session = self._session
        if session is not None and not session.close_after:
            return NEED_DATA
        self._session = None
        return Close()

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
