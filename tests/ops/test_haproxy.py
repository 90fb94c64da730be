"""A real HAProxy (send-proxy-v2) in front of two muxserver instances, with deploy/haproxy.cfg."""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from .support import ROOT, running, wait_for

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(
        shutil.which("haproxy") is None, reason="needs haproxy (Debian package haproxy)"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes, int]:
    """GET through HAProxy: (status, body, the client's own port)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        local = sock.getsockname()[1]
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        raise ConnectionResetError("no answer")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return int(head.split()[1]), body, local


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


def server_states(stats_port: int) -> dict[str, tuple[str, str]]:
    """HAProxy's view of each server: (status, last check status), from the CSV stats."""
    status, body, _ = get(stats_port, "/stats;csv")
    assert status == 200
    lines = body.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    states = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "muxservers" and row.get("svname", "").startswith("mux"):
            states[row["svname"]] = (row["status"], row["check_status"])
    return states


@pytest.mark.timeout(90)
def test_haproxy_balances_passes_client_addresses_checks_health_and_drains_losslessly():
    args = ["http", "--bind", "127.0.0.1:0", "--proxy-protocol", "v2", "--grace", "5"]
    with running(*args) as first, running(*args) as second:
        listen, stats = free_port(), free_port()
        backends = [first.address("http"), second.address("http")]
        env = {
            **os.environ,
            "MUX_LISTEN": f"127.0.0.1:{listen}",
            "MUX_STATS": f"127.0.0.1:{stats}",
            "MUX_BACKEND1": f"{backends[0][0]}:{backends[0][1]}",
            "MUX_BACKEND2": f"{backends[1][0]}:{backends[1][1]}",
        }
        config = os.path.join(ROOT, "deploy", "haproxy.cfg")
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", config],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            up = {"mux1": ("UP", "L7OK"), "mux2": ("UP", "L7OK")}
            wait_for(lambda: _quiet(server_states, stats) == up, timeout=15)

            # Balancing, and the client address reaching the service.
            pids = set()
            for _ in range(20):
                status, body, local = get(listen, "/whoami")
                assert status == 200
                whoami = json.loads(body)
                pids.add(whoami["pid"])
                assert whoami["client"] == f"127.0.0.1:{local}"
                assert whoami["peer"] != whoami["client"]  # the socket peer is HAProxy
            assert pids == {first.pid, second.pid}

            # Draining one instance under load loses no request.
            counts = {"ok": 0, "failed": 0}
            errors: list[str] = []
            stop = threading.Event()

            def load() -> None:
                deadline = time.monotonic() + 30
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        status, _, _ = get(listen, "/healthz")
                        counts["ok" if status == 200 else "failed"] += 1
                        if status != 200:
                            errors.append(str(status))
                    except OSError as exc:
                        counts["failed"] += 1
                        errors.append(repr(exc))

            threads = [threading.Thread(target=load) for _ in range(4)]
            for thread in threads:
                thread.start()
            try:
                wait_for(lambda: counts["ok"] > 200, timeout=15)
                out, _ = first.stop(signal.SIGTERM)
                assert "muxserver stopped: drained" in out
                before = counts["ok"]
                wait_for(lambda: counts["ok"] > before + 200, timeout=15)
                wait_for(lambda: _quiet(server_states, stats).get("mux1", ("",))[0] == "DOWN")
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
            assert counts["failed"] == 0, errors[:5]
            assert get(listen, "/whoami")[0] == 200
        finally:
            haproxy.terminate()
            try:
                haproxy.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                haproxy.kill()
                haproxy.communicate()


def _quiet(function, *args):
    try:
        return function(*args)
    except OSError:
        return {}
