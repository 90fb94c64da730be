"""XDR (RFC 4506): composable type descriptions that encode and decode themselves.

Theory of operation
-------------------
An XDR type is a value of :class:`XDRType`. Primitive types are module constants (:data:`INT`,
:data:`UHYPER`, :data:`BOOL`, :data:`VOID`, ...); constructed types are built by calling a class
with the types they contain, exactly as a ``.x`` file nests declarations::

    KEY = String(255)
    PUT_ARGS = Struct(PutArgs, [("key", KEY), ("value", Opaque(65536))])

Every type has two verbs:

* ``pack(value, out)`` appends the encoding of ``value`` to a ``bytearray`` (``encode(value)``
  returns it as ``bytes``). Values are validated: out-of-range integers, over-long strings,
  undeclared enum values and wrong Python types raise :class:`XDRError`.
* ``decode(buffer, offset)`` returns ``(value, new_offset)``. Decoding is strict: every length
  is checked against its maximum, padding must be zero bytes, booleans must be 0 or 1, enum
  values and union discriminants must be declared. Truncated or garbage input raises
  :class:`XDRError` -- never ``IndexError`` or ``struct.error`` -- carrying the byte offset and
  the path of fields that led there.

Python representations (the choices a user must know):

* integers are ``int``; ``bool`` is ``bool``; enums are members of a Python ``IntEnum``
  (:class:`Enum`) or plain ``int`` restricted to a set (:class:`IntChoice`);
* ``float``/``double`` are ``float`` (a ``float`` value must fit single precision; NaN
  payload bits are not preserved, as Python quiets signalling NaNs);
* opaque data is ``bytes``; ``string<>`` is ``str``, encoded as UTF-8 by default (pass
  ``encoding=`` -- RFC 4506 says ASCII, real peers send UTF-8);
* arrays are ``list``; structs are instances of a *dataclass* you name (decoding calls it with
  keyword arguments, encoding reads its attributes); unions are :class:`UnionValue`
  ``(discriminant, value)``; optional-data (``type *``) is the value or ``None``; void is
  ``None``. The XDR linked-list idiom (``struct node { ...; node *next; }``) is
  :class:`LinkedList`, a flat Python list, decoded without recursion.

Decoding never allocates more than the input can justify: an array's count is checked against
the bytes that remain before any element is built, so a 12-byte message cannot ask for four
billion elements.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

__all__ = [
    "BOOL",
    "DOUBLE",
    "FLOAT",
    "HYPER",
    "INT",
    "UHYPER",
    "UINT",
    "VOID",
    "Array",
    "Buffer",
    "Double",
    "Enum",
    "FixedArray",
    "FixedOpaque",
    "Float",
    "IntChoice",
    "Integer",
    "LinkedList",
    "Opaque",
    "Optional",
    "String",
    "Struct",
    "Union",
    "UnionValue",
    "Void",
    "XDRError",
    "XDRType",
]

T = TypeVar("T")
E = TypeVar("E", bound=enum.IntEnum)

Buffer = bytes | bytearray | memoryview
"""What ``decode`` accepts."""

_UINT32 = struct.Struct(">I")
_INT32 = struct.Struct(">i")
_UINT64 = struct.Struct(">Q")
_INT64 = struct.Struct(">q")
_FLOAT = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by length % 4
_UNBOUNDED = 0xFFFFFFFF  # an XDR length is an unsigned int, so "<>" means at most this


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


def _need(data: Buffer, offset: int, size: int, what: str) -> None:
    """Raise XDRError unless ``size`` bytes of ``data`` remain at ``offset``."""
    if offset + size > len(data):
        raise XDRError(
            f"truncated {what}: need {size} bytes, {max(len(data) - offset, 0)} left", offset
        )


def _read_uint(data: Buffer, offset: int, what: str) -> int:
    _need(data, offset, 4, what)
    value: int = _UINT32.unpack_from(data, offset)[0]
    return value


def _read_length(data: Buffer, offset: int, maximum: int, what: str) -> int:
    length = _read_uint(data, offset, f"{what} length")
    if length > maximum:
        raise XDRError(f"{what} length {length} exceeds maximum {maximum}", offset)
    return length


def _check_padding(data: Buffer, offset: int, length: int) -> int:
    """Check the zero padding after ``length`` data bytes at ``offset``; return the new offset."""
    pad = (4 - length % 4) % 4
    end = offset + length
    _need(data, end, pad, "padding")
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
        _need(data, offset, self._codec.size, self.name)
        value: int = self._codec.unpack_from(data, offset)[0]
        return value, offset + self._codec.size

    def __repr__(self) -> str:
        return self.name.upper().replace(" ", "_").replace("UNSIGNED_", "U")


INT: Integer = Integer("int", _INT32, -(2**31), 2**31 - 1)
"""XDR ``int``: signed 32 bits."""
UINT: Integer = Integer("unsigned int", _UINT32, 0, 2**32 - 1)
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
        out += _UINT32.pack(int(value))

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
        _need(data, offset, 4, "float")
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
        _need(data, offset, 8, "double")
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
        _need(data, offset, self.size, "fixed opaque")
        end = _check_padding(data, offset, self.size)
        return bytes(data[offset : offset + self.size]), end


class Opaque(XDRType[bytes]):
    """XDR ``opaque name<max>``: a length, the bytes, zero padding. ``None`` means ``<>``."""

    def __init__(self, maximum: int | None = None) -> None:
        self.maximum = _UNBOUNDED if maximum is None else maximum

    def pack(self, value: bytes, out: bytearray) -> None:
        """Append the length, the bytes and their padding."""
        data = _as_bytes(value, "opaque")
        if len(data) > self.maximum:
            raise XDRError(f"opaque of {len(data)} bytes exceeds maximum {self.maximum}")
        out += _UINT32.pack(len(data))
        out += data
        out += _PADDING[len(data) % 4]

    def decode(self, data: Buffer, offset: int = 0) -> tuple[bytes, int]:
        """Decode a length-prefixed byte string at ``offset``."""
        length = _read_length(data, offset, self.maximum, "opaque")
        start = offset + 4
        _need(data, start, length, "opaque")
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


class FixedArray(XDRType[list[T]]):
    """XDR ``type name[n]``: exactly ``n`` elements, no count on the wire."""

    def __init__(self, element: XDRType[T], size: int) -> None:
        self.element = element
        self.size = size
        self.min_size = element.min_size * size

    def pack(self, value: list[T], out: bytearray) -> None:
        """Append each of the ``size`` elements."""
        if not isinstance(value, (list, tuple)) or len(value) != self.size:
            raise XDRError(f"fixed array needs a list of exactly {self.size} elements")
        _pack_items(self.element, value, out)

    def decode(self, data: Buffer, offset: int = 0) -> tuple[list[T], int]:
        """Decode ``size`` elements at ``offset``."""
        _need(data, offset, self.min_size, "fixed array")
        return _decode_items(self.element, self.size, data, offset)


class Array(XDRType[list[T]]):
    """XDR ``type name<max>``: a count, then the elements. ``None`` means ``<>``."""

    def __init__(self, element: XDRType[T], maximum: int | None = None) -> None:
        self.element = element
        self.maximum = _UNBOUNDED if maximum is None else maximum

    def pack(self, value: list[T], out: bytearray) -> None:
        """Append the count and each element."""
        if not isinstance(value, (list, tuple)):
            raise XDRError(f"array needs a list, not {type(value).__name__}")
        if len(value) > self.maximum:
            raise XDRError(f"array of {len(value)} elements exceeds maximum {self.maximum}")
        out += _UINT32.pack(len(value))
        _pack_items(self.element, value, out)

    def decode(self, data: Buffer, offset: int = 0) -> tuple[list[T], int]:
        """Decode a counted array at ``offset``."""
        count = _read_length(data, offset, self.maximum, "array")
        # Reject a count the remaining bytes cannot hold before building anything.
        _need(data, offset + 4, count * self.element.min_size, f"array of {count} elements")
        return _decode_items(self.element, count, data, offset + 4)


def _pack_items(element: XDRType[T], items: Sequence[T], out: bytearray) -> None:
    for index, item in enumerate(items):
        try:
            element.pack(item, out)
        except XDRError as exc:
            raise exc.within(f"[{index}]") from None


def _decode_items(
    element: XDRType[T], count: int, data: Buffer, offset: int
) -> tuple[list[T], int]:
    items: list[T] = []
    for index in range(count):
        try:
            item, offset = element.decode(data, offset)
        except XDRError as exc:
            raise exc.within(f"[{index}]") from None
        items.append(item)
    return items, offset


class Struct(XDRType[T]):
    """XDR ``struct``: named fields in order, represented by a dataclass you provide.

    ``fields`` lists ``(name, type)`` pairs in wire order; the names must be exactly the
    dataclass's ``__init__`` fields, checked here so a typo fails at import time.
    """

    def __init__(self, cls: type[T], fields: Sequence[tuple[str, XDRType[Any]]]) -> None:
        if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
            raise TypeError(f"Struct needs a dataclass type, not {cls!r}")
        declared = [f.name for f in dataclasses.fields(cls) if f.init]
        names = [name for name, _ in fields]
        if sorted(declared) != sorted(names):
            raise TypeError(
                f"Struct fields {names} do not match dataclass {cls.__name__} fields {declared}"
            )
        self.cls = cls
        self.fields = tuple(fields)
        self.min_size = sum(kind.min_size for _, kind in self.fields)

    def pack(self, value: T, out: bytearray) -> None:
        """Append each field of ``value`` in declaration order."""
        if not isinstance(value, self.cls):
            raise XDRError(f"struct needs a {self.cls.__name__}, not {type(value).__name__}")
        for name, kind in self.fields:
            try:
                kind.pack(getattr(value, name), out)
            except XDRError as exc:
                raise exc.within(name) from None

    def decode(self, data: Buffer, offset: int = 0) -> tuple[T, int]:
        """Decode the fields at ``offset`` and build the dataclass."""
        values: dict[str, Any] = {}
        for name, kind in self.fields:
            try:
                values[name], offset = kind.decode(data, offset)
            except XDRError as exc:
                raise exc.within(name) from None
        return self.cls(**values), offset

    def __repr__(self) -> str:
        return f"Struct({self.cls.__name__})"


@dataclasses.dataclass(frozen=True)
class UnionValue:
    """A decoded XDR union: the discriminant and the value of the arm it selects."""

    discriminant: int
    """The discriminant (an ``IntEnum`` member, ``bool`` or ``int``, as its type decodes)."""
    value: Any = None
    """The arm's value (``None`` for a ``void`` arm)."""


class Union(XDRType[UnionValue]):
    """XDR discriminated ``union``: a discriminant, then the arm it selects.

    ``arms`` maps each declared discriminant value to its arm's type (use :data:`VOID` for
    ``case X: void;``). ``default`` is the ``default:`` arm, or ``None`` when there is none,
    in which case an undeclared discriminant is an error.
    """

    def __init__(
        self,
        discriminant: XDRType[Any],
        arms: Mapping[int, XDRType[Any]],
        default: XDRType[Any] | None = None,
    ) -> None:
        self.discriminant = discriminant
        self.arms = {int(key): kind for key, kind in arms.items()}
        self.default = default
        smallest = min(
            [kind.min_size for kind in self.arms.values()]
            + ([default.min_size] if default is not None else [])
            + ([0] if not self.arms and default is None else [])
        )
        self.min_size = discriminant.min_size + smallest

    def _arm(self, discriminant: Any) -> XDRType[Any]:
        arm = self.arms.get(int(discriminant), self.default)
        if arm is None:
            raise XDRError(f"union has no arm for discriminant {discriminant!r}")
        return arm

    def pack(self, value: UnionValue, out: bytearray) -> None:
        """Append the discriminant and the selected arm's value."""
        if not isinstance(value, UnionValue):
            raise XDRError(f"union needs a UnionValue, not {type(value).__name__}")
        self.discriminant.pack(value.discriminant, out)
        arm = self._arm(value.discriminant)
        try:
            arm.pack(value.value, out)
        except XDRError as exc:
            raise exc.within(f"<{value.discriminant!r}>") from None

    def decode(self, data: Buffer, offset: int = 0) -> tuple[UnionValue, int]:
        """Decode the discriminant at ``offset``, then its arm."""
        discriminant, end = self.discriminant.decode(data, offset)
        try:
            arm = self._arm(discriminant)
        except XDRError as exc:
            raise XDRError(exc.reason, offset) from None
        try:
            value, end = arm.decode(data, end)
        except XDRError as exc:
            raise exc.within(f"<{discriminant!r}>") from None
        return UnionValue(discriminant, value), end


class Optional(XDRType[T | None]):
    """XDR optional-data ``type *name``: a bool "value follows", then the value if true."""

    def __init__(self, element: XDRType[T]) -> None:
        self.element = element

    def pack(self, value: T | None, out: bytearray) -> None:
        """Append FALSE for ``None``, else TRUE and the value."""
        if value is None:
            out += _UINT32.pack(0)
        else:
            out += _UINT32.pack(1)
            self.element.pack(value, out)

    def decode(self, data: Buffer, offset: int = 0) -> tuple[T | None, int]:
        """Decode the presence flag at ``offset`` and the value if present."""
        present, end = BOOL.decode(data, offset)
        if not present:
            return None, end
        return self.element.decode(data, end)


class LinkedList(XDRType[list[T]]):
    """The XDR linked-list idiom ``struct node { T item; node *next; }`` as a flat list.

    On the wire: for each element TRUE then the element, and a final FALSE. Decoding is a
    loop, not recursion, so a long list cannot exhaust the stack. ``maximum`` bounds the
    number of elements accepted (``None``: only the input's size does).
    """

    def __init__(self, element: XDRType[T], maximum: int | None = None) -> None:
        self.element = element
        self.maximum = maximum

    def pack(self, value: list[T], out: bytearray) -> None:
        """Append every element behind a TRUE, then FALSE."""
        if not isinstance(value, (list, tuple)):
            raise XDRError(f"linked list needs a list, not {type(value).__name__}")
        if self.maximum is not None and len(value) > self.maximum:
            raise XDRError(f"list of {len(value)} elements exceeds maximum {self.maximum}")
        for index, item in enumerate(value):
            out += _UINT32.pack(1)
            try:
                self.element.pack(item, out)
            except XDRError as exc:
                raise exc.within(f"[{index}]") from None
        out += _UINT32.pack(0)

    def decode(self, data: Buffer, offset: int = 0) -> tuple[list[T], int]:
        """Decode elements until the FALSE that ends the list."""
        items: list[T] = []
        while True:
            more, offset = BOOL.decode(data, offset)
            if not more:
                return items, offset
            if self.maximum is not None and len(items) >= self.maximum:
                raise XDRError(f"list exceeds maximum of {self.maximum} elements", offset)
            try:
                item, offset = self.element.decode(data, offset)
            except XDRError as exc:
                raise exc.within(f"[{len(items)}]") from None
            items.append(item)
