"""Running the real command line in a subprocess, for the operations tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Server:
    """A ``python -m muxserver ...`` process whose banner has been read."""

    def __init__(self, process: subprocess.Popen[str], banner: list[str]) -> None:
        self.process = process
        self.banner = banner

    def address(self, service: str, kind: str = "tcp") -> tuple[str, int]:
        """The (host, port) the banner gives for ``service`` over ``kind``."""
        for line in self.banner:
            words = line.split()
            if len(words) == 3 and words[0] == service and words[1] == kind:
                host, _, port = words[2].rpartition(":")
                return host.strip("[]"), int(port)
        raise AssertionError(f"no {service} {kind} in {self.banner}")

    @property
    def pid(self) -> int:
        """The pid of the main process (the supervisor with --workers)."""
        return self.process.pid

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[str, str]:
        """Signal, wait, and return the rest of (stdout, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=timeout)
        return out, err


def start(*args: str, env: dict[str, str] | None = None, timeout: float = 15.0) -> Server:
    """Start the command line and read its banner (up to the ``muxserver X: pid`` line)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "muxserver", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    banner: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            _, err = process.communicate(timeout=5)
            raise AssertionError(f"exited {process.returncode} before its banner: {err}")
        banner.append(line.rstrip("\n"))
        if line.startswith("muxserver ") and ": pid " in line:
            return Server(process, banner)
    process.kill()
    process.communicate()
    raise AssertionError(f"no banner within {timeout}s: {banner}")


@contextlib.contextmanager
def running(*args: str, **options: Any) -> Iterator[Server]:
    """:func:`start`, and make sure the process (and its process group's workers) is gone."""
    server = start(*args, **options)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def run_cli(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m muxserver *args`` to completion; its output is captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "muxserver", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def line_exchange(address: tuple[str, int], line: bytes, timeout: float = 5.0) -> bytes:
    """Send ``line`` and a newline on a fresh connection; return the reply up to its newline."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(line + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        return data


def http_get(address: tuple[str, int], path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP/1.1 GET with ``Connection: close``: (status, body)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        raise ConnectionResetError("closed without an answer")
    return int(head.split()[1]), body


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return sorted(found)


def wait_for(condition: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it is truthy; return it, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
