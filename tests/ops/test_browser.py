"""The status page in a real headless Chromium (driven through chromedriver's HTTP API)."""

import json
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest

from .support import running, wait_for

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs chromium and chromedriver (Debian packages chromium, chromium-driver)",
    ),
]


class WebDriver:
    """The few WebDriver commands the test needs, over plain HTTP."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)["value"]
        except urllib.error.HTTPError as error:  # say what the driver said (a crashed tab...)
            detail = error.read().decode(errors="replace")[:500]
            raise AssertionError(f"WebDriver {method} {path}: {error.code} {detail}") from None

    def start(self, profile: str) -> None:
        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
        ]
        options = {"binary": CHROMIUM, "args": args}
        value = self.call(
            "POST",
            "/session",
            {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}},
        )
        self.session = value["sessionId"]

    def script(self, source: str) -> object:
        return self.call(
            "POST", f"/session/{self.session}/execute/sync", {"script": source, "args": []}
        )

    def go(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def quit(self) -> None:
        if self.session:
            self.call("DELETE", f"/session/{self.session}")


ROWS = (
    "return Array.from(document.querySelectorAll('#connections tbody tr')).map("
    "tr => Array.from(tr.children).map(td => td.textContent))"
)
SEQUENCE = "return Number(document.getElementById('sequence').textContent)"
OPEN = "return Number(document.getElementById('summary').dataset.open || 0)"


@pytest.mark.timeout(90)
def test_the_status_page_shows_the_connection_table_and_keeps_it_current():
    with (
        running("echo", "--bind", "127.0.0.1:0", "--status", "127.0.0.1:0") as server,
        tempfile.TemporaryDirectory() as profile,
    ):
        echo, status = server.address("echo"), server.address("http")
        clients = [socket.create_connection(echo, timeout=5) for _ in range(300)]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        driver_process = subprocess.Popen(
            [CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        driver = WebDriver(port)
        try:
            wait_for(lambda: _ready(driver), timeout=20)
            driver.start(profile)
            driver.go(f"http://127.0.0.1:{status[1]}/")
            wait_for(lambda: driver.script(OPEN) >= 300, timeout=20)
            rows = driver.script(ROWS)
            assert len(rows) == 50  # one page, not 300 rows
            clients_shown = {row[2] for row in rows}
            ours = {f"127.0.0.1:{c.getsockname()[1]}" for c in clients}
            assert len(clients_shown & ours) >= 49
            assert {row[1] for row in rows} <= {"echo", "http"}
            assert "page 1 of" in driver.script(
                "return document.getElementById('pageinfo').textContent"
            )

            # It refreshes by itself: more clients, some traffic, and the table follows.
            first = driver.script(SEQUENCE)
            more = [socket.create_connection(echo, timeout=5) for _ in range(100)]
            for sock in more[:3]:
                sock.sendall(b"x" * 1000)
                sock.recv(2000)
            wait_for(lambda: driver.script(OPEN) >= 400, timeout=10)
            assert driver.script(SEQUENCE) >= first + 1

            # Sorting by a column heading (descending on the second click) reorders it.
            driver.script("document.querySelector('th[data-sort=bytes_in]').click()")
            driver.script("document.querySelector('th[data-sort=bytes_in]').click()")

            def echo_top() -> list[str]:
                return [row[7] for row in driver.script(ROWS) if row[1] == "echo"][:3]

            wait_for(lambda: echo_top() == ["1000", "1000", "1000"], timeout=10)
            column = [int(row[7]) for row in driver.script(ROWS)]
            assert column == sorted(column, reverse=True)
            assert (
                driver.script("return document.querySelector('th.sorted').dataset.sort")
                == "bytes_in"
            )
            for sock in clients + more:
                sock.close()
            wait_for(lambda: driver.script(OPEN) < 10, timeout=10)
        finally:
            try:
                driver.quit()
            finally:
                driver_process.terminate()
                driver_process.wait(10)
        server.stop()


def _ready(driver: WebDriver) -> bool:
    try:
        return bool(driver.call("GET", "/status")["ready"])
    except OSError:
        return False
