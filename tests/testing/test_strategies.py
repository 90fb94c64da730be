"""Tests for muxserver.testing.strategies."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from muxserver.testing import chunkings, mutations, split


def test_split_cuts_at_each_point_and_repeats_give_empty_chunks() -> None:
    assert split(b"abcd", [3, 1, 1]) == [b"a", b"", b"bc", b"d"]
    assert split(b"abcd", []) == [b"abcd"]
    assert split(b"", [0]) == [b"", b""]


def test_split_clamps_points_outside_the_data() -> None:
    assert split(b"ab", [-5, 9]) == [b"", b"ab", b""]


@given(st.binary(max_size=64), st.lists(st.integers(-10, 80)))
def test_split_always_joins_back(data: bytes, cuts: list[int]) -> None:
    assert b"".join(split(data, cuts)) == data
    assert len(split(data, cuts)) == len(cuts) + 1


@given(st.data(), st.binary(max_size=64))
def test_chunkings_always_join_back(data: st.DataObject, payload: bytes) -> None:
    chunks = data.draw(chunkings(payload))
    assert b"".join(chunks) == payload


def test_chunkings_can_be_one_byte_each_and_can_contain_empty_chunks() -> None:
    seen_bytewise = seen_empty = False

    @given(chunkings(b"abcdef"))
    def record(chunks: list[bytes]) -> None:
        nonlocal seen_bytewise, seen_empty
        seen_bytewise |= chunks == [b"a", b"b", b"c", b"d", b"e", b"f"]
        seen_empty |= b"" in chunks

    record()
    assert seen_bytewise and seen_empty


@given(st.data(), st.binary(min_size=1, max_size=32))
def test_mutations_are_bytes(data: st.DataObject, payload: bytes) -> None:
    mutated = data.draw(mutations(payload))
    assert isinstance(mutated, bytes)
