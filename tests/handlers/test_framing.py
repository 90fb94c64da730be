"""Specification of muxserver.handlers.framing: the shared receive buffer and its framings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxserver.handlers.framing import (
    FrameReader,
    FrameTooLongError,
    FramingError,
    MalformedFrameError,
)
from muxserver.testing import split

chunk_cuts = st.lists(st.integers(min_value=0, max_value=4096), max_size=40)


def pull_all(
    chunks: list[bytes], read: Callable[[FrameReader], bytes | None]
) -> tuple[list[bytes], str | None]:
    """Feed chunks, reading every complete record after each; return records and any error."""
    reader = FrameReader()
    records: list[bytes] = []
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (record := read(reader)) is not None:
                records.append(record)
    except FramingError as exc:
        return records, f"{type(exc).__name__}: {exc}"
    return records, None


# ---- terminator-delimited records --------------------------------------------------------------


def test_read_until_returns_each_record_without_its_delimiter() -> None:
    reader = FrameReader()
    reader.feed(b"one\r\ntwo\r\nthr")
    assert reader.read_until(b"\r\n") == b"one"
    assert reader.read_until(b"\r\n") == b"two"
    assert reader.read_until(b"\r\n") is None
    assert reader.buffered == 3
    reader.feed(b"ee\r\n")
    assert reader.read_until(b"\r\n") == b"three"
    assert reader.buffered == 0


def test_a_delimiter_split_across_chunks_is_still_found() -> None:
    reader = FrameReader()
    for chunk in (b"abc", b"\r", b"", b"\n", b"d"):
        reader.feed(chunk)
    assert reader.read_until(b"\r\n") == b"abc"


def test_a_record_of_exactly_max_len_is_accepted_and_one_more_byte_is_not() -> None:
    reader = FrameReader()
    reader.feed(b"12345\n123456\n")
    assert reader.read_until(b"\n", 5) == b"12345"
    with pytest.raises(FrameTooLongError) as caught:
        reader.read_until(b"\n", 5)
    assert caught.value.limit == 5


def test_the_limit_fires_before_the_delimiter_arrives() -> None:
    reader = FrameReader()
    reader.feed(b"123456")
    with pytest.raises(FrameTooLongError):
        reader.read_until(b"\n", 5)


def test_a_partial_multibyte_delimiter_does_not_count_against_the_limit() -> None:
    reader = FrameReader()
    reader.feed(b"12345\r")
    assert reader.read_until(b"\r\n", 5) is None
    reader.feed(b"\n")
    assert reader.read_until(b"\r\n", 5) == b"12345"


@given(
    records=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"|", b"")), max_size=10),
    delimiter=st.sampled_from([b"\n", b"\r\n", b"|", b"<end>"]),
    max_len=st.none() | st.integers(min_value=0, max_value=25),
    tail=st.binary(max_size=40),
    cuts=chunk_cuts,
)
def test_records_and_limit_errors_do_not_depend_on_chunking(
    records: list[bytes], delimiter: bytes, max_len: int | None, tail: bytes, cuts: list[int]
) -> None:
    data = b"".join(record + delimiter for record in records) + tail

    def read(reader: FrameReader) -> bytes | None:
        return reader.read_until(delimiter, max_len)

    assert pull_all(split(data, cuts), read) == pull_all([data], read)
    assert pull_all(split(data, cuts), read) == pull_all(
        [data[i : i + 1] for i in range(len(data))], read
    )


@given(data=st.binary(max_size=300), cuts=chunk_cuts, max_len=st.integers(0, 50))
def test_after_draining_the_buffer_holds_less_than_one_record_over_the_limit(
    data: bytes, cuts: list[int], max_len: int
) -> None:
    reader = FrameReader()
    for chunk in split(data, cuts):
        reader.feed(chunk)
        try:
            while reader.read_until(b"\r\n", max_len) is not None:
                pass
        except FrameTooLongError:
            return
        assert reader.buffered <= max_len + 1


def test_the_buffer_is_compacted_so_consumed_bytes_do_not_pile_up() -> None:
    reader = FrameReader()
    for _ in range(2000):
        reader.feed(b"x" * 10 + b"\n" + b"y" * 5)
        assert reader.read_until(b"\n") is not None
        buf, start = reader.view()
        assert len(buf) - start == reader.buffered
        assert len(buf) <= 2 * reader.buffered + 16


# ---- fixed length, and switching framings on one buffer -----------------------------------------


def test_read_exactly_waits_for_the_whole_count() -> None:
    reader = FrameReader()
    reader.feed(b"abc")
    assert reader.read_exactly(4) is None
    assert reader.buffered == 3
    reader.feed(b"de")
    assert reader.read_exactly(4) == b"abcd"
    assert reader.read_exactly(0) == b""
    assert reader.read_rest() == b"e"


def test_a_negative_count_is_the_callers_mistake() -> None:
    with pytest.raises(ValueError, match="count"):
        FrameReader().read_exactly(-1)


class CountedMessages:
    """A toy protocol: ``SIZE n\\n`` then ``n`` bytes then ``END\\n``, one framing per part."""

    def __init__(self) -> None:
        self.size: int | None = None
        self.body: bytes | None = None

    def __call__(self, reader: FrameReader) -> bytes | None:
        if self.size is None:
            line = reader.read_until(b"\n", 20)
            if line is None:
                return None
            self.size = int(line.removeprefix(b"SIZE "))
        if self.body is None:
            self.body = reader.read_exactly(self.size)
            if self.body is None:
                return None
        if reader.read_until(b"\n", 3) is None:
            return None
        body, self.size, self.body = self.body, None, None
        return body


@given(bodies=st.lists(st.binary(max_size=20), max_size=6), cuts=chunk_cuts)
def test_a_header_line_a_counted_body_and_more_lines_parse_under_any_chunking(
    bodies: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(b"SIZE %d\n%sEND\n" % (len(body), body) for body in bodies)
    assert pull_all(split(stream, cuts), CountedMessages()) == (bodies, None)


# ---- length-prefixed frames ---------------------------------------------------------------------


@pytest.mark.parametrize("header_size", [1, 2, 4, 8])
@pytest.mark.parametrize("byteorder", ["big", "little"])
def test_length_prefixed_frames_use_any_header_size_and_byte_order(
    header_size: int, byteorder: str
) -> None:
    assert byteorder in ("big", "little")
    order = "big" if byteorder == "big" else "little"
    reader = FrameReader()
    body = b"payload"
    reader.feed(len(body).to_bytes(header_size, order) + body + b"\0" * header_size)
    assert reader.read_length_prefixed(header_size, byteorder=order) == body
    assert reader.read_length_prefixed(header_size, byteorder=order) == b""
    assert reader.buffered == 0


def test_an_announced_frame_over_the_limit_fails_as_soon_as_the_header_arrives() -> None:
    reader = FrameReader()
    reader.feed(b"\x00\x00\x01")
    assert reader.read_length_prefixed(4, max_len=255) is None
    reader.feed(b"\x00")
    with pytest.raises(FrameTooLongError):
        reader.read_length_prefixed(4, max_len=255)


def test_an_unsupported_header_size_is_the_callers_mistake() -> None:
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        FrameReader().read_length_prefixed(3)


@given(
    bodies=st.lists(st.binary(max_size=40), max_size=6),
    header_size=st.sampled_from([1, 2, 4, 8]),
    max_len=st.none() | st.integers(0, 40),
    cuts=chunk_cuts,
)
def test_length_prefixed_frames_and_their_limit_do_not_depend_on_chunking(
    bodies: list[bytes], header_size: int, max_len: int | None, cuts: list[int]
) -> None:
    stream = b"".join(len(body).to_bytes(header_size, "big") + body for body in bodies)

    def read(reader: FrameReader) -> bytes | None:
        return reader.read_length_prefixed(header_size, max_len=max_len)

    expected = pull_all([stream], read)
    assert pull_all(split(stream, cuts), read) == expected
    if max_len is None or all(len(body) <= max_len for body in bodies):
        assert expected == (bodies, None)


# ---- netstrings ---------------------------------------------------------------------------------


def test_a_netstring_gives_its_payload() -> None:
    reader = FrameReader()
    reader.feed(b"5:hello,0:,")
    assert reader.read_netstring() == b"hello"
    assert reader.read_netstring() == b""
    assert reader.read_netstring() is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b":x,", MalformedFrameError),
        (b"5x", MalformedFrameError),
        (b"05:hello,", MalformedFrameError),
        (b"5:hello;", MalformedFrameError),
        (b"-1:", MalformedFrameError),
        (b" 5:hello,", MalformedFrameError),
        (b"100:", FrameTooLongError),
        (b"1000", FrameTooLongError),
    ],
)
def test_a_bad_netstring_is_refused_with_the_first_fault_in_reading_order(
    data: bytes, error: type[FramingError]
) -> None:
    reader = FrameReader()
    reader.feed(data)
    with pytest.raises(error):
        reader.read_netstring(max_len=99)


@given(
    payloads=st.lists(st.binary(max_size=30), max_size=5),
    garbage=st.binary(max_size=12),
    max_len=st.none() | st.integers(0, 30),
    cuts=chunk_cuts,
)
def test_netstrings_and_their_errors_do_not_depend_on_chunking(
    payloads: list[bytes], garbage: bytes, max_len: int | None, cuts: list[int]
) -> None:
    stream = b"".join(b"%d:%s," % (len(p), p) for p in payloads) + garbage

    def read(reader: FrameReader) -> bytes | None:
        return reader.read_netstring(max_len)

    expected = pull_all([stream], read)
    assert pull_all(split(stream, cuts), read) == expected
    if max_len is None or all(len(p) <= max_len for p in payloads):
        assert expected[0][: len(payloads)] == payloads


@given(data=st.binary(max_size=200), cuts=chunk_cuts)
def test_random_bytes_only_ever_raise_framing_errors(data: bytes, cuts: list[int]) -> None:
    readers: list[Callable[[FrameReader], bytes | None]] = [
        lambda r: r.read_netstring(50),
        lambda r: r.read_netstring(None),
        lambda r: r.read_until(b"\r\n", 20),
        lambda r: r.read_length_prefixed(2, byteorder="little", max_len=100),
    ]
    for read in readers:
        pull_all(split(data, cuts), read)


# ---- end of input -------------------------------------------------------------------------------


def test_end_of_input_keeps_buffered_bytes_readable_and_refuses_more() -> None:
    reader = FrameReader()
    reader.feed(b"tail")
    reader.feed_eof()
    assert reader.eof
    reader.feed(b"")
    with pytest.raises(ValueError, match="feed_eof"):
        reader.feed(b"more")
    assert reader.read_rest() == b"tail"


def test_advance_refuses_to_skip_more_than_is_buffered() -> None:
    reader = FrameReader()
    reader.feed(bytearray(b"abc"))
    reader.advance(2)
    assert reader.read_rest() == b"c"
    with pytest.raises(ValueError, match="advance"):
        reader.advance(1)
