"""100,000 idle clients on one box: ``muxserver echo --workers 6`` holds them all.

Usage::

    .venv/bin/python bench/idle_100k.py [--connections 100000] [--workers 6] [--json out.json]

What it does:

1. starts ``python -m muxserver echo --bind 127.0.0.1:PORT --workers N --max-connections M``
   (M keeps each worker under the per-process descriptor limit; a full worker stops accepting
   and the others take the rest);
2. forks client processes, each holding up to ``--per-process`` idle connections (one
   descriptor each, so each stays under its own limit). Clients bind to source addresses
   127.0.0.2, 127.0.0.3, ... before connecting, because one source address has only ~28,000
   ephemeral ports towards one server port;
3. once every connection is established, one more client measures echo round trips (p50, p99,
   max) while the idle ones are held;
4. reports the server's memory (RSS and PSS of the supervisor and its workers, from /proc),
   the connections the kernel shows established, the timings, then stops the server with
   SIGTERM and prints its one-line summary.

Standalone (standard library only); the figures go to stdout and, with ``--json``, to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the port at connect(), per destination


def hold_connections(port: int, count: int, source: str, report: int, release: int) -> None:
    """Child process: open ``count`` connections from ``source``, report, hold until told."""
    socks: list[socket.socket] = []
    pending: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    failed = 0
    started = 0
    while len(socks) + failed < count:
        while started < count and len(pending) < 500:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            code = sock.connect_ex(("127.0.0.1", port))
            started += 1
            if code not in (0, errno.EINPROGRESS):
                failed += 1
                sock.close()
                continue
            pending[sock.fileno()] = sock
            selector.register(sock, selectors.EVENT_WRITE)
        for key, _ in selector.select(timeout=5):
            sock = pending.pop(key.fd)
            selector.unregister(sock)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                failed += 1
                sock.close()
            else:
                socks.append(sock)
    selector.close()
    os.write(report, f"{len(socks)} {failed}\n".encode())
    os.read(release, 1)  # hold every connection until the parent says so
    for sock in socks:
        sock.close()


def measure_latency(port: int, rounds: int) -> list[float]:
    """Echo round trips (seconds) of one active client."""
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        payload = b"x" * 64
        for _ in range(rounds):
            start = time.perf_counter()
            sock.sendall(payload)
            got = 0
            while got < len(payload):
                got += len(sock.recv(4096))
            times.append(time.perf_counter() - start)
    return times


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the workers)."""
    found = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def memory(pids: list[int]) -> dict[str, float]:
    """RSS and PSS in MiB, summed over ``pids`` (PSS shares pages fairly between them)."""
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return {"rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1)}


def established(port: int) -> int:
    """Established server-side connections on ``port``, as the kernel counts them."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return len(out.splitlines())


def main() -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--per-process", type=int, default=17_000)
    parser.add_argument("--rounds", type=int, default=2000, help="echo round trips measured")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    per_process = min(args.per_process, limit - 200)
    max_per_worker = limit - 500
    if args.workers * max_per_worker < args.connections:
        print(f"{args.workers} workers x {max_per_worker} fds cannot hold {args.connections}")
        return 2
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "muxserver", "echo", "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.workers), "--max-connections", str(max_per_worker),
        "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    children: list[tuple[int, int, int]] = []
    results: dict[str, Any] = {"connections_wanted": args.connections, "workers": args.workers}
    try:
        assert server.stdout is not None
        while "pid" not in server.stdout.readline():
            pass
        baseline = memory(process_tree(server.pid))
        started = time.monotonic()
        remaining, index = args.connections, 0
        while remaining > 0:
            count = min(per_process, remaining)
            source = f"127.0.0.{2 + index}"
            report_r, report_w = os.pipe()
            release_r, release_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    os.close(report_r)
                    os.close(release_w)
                    hold_connections(port, count, source, report_w, release_r)
                    status = 0
                finally:
                    os._exit(status)
            os.close(report_w)
            os.close(release_r)
            children.append((pid, report_r, release_w))
            remaining -= count
            index += 1
        held = failed = 0
        for _, report_r, _ in children:
            line = b""
            while not line.endswith(b"\n"):
                line += os.read(report_r, 100)
            ok, bad = map(int, line.split())
            held += ok
            failed += bad
        connect_seconds = time.monotonic() - started
        time.sleep(1.0)  # let the workers accept the last of the backlog
        kernel = established(port)
        latencies = measure_latency(port, args.rounds)
        loaded = memory(process_tree(server.pid))
        latencies.sort()
        results.update(
            connections_held=held,
            connect_failures=failed,
            established_per_kernel=kernel,
            client_processes=len(children),
            connect_seconds=round(connect_seconds, 2),
            memory_idle_server=baseline,
            memory_with_clients=loaded,
            kib_per_connection=round((loaded["pss_mib"] - baseline["pss_mib"]) * 1024 / held, 2)
            if held
            else None,
            echo_p50_ms=round(statistics.median(latencies) * 1000, 3),
            echo_p99_ms=round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
            echo_max_ms=round(latencies[-1] * 1000, 3),
        )
    finally:
        for _, report_r, release_w in children:
            with contextlib.suppress(OSError):
                os.write(release_w, b"x")
            os.close(release_w)
            os.close(report_r)
        for pid, _, _ in children:
            os.waitpid(pid, 0)
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=120)
        results["server_summary"] = out.strip().splitlines()[-1] if out.strip() else ""
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
