"""Tests for muxserver.handlers.proxy: the PROXY protocol v1/v2 wrapper and its encoders."""

from __future__ import annotations

import enum
import ipaddress
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxserver.handlers.base import (
    NEED_DATA,
    PAUSED,
    EndOfInput,
    Event,
    Handler,
    HandlerMisuseError,
    NeedData,
    Paused,
    PeerUpdate,
    ProtocolError,
    Request,
)
from muxserver.handlers.proxy import (
    V2_SIGNATURE,
    ProxyProtocolHandler,
    ProxyState,
    SSLInfo,
    TLVType,
    encode_v1,
    encode_v2,
)
from muxserver.handlers.proxy_header import crc32c_checksum
from muxserver.testing import (
    assert_chunking_invariant,
    check_only_protocol_errors,
    chunkings,
    mutations,
)
from tests.handlers.support import BufferingHandler

# --- a tiny inner protocol: newline-terminated lines, answered with bytes ----------------


class LineState(enum.Enum):
    IDLE = "idle"
    CLOSED = "closed"


class Line(Request):
    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Line) and other.text == self.text

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Line({self.text!r})"


class LineHandler(BufferingHandler):
    """Each LF-terminated line is a Request; ``send`` echoes the response bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.done = False
        self.pending = 0

    @property
    def state(self) -> enum.Enum:
        return LineState.CLOSED if self.done else LineState.IDLE

    def next_event(self) -> Event | NeedData | Paused:
        if self.done:
            return NEED_DATA
        end = self.buffer.find(b"\n")
        if end >= 0:
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            self.pending += 1
            return Line(line)
        if self.eof:
            self.done = True
            return EndOfInput()
        return NEED_DATA

    def send(self, response: Any) -> bytes:
        if not self.pending:
            raise HandlerMisuseError("nothing to answer")
        self.pending -= 1
        return bytes(response)

    def encode_error(self, error: BaseException) -> bytes | None:
        return b"ERR\n"


def wrap(**kwargs: Any) -> ProxyProtocolHandler:
    return ProxyProtocolHandler(LineHandler(), **kwargs)


def drain(handler: Handler) -> list[Any]:
    events: list[Any] = []
    while True:
        event = handler.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        events.append(event)


def feed_all(chunks: list[bytes], eof: bool = True, **kwargs: Any) -> list[Any]:
    """Feed the chunks one by one, pulling after each; return events or the error."""
    handler = wrap(**kwargs)
    events: list[Any] = []
    try:
        for chunk in chunks:
            if chunk:  # b"" would mean end of input
                handler.receive_data(chunk)
                events += drain(handler)
        if eof:
            handler.receive_data(b"")
            events += drain(handler)
    except ProtocolError as error:
        events.append(("ProtocolError", str(error)))
    return events


def peer_update(data: bytes, **kwargs: Any) -> dict[str, Any]:
    handler = wrap(**kwargs)
    handler.receive_data(data)
    event = handler.next_event()
    assert isinstance(event, PeerUpdate)
    return event.extra


# --- version 1 ---------------------------------------------------------------------------


def test_v1_tcp4_header_reports_both_endpoints_and_passes_the_rest_on() -> None:
    handler = wrap()
    handler.receive_data(b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nhello\n")
    assert handler.state is ProxyState.READING_HEADER
    assert handler.next_event() == PeerUpdate(
        {
            "proxy_address": ("1.2.3.4", 1111),
            "proxy_destination": ("5.6.7.8", 2222),
            "proxy_version": 1,
            "proxy_tlvs": {},
        }
    )
    assert handler.state is LineState.IDLE
    assert handler.proxy_state is ProxyState.HANDED_OVER
    assert handler.next_event() == Line(b"hello")
    assert handler.next_event() is NEED_DATA


def test_v1_tcp6_header_is_reported_in_canonical_form() -> None:
    extra = peer_update(b"PROXY TCP6 2001:DB8:0:0::1 ::1 65535 0\r\n")
    assert extra["proxy_address"] == ("2001:db8::1", 65535)
    assert extra["proxy_destination"] == ("::1", 0)


def test_v1_tcp6_accepts_the_dotted_tail_that_inet_ntop_writes() -> None:
    extra = peer_update(b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n")
    assert ipaddress.ip_address(extra["proxy_address"][0]) == ipaddress.ip_address("::ffff:1.2.3.4")


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n",
        b"PROXY UNKNOWN x\r\n",
    ],
)
def test_v1_unknown_reports_no_address_so_the_socket_address_stands(line: bytes) -> None:
    assert peer_update(line) == {"proxy_version": 1, "proxy_tlvs": {}}


def test_v1_longest_legal_line_of_107_bytes_is_accepted() -> None:
    line = b"PROXY UNKNOWN " + b"f" * 39 + b" " + b"f" * 39 + b" 65535 65535\r\n"
    assert len(line) == 107
    assert peer_update(line)["proxy_version"] == 1


# --- version 2 ---------------------------------------------------------------------------


def test_v2_ipv4_header_matches_the_specification_layout() -> None:
    header = encode_v2(("1.2.3.4", 1111), ("5.6.7.8", 2222))
    expected = (
        V2_SIGNATURE
        + b"\x21\x11"
        + struct.pack("!H4s4sHH", 12, bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8]), 1111, 2222)
    )
    assert header == expected
    assert peer_update(header + b"x\n") == {
        "proxy_address": ("1.2.3.4", 1111),
        "proxy_destination": ("5.6.7.8", 2222),
        "proxy_version": 2,
        "proxy_tlvs": {},
    }


def test_v2_ipv6_and_udp_headers_are_parsed() -> None:
    header = encode_v2(("2001:db8::1", 53), ("::1", 5353), dgram=True)
    assert header[13] == 0x22
    extra = peer_update(header)
    assert extra["proxy_address"] == ("2001:db8::1", 53)
    assert extra["proxy_destination"] == ("::1", 5353)


def test_v2_unix_paths_are_reported_as_paths() -> None:
    header = encode_v2("/run/client.sock", "")
    assert len(header) == 16 + 216
    extra = peer_update(header)
    assert extra["proxy_address"] == "/run/client.sock"
    assert extra["proxy_destination"] == ""


def test_v2_unix_abstract_names_are_reported_as_bytes() -> None:
    extra = peer_update(encode_v2(b"\x00abstract", "/srv.sock"))
    assert extra["proxy_address"] == b"\x00abstract"


def test_v2_local_command_carries_no_address_and_skips_its_block() -> None:
    # A LOCAL header may still carry an address block; the receiver must skip it.
    block = bytes(12)
    header = V2_SIGNATURE + b"\x20\x11" + struct.pack("!H", len(block)) + block
    assert encode_v2(None, None) == V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert peer_update(encode_v2(None, None)) == {"proxy_version": 2, "proxy_tlvs": {}}
    assert peer_update(header + b"line\n") == {"proxy_version": 2, "proxy_tlvs": {}}


def test_v2_proxy_command_with_unspecified_family_carries_no_address() -> None:
    header = V2_SIGNATURE + b"\x21\x00\x00\x04" + b"junk"
    handler = wrap()
    handler.receive_data(header + b"a\n")
    assert handler.next_event() == PeerUpdate({"proxy_version": 2, "proxy_tlvs": {}})
    assert handler.next_event() == Line(b"a")


def test_v2_tlvs_are_parsed_by_type_and_noop_is_ignored() -> None:
    ssl = SSLInfo(
        client=0x07,
        verify=0,
        sub_tlvs={TLVType.SSL_VERSION: b"TLSv1.3", TLVType.SSL_CN: b"example.com"},
    )
    tlvs = {
        TLVType.ALPN: b"h2",
        TLVType.AUTHORITY: b"example.com",
        TLVType.NOOP: b"\x00\x00",
        TLVType.UNIQUE_ID: b"u" * 128,
        TLVType.SSL: ssl,
        TLVType.NETNS: b"blue",
        0xEA: b"\x01vpce-123",
    }
    extra = peer_update(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs))
    got = extra["proxy_tlvs"]
    assert got == {
        0x01: b"h2",
        0x02: b"example.com",
        0x05: b"u" * 128,
        0x20: ssl,
        0x30: b"blue",
        0xEA: b"\x01vpce-123",
    }
    assert got[TLVType.SSL].ssl and got[TLVType.SSL].version == "TLSv1.3"
    assert got[TLVType.SSL].cn == "example.com" and got[TLVType.SSL].cipher is None


def test_v2_crc32c_is_checked() -> None:
    assert crc32c_checksum(b"123456789") == 0xE3069283  # the standard check value
    header = encode_v2(("1.2.3.4", 1), ("5.6.7.8", 2), {TLVType.ALPN: b"h2"}, crc32c=True)
    assert TLVType.CRC32C in peer_update(header)["proxy_tlvs"]
    corrupted = header[:-1] + bytes([header[-1] ^ 1])
    with pytest.raises(ProtocolError, match="CRC32C"):
        peer_update(corrupted)


# --- the wrapper's lifecycle and delegation ----------------------------------------------


def test_header_split_anywhere_gives_the_same_events() -> None:
    data = encode_v2(("1.2.3.4", 1), ("5.6.7.8", 2)) + b"one\ntwo\n"
    whole = feed_all([data])
    for cut in range(len(data) + 1):
        assert feed_all([data[:cut], data[cut:]]) == whole
    assert feed_all([bytes([b]) for b in data]) == whole


def test_end_of_input_before_any_byte_is_a_clean_end_of_input() -> None:
    handler = wrap()
    handler.receive_data(b"")
    assert handler.next_event() == EndOfInput()
    assert handler.state is ProxyState.CLOSED
    assert handler.next_event() is NEED_DATA
    with pytest.raises(HandlerMisuseError):
        handler.receive_data(b"x")


def test_end_of_input_inside_the_header_is_a_protocol_error() -> None:
    assert feed_all([b"PROXY TCP4 1.2"]) == [
        ("ProtocolError", "PROXY protocol: end of input inside the header")
    ]


def test_end_of_input_right_after_the_header_reaches_the_inner_handler() -> None:
    events = feed_all([b"PROXY UNKNOWN\r\nlast\n"])
    assert events[1:] == [Line(b"last"), EndOfInput()]


def test_send_encode_error_push_and_buffered_are_delegated() -> None:
    handler = wrap()
    handler.receive_data(b"PROXY UNK")
    assert handler.buffered == 9
    assert handler.next_event() is NEED_DATA
    with pytest.raises(HandlerMisuseError):
        handler.send(b"early")
    handler.receive_data(b"NOWN\r\nq\npartial")
    drain(handler)
    assert handler.buffered == len(b"partial")
    assert handler.send(b"answer") == b"answer"
    assert handler.encode_error(RuntimeError()) == b"ERR\n"
    assert handler.encode_push(b"news") == b"news"


# --- a layer after the header (TLS passthrough) ------------------------------------------


class Upgrade(Event):
    """Stands for the UpgradeLayer event: records the bytes handed to the new layer."""

    __slots__ = ("layer_bytes",)

    def __init__(self, layer_bytes: bytes) -> None:
        self.layer_bytes = layer_bytes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Upgrade) and other.layer_bytes == self.layer_bytes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Upgrade({self.layer_bytes!r})"


def test_with_upgrade_the_bytes_after_the_header_go_to_the_layer_not_the_inner_handler() -> None:
    handler = wrap(upgrade=Upgrade)
    handler.receive_data(encode_v2(("1.2.3.4", 1), ("5.6.7.8", 2)) + b"\x16\x03\x01hello\n")
    update = handler.next_event()
    assert isinstance(update, PeerUpdate)
    assert update.extra["proxy_address"] == ("1.2.3.4", 1)
    assert not handler.admitted  # the layer is not in place yet: no connection_made
    assert handler.next_event() == Upgrade(b"\x16\x03\x01hello\n")
    assert handler.admitted
    assert handler.buffered == 0  # nothing reached the line parser
    assert handler.next_event() is NEED_DATA
    handler.receive_data(b"plaintext from the layer\n")  # what the layer decrypts, later
    assert handler.next_event() == Line(b"plaintext from the layer")


def test_with_upgrade_only_bytes_after_the_header_in_its_own_read_go_to_the_layer() -> None:
    # Bytes of a later read reach the wrapper through the installed layer (as plaintext), so
    # the wrapper passes them to the inner handler: here they stand for that plaintext.
    header = encode_v1(("203.0.113.7", 40000), ("10.0.0.1", 443))
    data = header + b"abc\n"
    for cut in range(1, len(data) + 1):
        handler = wrap(upgrade=Upgrade)
        handler.receive_data(data[:cut])
        events = drain(handler)
        if data[cut:]:
            handler.receive_data(data[cut:])
            events += drain(handler)
        split = cut if cut >= len(header) else len(data)  # where the header's read ends
        assert isinstance(events[0], PeerUpdate)
        assert events[0].extra["proxy_address"] == ("203.0.113.7", 40000)
        assert events[1] == Upgrade(data[len(header) : split])
        assert events[2:] == ([Line(data[split:-1])] if data[split:] else [])


def test_with_upgrade_end_of_input_right_after_the_header_ends_cleanly() -> None:
    calls: list[bytes] = []

    def upgrade(rest: bytes) -> Event:
        calls.append(rest)
        return Upgrade(rest)

    handler = wrap(upgrade=upgrade)
    handler.receive_data(b"PROXY UNKNOWN\r\n\x16\x03")
    handler.receive_data(b"")
    assert drain(handler) == [EndOfInput()]
    assert handler.proxy_state is ProxyState.CLOSED
    assert calls == []  # no layer for a client that has gone
    assert not handler.admitted


def test_constructor_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="versions"):
        wrap(versions=(3,))
    with pytest.raises(ValueError, match="versions"):
        wrap(versions=())
    with pytest.raises(ValueError, match="max_header_bytes"):
        wrap(max_header_bytes=50)


# --- malformed headers -------------------------------------------------------------------

V4 = encode_v2(("1.2.3.4", 1), ("5.6.7.8", 2))


def _v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes((ver_cmd, fam)) + struct.pack("!H", len(body)) + body


MALFORMED: dict[str, tuple[bytes, dict[str, Any]]] = {
    "not a header": (b"GET / HTTP/1.1\r\n\r\n", {}),
    "bad v1 signature": (b"PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n", {}),
    "lowercase protocol": (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", {}),
    "double space": (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", {}),
    "missing port": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", {}),
    "extra field": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", {}),
    "leading zero in address": (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", {}),
    "leading zero in port": (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", {}),
    "port too big": (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", {}),
    "signed port": (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", {}),
    "octet too big": (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", {}),
    "v6 address in TCP4": (b"PROXY TCP4 ::1 ::2 1 2\r\n", {}),
    "v4 address in TCP6": (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", {}),
    "scope id": (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", {}),
    "LF without CR": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", {}),
    "no CRLF within 107 bytes": (b"PROXY UNKNOWN " + b"x" * 200, {}),
    "v1 when only v2": (b"PROXY UNKNOWN\r\n", {"versions": (2,)}),
    "v2 when only v1": (V4, {"versions": (1,)}),
    "bad v2 signature": (V4[:6] + b"\x00" + V4[7:], {}),
    "v2 version 1 nibble": (_v2(0x11, 0x11, V4[16:]), {}),
    "v2 version 3 nibble": (_v2(0x31, 0x11, V4[16:]), {}),
    "v2 unknown command": (_v2(0x22, 0x11, V4[16:]), {}),
    "v2 unknown family": (_v2(0x21, 0x41, V4[16:]), {}),
    "v2 unknown transport": (_v2(0x21, 0x13, V4[16:]), {}),
    "v2 short IPv4 block": (_v2(0x21, 0x11, bytes(11)), {}),
    "v2 short IPv6 block": (_v2(0x21, 0x21, bytes(12)), {}),
    "v2 short Unix block": (_v2(0x21, 0x31, bytes(200)), {}),
    "v2 over the limit": (
        _v2(0x21, 0x11, bytes(12) + b"\x04\x00\xf0" + bytes(240)),
        {"max_header_bytes": 200},
    ),
    "v2 truncated TLV": (_v2(0x21, 0x11, bytes(12) + b"\x01\x00"), {}),
    "v2 TLV overrun": (_v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05ab"), {}),
    "v2 duplicate TLV": (_v2(0x21, 0x11, bytes(12) + b"\x01\x00\x00\x01\x00\x00"), {}),
    "v2 long UNIQUE_ID": (_v2(0x21, 0x11, bytes(12) + b"\x05\x00\x81" + bytes(129)), {}),
    "v2 short CRC32C": (_v2(0x21, 0x11, bytes(12) + b"\x03\x00\x02ab"), {}),
    "v2 short SSL": (_v2(0x21, 0x11, bytes(12) + b"\x20\x00\x04" + bytes(4)), {}),
    "v2 bad SSL sub-TLV": (
        _v2(0x21, 0x11, bytes(12) + b"\x20\x00\x07" + bytes(5) + b"\x21\x00"),
        {},
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_header_is_a_sticky_protocol_error_with_no_reply(name: str) -> None:
    data, kwargs = MALFORMED[name]
    handler = wrap(**kwargs)
    handler.receive_data(data)
    with pytest.raises(ProtocolError) as first:
        handler.next_event()
    assert first.value.reply is None
    assert handler.state is ProxyState.ERROR
    with pytest.raises(ProtocolError) as again:
        handler.next_event()
    assert again.value is first.value


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_header_fails_the_same_way_one_byte_at_a_time(name: str) -> None:
    data, kwargs = MALFORMED[name]
    bytewise = feed_all([bytes([b]) for b in data], **kwargs)
    assert bytewise == feed_all([data], **kwargs)
    assert bytewise[-1][0] == "ProtocolError"


def test_a_bad_prefix_is_refused_before_the_rest_arrives() -> None:
    handler = wrap()
    handler.receive_data(b"PROXX")
    with pytest.raises(ProtocolError, match="signature"):
        handler.next_event()


# --- properties --------------------------------------------------------------------------

ipv4s = st.ip_addresses(v=4).map(str)
ipv6s = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)
unix_paths = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=60).filter(
    lambda path: path.isprintable()
)
endpoints = st.one_of(
    st.tuples(st.tuples(ipv4s, ports), st.tuples(ipv4s, ports)),
    st.tuples(st.tuples(ipv6s, ports), st.tuples(ipv6s, ports)),
)
tlv_maps = st.dictionaries(
    st.integers(0, 255).filter(lambda t: t not in (0x03, 0x04, 0x05, 0x20)),
    st.binary(max_size=40),
    max_size=5,
)


def _canonical(address: tuple[str, int]) -> tuple[str, int]:
    return (str(ipaddress.ip_address(address[0])), address[1])


@given(endpoints)
def test_v1_round_trip(pair: tuple[tuple[str, int], tuple[str, int]]) -> None:
    src, dst = pair
    extra = peer_update(encode_v1(src, dst))
    assert extra["proxy_address"] == _canonical(src)
    assert extra["proxy_destination"] == _canonical(dst)


@given(endpoints, tlv_maps, st.booleans(), st.booleans())
def test_v2_round_trip(
    pair: tuple[tuple[str, int], tuple[str, int]], tlvs: dict[int, bytes], dgram: bool, crc: bool
) -> None:
    src, dst = pair
    extra = peer_update(encode_v2(src, dst, tlvs, dgram=dgram, crc32c=crc))
    assert extra["proxy_address"] == _canonical(src)
    assert extra["proxy_destination"] == _canonical(dst)
    got = dict(extra["proxy_tlvs"])
    if crc:
        assert len(got.pop(TLVType.CRC32C)) == 4
    assert got == tlvs


@given(unix_paths, unix_paths)
def test_v2_unix_round_trip(src: str, dst: str) -> None:
    extra = peer_update(encode_v2(src, dst))
    assert (extra["proxy_address"], extra["proxy_destination"]) == (src, dst)


headers = st.one_of(
    endpoints.map(lambda pair: encode_v1(*pair)),
    st.tuples(endpoints, tlv_maps).map(lambda args: encode_v2(*args[0], args[1])),
    st.just(encode_v1(None, None)),
    st.just(encode_v2(None, None)),
)


def proxied() -> ProxyProtocolHandler:
    return wrap()


@given(st.data(), headers, st.lists(st.binary(max_size=8).map(lambda b: b + b"\n"), max_size=4))
def test_events_do_not_depend_on_chunking(
    data: st.DataObject, header: bytes, lines: list[bytes]
) -> None:
    stream = header + b"".join(lines)
    trace = assert_chunking_invariant(proxied, stream, data.draw(chunkings(stream)))
    assert trace[0].startswith("PeerUpdate(")


@given(st.data(), headers)
def test_mutated_headers_raise_only_protocol_error(data: st.DataObject, header: bytes) -> None:
    stream = data.draw(mutations(header)) + b"tail\n"
    chunks = data.draw(chunkings(stream))
    check_only_protocol_errors(proxied, stream, chunks)
    assert_chunking_invariant(proxied, stream, chunks)
