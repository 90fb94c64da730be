"""XDR constructed types: arrays, structs, unions, optional data and linked lists.

Each is built from the types it contains (:mod:`muxserver.rpc.xdr_basic`, or other
constructed types); :mod:`muxserver.rpc.xdr` re-exports them and explains how they compose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from muxserver.rpc.xdr_basic import (
    BOOL,
    UINT32,
    UNBOUNDED,
    Buffer,
    XDRError,
    XDRType,
    need_bytes,
    read_length,
)

__all__ = ["Array", "FixedArray", "LinkedList", "Optional", "Struct", "Union", "UnionValue"]

T = TypeVar("T")


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
        need_bytes(data, offset, self.min_size, "fixed array")
        return _decode_items(self.element, self.size, data, offset)


class Array(XDRType[list[T]]):
    """XDR ``type name<max>``: a count, then the elements. ``None`` means ``<>``."""

    def __init__(self, element: XDRType[T], maximum: int | None = None) -> None:
        self.element = element
        self.maximum = UNBOUNDED if maximum is None else maximum

    def pack(self, value: list[T], out: bytearray) -> None:
        """Append the count and each element."""
        if not isinstance(value, (list, tuple)):
            raise XDRError(f"array needs a list, not {type(value).__name__}")
        if len(value) > self.maximum:
            raise XDRError(f"array of {len(value)} elements exceeds maximum {self.maximum}")
        out += UINT32.pack(len(value))
        _pack_items(self.element, value, out)

    def decode(self, data: Buffer, offset: int = 0) -> tuple[list[T], int]:
        """Decode a counted array at ``offset``."""
        count = read_length(data, offset, self.maximum, "array")
        # Reject a count the remaining bytes cannot hold before building anything.
        need_bytes(data, offset + 4, count * self.element.min_size, f"array of {count} elements")
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
            out += UINT32.pack(0)
        else:
            out += UINT32.pack(1)
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
            out += UINT32.pack(1)
            try:
                self.element.pack(item, out)
            except XDRError as exc:
                raise exc.within(f"[{index}]") from None
        out += UINT32.pack(0)

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
