"""Benchmark peer: the asyncio Protocol peer running on uvloop (libuv) instead of asyncio's loop.

Run: ``python -m bench.peers.uvloop_protocol --resp-port 7001 --http-port 7002``.
"""

from __future__ import annotations

import uvloop

from bench.peers.asyncio_protocol import serve
from bench.peers.cli import parse_listeners


def main() -> None:
    """Entry point: same protocol code as the asyncio peer, uvloop's event loop."""
    serve(parse_listeners(__doc__ or ""), uvloop.new_event_loop)


if __name__ == "__main__":
    main()
