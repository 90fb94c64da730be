"""XDR codec: round trips for every type, strict decoding, and validated encoding."""

from __future__ import annotations

import dataclasses
import enum
import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxserver.rpc.xdr import (
    BOOL,
    DOUBLE,
    FLOAT,
    HYPER,
    INT,
    UHYPER,
    UINT,
    VOID,
    Array,
    Enum,
    FixedArray,
    FixedOpaque,
    IntChoice,
    LinkedList,
    Opaque,
    Optional,
    String,
    Struct,
    Union,
    UnionValue,
    XDRError,
    XDRType,
)


class Color(enum.IntEnum):
    RED = 0
    GREEN = 1
    BLUE = -7


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    label: str


POINT = Struct(Point, [("x", INT), ("y", HYPER), ("label", String(20))])
SHAPE = Union(Enum(Color), {Color.RED: VOID, Color.GREEN: UINT, Color.BLUE: POINT})
DEFAULTED = Union(INT, {1: String(8)}, default=Opaque(8))

points = st.builds(
    Point,
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=5),
)
shapes = st.one_of(
    st.just(UnionValue(Color.RED, None)),
    st.builds(UnionValue, st.just(Color.GREEN), st.integers(0, 2**32 - 1)),
    st.builds(UnionValue, st.just(Color.BLUE), points),
)

# (type, strategy of valid values) for every kind of XDR type.
CASES: list[tuple[str, XDRType[Any], st.SearchStrategy[Any]]] = [
    ("int", INT, st.integers(-(2**31), 2**31 - 1)),
    ("unsigned int", UINT, st.integers(0, 2**32 - 1)),
    ("hyper", HYPER, st.integers(-(2**63), 2**63 - 1)),
    ("unsigned hyper", UHYPER, st.integers(0, 2**64 - 1)),
    ("bool", BOOL, st.booleans()),
    ("enum (IntEnum)", Enum(Color), st.sampled_from(Color)),
    ("enum (values)", IntChoice({3, 5, -1}), st.sampled_from([3, 5, -1])),
    ("float", FLOAT, st.floats(width=32, allow_nan=False)),
    ("double", DOUBLE, st.floats(allow_nan=False)),
    ("fixed opaque", FixedOpaque(5), st.binary(min_size=5, max_size=5)),
    ("fixed opaque[0]", FixedOpaque(0), st.just(b"")),
    ("variable opaque", Opaque(9), st.binary(max_size=9)),
    ("unbounded opaque", Opaque(), st.binary(max_size=40)),
    ("string", String(20), st.text(max_size=5)),
    ("fixed array", FixedArray(UINT, 3), st.lists(st.integers(0, 9), min_size=3, max_size=3)),
    ("variable array", Array(String(4), 6), st.lists(st.text("ab", max_size=4), max_size=6)),
    ("struct", POINT, points),
    ("union", SHAPE, shapes),
    (
        "union with default arm",
        DEFAULTED,
        st.one_of(
            st.builds(UnionValue, st.just(1), st.text("xyz", max_size=8)),
            st.builds(UnionValue, st.integers(2, 99), st.binary(max_size=8)),
        ),
    ),
    ("optional", Optional(POINT), st.none() | points),
    ("linked list", LinkedList(UINT, 10), st.lists(st.integers(0, 5), max_size=10)),
    ("void", VOID, st.none()),
    ("nested", Array(Optional(SHAPE), 3), st.lists(st.none() | shapes, max_size=3)),
]
IDS = [name for name, _, _ in CASES]


@pytest.mark.parametrize(("name", "kind", "values"), CASES, ids=IDS)
@given(data=st.data())
def test_every_type_round_trips(
    name: str, kind: XDRType[Any], values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    value = data.draw(values)
    encoded = kind.encode(value)
    assert len(encoded) % 4 == 0
    prefix = data.draw(st.binary(max_size=8))
    decoded, end = kind.decode(prefix + encoded + b"tail", len(prefix))
    assert end == len(prefix) + len(encoded)
    assert decoded == value
    assert kind.decode_all(encoded) == value


@pytest.mark.parametrize(("name", "kind", "values"), CASES, ids=IDS)
@given(data=st.data())
def test_truncated_input_fails_with_xdr_error_only(
    name: str, kind: XDRType[Any], values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    encoded = kind.encode(data.draw(values))
    if not encoded:
        return
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(XDRError) as info:
        kind.decode(encoded[:cut])
    assert info.value.offset is not None


@pytest.mark.parametrize(("name", "kind", "values"), CASES, ids=IDS)
@given(garbage=st.binary(max_size=64))
def test_garbage_decodes_or_raises_xdr_error_and_never_anything_else(
    name: str, kind: XDRType[Any], values: st.SearchStrategy[Any], garbage: bytes
) -> None:
    try:
        value, end = kind.decode(garbage)
    except XDRError:
        return
    if isinstance(value, float) and math.isnan(value):
        return  # NaN payloads are not preserved through a Python float (signalling -> quiet)
    # Whatever decodes must re-encode to exactly the bytes it came from (strictness).
    assert kind.encode(value) == garbage[:end]


def test_error_names_offset_and_field_path() -> None:
    data = POINT.encode(Point(1, 2, "ab"))[:-1]
    with pytest.raises(XDRError) as info:
        POINT.decode(b"\0" * 8 + data, 8)
    assert info.value.path == ("label",)
    assert info.value.offset == 8 + 12 + 4 + 2
    assert "offset" in str(info.value)
    assert "label" in str(info.value)


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        (BOOL, struct.pack(">I", 2), "bool must be 0 or 1"),
        (Enum(Color), struct.pack(">i", 9), "not a declared"),
        (IntChoice({1}), struct.pack(">i", 2), "not a declared"),
        (Opaque(3), struct.pack(">I", 4) + b"abcd", "exceeds maximum"),
        (String(3), struct.pack(">I", 4) + b"abcd", "exceeds maximum"),
        (Array(UINT, 1), struct.pack(">II", 2, 1) + b"\0" * 4, "exceeds maximum"),
        (Opaque(), struct.pack(">I", 1) + b"a\0\0\1", "non-zero padding"),
        (FixedOpaque(1), b"a\0\1\0", "non-zero padding"),
        (String(), struct.pack(">I", 2) + b"\xff\xfe\0\0", "not valid utf-8"),
        (SHAPE, struct.pack(">i", 5), "not a declared"),
        (Union(INT, {1: VOID}), struct.pack(">i", 2), "no arm"),
        (Optional(UINT), struct.pack(">I", 7), "bool must be 0 or 1"),
        (LinkedList(UINT, 1), struct.pack(">IIII", 1, 5, 1, 6), "exceeds maximum"),
    ],
)
def test_strict_decoding_rejects_out_of_bounds_input(
    kind: XDRType[Any], data: bytes, reason: str
) -> None:
    with pytest.raises(XDRError, match=reason):
        kind.decode(data)


def test_a_huge_array_count_is_refused_before_allocating() -> None:
    with pytest.raises(XDRError, match="truncated array"):
        Array(HYPER).decode(struct.pack(">I", 0xFFFFFFFF) + b"\0" * 8)


def test_decode_all_rejects_trailing_bytes() -> None:
    with pytest.raises(XDRError, match="trailing"):
        UINT.decode_all(b"\0\0\0\1\0\0\0\0")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (INT, 2**31),
        (INT, -(2**31) - 1),
        (UINT, -1),
        (UHYPER, 2**64),
        (HYPER, "1"),
        (INT, True),
        (BOOL, 1),
        (Enum(Color), 3),
        (IntChoice({1}), 2),
        (FLOAT, 1e300),
        (DOUBLE, 10**400),
        (FixedOpaque(2), b"abc"),
        (Opaque(2), b"abc"),
        (Opaque(), "text"),
        (String(2), "abc"),
        (String(4), "\u00e9\u00e9\u00e9"),  # 3 characters, 6 bytes of UTF-8
        (String(encoding="ascii"), "\u00e9"),
        (String(), b"bytes"),
        (FixedArray(UINT, 2), [1]),
        (Array(UINT, 1), [1, 2]),
        (Array(UINT), [1, -1]),
        (POINT, {"x": 1, "y": 2, "label": ""}),
        (POINT, Point(2**40, 0, "")),
        (SHAPE, (Color.RED, None)),
        (SHAPE, UnionValue(Color.GREEN, None)),
        (Union(INT, {1: VOID}), UnionValue(2, None)),
        (VOID, 0),
        (LinkedList(UINT, 1), [1, 2]),
    ],
)
def test_encoding_validates_types_and_ranges(kind: XDRType[Any], value: Any) -> None:
    with pytest.raises(XDRError):
        kind.encode(value)


def test_encoding_error_names_the_path() -> None:
    with pytest.raises(XDRError) as info:
        Array(SHAPE).encode([UnionValue(Color.BLUE, Point(0, 0, "x" * 21))])
    assert info.value.path == ("[0]", "<<Color.BLUE: -7>>", "label")


def test_struct_fields_must_match_the_dataclass() -> None:
    with pytest.raises(TypeError, match="do not match"):
        Struct(Point, [("x", INT), ("why", INT), ("label", String())])
    with pytest.raises(TypeError, match="dataclass"):
        Struct(dict, [])


def test_wire_format_matches_rfc_4506_examples() -> None:
    assert INT.encode(-1) == b"\xff\xff\xff\xff"
    assert HYPER.encode(1) == b"\0" * 7 + b"\1"
    assert String().encode("sillyprog") == b"\0\0\0\x09sillyprog\0\0\0"
    assert BOOL.encode(True) == b"\0\0\0\1"
    assert Optional(UINT).encode(None) == b"\0\0\0\0"
    assert FLOAT.encode(1.0) == b"\x3f\x80\0\0"
    assert math.isnan(DOUBLE.decode(DOUBLE.encode(math.nan))[0])
