"""A real HAProxy for the integration tests: started on a config from deploy/, asked for its view
of the backends, and always stopped and reaped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .support import ROOT, wait_for

needs_haproxy = [
    pytest.mark.external,
    pytest.mark.skipif(
        shutil.which("haproxy") is None, reason="needs haproxy (Debian package haproxy)"
    ),
]
"""``pytestmark`` for a module of HAProxy tests."""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_all(sock: socket.socket) -> bytes:
    """Everything up to the peer's end of the stream (HTTP/1.0: it closes after answering)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked HTTP body."""
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


def http_body(data: bytes) -> tuple[bytes, bytes]:
    """``(head, body)`` of a whole HTTP response, the body de-chunked if need be."""
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return head, body


@dataclass
class HAProxy:
    """A running HAProxy: where clients connect, and its stats port."""

    listen: int
    stats: int
    process: subprocess.Popen[str]

    def server_states(self) -> dict[str, tuple[str, str]]:
        """HAProxy's view of each backend server: (status, last check status), from the CSV
        stats; ``{}`` while the stats port does not answer yet."""
        try:
            with socket.create_connection(("127.0.0.1", self.stats), timeout=5) as sock:
                sock.sendall(b"GET /stats;csv HTTP/1.0\r\nHost: x\r\n\r\n")
                head, body = http_body(read_all(sock))
        except OSError:
            return {}
        assert b" 200 " in head.split(b"\r\n")[0], head
        lines = body.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        states: dict[str, tuple[str, str]] = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "muxservers" and row.get("svname", "").startswith("mux"):
                states[row["svname"]] = (row["status"], row["check_status"])
        return states

    def wait_until(self, predicate: Callable[[dict[str, tuple[str, str]]], Any]) -> None:
        """Wait (15 s at most) until ``predicate(server_states())`` holds."""
        assert wait_for(lambda: predicate(self.server_states()), timeout=15), self.server_states()


@contextlib.contextmanager
def running_haproxy(config: str, backends: list[tuple[str, int]]) -> Iterator[HAProxy]:
    """Run ``haproxy -db -f deploy/<config>`` with two backends; stop and reap it afterwards.

    The config reads MUX_LISTEN, MUX_STATS, MUX_BACKEND1 and MUX_BACKEND2 from the environment.
    """
    listen, stats = free_port(), free_port()
    env = {
        **os.environ,
        "MUX_LISTEN": f"127.0.0.1:{listen}",
        "MUX_STATS": f"127.0.0.1:{stats}",
        "MUX_BACKEND1": f"{backends[0][0]}:{backends[0][1]}",
        "MUX_BACKEND2": f"{backends[1][0]}:{backends[1][1]}",
    }
    process = subprocess.Popen(
        ["haproxy", "-db", "-f", os.path.join(ROOT, "deploy", config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield HAProxy(listen, stats, process)
    finally:
        process.terminate()
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
    assert process.returncode in (0, -signal.SIGTERM, 143), err
