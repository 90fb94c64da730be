"""Applications for ``muxserver MODULE:FACTORY`` in the command-line tests."""

import time

from muxserver.handlers.base import Request
from muxserver.handlers.lines import LineHandler, LineRequest
from muxserver.service import Peer
from muxserver.serving import ServiceSpec


def _upper(request: Request, peer: Peer) -> bytes:
    assert isinstance(request, LineRequest)
    if request.line == b"fail":
        raise RuntimeError("asked to fail")
    if request.line.startswith(b"sleep "):
        time.sleep(float(request.line[6:]))
    return request.line.upper()


def upper() -> ServiceSpec:
    """Lines come back in capitals; ``sleep S`` waits first; ``fail`` fails."""
    return ServiceSpec(LineHandler, _upper)


def pair():
    """The short form: a (handler_factory, service) pair."""
    return LineHandler, _upper


def broken():
    """Returns nonsense."""
    return 42
