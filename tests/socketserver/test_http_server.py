"""The standard library's http.server, imported after aliasing socketserver, serves curl."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CURL = shutil.which("curl")

SERVER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import muxserver.socketserver
sys.modules["socketserver"] = muxserver.socketserver
import functools, http.server, threading
assert http.server.socketserver is muxserver.socketserver
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
http.server.SimpleHTTPRequestHandler.log_message = lambda *args: None
with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
    print(server.server_address[1], flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()
print("stopped", flush=True)
"""


@pytest.mark.external
@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_threading_http_server_serves_files_to_curl(tmp_path: Path) -> None:
    assert CURL is not None
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_bytes(b"hello from muxserver\n")
    (site / "big.bin").write_bytes(bytes(range(256)) * 4096)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", SERVER, str(REPO), str(site)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        for name in ("hello.txt", "big.bin", "hello.txt"):
            fetched = subprocess.run(
                [CURL, "-sS", "--fail", "--max-time", "10", f"{base}/{name}"],
                capture_output=True,
                timeout=20,
                check=True,
            )
            assert fetched.stdout == (site / name).read_bytes()
        missing = subprocess.run(
            [CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/nope"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert missing.stdout == "404"
        proc.stdin.close()  # the server shuts down when its stdin ends
        assert proc.stdout.readline().strip() == "stopped"
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
