"""The demo RPC program of ``examples/demo.x``, defined in Python, with an in-memory store.

Theory of operation
-------------------
This module mirrors ``examples/demo.x`` declaration by declaration -- the constants, the
types, program 0x20000001 version 1 and its procedure numbers -- so that a C client generated
by rpcgen from that file and a Python client using :data:`DEMO_PROGRAM` both talk to the same
server. A test checks the numbers against the ``.x`` file.

:class:`DemoStore` is the implementation: a plain object (no sockets, no threads of its own;
a lock because a thread-pool strategy may run calls concurrently). :func:`demo_service`
returns an :class:`~muxserver.rpc.program.RPCService` serving it; a server wires that service
to its listeners (see the RPC section of the README).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import threading

from muxserver.rpc.program import (
    CallContext,
    DuplicateRequestCache,
    Procedure,
    Program,
    RPCService,
    Version,
)
from muxserver.rpc.xdr import (
    DOUBLE,
    UINT,
    VOID,
    Array,
    Enum,
    Opaque,
    Optional,
    String,
    Struct,
    Union,
    UnionValue,
)

__all__ = [
    "DEMO_GET",
    "DEMO_LIST",
    "DEMO_MEASURE",
    "DEMO_PROGRAM",
    "DEMO_PUT",
    "DemoStore",
    "Figure",
    "PutArgs",
    "Rect",
    "ShapeKind",
    "demo_service",
    "shape_area",
]

DEMO_PROG = 0x20000001
DEMO_VERS = 1
DEMO_MAXKEY = 255
DEMO_MAXVALUE = 65536
DEMO_MAXKEYS = 1024

DEMO_KEY = String(DEMO_MAXKEY)
"""``typedef string demo_key<DEMO_MAXKEY>``."""
DEMO_VALUE = Opaque(DEMO_MAXVALUE)
"""``typedef opaque demo_value<DEMO_MAXVALUE>``."""
DEMO_OPTVALUE = Optional(DEMO_VALUE)
"""``typedef demo_value *demo_optvalue``: ``bytes`` or ``None``."""
DEMO_KEYLIST = Array(DEMO_KEY, DEMO_MAXKEYS)
"""``typedef demo_key demo_keylist<DEMO_MAXKEYS>``."""


@dataclasses.dataclass(frozen=True)
class PutArgs:
    """``struct demo_put_args``."""

    key: str
    value: bytes


DEMO_PUT_ARGS = Struct(PutArgs, [("key", DEMO_KEY), ("value", DEMO_VALUE)])


class ShapeKind(enum.IntEnum):
    """``enum shape_kind``: the discriminant of ``union shape``."""

    SHAPE_POINT = 0
    SHAPE_CIRCLE = 1
    SHAPE_RECT = 2


@dataclasses.dataclass(frozen=True)
class Rect:
    """``struct rect``."""

    width: int
    height: int


RECT = Struct(Rect, [("width", UINT), ("height", UINT)])

SHAPE = Union(
    Enum(ShapeKind),
    {ShapeKind.SHAPE_POINT: VOID, ShapeKind.SHAPE_CIRCLE: UINT, ShapeKind.SHAPE_RECT: RECT},
)
"""``union shape switch (shape_kind kind)``: a :class:`UnionValue` whose value is ``None``
(point), the radius (circle) or a :class:`Rect`."""


@dataclasses.dataclass(frozen=True)
class Figure:
    """``struct figure``: a named shape and its area."""

    name: str
    outline: UnionValue
    area: float = 0.0


FIGURE = Struct(Figure, [("name", DEMO_KEY), ("outline", SHAPE), ("area", DOUBLE)])

DEMO_PUT = Procedure(1, "DEMO_PUT", DEMO_PUT_ARGS, VOID, idempotent=False)
DEMO_GET = Procedure(2, "DEMO_GET", DEMO_KEY, DEMO_OPTVALUE)
DEMO_LIST = Procedure(3, "DEMO_LIST", VOID, DEMO_KEYLIST)
DEMO_MEASURE = Procedure(4, "DEMO_MEASURE", FIGURE, FIGURE)

DEMO_PROGRAM = Program(
    DEMO_PROG,
    "DEMO_PROG",
    [
        Version(
            DEMO_VERS,
            "DEMO_VERS",
            [Procedure(0, "DEMO_NULL"), DEMO_PUT, DEMO_GET, DEMO_LIST, DEMO_MEASURE],
        )
    ],
)
"""Program 0x20000001 version 1, as in ``examples/demo.x`` (NULL is procedure 0)."""


class DemoStore:
    """The in-memory implementation: each method is ``(args, context) -> result``.

    ``max_keys`` bounds the store so DEMO_LIST's result always fits ``demo_keylist``.
    """

    def __init__(self, max_keys: int = DEMO_MAXKEYS) -> None:
        self.max_keys = max_keys
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, args: PutArgs, context: CallContext) -> None:
        """DEMO_PUT: store ``args.value`` under ``args.key``.

        Raises:
            OverflowError: the store is full (the caller sees SYSTEM_ERR).
        """
        with self._lock:
            if args.key not in self._data and len(self._data) >= self.max_keys:
                raise OverflowError(f"demo store is full ({self.max_keys} keys)")
            self._data[args.key] = args.value

    def get(self, key: str, context: CallContext) -> bytes | None:
        """DEMO_GET: the value stored under ``key``, or ``None``."""
        with self._lock:
            return self._data.get(key)

    def list(self, args: None, context: CallContext) -> list[str]:
        """DEMO_LIST: every key, sorted."""
        with self._lock:
            return sorted(self._data)

    def measure(self, figure: Figure, context: CallContext) -> Figure:
        """DEMO_MEASURE: ``figure`` with ``area`` computed from its outline."""
        return dataclasses.replace(figure, area=shape_area(figure.outline))


def shape_area(shape: UnionValue) -> float:
    """The area of a ``union shape`` value."""
    if shape.discriminant == ShapeKind.SHAPE_CIRCLE:
        radius: int = shape.value
        return math.pi * radius * radius
    if shape.discriminant == ShapeKind.SHAPE_RECT:
        box: Rect = shape.value
        return float(box.width * box.height)
    return 0.0


def demo_service(
    store: DemoStore | None = None, duplicate_cache: DuplicateRequestCache | None = None
) -> RPCService:
    """An :class:`RPCService` serving :data:`DEMO_PROGRAM` from ``store`` (a new one if
    ``None``). Pass a :class:`DuplicateRequestCache` when serving over UDP."""
    store = store if store is not None else DemoStore()
    service = RPCService(duplicate_cache=duplicate_cache)
    service.register(
        DEMO_PROGRAM,
        DEMO_VERS,
        {
            "DEMO_PUT": store.put,
            "DEMO_GET": store.get,
            "DEMO_LIST": store.list,
            "DEMO_MEASURE": store.measure,
        },
    )
    return service
