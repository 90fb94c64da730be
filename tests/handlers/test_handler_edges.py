"""Handler edges found in review: RESP end of input fed with the last commands, the batch and
step paths at the smallest limits that keep batching on, and HTTP trailers in trace keys.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from muxserver.handlers.base import NEED_DATA, EndOfInput, Event, ProtocolError
from muxserver.handlers.http import HTTPRequest
from muxserver.handlers.proxy import ProxyProtocolHandler, encode_v1
from muxserver.handlers.resp import Command, RespHandler, encode_command
from muxserver.testing import HandlerHarness
from muxserver.testing.properties import normalise
from muxserver.testing.strategies import split

PING = encode_command([b"PING"])


def pull_all(handler: Any) -> list[Event]:
    events: list[Event] = []
    for _ in range(10_000):
        event = handler.next_event()
        if event is NEED_DATA:
            break
        events.append(event)
    return events


def events_of(handler: Any, chunks: list[bytes]) -> tuple[list[Any], Any]:
    """Feed each chunk and pull after it, then end the input; events and the error, if any."""
    events: list[Any] = []
    try:
        for chunk in chunks:
            if chunk:  # an empty read is not end of input
                handler.receive_data(chunk)
            while (event := handler.next_event()) is not NEED_DATA:
                events.append(event)
        handler.receive_data(b"")
        while (event := handler.next_event()) is not NEED_DATA:
            events.append(event)
    except ProtocolError as exc:
        return events, (str(exc), exc.reply)
    return events, None


# ---- RESP: end of input fed before the pull is lost on the batch path ----------------------


def test_resp_end_of_input_fed_with_the_last_command_still_gives_end_of_input() -> None:
    handler = RespHandler()
    handler.receive_data(PING * 2)
    handler.receive_data(b"")
    assert pull_all(handler) == [Command([b"PING"]), Command([b"PING"]), EndOfInput()]


def test_resp_behind_a_proxy_header_ends_when_the_input_ends() -> None:
    handler = ProxyProtocolHandler(RespHandler())
    handler.receive_data(encode_v1(("10.0.0.1", 1000), ("10.0.0.2", 6379)) + PING)
    handler.receive_data(b"")
    events = pull_all(handler)
    assert events[1:] == [Command([b"PING"]), EndOfInput()]


def test_resp_connection_in_the_harness_closes_after_write_pressure_and_eof() -> None:
    harness = HandlerHarness(RespHandler(), lambda request, peer: b"PONG")
    harness.pause()
    harness.feed(PING)
    harness.feed_eof()
    harness.resume()
    harness.events()
    assert harness.output == b"$4\r\nPONG\r\n"
    assert harness.closed


def test_resp_end_of_input_after_pulling_and_on_the_step_path_is_fine() -> None:
    # The passing neighbours of the defect above: they pin down exactly where it lives.
    for data in (b"PING\r\n", PING + b"*1\r\n$4\r\nPI"):
        handler = RespHandler()
        handler.receive_data(data)
        handler.receive_data(b"")
        assert pull_all(handler) == [Command([b"PING"]), EndOfInput()]
    handler = RespHandler()
    handler.receive_data(PING)
    assert pull_all(handler) == [Command([b"PING"])]
    handler.receive_data(b"")
    assert pull_all(handler) == [EndOfInput()]


# ---- RESP: the batch path re-splits a 16 KiB window for every command it cannot cut --------


# ---- RESP: batch path vs step path, with batching on at its boundary limits ----------------

# The existing chunking test only uses limits that turn batching off or the defaults; these
# are the smallest limits that keep it on (max_inline_length 20, max_bulk_length 16 KiB), with
# payloads around the 16 KiB window so commands straddle it.
BOUNDARY = {"max_inline_length": 20, "max_bulk_length": 16 * 1024, "max_multibulk_length": 3}

args_strategy = st.lists(
    st.one_of(
        st.binary(max_size=6),
        st.sampled_from([b"a\r\nb", b"\r\n", b"$1", b"*1\r\n$1\r\nx"]),
        st.integers(16 * 1024 - 40, 16 * 1024 + 2).map(lambda n: b"v" * n),
    ),
    min_size=1,
    max_size=4,
)
pieces = st.one_of(
    args_strategy.map(encode_command),
    st.sampled_from(
        [
            b"PING\r\n",
            b"\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"*1\r\n$01\r\nx\r\n",
            b"*1\r\n$" + b"9" * 19 + b"\r\n",
            b"*" + b"1" * 19 + b"\r\n",
            b"*1\r\n$1\r\nxY",
        ]
    ),
)


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(pieces, min_size=1, max_size=5), cuts=st.lists(st.integers(0, 40_000)))
def test_batch_and_step_paths_agree_at_the_boundary_limits(
    parts: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(parts)
    whole = events_of(RespHandler(**BOUNDARY), [stream])
    assert events_of(RespHandler(**BOUNDARY), split(stream, cuts)) == whole
    # byte by byte is the step path only (the batch path never sees a complete command)
    if len(stream) < 3_000:
        bytewise = [stream[i : i + 1] for i in range(len(stream))]
        assert events_of(RespHandler(**BOUNDARY), bytewise) == whole


# ---- muxserver.testing: the default trace key ignores HTTP trailers ------------------------


def test_the_default_trace_key_tells_apart_requests_with_different_trailers() -> None:
    def request(trailer: bytes) -> HTTPRequest:
        return HTTPRequest(b"POST", b"/", b"1.1", [(b"host", b"h")], b"x", True, [(b"t", trailer)])

    assert request(b"1") != request(b"2")
    assert normalise([request(b"1")]) != normalise([request(b"2")])
