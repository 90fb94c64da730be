"""systemd: socket activation and sd_notify, with the environment and notify socket faked."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from muxserver.systemd import Notifier, listen_fds

from .support import ROOT

# Runs in the child: put the passed socket on fd 3, as systemd does, then exec the server with
# LISTEN_PID naming the pid the exec keeps.
_EXEC_AS_SYSTEMD = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "muxserver", *sys.argv[2:]])
"""


def notifications(sock: socket.socket, until: str, timeout: float = 10.0) -> list[str]:
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(until in m for m in messages):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        messages.append(sock.recv(4096).decode())
    return messages


def test_sockets_are_taken_only_by_the_pid_they_were_passed_to():
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
    assert listen_fds(env) == []
    assert env == {}  # unset, so nothing started later takes them
    with pytest.raises(ValueError, match="are not numbers"):
        listen_fds({"LISTEN_PID": "me", "LISTEN_FDS": "1"})


def test_notifier_without_a_socket_does_nothing_and_reads_the_watchdog_interval():
    assert not Notifier({}).ready()
    notifier = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000"})
    assert notifier.watchdog_interval == 1.0
    assert Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).watchdog_interval is None


@pytest.mark.timeout(30)
@pytest.mark.parametrize("workers", [0, 2])
def test_socket_activation_ready_watchdog_and_stopping(tmp_path, workers):
    notify_path = str(tmp_path / "notify")
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify,
        socket.socket() as listening,
    ):
        notify.bind(notify_path)
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        env = {
            **os.environ,
            "LISTEN_FDS": "1",
            "LISTEN_FDNAMES": "web",
            "NOTIFY_SOCKET": notify_path,
            "WATCHDOG_USEC": "200000",
        }
        args = ["echo", "--bind", "systemd:web", "--workers", str(workers)]
        process = subprocess.Popen(
            [sys.executable, "-c", _EXEC_AS_SYSTEMD, str(listening.fileno()), *args],
            pass_fds=[listening.fileno()],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        listening.close()  # only the server holds it now
        try:
            seen = notifications(notify, "READY=1")
            assert f"MAINPID={process.pid}" in seen[-1]
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.sendall(b"activated")
                assert client.recv(100) == b"activated"
            assert "WATCHDOG=1" in notifications(notify, "WATCHDOG=1", timeout=2)
            process.send_signal(signal.SIGTERM)
            assert any("STOPPING=1" in m for m in notifications(notify, "STOPPING=1"))
            out, err = process.communicate(timeout=15)
            assert process.returncode == 0, err
            assert f"echo  tcp 127.0.0.1:{port}" in out
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
