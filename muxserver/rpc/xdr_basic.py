"""XDR basic types: the :class:`XDRType` protocol and the types that contain no other type.

Errors, the type base class and the wire helpers the constructed types
(:mod:`muxserver.rpc.xdr_constructed`) build on; integers, booleans, enums, floating point,
void, opaque data and strings. :mod:`muxserver.rpc.xdr` re-exports the public names and
explains how XDR types compose.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

__all__ = [
    "BOOL",
    "DOUBLE",
    "FLOAT",
    "HYPER",
    "INT",
    "UHYPER",
    "UINT",
    "UINT32",
    "UNBOUNDED",
    "VOID",
    "Buffer",
    "Double",
    "Enum",
    "FixedOpaque",
    "Float",
    "IntChoice",
    "Integer",
    "Opaque",
    "String",
    "Void",
    "XDRError",
    "XDRType",
    "need_bytes",
    "read_length",
]

T = TypeVar("T")
E = TypeVar("E", bound=enum.IntEnum)

Buffer = bytes | bytearray | memoryview
"""What ``decode`` accepts."""

UINT32 = struct.Struct(">I")
"""One unsigned 32-bit big-endian word: counts, lengths, discriminants and bools."""
_INT32 = struct.Struct(">i")
_UINT64 = struct.Struct(">Q")
_INT64 = struct.Struct(">q")
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by length % 4
UNBOUNDED = 0xFFFFFFFF
"""The maximum of a ``<>`` length: an XDR length is an unsigned int, so it is at most this."""


class XDRError(ValueError):
    """A value cannot be encoded, or bytes cannot be decoded, as the XDR type says.

    ``offset`` is the byte position where decoding failed (``None`` for encoding errors);
    ``path`` names the struct fields, array indexes and union arms that led there.
    """

    def __init__(self, message: str, offset: int | None = None, path: tuple[str, ...] = ()):
        self.reason = message
        self.offset = offset
        self.path = path
        where = f" at offset {offset}" if offset is not None else ""
        inside = f" (in {'.'.join(path)})" if path else ""
        super().__init__(f"{message}{where}{inside}")

    def within(self, name: str) -> XDRError:
        """Return the same error with ``name`` prepended to its path (used by containers)."""
        return XDRError(self.reason, self.offset, (name, *self.path))


def need_bytes(data: Buffer, offset: int, size: int, what: str) -> None:
    """Raise XDRError (naming ``what`` as truncated) unless ``size`` bytes remain at ``offset``."""
    if offset + size > len(data):
        raise XDRError(
            f"truncated {what}: need {size} bytes, {max(len(data) - offset, 0)} left", offset
        )


def _read_uint(data: Buffer, offset: int, what: str) -> int:
    need_bytes(data, offset, 4, what)
    value: int = UINT32.unpack_from(data, offset)[0]
    return value


def read_length(data: Buffer, offset: int, maximum: int, what: str) -> int:
    """Read the length word of a ``what`` at ``offset``.

    Raises:
        XDRError: the word is truncated, or the length exceeds ``maximum``.
    """
    length = _read_uint(data, offset, f"{what} length")
    if length > maximum:
        raise XDRError(f"{what} length {length} exceeds maximum {maximum}", offset)
    return length


def _check_padding(data: Buffer, offset: int, length: int) -> int:
    """Check the zero padding after ``length`` data bytes at ``offset``; return the new offset."""
    pad = (4 - length % 4) % 4
    end = offset + length
    need_bytes(data, end, pad, "padding")
    if pad and any(bytes(data[end : end + pad])):
        raise XDRError("non-zero padding bytes", end)
    return end + pad


class XDRType(Generic[T]):
    """An XDR type: knows how to encode a Python value of type ``T`` and decode it back.

    ``min_size`` is the fewest bytes any encoding of this type takes; containers use it to
    reject impossible element counts before allocating.
    """

    min_size: int = 4

    def pack(self, value: T, out: bytearray) -> None:
        """Append the encoding of ``value`` to ``out``.

        Raises:
            XDRError: ``value`` is of the wrong type or outside the type's range.
        """
        raise NotImplementedError

    def decode(self, data: Buffer, offset: int = 0) -> tuple[T, int]:
        """Decode one value at ``offset``; return it and the offset just past it.

        Raises:
            XDRError: the bytes are truncated or not a valid encoding of this type.
        """
        raise NotImplementedError

    def encode(self, value: T) -> bytes:
        """Return the encoding of ``value`` (see :meth:`pack`)."""
        out = bytearray()
        self.pack(value, out)
        return bytes(out)

    def decode_all(self, data: Buffer) -> T:
        """Decode ``data``, which must hold exactly one value and nothing after it.

        Raises:
            XDRError: invalid, truncated, or followed by trailing bytes.
        """
        value, end = self.decode(data, 0)
        if end != len(data):
            raise XDRError(f"{len(data) - end} trailing bytes after the value", end)
        return value


class Integer(XDRType[int]):
    """A 32- or 64-bit, signed or unsigned integer: ``int``, ``unsigned int``, ``hyper``..."""

    def __init__(self, name: str, codec: struct.Struct, low: int, high: int) -> None:
        self.name = name
        self._codec = codec
        self.low = low
        self.high = high
        self.min_size = codec.size

    def pack(self, value: int, out: bytearray) -> None:
        """Append the integer; it must be an ``int`` within the type's range."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise XDRError(f"{self.name} needs an int, not {type(value).__name__}")
        if not self.low <= value <= self.high:
            raise XDRError(f"{value} is out of range for {self.name} [{self.low}, {self.high}]")
        out += self._codec.pack(value)

    def decode(self, data: Buffer, offset: int = 0) -> tuple[int, int]:
        """Decode the integer at ``offset``."""
        need_bytes(data, offset, self._codec.size, self.name)
        value: int = self._codec.unpack_from(data, offset)[0]
        return value, offset + self._codec.size

    def __repr__(self) -> str:
        return self.name.upper().replace(" ", "_").replace("UNSIGNED_", "U")

    def __reduce__(self) -> tuple[Any, ...]:
        # struct.Struct does not pickle; its format does (services travel to worker processes).
        return (_integer, (self.name, self._codec.format, self.low, self.high))


def _integer(name: str, format: str, low: int, high: int) -> Integer:
    return Integer(name, struct.Struct(format), low, high)


INT: Integer = Integer("int", _INT32, -(2**31), 2**31 - 1)
"""XDR ``int``: signed 32 bits."""
UINT: Integer = Integer("unsigned int", UINT32, 0, 2**32 - 1)
"""XDR ``unsigned int``: unsigned 32 bits."""
HYPER: Integer = Integer("hyper", _INT64, -(2**63), 2**63 - 1)
"""XDR ``hyper``: signed 64 bits."""
UHYPER: Integer = Integer("unsigned hyper", _UINT64, 0, 2**64 - 1)
"""XDR ``unsigned hyper``: unsigned 64 bits."""


class _Bool(XDRType[bool]):
    """XDR ``bool``: encoded as the int 0 or 1; any other value is rejected on decode."""

    def pack(self, value: bool, out: bytearray) -> None:
        """Append 1 for ``True``, 0 for ``False``."""
        if not isinstance(value, bool):
            raise XDRError(f"bool needs a bool, not {type(value).__name__}")
        out += UINT32.pack(int(value))

    def decode(self, data: Buffer, offset: int = 0) -> tuple[bool, int]:
        """Decode 0 or 1 at ``offset``."""
        raw = _read_uint(data, offset, "bool")
        if raw > 1:
            raise XDRError(f"bool must be 0 or 1, not {raw}", offset)
        return raw == 1, offset + 4

    def __repr__(self) -> str:
        return "BOOL"


BOOL: XDRType[bool] = _Bool()
"""XDR ``bool``."""


class Enum(XDRType[E]):
    """XDR ``enum`` backed by a Python ``IntEnum``: only its members encode and decode."""

    def __init__(self, enum_type: type[E]) -> None:
        for member in enum_type:
            if not INT.low <= member.value <= INT.high:
                raise ValueError(f"{enum_type.__name__}.{member.name} does not fit an XDR int")
        self.enum_type = enum_type

    def pack(self, value: E, out: bytearray) -> None:
        """Append the member's value; plain ints are accepted if they name a member."""
        try:
            member = self.enum_type(value)
        except ValueError:
            raise XDRError(f"{value!r} is not a {self.enum_type.__name__}") from None
        out += _INT32.pack(member.value)

    def decode(self, data: Buffer, offset: int = 0) -> tuple[E, int]:
        """Decode an int at ``offset`` and return the member it names."""
        raw, end = INT.decode(data, offset)
        try:
            return self.enum_type(raw), end
        except ValueError:
            raise XDRError(f"{raw} is not a declared {self.enum_type.__name__}", offset) from None

    def __repr__(self) -> str:
        return f"Enum({self.enum_type.__name__})"


class IntChoice(XDRType[int]):
    """XDR ``enum`` as plain ints restricted to a declared set (when no IntEnum exists)."""

    def __init__(self, allowed: Iterable[int]) -> None:
        self.allowed = frozenset(allowed)
        if not self.allowed:
            raise ValueError("an enum needs at least one allowed value")

    def pack(self, value: int, out: bytearray) -> None:
        """Append ``value``, which must be one of the allowed ints."""
        if isinstance(value, bool) or value not in self.allowed:
            raise XDRError(f"{value!r} is not one of the declared enum values")
        out += _INT32.pack(value)

    def decode(self, data: Buffer, offset: int = 0) -> tuple[int, int]:
        """Decode an int at ``offset``, which must be one of the allowed values."""
        raw, end = INT.decode(data, offset)
        if raw not in self.allowed:
            raise XDRError(f"{raw} is not a declared enum value", offset)
        return raw, end


class Float(XDRType[float]):
    """XDR ``float``: IEEE single precision. Finite values beyond its range are rejected."""

    def pack(self, value: float, out: bytearray) -> None:
        """Append ``value`` rounded to single precision."""
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise XDRError(f"float needs a float, not {type(value).__name__}")
        try:
            out += _FLOAT.pack(float(value))
        except OverflowError:
            raise XDRError(f"{value} is out of range for a single-precision float") from None

    def decode(self, data: Buffer, offset: int = 0) -> tuple[float, int]:
        """Decode the float at ``offset``."""
        need_bytes(data, offset, 4, "float")
        value: float = _FLOAT.unpack_from(data, offset)[0]
        return value, offset + 4


class Double(XDRType[float]):
    """XDR ``double``: IEEE double precision."""

    min_size = 8

    def pack(self, value: float, out: bytearray) -> None:
        """Append ``value``."""
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise XDRError(f"double needs a float, not {type(value).__name__}")
        try:
            out += _DOUBLE.pack(float(value))
        except OverflowError:
            raise XDRError(f"{value} is out of range for a double") from None

    def decode(self, data: Buffer, offset: int = 0) -> tuple[float, int]:
        """Decode the double at ``offset``."""
        need_bytes(data, offset, 8, "double")
        value: float = _DOUBLE.unpack_from(data, offset)[0]
        return value, offset + 8


FLOAT: XDRType[float] = Float()
"""XDR ``float``."""
DOUBLE: XDRType[float] = Double()
"""XDR ``double``."""


class Void(XDRType[None]):
    """XDR ``void``: no bytes; the Python value is ``None``."""

    min_size = 0

    def pack(self, value: None, out: bytearray) -> None:
        """Append nothing; ``value`` must be ``None``."""
        if value is not None:
            raise XDRError(f"void takes None, not {type(value).__name__}")

    def decode(self, data: Buffer, offset: int = 0) -> tuple[None, int]:
        """Consume nothing."""
        return None, offset

    def __repr__(self) -> str:
        return "VOID"


VOID: XDRType[None] = Void()
"""XDR ``void``."""


def _as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise XDRError(f"{what} needs bytes, not {type(value).__name__}")


class FixedOpaque(XDRType[bytes]):
    """XDR ``opaque name[n]``: exactly ``n`` bytes, zero-padded to a multiple of four."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("a fixed opaque size cannot be negative")
        self.size = size
        self.min_size = size + (4 - size % 4) % 4

    def pack(self, value: bytes, out: bytearray) -> None:
        """Append exactly ``size`` bytes and their padding."""
        data = _as_bytes(value, "opaque")
        if len(data) != self.size:
            raise XDRError(f"fixed opaque needs exactly {self.size} bytes, got {len(data)}")
        out += data
        out += _PADDING[self.size % 4]

    def decode(self, data: Buffer, offset: int = 0) -> tuple[bytes, int]:
        """Decode ``size`` bytes at ``offset``, checking the padding."""
        need_bytes(data, offset, self.size, "fixed opaque")
        end = _check_padding(data, offset, self.size)
        return bytes(data[offset : offset + self.size]), end


class Opaque(XDRType[bytes]):
    """XDR ``opaque name<max>``: a length, the bytes, zero padding. ``None`` means ``<>``."""

    def __init__(self, maximum: int | None = None) -> None:
        self.maximum = UNBOUNDED if maximum is None else maximum

    def pack(self, value: bytes, out: bytearray) -> None:
        """Append the length, the bytes and their padding."""
        data = _as_bytes(value, "opaque")
        if len(data) > self.maximum:
            raise XDRError(f"opaque of {len(data)} bytes exceeds maximum {self.maximum}")
        out += UINT32.pack(len(data))
        out += data
        out += _PADDING[len(data) % 4]

    def decode(self, data: Buffer, offset: int = 0) -> tuple[bytes, int]:
        """Decode a length-prefixed byte string at ``offset``."""
        length = read_length(data, offset, self.maximum, "opaque")
        start = offset + 4
        need_bytes(data, start, length, "opaque")
        end = _check_padding(data, start, length)
        return bytes(data[start : start + length]), end


class String(XDRType[str]):
    """XDR ``string name<max>`` as ``str``; ``max`` counts encoded bytes, as on the wire.

    ``encoding`` and ``errors`` are passed to ``str.encode``/``bytes.decode``; undecodable
    bytes raise :class:`XDRError` unless ``errors`` says otherwise (``"surrogateescape"``
    round-trips any bytes).
    """

    def __init__(
        self, maximum: int | None = None, encoding: str = "utf-8", errors: str = "strict"
    ) -> None:
        self._opaque = Opaque(maximum)
        self.encoding = encoding
        self.errors = errors

    def pack(self, value: str, out: bytearray) -> None:
        """Append the encoded string."""
        if not isinstance(value, str):
            raise XDRError(f"string needs a str, not {type(value).__name__}")
        try:
            data = value.encode(self.encoding, self.errors)
        except UnicodeEncodeError as exc:
            raise XDRError(f"string cannot be encoded as {self.encoding}: {exc.reason}") from None
        self._opaque.pack(data, out)

    def decode(self, data: Buffer, offset: int = 0) -> tuple[str, int]:
        """Decode a length-prefixed string at ``offset``."""
        raw, end = self._opaque.decode(data, offset)
        try:
            return raw.decode(self.encoding, self.errors), end
        except UnicodeDecodeError as exc:
            raise XDRError(f"string is not valid {self.encoding}: {exc.reason}", offset) from None
