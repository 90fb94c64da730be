"""The demo command: the chat room with three clients, port flags and clear start-up errors."""

import signal
import socket
import subprocess
import sys
import time

import pytest

from muxserver.services.chat import ChatService, chat_handler
from muxserver.testing.live import ReactorThread, connect
from tests.ops.support import ROOT, run_cli


def read_lines(sock: socket.socket, count: int, timeout: float = 5.0) -> list[bytes]:
    """Read exactly ``count`` lines (or fail on timeout)."""
    deadline = time.monotonic() + timeout
    data = b""
    while data.count(b"\n") < count:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data.split(b"\n")[:count]


def test_three_chat_members_see_each_other_join_talk_and_leave():
    with ReactorThread() as live:
        _, address = live.serve(chat_handler, ChatService(), name="chat")
        alice = connect(address)
        assert read_lines(alice, 1)[0].startswith(b"* welcome guest")
        alice.sendall(b"/nick alice\n")
        assert read_lines(alice, 1) == [b"* you are now alice"]
        bob = connect(address)
        read_lines(bob, 1)
        bob.sendall(b"/nick bob\n")
        read_lines(bob, 1)
        carol = connect(address)
        read_lines(carol, 1)
        assert read_lines(alice, 3)[2].endswith(b" joined")  # bob joined, renamed; carol joined
        assert read_lines(bob, 1)[0].endswith(b" joined")  # carol

        bob.sendall(b"hello everyone\n")
        assert read_lines(alice, 1) == [b"bob: hello everyone"]
        assert read_lines(carol, 1) == [b"bob: hello everyone"]
        carol.sendall(b"/who\n")
        assert read_lines(carol, 1)[0].startswith(b"* here: alice, bob, guest")

        bob.sendall(b"/quit\n")
        assert read_lines(bob, 1) == [b"* bye"]
        assert bob.recv(10) == b""
        assert read_lines(alice, 1) == [b"* bob left"]
        assert read_lines(carol, 1) == [b"* bob left"]
        for sock in (alice, bob, carol):
            sock.close()


def test_a_bad_port_flag_is_one_clear_line_and_status_2():
    result = run_cli("--echo-port", "seventy")
    assert result.returncode == 2
    assert "expected a port number or 'off'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_address_in_use_is_one_clear_line_and_status_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "--echo-port", str(port), "--chat-port", "off", "--rpc-port", "off",
            "--kv-port", "off", "--http-port", "off",
        )  # fmt: skip
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(20)
def test_the_demo_prints_its_addresses_and_stops_gracefully_on_sigint():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "muxserver",
            "--echo-port",
            "0",
            "--chat-port",
            "0",
            "--rpc-port",
            "off",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(3)]
        assert banner[0].startswith("echo  tcp 127.0.0.1:")
        port = int(banner[0].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"round trip")
            assert client.recv(100) == b"round trip"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "muxserver stopped: drained" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
