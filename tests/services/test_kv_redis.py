"""The kv demo against a real redis-server: the same random command sequences, the same replies.

Hypothesis draws sequences of commands over a small key space -- valid, malformed, wrong
arity, unknown -- and both servers answer them on a fresh database; the replies must match
byte for byte. Our clock is frozen, Redis's runs, so the sequences never wait for a deadline:
every positive TTL is at least 1000 s, and the TTLs in one sequence differ by at least a second,
so comparisons (EXPIRE GT/LT) come out the same. TTL and PTTL replies are compared with the
tolerance the running clock needs (Redis may be up to 1 s / 2000 ms lower).

Deliberate differences (never generated here, documented in the README): HELLO's server
fields and RESP3, SELECT of databases other than 0, COMMAND/COMMAND DOCS contents, SET's
EXAT/PXAT, CONFIG GET of parameters other than save/appendonly.

Needs the Debian package redis-server (redis-tools for the redis-cli/redis-benchmark tests);
skips with a reason when it is missing. The server is a child started per module on a free
loopback port, killed by PID and reaped.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from muxserver.handlers.resp import RespHandler, encode_command
from muxserver.services.kv import LLONG_MAX, LLONG_MIN, KVService
from muxserver.testing import HandlerHarness
from tests.services.replies import read_replies, split_replies

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
REDIS_BENCHMARK = shutil.which("redis-benchmark")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(
        REDIS_SERVER is None, reason="redis-server is not installed (Debian package redis-server)"
    ),
]

FROZEN_NOW = 1_700_000_000.0
"""Our clock, frozen near Redis's (Unix time), so overflow bounds agree too."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server child on a free loopback port (no persistence), killed after the module."""
    assert REDIS_SERVER is not None
    workdir = tmp_path_factory.mktemp("redis")
    for _ in range(3):  # the free port may be taken between probe and bind: try another
        port = free_port()
        process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            if wait_for_port(port, process):
                yield port
                return
        finally:
            process.kill()
            process.wait(timeout=10)
    pytest.fail("redis-server did not start on a free loopback port in 3 tries")


# --- the command generator ---------------------------------------------------------------------

keys = st.sampled_from([b"k1", b"k2", b"k3"])
values = st.sampled_from(
    [b"0", b"1", b"-7", b"41", b"", b"v", b"01", b"-0", b" 1", b"1.5", b"+3", b"\x00\xff",
     b"%d" % LLONG_MAX, b"%d" % LLONG_MIN, b"%d" % (LLONG_MAX - 1), b"9223372036854775808"]
)  # fmt: skip
amounts = values | st.integers(-5, 5).map(lambda n: b"%d" % n)
bad_expiries = st.sampled_from(
    [b"0", b"-1", b"-1000", b"x", b"", b"1.5", b"%d" % LLONG_MAX, b"%d" % LLONG_MIN,
     b"9223372036854775", b"-9223372036854775", b"9223372036854776"]
)  # fmt: skip


def cased(name: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from([name.lower(), name.upper(), name.capitalize()])


@st.composite
def expiry(draw: st.DrawFn, index: int, unit: bytes = b"EX") -> bytes:
    """A bad or past expiry, or a long one unique to this command (see the module docstring)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(bad_expiries)
    seconds = draw(st.integers(1, 3)) * 1000 + index
    return b"%d" % (seconds * 1000 if unit == b"PX" else seconds)


@st.composite
def set_command(draw: st.DrawFn, index: int) -> list[bytes]:
    command = [draw(cased(b"SET")), draw(keys), draw(values)]
    for _ in range(draw(st.integers(0, 3))):
        option = draw(st.sampled_from([b"NX", b"XX", b"GET", b"KEEPTTL", b"EX", b"PX", b"BOGUS"]))
        command.append(draw(cased(option)))
        if option in (b"EX", b"PX") and draw(st.integers(0, 9)):
            command.append(draw(expiry(index, option)))
    return command


@st.composite
def expire_command(draw: st.DrawFn, index: int) -> list[bytes]:
    options = st.lists(cased(b"NX") | cased(b"XX") | cased(b"GT") | cased(b"LT"), max_size=2)
    return [b"EXPIRE", draw(keys), draw(expiry(index)), *draw(options)]


def simple(draw: st.DrawFn) -> list[bytes]:
    key, more = draw(keys), draw(st.lists(keys, max_size=2))
    return draw(
        st.sampled_from(
            [
                [b"GET", key],
                [b"DEL", key, *more],
                [b"EXISTS", key, *more],
                [b"INCR", key],
                [b"DECR", key],
                [b"INCRBY", key, draw(amounts)],
                [b"DECRBY", key, draw(amounts)],
                [b"MGET", key, *more],
                [b"MSET", key, draw(values), *[part for k in more for part in (k, b"7")]],
                [b"MSET", key, draw(values), key],
                [b"TTL", key],
                [b"PTTL", key],
                [b"PERSIST", key],
                [b"DBSIZE"],
                [b"FLUSHDB", *draw(st.sampled_from([[], [b"ASYNC"], [b"sync"], [b"NOW"]]))],
                [b"PING"],
                [b"PING", draw(values)],
                [b"ECHO", draw(values)],
                [b"SELECT", draw(st.sampled_from([b"0", b"x", b"-1", b"99999999999"]))],
                [b"CLIENT", b"SETNAME", draw(st.sampled_from([b"me", b"a b", b""]))],
                [b"CLIENT", b"GETNAME"],
                [b"CLIENT", b"FROB"],
                [b"CONFIG", b"GET", draw(st.sampled_from([b"save", b"appendonly"]))],
                [draw(st.sampled_from([b"foo", b"NOPE", b"frob"])), *more],
                # wrong arity
                [b"GET"],
                [b"GET", key, key],
                [b"ECHO"],
                [b"INCR"],
                [b"TTL", key, key],
                [b"DBSIZE", key],
                [b"PING", key, key],
                [b"CLIENT"],
                [b"EXPIRE", key],
            ]
        )
    )


@st.composite
def command_sequences(draw: st.DrawFn) -> list[list[bytes]]:
    sequence = []
    for index in range(draw(st.integers(1, 25))):
        kind = draw(st.integers(0, 9))
        if kind < 2:
            sequence.append(draw(set_command(index)))
        elif kind < 4:
            sequence.append(draw(expire_command(index)))
        else:
            command = simple(draw)
            if draw(st.booleans()):
                command[0] = command[0].lower()
            sequence.append(command)
    return sequence


# --- the two sides -------------------------------------------------------------------------------


def ours(commands: list[list[bytes]]) -> list[bytes]:
    harness = HandlerHarness(RespHandler(), KVService(lambda: FROZEN_NOW))
    harness.feed(b"".join(encode_command(command) for command in commands))
    harness.events()
    return split_replies(harness.output)


def theirs(port: int, commands: list[list[bytes]]) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(encode_command([b"FLUSHDB"]))
        assert read_replies(client, 1) == [b"+OK\r\n"]
        client.sendall(b"".join(encode_command(command) for command in commands))
        return read_replies(client, len(commands))


def same(command: list[bytes], mine: bytes, redis: bytes) -> bool:
    """Byte-for-byte equal, except TTL/PTTL of a live deadline: Redis's clock has moved on."""
    if mine == redis:
        return True
    slack = {b"TTL": 1, b"PTTL": 2000}.get(command[0].upper())
    if slack is None or not (mine.startswith(b":") and redis.startswith(b":")):
        return False
    left, their_left = int(mine[1:-2]), int(redis[1:-2])
    return left > 0 and left - slack <= their_left <= left


@given(commands=command_sequences())
def test_random_command_sequences_get_the_same_replies_as_redis(
    redis_port: int, commands: list[list[bytes]]
) -> None:
    mine, redis = ours(commands), theirs(redis_port, commands)
    assert len(mine) == len(redis) == len(commands)
    for command, my_reply, redis_reply in zip(commands, mine, redis, strict=True):
        assert same(command, my_reply, redis_reply), (
            f"{b' '.join(command)!r}: we say {my_reply!r}, Redis says {redis_reply!r}"
        )


def test_unknown_commands_with_long_arguments_are_cut_as_redis_cuts_them(redis_port: int) -> None:
    commands = [[b"frob", b"a" * 100, b"b" * 100, b"c"], [b"x" * 200], [b"nope", b"q'uote"]]
    assert ours(commands) == theirs(redis_port, commands)


# --- the real clients against the demo ----------------------------------------------------------


@pytest.fixture
def demo_port() -> Iterator[int]:
    """``python -m muxserver`` with only the kv service, on a free port; stopped with SIGINT."""
    process = subprocess.Popen(
        [sys.executable, "-m", "muxserver", "--kv-port", "0", "--http-port", "off",
         "--echo-port", "off", "--chat-port", "off", "--rpc-port", "off"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("kv    tcp 127.0.0.1:"), banner + process.stderr.read()
        yield int(banner.rsplit(":", 1)[1])
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
        assert "muxserver stopped: drained" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli is not installed (Debian redis-tools)")
def test_redis_cli_works_unchanged(demo_port: int) -> None:
    assert REDIS_CLI is not None

    def cli(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [REDIS_CLI, "-p", str(demo_port), *args],
            input=stdin,
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert cli("PING") == "PONG\n"
    assert cli("SET", "greeting", "hello", "EX", "100") == "OK\n"
    assert cli("GET", "greeting") == "hello\n"
    assert cli("TTL", "greeting") == "100\n"
    assert cli("INCRBY", "n", "5") == "5\n"
    assert cli("MGET", "greeting", "n", "none") == "hello\n5\n\n"
    assert cli("foo").startswith("ERR unknown command 'foo', with args beginning with: ")
    # Without a command, redis-cli starts with COMMAND DOCS, then reads commands from stdin.
    assert cli(stdin="DBSIZE\nCLIENT SETNAME me\nCLIENT GETNAME\n") == "2\nOK\nme\n"


@pytest.mark.skipif(
    REDIS_BENCHMARK is None, reason="redis-benchmark is not installed (Debian redis-tools)"
)
def test_redis_benchmark_runs_without_errors(demo_port: int) -> None:
    assert REDIS_BENCHMARK is not None
    result = subprocess.run(
        [REDIS_BENCHMARK, "-p", str(demo_port), "-t", "ping,set,get,incr,mset",
         "-n", "2000", "-q"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERR" not in output and "WARNING" not in output, output
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET"):
        assert f"{test}" in output, output
