"""The demo's --http-port: /healthz and a status page (the page itself: tests/ops)."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def fetch(address: tuple[str, int], path: str) -> tuple[int, str]:
    """GET ``path`` and return the status and the body."""
    client = http.client.HTTPConnection(address[0], address[1], timeout=5)
    try:
        client.request("GET", path)
        response = client.getresponse()
        return response.status, response.read().decode()
    finally:
        client.close()


@pytest.mark.timeout(30)
def test_the_demo_serves_healthz_and_a_page_on_its_http_port() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "muxserver", "--kv-port", "0", "--http-port", "0",
         "--echo-port", "off", "--chat-port", "off", "--rpc-port", "off"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline().rstrip("\n") for _ in range(2)]
        assert banner[0].startswith("kv    tcp 127.0.0.1:"), banner
        assert banner[1].startswith("http  tcp 127.0.0.1:"), banner
        port = int(banner[1].rsplit(":", 1)[1])
        # The demo may serve a richer status page (issue 9); issue 5 asks for this much.
        status, body = fetch(("127.0.0.1", port), "/healthz")
        assert (status, body.strip()) == (200, "ok")
        status, page = fetch(("127.0.0.1", port), "/")
        assert status == 200 and "<html" in page.lower()
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
        assert "muxserver stopped: drained" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
