"""Handler-side cost per request: muxserver's own handlers against the benchmark's minimal ones.

No sockets and no reactor: the same bytes the load generators send are fed, in the same
batches, through

* **own** -- ``RespHandler`` + ``KVService`` + ``send()``, or ``HTTPHandler`` + a service
  returning a fixed ``HTTPResponse`` + ``send()``, driven the way the reactor drives them
  (``receive_data``, ``next_event`` until ``NEED_DATA``, ``handle`` and ``send`` per request,
  then a look at ``buffered``);
* **minimal** -- ``bench/peers/minimal.py``'s ``RespSession`` / ``HttpSession`` (``feed()``),
  the parser every other benchmark peer shares.

Workloads: PING (array form), SET and GET as ``redis-benchmark -t ... -P1`` and ``-P16`` send
them (one read holds 1 or 16 commands), and ``wrk``'s keep-alive GET (one request per read).
The two sides alternate within one run, ``--repeats`` times each; the figure is the best
repeat, in µs per request, and ``own/minimal`` is the ratio of those figures. Run from the
repository root::

    .venv/bin/python bench/handlers_bench.py [--requests 64000] [--repeats 15]
    .venv/bin/python bench/handlers_bench.py --profile "resp set -P16"
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers.minimal import HTTP_BODY, HttpSession, resp_session_factory
from muxserver.handlers.base import NEED_DATA, Handler, Request
from muxserver.handlers.http import HTTPHandler, HTTPResponse
from muxserver.handlers.resp import RespHandler
from muxserver.service import Peer
from muxserver.services.kv import KVService

RESP_COMMANDS = {
    "ping": b"*1\r\n$4\r\nPING\r\n",
    "set": b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n",
    "get": b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n",
}
"""What redis-benchmark sends for ``-t ping_mbulk,set,get`` (default key and 3-byte value)."""

HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
"""What wrk sends for ``wrk http://127.0.0.1:8080/``."""

Run = Callable[[list[bytes]], int]
"""Feed every chunk, return the bytes answered (so the work cannot be skipped)."""


def own_runner(handler_factory: Callable[[], Handler], service: object) -> Run:
    """Drive a fresh muxserver handler the way the reactor's ``_process`` loop does."""
    handle = service.handle if hasattr(service, "handle") else service
    peer = Peer(1, ("127.0.0.1", 50000))

    def run(chunks: list[bytes]) -> int:
        handler = handler_factory()
        receive, next_event, send = handler.receive_data, handler.next_event, handler.send
        total = 0
        for chunk in chunks:
            receive(chunk)
            while True:
                event = next_event()
                if event is NEED_DATA:
                    break
                if not isinstance(event, Request):
                    raise AssertionError(f"unexpected event {event!r}")
                total += len(send(handle(event, peer)))
            if handler.buffered:
                raise AssertionError("a partial request was left over")
        return total

    return run


def minimal_runner(session_factory: Callable[[], HttpSession | object]) -> Run:
    """Feed a fresh minimal session every chunk."""

    def run(chunks: list[bytes]) -> int:
        feed = session_factory().feed  # type: ignore[attr-defined]
        total = 0
        for chunk in chunks:
            total += len(feed(chunk))
        return total

    return run


def workloads() -> dict[str, tuple[bytes, int, Run, Run]]:
    """name -> (one request, requests per read, own runner, minimal runner)."""
    response = HTTPResponse(200, [(b"content-type", b"text/plain")], HTTP_BODY)
    result: dict[str, tuple[bytes, int, Run, Run]] = {}
    for depth in (1, 16):
        for test, command in RESP_COMMANDS.items():
            result[f"resp {test} -P{depth}"] = (
                command,
                depth,
                own_runner(RespHandler, KVService()),
                minimal_runner(resp_session_factory()),
            )
    # What redis-benchmark -t ping_inline -P16 sends: the step path's pipelined case.
    result["resp ping_inline -P16"] = (
        b"PING\r\n",
        16,
        own_runner(RespHandler, KVService()),
        minimal_runner(resp_session_factory()),
    )
    result["http GET"] = (
        HTTP_REQUEST,
        1,
        own_runner(HTTPHandler, lambda request, peer: response),
        minimal_runner(HttpSession),
    )
    return result


def measure(run: Run, chunks: list[bytes], requests: int) -> float:
    """µs per request for one pass over ``chunks``."""
    started = time.perf_counter()
    run(chunks)
    return (time.perf_counter() - started) * 1e6 / requests


def main(argv: list[str] | None = None) -> int:
    """Print µs per request for each workload, own against minimal, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=64_000, help="requests per repeat")
    parser.add_argument("--repeats", type=int, default=15, help="alternating repeats per side")
    parser.add_argument("--only", nargs="+", metavar="WORKLOAD", help="workload names to run")
    parser.add_argument("--profile", metavar="WORKLOAD", help="cProfile the own side of one")
    args = parser.parse_args(argv)
    table = workloads()
    if args.profile:
        request, depth, own, _ = table[args.profile]
        chunks = [request * depth] * (args.requests // depth)
        profiler = cProfile.Profile()
        profiler.runcall(own, chunks)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return 0
    print(f"Python {sys.version.split()[0]}; best of {args.repeats}, {args.requests} requests")
    print(f"{'workload':<18} {'own µs/req':>10} {'minimal µs/req':>15} {'own/minimal':>12}")
    for name, (request, depth, own, minimal) in table.items():
        if args.only and name not in args.only:
            continue
        chunks = [request * depth] * (args.requests // depth)
        requests = len(chunks) * depth
        if own(chunks[:depth]) != minimal(chunks[:depth]):
            print(f"  note: {name}: own and minimal answer with different byte counts")
        own_times, minimal_times = [], []
        for _ in range(args.repeats):
            own_times.append(measure(own, chunks, requests))
            minimal_times.append(measure(minimal, chunks, requests))
        best_own, best_minimal = min(own_times), min(minimal_times)
        ratio = best_own / best_minimal
        print(f"{name:<18} {best_own:>10.3f} {best_minimal:>15.3f} {ratio:>11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
