"""Servers and load clients as child processes: start, pin, wait for ready, measure, stop, reap.

Every process the harness starts goes through this module, so "every process is killed by PID
and reaped" is one rule in one place:

* :class:`ServerSpec` says how to build a server's command line for given ports;
  :class:`RunningServer` is a context manager that starts it pinned to :data:`SERVER_CPU`,
  waits until it is ready, and on exit sends SIGTERM to its PID, waits, escalates to SIGKILL
  for it and any child it had (nginx's worker), and reaps it.
* :func:`run_client` runs one load generator to completion, pinned to :data:`CLIENT_CPU`, with a
  timeout; :func:`spawn_client` starts one that the caller must pass to :func:`stop_client`.

Servers and clients get their own session (``start_new_session``) so that a Ctrl-C in the
terminal reaches only the harness, which then stops them itself, in order.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SERVER_CPU = 0
CLIENT_CPU = 1
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class BenchError(Exception):
    """A server or load generator misbehaved; the message says which and how."""


@dataclass(frozen=True)
class Ports:
    """The ports a server instance listens on (0 = that protocol is off)."""

    resp: int = 0
    http: int = 0


@dataclass(frozen=True)
class ServerSpec:
    """One entry of the server registry.

    ``command`` builds the argv for the given ports and a private scratch directory.
    ``announces_ready`` is true for programs that keep the ``READY`` contract of
    ``bench/peers/cli.py``; for the others readiness is "every port accepts a connection".
    ``requires`` is a file that must exist for the server to be available (``None``: always).
    """

    name: str
    command: Callable[[Ports, Path], list[str]]
    protocols: frozenset[str]
    announces_ready: bool = True
    requires: Path | None = None
    notes: str = ""

    def missing(self) -> str | None:
        """Return why this server cannot run here, or None when it can."""
        if self.requires is not None and not self.requires.exists():
            return f"{self.requires.relative_to(ROOT)} does not exist yet"
        return None


@dataclass
class Usage:
    """Resource usage of a server's whole process tree at one instant."""

    cpu_seconds: float
    rss_bytes: int
    fds: int


@dataclass
class RunningServer:
    """A started server; use as a context manager so it is always stopped and reaped."""

    spec: ServerSpec
    ports: Ports = field(default_factory=Ports)
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    exit_note: str = ""
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> RunningServer:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"bench-{self.spec.name}-")
        self.workdir = Path(self._tmp.name)
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    @property
    def pid(self) -> int:
        """The server's PID (the master's, for nginx)."""
        assert self.process is not None
        return self.process.pid

    def _start(self) -> None:
        assert self.workdir is not None
        resp, http = free_ports(2)
        self.ports = Ports(
            resp=resp if "resp" in self.spec.protocols else 0,
            http=http if "http" in self.spec.protocols else 0,
        )
        argv = ["taskset", "-c", str(SERVER_CPU), *self.spec.command(self.ports, self.workdir)]
        log = self.workdir / "server.out"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while self.spec.announces_ready and b"READY" not in log.read_bytes():
            self._check_alive_before(deadline, "print READY")
            time.sleep(0.02)
        for port in (self.ports.resp, self.ports.http):
            while port and not _accepts(port):
                self._check_alive_before(deadline, f"accept on port {port}")
                time.sleep(0.02)

    def _check_alive_before(self, deadline: float, what: str) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise BenchError(
                f"{self.spec.name} exited with status {self.process.returncode} before it "
                f"could {what}; its output ends with:\n{self.output_tail()}"
            )
        if time.monotonic() > deadline:
            raise BenchError(f"{self.spec.name} did not {what} within {READY_TIMEOUT:.0f}s")

    def output_tail(self, lines: int = 15) -> str:
        """The last lines the server wrote to stdout/stderr (for error messages)."""
        if self.workdir is None:
            return ""
        log = self.workdir / "server.out"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        """True while the server process has not exited."""
        return self.process is not None and self.process.poll() is None

    def usage(self) -> Usage:
        """CPU seconds (user+system), RSS and open fds summed over the server's process tree."""
        if not self.alive():
            raise BenchError(f"{self.spec.name} died; output:\n{self.output_tail()}")
        root = psutil.Process(self.pid)
        cpu = 0.0
        rss = fds = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess), proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
                fds += proc.num_fds()
        return Usage(cpu_seconds=cpu, rss_bytes=rss, fds=fds)

    def accepted(self, port: int) -> int:
        """Connections on ``port`` that the server has accepted and that are still established.

        Counted from the sockets its processes hold, so connections still waiting in the
        kernel's accept queue, and those the peer has already closed, are not included.
        """
        root = psutil.Process(self.pid)
        count = 0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                for conn in proc.net_connections(kind="tcp"):
                    if conn.laddr and conn.laddr.port == port and conn.status == "ESTABLISHED":
                        count += 1
        return count

    def _stop(self) -> None:
        """SIGTERM the server by PID, wait, SIGKILL it and its children if needed, reap it."""
        try:
            if self.process is not None:
                children: list[psutil.Process] = []
                with contextlib.suppress(psutil.Error):
                    children = psutil.Process(self.pid).children(recursive=True)
                if self.process.poll() is None:
                    self.process.send_signal(signal.SIGTERM)
                    try:
                        self.process.wait(STOP_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        self.exit_note = f"still running {STOP_TIMEOUT:.0f}s after SIGTERM; killed"
                        self.process.kill()
                        self.process.wait()
                code = self.process.returncode
                if not self.exit_note and code not in (0, -signal.SIGTERM):
                    self.exit_note = f"exited with status {code} on SIGTERM"
                for child in children:  # e.g. an nginx worker that outlived its master
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                        child.wait(STOP_TIMEOUT)
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None


def child_env() -> dict[str, str]:
    """Environment for children: the harness's, with the repo root importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports free on 127.0.0.1, below the ephemeral range.

    Staying below the ephemeral range keeps the churn and idle clients' own source ports
    from ever colliding with a server port chosen here.
    """
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 32000)
        if port in ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        ports.append(port)
    return ports


def _accepts(port: int) -> bool:
    """True when something accepts a TCP connection on 127.0.0.1:port."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def run_client(argv: list[str], timeout: float) -> str:
    """Run a load generator pinned to the client CPU; return its stdout.

    Raises :class:`BenchError` on a non-zero exit or when it outlives ``timeout`` (it is then
    killed by PID and reaped by :func:`subprocess.run`).
    """
    try:
        done = subprocess.run(
            ["taskset", "-c", str(CLIENT_CPU), *argv],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{argv[0]} did not finish within {timeout:.0f}s; killed") from None
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(argv)} exited with status {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return done.stdout.decode(errors="replace")


def spawn_client(argv: list[str]) -> subprocess.Popen[str]:
    """Start a long-lived load client pinned to the client CPU, with pipes for stdin/stdout."""
    return subprocess.Popen(
        ["taskset", "-c", str(CLIENT_CPU), *argv],
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_client(proc: subprocess.Popen[str]) -> None:
    """Close the client's stdin, SIGTERM it by PID, SIGKILL it if needed, and reap it."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
