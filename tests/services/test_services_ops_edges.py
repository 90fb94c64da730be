"""Edges of the demo services and the operations side found in review: AUTH and HELLO as a
default Redis answers them, chat names, malformed status targets, bad flags and factories,
live Unix socket files, and a stop signal during a reload's drain."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from muxserver.handlers.resp import RespHandler, encode_command
from muxserver.services.kv import KVService
from muxserver.testing import HandlerHarness
from tests.ops.support import children_of, http_get, line_exchange, run_cli, running, wait_for
from tests.services.replies import split_replies

# --- kv: AUTH ----------------------------------------------------------------------------------


def _ask(*commands: tuple[Any, ...]) -> list[bytes]:
    harness = HandlerHarness(RespHandler(), KVService(lambda: 1000.0))
    for command in commands:
        harness.feed(encode_command(command))
    harness.events()
    return split_replies(harness.take_output())


@pytest.mark.timeout(10)
def test_auth_with_a_username_answers_as_a_default_redis_does() -> None:
    assert _ask(
        ("AUTH", "default", "anything"), ("AUTH", "nobody", "x"), ("AUTH", "a", "b", "c")
    ) == [
        b"+OK\r\n",
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        b"-ERR syntax error\r\n",
    ]


@pytest.mark.timeout(10)
def test_hello_with_credentials_of_an_unknown_user_is_refused() -> None:
    replies = _ask(("HELLO", "2", "AUTH", "nobody", "x", "SETNAME", "n"), ("CLIENT", "GETNAME"))
    assert replies == [
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        b"$-1\r\n",
    ]


# --- chat --------------------------------------------------------------------------------------


class _Lines:
    """A line reader over a socket that keeps what it read past the lines asked for."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.file = self.sock.makefile("rb")

    def line(self) -> bytes:
        data = self.file.readline()
        assert data.endswith(b"\n"), data
        return data[:-1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def chat_address() -> Iterator[tuple[str, int]]:
    with running("chat", "--bind", "127.0.0.1:0") as server:
        yield server.address("chat")
        server.stop()


@pytest.mark.timeout(30)
def test_a_newcomers_default_name_never_collides_with_a_chosen_nick(chat_address) -> None:
    alice = _Lines(chat_address)
    bob: _Lines | None = None
    try:
        welcome = alice.line()  # "* welcome guestN; 1 here; ..."
        number = int(welcome.split()[2].rstrip(b";")[len(b"guest") :])
        taken = b"guest%d" % (number + 1)
        alice.send(b"/nick " + taken + b"\n")
        assert alice.line() == b"* you are now " + taken
        bob = _Lines(chat_address)
        bob.line()
        bob.send(b"/who\n")
        names = bob.line().removeprefix(b"* here: ").split(b", ")
        assert len(names) == len(set(names)) == 2, names
    finally:
        alice.close()
        if bob is not None:
            bob.close()


# --- the status service -----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_target_urlsplit_rejects_is_a_400_not_a_500() -> None:
    with running("http", "--bind", "127.0.0.1:0") as server:
        status, _ = http_get(server.address("http"), "//[/status.json")
        _, err = server.stop()
    assert status == 400
    assert "Traceback" not in err


# --- the command line --------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_nan_timeout_is_a_usage_error() -> None:
    try:
        result = run_cli("echo", "--bind", "127.0.0.1:0", "--idle-timeout", "nan", timeout=5)
    except subprocess.TimeoutExpired:  # run() kills and reaps the child
        pytest.fail("--idle-timeout nan was accepted and the server ran")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--idle-timeout" in result.stderr


@pytest.mark.timeout(30)
def test_a_factory_returning_nonsense_is_one_line_and_status_2() -> None:
    result = run_cli("tests.ops.apps:broken", "--bind", "127.0.0.1:0", timeout=20)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("muxserver: error: ") and result.stderr.count("\n") == 1


@pytest.mark.timeout(60)
def test_an_unresolvable_host_names_the_address_in_the_error() -> None:
    result = run_cli("echo", "--bind", "no-such-host.invalid:9000", timeout=50)
    assert result.returncode == 2
    assert "no-such-host.invalid" in result.stderr


# --- Unix socket files that are in use -------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_live_unix_datagram_socket_is_not_taken_over(tmp_path) -> None:
    path = str(tmp_path / "dgram.sock")
    owner = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        owner.bind(path)
        inode = os.stat(path).st_ino
        with (
            pytest.raises(AssertionError, match="exited 2"),
            running("echo", "--udp", f"unix:{path}") as server,
        ):
            stolen = os.stat(path).st_ino != inode
            server.stop()
            assert not stolen  # the owner's file is still the one on disk
    finally:
        owner.close()


@pytest.mark.timeout(30)
def test_a_busy_live_unix_server_keeps_its_socket_file(tmp_path) -> None:
    path = str(tmp_path / "busy.sock")
    owner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    waiting: list[socket.socket] = []
    try:
        owner.bind(path)
        owner.listen(0)
        while True:  # fill the backlog: the next connect would have to wait
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            try:
                client.connect(path)
            except BlockingIOError:
                client.close()
                break
            waiting.append(client)
        inode = os.stat(path).st_ino
        with (
            pytest.raises(AssertionError, match="exited 2"),
            running("echo", "--bind", f"unix:{path}") as server,
        ):
            stolen = os.stat(path).st_ino != inode
            server.stop()
            assert not stolen
    finally:
        for client in waiting:
            client.close()
        owner.close()


# --- SIGHUP with an application that no longer imports (passing: not covered elsewhere) ------

_APP = """
from muxserver.handlers.lines import LineHandler


def _answer(request, peer):
    return {answer!r}


def factory():
    return LineHandler, _answer
"""


def _wait_for_log(server: Any, text: str) -> None:
    """Read the server's stderr until a line contains ``text`` (the test's timeout bounds it)."""
    for line in iter(server.process.stderr.readline, ""):
        if text in line:
            return
    raise AssertionError(f"stderr ended without {text!r}")


@pytest.mark.timeout(60)
def test_sighup_with_a_broken_module_keeps_the_old_workers_and_a_later_reload_works(
    tmp_path,
) -> None:
    module = tmp_path / "review_reload_app.py"
    module.write_text(_APP.format(answer=b"one"))
    env = {"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    with running(
        "review_reload_app:factory", "--bind", "127.0.0.1:0", "--workers", "1", env=env
    ) as server:
        address = server.address("review_reload_app:factory")
        assert line_exchange(address, b"x") == b"one\n"
        first = children_of(server.pid)

        module.write_text("def factory(:\n    pass  # a syntax error\n")
        os.kill(server.pid, signal.SIGHUP)
        _wait_for_log(server, "reload abandoned")
        assert children_of(server.pid) == first
        assert line_exchange(address, b"x") == b"one\n"

        module.write_text(_APP.format(answer=b"two, longer"))
        os.kill(server.pid, signal.SIGHUP)
        _wait_for_log(server, "generation 2 ready")
        # the old worker drains; a client may still reach it until it closed its listener
        wait_for(lambda: line_exchange(address, b"x") == b"two, longer\n")
        out, _ = server.stop()
    assert server.process.returncode == 0
    assert "(0 restarts, 1 reloads)" in out


def _listening_inode(port: int) -> str:
    """The inode of the IPv4 socket listening on ``port`` (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def _holds(pid: int, inode: str) -> bool:
    """Whether process ``pid`` still has the socket ``inode`` open."""
    folder = f"/proc/{pid}/fd"
    for fd in os.listdir(folder):
        try:
            if os.readlink(f"{folder}/{fd}") == f"socket:[{inode}]":
                return True
        except OSError:
            continue
    return False


@pytest.mark.timeout(60)
def test_sigterm_during_a_reload_drain_still_answers_the_old_workers_requests() -> None:
    with running(
        "tests.ops.apps:upper",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--dispatch",
        "thread:2",
        "--grace",
        "20",
    ) as server:
        address = server.address("tests.ops.apps:upper")
        inode = _listening_inode(address[1])
        (old,) = wait_for(lambda: children_of(server.pid))
        with socket.create_connection(address, timeout=30) as client:
            reader = client.makefile("rb")
            client.sendall(b"hello\n")
            assert reader.readline() == b"HELLO\n"  # served by the first generation
            client.sendall(b"sleep 4\n")  # still in progress when the stop comes
            os.kill(server.pid, signal.SIGHUP)
            _wait_for_log(server, "generation 2 ready")
            wait_for(lambda: not _holds(old, inode))  # the old worker began its drain
            os.kill(server.pid, signal.SIGTERM)  # the supervisor's own graceful stop
            answer = reader.readline()
            reader.close()
        _, err = server.process.communicate(timeout=30)
    assert answer == b"SLEEP 4\n", err
