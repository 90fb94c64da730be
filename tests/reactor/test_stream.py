"""Stream connections: ordering, half-close, urgent data, failures and closing."""

import logging
import socket
import time

import pytest

from muxserver.handlers.base import ProtocolError
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.reactor import Limits, StreamServer, UrgentPolicy
from muxserver.reactor.poller import EpollPoller
from muxserver.testing.live import ReactorThread, connect

from .support import DelayedStrategy, lines, recv_all, recv_until, upper, wait_for


def test_pipelined_requests_are_answered_in_order_even_when_they_finish_out_of_order(
    live: ReactorThread,
):
    class ReverseDelay(DelayedStrategy):
        """Later requests finish first."""

        def submit(self, service, request, peer, done):
            self.delay = 0.2 - 0.01 * int(request.line)
            super().submit(service, request, peer, done)

    _, address = live.serve(lines, upper, strategy=ReverseDelay(0.0))
    with connect(address) as client:
        client.sendall(b"".join(b"%d\n" % i for i in range(10)))
        assert recv_until(client, 20) == b"".join(b"%d\n" % i for i in range(10))


def test_after_a_half_close_every_answer_is_still_delivered(live: ReactorThread):
    _, address = live.serve(lines, upper, strategy=DelayedStrategy(0.05))
    with connect(address) as client:
        client.sendall(b"one\ntwo\nthree")
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b"ONE\nTWO\nTHREE\n"


def test_a_half_closed_peer_does_not_make_the_reactor_spin(live: ReactorThread):
    _, address = live.serve(lines, upper, strategy=DelayedStrategy(0.5))
    with connect(address) as client:
        client.sendall(b"slow\n")
        client.shutdown(socket.SHUT_WR)
        time.sleep(0.05)
        started = time.process_time()
        time.sleep(0.3)
        assert time.process_time() - started < 0.15  # an idle wait, not a busy loop
        assert recv_all(client) == b"SLOW\n"


def test_a_handler_that_raises_closes_only_its_own_connection(live: ReactorThread, caplog):
    class Fragile(LineHandler):
        def next_event(self):
            event = super().next_event()
            if isinstance(event, LineRequest) and event.line == b"boom":
                raise RuntimeError("handler bug")
            return event

    _, address = live.serve(Fragile, upper)
    with connect(address) as victim, connect(address) as bystander:
        victim.sendall(b"boom\n")
        assert recv_all(victim) == b""
        bystander.sendall(b"still here\n")
        assert recv_until(bystander, 11) == b"STILL HERE\n"
    assert "handler failed on connection" in caplog.text
    assert "127.0.0.1" in caplog.text


def test_a_service_that_raises_gets_the_protocol_error_reply_and_a_log_line(
    live: ReactorThread, caplog
):
    class Replying(LineHandler):
        def encode_error(self, error):
            self._answered()
            return b"ERR " + str(error).encode() + b"\n"

    def service(request, peer):
        if request.line == b"bad":
            raise ValueError("no good")
        return request.line

    _, address = live.serve(Replying, service)
    with caplog.at_level(logging.ERROR), connect(address) as client:
        client.sendall(b"ok\nbad\nfine\n")
        assert recv_until(client, 20) == b"ok\nERR no good\nfine\n"
    assert "service failed on connection" in caplog.text


def test_a_protocol_error_sends_its_last_reply_then_closes(live: ReactorThread):
    _, address = live.serve(lambda: LineHandler(max_line_length=8), upper)
    with connect(address) as client:
        client.sendall(b"short\n" + b"x" * 50 + b"\n")
        assert recv_all(client) == b"SHORT\nline too long\n"


def test_a_protocol_error_reply_survives_unread_input_thanks_to_lingering(live: ReactorThread):
    class Strict(LineHandler):
        def next_event(self):
            event = super().next_event()
            if isinstance(event, LineRequest) and event.line == b"bad":
                raise ProtocolError("bad line", reply=b"goodbye\n")
            return event

    _, address = live.serve(Strict, upper)
    with connect(address) as client:
        client.sendall(b"bad\n" + b"junk\n" * 20000)  # input the server will never read
        assert recv_all(client) == b"goodbye\n"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(UrgentPolicy.INLINE, b"AB!CD\n"), (UrgentPolicy.DISCARD, b"ABCD\n")],
)
def test_urgent_data_follows_the_configured_policy(live: ReactorThread, policy, expected):
    _, address = live.serve(lines, upper, limits=Limits(urgent=policy))
    with connect(address) as client:
        client.sendall(b"ab")
        time.sleep(0.05)
        client.send(b"!", socket.MSG_OOB)
        time.sleep(0.05)
        client.sendall(b"cd\n")
        assert recv_until(client, len(expected)) == expected


def test_urgent_data_can_be_delivered_to_the_handler_as_an_event():
    urgent: list[bytes] = []

    class Telnetish(LineHandler):
        def receive_urgent(self, data: bytes) -> None:
            urgent.append(data)

    with ReactorThread(poller=EpollPoller()) as live:
        _, address = live.serve(Telnetish, upper, limits=Limits(urgent=UrgentPolicy.EVENT))
        with connect(address) as client:
            client.sendall(b"ab")
            time.sleep(0.05)
            client.send(b"!", socket.MSG_OOB)
            time.sleep(0.05)
            client.sendall(b"cd\n")
            assert recv_until(client, 5) == b"ABCD\n"
        assert wait_for(lambda: urgent == [b"!"])


def test_the_event_policy_is_refused_where_the_poller_cannot_see_urgent_data():
    from muxserver.reactor import Reactor
    from muxserver.reactor.poller import SelectorPoller

    with Reactor(poller=SelectorPoller()) as reactor, pytest.raises(ValueError, match="epoll"):
        StreamServer(reactor, lines, upper, limits=Limits(urgent=UrgentPolicy.EVENT))


def test_close_from_a_service_flushes_the_answer_first(live: ReactorThread):
    def quit_service(request, peer):
        peer.connection.close()
        return b"bye"

    _, address = live.serve(lines, quit_service)
    with connect(address) as client:
        client.sendall(b"quit\nignored\n")
        assert recv_all(client) == b"bye\n"
