"""A real HAProxy (send-proxy-v2) in front of two muxserver instances, with deploy/haproxy.cfg."""

import json
import signal
import socket
import threading
import time

import pytest

from .haproxy import http_body, needs_haproxy, read_all, running_haproxy
from .support import running, wait_for

pytestmark = needs_haproxy


def get(port: int, path: str) -> tuple[int, bytes, int]:
    """GET through HAProxy: (status, body, the client's own port)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        local = sock.getsockname()[1]
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        head, body = http_body(read_all(sock))
    if not head:
        raise ConnectionResetError("no answer")
    return int(head.split()[1]), body, local


@pytest.mark.timeout(90)
def test_haproxy_balances_passes_client_addresses_checks_health_and_drains_losslessly():
    args = ["http", "--bind", "127.0.0.1:0", "--proxy-protocol", "v2", "--grace", "5"]
    with running(*args) as first, running(*args) as second:
        backends = [first.address("http"), second.address("http")]
        with running_haproxy("haproxy.cfg", backends) as haproxy:
            listen = haproxy.listen
            haproxy.wait_until(
                lambda states: states == {"mux1": ("UP", "L7OK"), "mux2": ("UP", "L7OK")}
            )

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
                haproxy.wait_until(lambda states: states.get("mux1", ("",))[0] == "DOWN")
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
            assert counts["failed"] == 0, errors[:5]
            assert get(listen, "/whoami")[0] == 200
