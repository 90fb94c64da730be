"""``make bench``: compare muxserver with other I/O frameworks and two C servers.

Usage: ``python bench/run.py [--quick] [--only NAME ...] [--workloads KIND ...]``
(see bench/README.md for what each figure means).

The registry below is the list of servers. Each session runs every workload ``--runs`` times;
within one run the servers take turns (server A, B, C, then A, B, C again), so slow drift of the
machine spreads over all of them instead of biasing one. Every workload gets a fresh server
process, so what one test leaves behind (a grown heap, a store full of keys) never pollutes
the next.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report, workloads
from bench.process import CLIENT_CPU, ROOT, SERVER_CPU, BenchError, Ports, RunningServer, ServerSpec

RESULTS = ROOT / "bench" / "results"


def _python(name: str, module: str, *extra: str, notes: str = "") -> ServerSpec:
    """A server written in Python that keeps the bench/peers/cli.py contract."""

    def command(ports: Ports, _workdir: Path) -> list[str]:
        argv = [sys.executable, "-m", module, *extra]
        return [*argv, "--resp-port", str(ports.resp), "--http-port", str(ports.http)]

    return ServerSpec(
        name=name,
        command=command,
        protocols=frozenset({"resp", "http"}),
        requires=ROOT / (module.replace(".", "/") + ".py"),
        notes=notes,
    )


def _redis(ports: Ports, workdir: Path) -> list[str]:
    """redis-server without persistence, allowed the idle crowd."""
    return [
        "redis-server", "--port", str(ports.resp), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--maxclients", "19900",
        "--dir", str(workdir), "--logfile", str(workdir / "redis.log"),
    ]  # fmt: skip


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 19900; use epoll; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 65;
    keepalive_requests 100000000;
    server {{
        listen 127.0.0.1:{port} backlog=511;
        default_type text/plain;
        location / {{ return 200 "Hello, world\\n"; }}
    }}
}}
"""


def _nginx(ports: Ports, workdir: Path) -> list[str]:
    """nginx, one worker, from a generated config serving the same fixed body."""
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=ports.http))
    return ["nginx", "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)]


#: Every server the harness knows. A server whose ``requires`` file is missing is skipped with
#: a note; that is how the two muxserver entries behave until bench/servers/ has them.
REGISTRY: list[ServerSpec] = [
    _python("asyncio-protocol", "bench.peers.asyncio_protocol"),
    _python("asyncio-streams", "bench.peers.asyncio_streams"),
    _python("uvloop-protocol", "bench.peers.uvloop_protocol"),
    _python("twisted", "bench.peers.twisted_server"),
    _python("gevent", "bench.peers.gevent_server"),
    _python("socketserver-threading", "bench.peers.socketserver_threading"),
    _python(
        "python-floor",
        "bench.peers.python_floor",
        notes="python-floor is not a framework: a bare epoll loop doing recv, feed and send and "
        "nothing else (no limits, timers, flow control or ordering) -- the least any event loop "
        "written in Python can cost.",
    ),
    _python("muxserver", "bench.servers.muxserver_server", "--handlers", "minimal"),
    _python("muxserver-own", "bench.servers.muxserver_server", "--handlers", "own"),
    ServerSpec("redis", _redis, frozenset({"resp"}), announces_ready=False),
    ServerSpec("nginx", _nginx, frozenset({"http"}), announces_ready=False),
]

#: (figure prefix, test, pipeline depth) of the RESP throughput workloads.
RESP_CASES = [
    (f"resp {test} -P{depth}", test_arg, depth)
    for depth in (1, 16)
    for test, test_arg in (("ping", "ping_mbulk"), ("set", "set"), ("get", "get"))
]
WORKLOAD_KINDS = ("resp", "http", "idle", "churn")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 run, smaller sizes")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, or 1 with --quick)")
    names = [spec.name for spec in REGISTRY]
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=names,
        help=f"servers to run, from {', '.join(names)}; the asyncio-protocol and "
        "uvloop-protocol baselines are always added so ratios can be computed",
    )
    parser.add_argument(
        "--workloads",
        nargs="+",
        choices=WORKLOAD_KINDS,
        default=list(WORKLOAD_KINDS),
        help="which kinds of measurement to run (default: all)",
    )
    return parser.parse_args(argv)


def _pin_harness() -> list[str]:
    """Pin this process to the client CPU; return notes on anything that could not be done."""
    cpus = os.sched_getaffinity(0)
    if not {SERVER_CPU, CLIENT_CPU} <= cpus:
        return [f"CPUs {SERVER_CPU} and {CLIENT_CPU} are not both available ({sorted(cpus)})"]
    os.sched_setaffinity(0, {CLIENT_CPU})
    return []


def _meta(quick: bool, runs: int) -> dict[str, object]:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "mode": "quick" if quick else "full",
        "runs": runs,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


Measure = Callable[[RunningServer], dict[str, dict[str, float]]]


def _measures(kind: str, sizes: workloads.Sizes) -> tuple[str, Measure]:
    """The protocol a workload kind needs and a function running it on one server."""
    if kind == "resp":
        return "resp", lambda srv: {
            name: workloads.resp(
                srv, test, depth, sizes.resp_requests_p1 if depth == 1 else sizes.resp_requests_p16
            )
            for name, test, depth in RESP_CASES
        }
    if kind == "http":
        return "http", lambda srv: {"http GET": workloads.http(srv, sizes.http_seconds)}
    if kind == "idle":
        return "resp", lambda srv: {"idle": workloads.idle(srv, sizes)}
    return "resp", lambda srv: {"churn": workloads.churn(srv, sizes)}


def run_session(
    specs: list[ServerSpec], kinds: list[str], sizes: workloads.Sizes, runs: int, notes: list[str]
) -> report.Samples:
    """Run every workload kind on every server ``runs`` times; return the raw samples."""
    samples: report.Samples = {spec.name: {} for spec in specs}
    broken: set[tuple[str, str]] = set()  # (server, kind) pairs that failed once: not retried
    for run in range(runs):
        for kind in kinds:
            protocol, measure = _measures(kind, sizes)
            for spec in specs:
                if protocol not in spec.protocols or (spec.name, kind) in broken:
                    continue
                print(f"[run {run + 1}/{runs}] {kind:5} {spec.name:24}", end="", flush=True)
                started = time.monotonic()
                try:
                    with RunningServer(spec) as server:
                        workloads.smoke_test(server)
                        results = measure(server)
                    if server.exit_note:
                        notes.append(f"{spec.name}: {server.exit_note}")
                except BenchError as exc:
                    broken.add((spec.name, kind))
                    notes.append(f"{spec.name}, {kind}: FAILED: {exc}".replace("\n", " / "))
                    print(f" FAILED: {exc}", flush=True)
                    continue
                print(f" {time.monotonic() - started:5.1f}s", flush=True)
                for stage in sizes.idle_stages:
                    held = results.get("idle", {}).get(f"held@{stage}", stage)
                    if held < stage:
                        notes.append(
                            f"{spec.name}, idle, run {run + 1}: accepted only {held:.0f} of "
                            f"{stage} connections within {sizes.idle_accept_seconds:.0f}s; "
                            "its figures at that stage are per accepted connection"
                        )
                for workload, figures in results.items():
                    for quantity, value in figures.items():
                        samples[spec.name].setdefault(f"{workload}/{quantity}", []).append(value)
    return samples


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    sizes = workloads.QUICK if args.quick else workloads.FULL

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # so every try/finally stops its processes

    signal.signal(signal.SIGTERM, interrupted)
    notes = _pin_harness()
    wanted = set(args.only or [s.name for s in REGISTRY]) | set(report.BASELINES)
    specs = []
    for spec in REGISTRY:
        if spec.name not in wanted:
            continue
        reason = spec.missing()
        if reason:
            notes.append(f"{spec.name}: skipped, {reason}")
            continue
        specs.append(spec)
    meta = _meta(args.quick, runs)
    samples: report.Samples = {}
    try:
        samples = run_session(specs, args.workloads, sizes, runs, notes)
    except KeyboardInterrupt:
        print("interrupted: every server and client has been stopped", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    names = [spec.name for spec in specs]
    table = report.markdown(samples, names, meta, notes)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    report.write_json(RESULTS / "raw" / f"{stamp}.json", samples, meta, notes)
    # Only a run of every server and workload replaces the README's table and chart.
    whole = args.only is None and set(args.workloads) == set(WORKLOAD_KINDS)
    base = "latest" if whole else "partial"
    (RESULTS / f"{base}.md").write_text(table)
    report.chart(RESULTS / f"{base}.png", samples, names, meta)
    print()
    print(table)
    print(f"written: {RESULTS / base}.md, {RESULTS / base}.png, raw/{stamp}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
