"""A complete muxserver program: a line protocol written from scratch, answered in capitals."""

from muxserver.handlers.base import NEED_DATA, EndOfInput, Handler, HandlerState, Request
from muxserver.reactor import Reactor, StreamServer


class Line(Request):
    def __init__(self, text: bytes) -> None:
        self.text = text


class ShoutHandler(Handler):
    """Bytes in, in any chunking; one Line request per line; each answer goes out as a line."""

    def __init__(self) -> None:
        self.buffer, self.ended, self.reported_end = bytearray(), False, False

    state = property(lambda self: HandlerState.RECEIVING if self.buffer else HandlerState.IDLE)
    buffered = property(lambda self: len(self.buffer))

    def receive_data(self, data: bytes) -> None:
        self.ended = self.ended or not data  # b"" means the peer finished sending
        self.buffer += data

    def next_event(self):
        end = self.buffer.find(b"\n")
        if end >= 0:
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            return Line(line)
        if self.ended and not self.reported_end:
            self.reported_end = True
            return EndOfInput()  # exactly once; nothing follows it
        return NEED_DATA

    def send(self, response: bytes) -> bytes:
        return response + b"\n"


if __name__ == "__main__":
    reactor = Reactor()
    server = StreamServer(reactor, ShoutHandler, lambda request, peer: request.text.upper())
    server.listen_tcp("127.0.0.1", 7000)
    reactor.stop_on_signals()  # Ctrl-C or SIGTERM: finish what was received, then stop
    reactor.run()
    reactor.close()
