"""Behaviour that needs a process of its own: signals and the file-descriptor limit."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .support import recv_all, recv_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextmanager
def line_server(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Run tests/reactor/serve_lines.py; yield the process and its port; always reap it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reactor.serve_lines", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT "), line + (process.stderr.read() if process.stderr else "")
        yield process, int(line.split()[1])
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(30)
def test_sigterm_drains_requests_in_flight_and_answers_every_one():
    with line_server("--delay", "0.3") as (process, port):
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        for number, client in enumerate(clients):
            client.sendall(b"".join(b"c%d r%d\n" % (number, i) for i in range(20)))
        time.sleep(0.1)  # the requests are read and in flight now
        process.send_signal(signal.SIGTERM)
        for number, client in enumerate(clients):
            expected = b"".join(b"C%d R%d\n" % (number, i) for i in range(20))
            assert recv_all(client, timeout=10) == expected  # every answer, then EOF
            client.close()
        out, _ = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "STOPPED drained in" in out
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.timeout(40)
def test_at_the_descriptor_limit_the_server_backs_off_serves_and_recovers():
    with line_server("--nofile", "64") as (process, port):
        first = socket.create_connection(("127.0.0.1", port), timeout=5)
        first.sendall(b"before\n")
        assert recv_until(first, 7) == b"BEFORE\n"
        crowd = []
        for _ in range(100):  # well past 64 descriptors on the server side
            crowd.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)  # the server hits EMFILE and starts backing off
        spent = cpu_seconds(process.pid)
        time.sleep(2.0)
        spent = cpu_seconds(process.pid) - spent
        print(f"CPU at the fd limit: {spent:.3f}s in 2s")
        assert spent < 0.5, f"the server burned {spent:.2f}s of CPU in 2s at the fd limit"

        first.sendall(b"during\n")  # established clients are still served
        assert recv_until(first, 7) == b"DURING\n"

        for client in crowd:
            client.close()
        time.sleep(1.5)  # descriptors free up; the back-off (at most 1 s) ends
        late = socket.create_connection(("127.0.0.1", port), timeout=5)
        late.sendall(b"after\n")
        assert recv_until(late, 6) == b"AFTER\n"
        late.close()
        first.close()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "out of file descriptors" in err
