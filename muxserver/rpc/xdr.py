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

The types live in two modules: :mod:`muxserver.rpc.xdr_basic` (the :class:`XDRType` protocol,
:class:`XDRError` and the types that contain no other type) and
:mod:`muxserver.rpc.xdr_constructed` (arrays, structs, unions, optional data, linked lists).
Import them from here.
"""

from __future__ import annotations

from muxserver.rpc.xdr_basic import (
    BOOL,
    DOUBLE,
    FLOAT,
    HYPER,
    INT,
    UHYPER,
    UINT,
    VOID,
    Buffer,
    Double,
    Enum,
    FixedOpaque,
    Float,
    IntChoice,
    Integer,
    Opaque,
    String,
    Void,
    XDRError,
    XDRType,
)
from muxserver.rpc.xdr_constructed import (
    Array,
    FixedArray,
    LinkedList,
    Optional,
    Struct,
    Union,
    UnionValue,
)

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
