"""The four measurements, each against one running server: RESP, HTTP, idle crowd, churn.

Every function takes a :class:`~bench.process.RunningServer`, drives load from the client CPU,
reads the server's CPU time (user+system over its process tree) before and after, and returns a
flat ``dict[str, float]`` of figures for one run. Figures ending in ``_us`` are microseconds.

*CPU per request* is ``(cpu_after - cpu_before) / requests`` where ``requests`` is what the
load generator reports as answered; it is independent of how fast the load generator is, which
is why it is the figure to compare when the client, not the server, is the bottleneck.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import selectors
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.process import (
    HOST,
    BenchError,
    RunningServer,
    run_client,
    spawn_client,
    stop_client,
)

#: The idle crowd is split across client processes of at most this many connections each.
IDLE_PER_CLIENT = 9_500


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is; ``--quick`` picks the small set."""

    resp_requests_p1: int
    resp_requests_p16: int
    http_seconds: int
    idle_stages: tuple[int, ...]
    latency_requests: int
    churn_seconds: float
    churn_processes: int
    churn_max_per_process: int
    idle_accept_seconds: float


FULL = Sizes(100_000, 1_000_000, 5, (10_000, 19_000), 20_000, 5.0, 4, 200_000, 180.0)
QUICK = Sizes(30_000, 300_000, 3, (10_000, 19_000), 20_000, 3.0, 4, 100_000, 20.0)


def smoke_test(server: RunningServer) -> None:
    """Check that the server answers one PING / one GET correctly before loading it."""
    if server.ports.resp:
        reply = _round_trip(server.ports.resp, b"*1\r\n$4\r\nPING\r\n", b"\r\n")
        if reply != b"+PONG\r\n":
            raise BenchError(f"{server.spec.name}: PING answered {reply!r}")
    if server.ports.http:
        request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        reply = _round_trip(server.ports.http, request, None)
        if not reply.startswith(b"HTTP/1.1 200") or not reply.endswith(b"Hello, world\n"):
            raise BenchError(f"{server.spec.name}: GET / answered {reply[:200]!r}")


def _round_trip(port: int, request: bytes, until: bytes | None) -> bytes:
    """Send ``request``; read until ``until`` is seen (or until close when None)."""
    with socket.create_connection((HOST, port), timeout=5.0) as sock:
        sock.sendall(request)
        reply = b""
        while until is None or until not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def _redis_benchmark(port: int, clients: int, requests: int, test: str, pipeline: int) -> dict:
    """Run redis-benchmark once and return its CSV row for ``test`` as floats."""
    out = run_client(
        [
            "redis-benchmark",
            "-h",
            HOST,
            "-p",
            str(port),
            "-c",
            str(clients),
            "-n",
            str(requests),
            "-t",
            test,
            "-P",
            str(pipeline),
            "--csv",
        ],
        timeout=300,
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    if len(rows) != 1:
        raise BenchError(f"redis-benchmark -t {test}: expected one CSV row, got:\n{out}")
    return {key: float(value) for key, value in rows[0].items() if key != "test"}


def resp(server: RunningServer, test: str, pipeline: int, requests: int) -> dict[str, float]:
    """``redis-benchmark -c 50 -P pipeline -t test``: req/s and server CPU µs per request.

    ``test`` is a redis-benchmark test name; PING is run as ``ping_mbulk`` (the array form the
    other commands use), not ``ping`` (which would also run the inline form).
    """
    before = server.usage().cpu_seconds
    row = _redis_benchmark(server.ports.resp, 50, requests, test, pipeline)
    cpu = server.usage().cpu_seconds - before
    return {"rps": row["rps"], "cpu_us": cpu / requests * 1e6, "p99_ms": row["p99_latency_ms"]}


_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def http(server: RunningServer, seconds: int) -> dict[str, float]:
    """``wrk -t1 -c50 -d{seconds}s`` keep-alive GETs: req/s and server CPU µs per request."""
    before = server.usage().cpu_seconds
    out = run_client(
        ["wrk", "-t1", "-c50", f"-d{seconds}s", f"http://{HOST}:{server.ports.http}/"],
        timeout=seconds + 60,
    )
    cpu = server.usage().cpu_seconds - before
    total, rate = _WRK_TOTAL.search(out), _WRK_RATE.search(out)
    if not total or not rate:
        raise BenchError(f"could not read wrk's output:\n{out}")
    requests = int(total.group(1))
    errors = sum(int(n) for n in _WRK_ERRORS.search(out).groups()) if "Socket errors" in out else 0
    non2xx = _WRK_NON2XX.search(out)
    if non2xx:
        raise BenchError(f"{server.spec.name}: wrk got {non2xx.group(1)} non-2xx responses")
    return {"rps": float(rate.group(1)), "cpu_us": cpu / max(requests, 1) * 1e6, "errors": errors}


def _latency(server: RunningServer, requests: int) -> tuple[float, float]:
    """p50 and p99 round-trip latency in µs of one client sending PINGs back to back."""
    row = _redis_benchmark(server.ports.resp, 1, requests, "ping_mbulk", 1)
    return row["p50_latency_ms"] * 1000, row["p99_latency_ms"] * 1000


def idle(server: RunningServer, sizes: Sizes) -> dict[str, float]:
    """Grow a crowd of idle connections through ``sizes.idle_stages``; RSS/connection, latency.

    For each stage N: open connections until N are established (by client processes of at most
    :data:`IDLE_PER_CLIENT` each), wait up to ``sizes.idle_accept_seconds`` until the server
    has accepted them, then record ``held@N`` (connections the server holds, from its sockets),
    ``rss_per_conn@N = (RSS - RSS before the crowd) / held@N`` and the p50/p99 PING latency
    of one more client. A server that accepts too slowly is measured with what it holds.
    """
    stages, latency_requests = sizes.idle_stages, sizes.latency_requests
    figures: dict[str, float] = {}
    figures["p50_us@0"], figures["p99_us@0"] = _latency(server, latency_requests)
    time.sleep(0.5)
    base = server.usage()
    clients: list[subprocess.Popen[str]] = []
    held = 0
    try:
        for stage in stages:
            wanted = stage - held
            shares = math.ceil(wanted / IDLE_PER_CLIENT)
            batch = [
                spawn_client(
                    [
                        sys.executable,
                        "-m",
                        "bench.idle_clients",
                        "--port",
                        str(server.ports.resp),
                        "--count",
                        str(wanted // shares + (i < wanted % shares)),
                        "--timeout",
                        str(sizes.idle_accept_seconds),
                    ]
                )
                for i in range(shares)
            ]
            clients.extend(batch)
            for proc in batch:
                held += _await_connected(proc, server)
            accepted = _await_accepted(server, held, sizes.idle_accept_seconds)
            time.sleep(0.5)  # let lazily allocated per-connection state settle
            now = server.usage()
            figures[f"rss_per_conn@{stage}"] = (now.rss_bytes - base.rss_bytes) / max(accepted, 1)
            figures[f"held@{stage}"] = accepted
            figures[f"p50_us@{stage}"], figures[f"p99_us@{stage}"] = _latency(
                server, latency_requests
            )
    finally:
        for proc in clients:
            stop_client(proc)
    return figures


def _await_connected(proc: subprocess.Popen[str], server: RunningServer) -> int:
    """Wait for an idle client's ``CONNECTED ok FAILED n`` line; return ``ok``.

    The client itself gives up connecting after its ``--timeout``.
    """
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=600):
            raise BenchError("an idle client did not finish connecting within 600s")
    line = proc.stdout.readline()
    match = re.match(r"CONNECTED (\d+) FAILED (\d+)", line)
    if not match:
        stderr = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        raise BenchError(f"idle client said {line!r} {stderr[-500:]}")
    if not server.alive():
        raise BenchError(f"{server.spec.name} died under the idle crowd:\n{server.output_tail()}")
    # Failed connects (a server too slow to accept before the client's deadline) show up
    # as fewer connections held; the caller reports what the server actually accepted.
    return int(match.group(1))


def _await_accepted(server: RunningServer, wanted: int, timeout: float) -> int:
    """Wait until the server has accepted ``wanted`` connections or ``timeout`` passes.

    Returns how many it holds then (counted from its own sockets, not the clients' view).
    """
    deadline = time.monotonic() + timeout
    while (held := server.accepted(server.ports.resp)) < wanted and time.monotonic() < deadline:
        time.sleep(0.25)
    return held


def churn(server: RunningServer, sizes: Sizes) -> dict[str, float]:
    """New connection per request (connect, PING, close): connections/s and CPU µs each."""
    start_at = time.time() + 0.5
    argv = [
        sys.executable,
        "-m",
        "bench.churn_client",
        "--port",
        str(server.ports.resp),
        "--seconds",
        str(sizes.churn_seconds),
        "--max",
        str(sizes.churn_max_per_process),
        "--start-at",
        repr(start_at),
    ]
    before = server.usage().cpu_seconds
    procs = [spawn_client(argv) for _ in range(sizes.churn_processes)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=sizes.churn_seconds + 60)
            if proc.returncode != 0:
                raise BenchError(f"churn client exited {proc.returncode}: {err[-500:]}")
            results.append(json.loads(out))
    finally:
        for proc in procs:
            stop_client(proc)
    cpu = server.usage().cpu_seconds - before
    connections = sum(r["connections"] for r in results)
    errors = sum(r["errors"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    if connections == 0:
        raise BenchError(f"{server.spec.name}: no churn connection succeeded ({errors} errors)")
    return {
        "cps": connections / elapsed,
        "cpu_us": cpu / connections * 1e6,
        "errors": errors,
    }
