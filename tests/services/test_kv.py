"""muxserver.services.kv: the RESP key-value demo, through HandlerHarness and over TCP."""

from __future__ import annotations

from typing import Any

import pytest

from muxserver.handlers.resp import Command, RespHandler, encode_command
from muxserver.reactor import Reactor
from muxserver.services.kv import COMMANDS, LLONG_MAX, LLONG_MIN, KVService
from muxserver.testing import HandlerHarness
from tests.services.replies import read_replies, split_replies


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def connection(service: KVService) -> HandlerHarness:
    return HandlerHarness(RespHandler(), service)


def send(harness: HandlerHarness, *commands: tuple[Any, ...]) -> list[bytes]:
    """Pipeline ``commands`` on one connection; return one reply per command."""
    for command in commands:
        harness.feed(encode_command(command))
    harness.events()
    return split_replies(harness.take_output())


def ask(service: KVService, *commands: tuple[Any, ...]) -> list[bytes]:
    return send(connection(service), *commands)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kv(clock: Clock) -> KVService:
    return KVService(clock)


# --- strings and counters --------------------------------------------------------------------


def test_set_get_del_exists_and_dbsize_answer_as_redis_does(kv: KVService) -> None:
    assert ask(
        kv,
        ("PING",),
        ("PING", "hi"),
        ("ECHO", b"\x00\xff"),
        ("SET", "a", "1"),
        ("GET", "a"),
        ("GET", "nope"),
        ("EXISTS", "a", "a", "nope"),
        ("DBSIZE",),
        ("DEL", "a", "a", "nope"),
        ("DBSIZE",),
    ) == [
        b"+PONG\r\n",
        b"$2\r\nhi\r\n",
        b"$2\r\n\x00\xff\r\n",
        b"+OK\r\n",
        b"$1\r\n1\r\n",
        b"$-1\r\n",
        b":2\r\n",
        b":1\r\n",
        b":1\r\n",
        b":0\r\n",
    ]


def test_command_names_are_case_insensitive(kv: KVService) -> None:
    harness = connection(kv)
    assert send(harness, ("set", "k", "v"), ("GeT", "k"), ("client", "ID")) == [
        b"+OK\r\n",
        b"$1\r\nv\r\n",
        b":%d\r\n" % harness.peer.connection_id,
    ]


def test_counters_count_and_refuse_what_is_not_a_64_bit_integer(kv: KVService) -> None:
    assert ask(
        kv,
        ("INCR", "n"),
        ("INCRBY", "n", "41"),
        ("DECR", "n"),
        ("DECRBY", "n", "-2"),
        ("GET", "n"),
        ("SET", "s", "01"),
        ("INCR", "s"),
        ("INCRBY", "n", "1.5"),
        ("SET", "big", LLONG_MAX),
        ("INCR", "big"),
        ("DECRBY", "n", LLONG_MIN),
        ("INCRBY", "n", LLONG_MAX + 1),
    ) == [
        b":1\r\n",
        b":42\r\n",
        b":41\r\n",
        b":43\r\n",
        b"$2\r\n43\r\n",
        b"+OK\r\n",
        b"-ERR value is not an integer or out of range\r\n",
        b"-ERR value is not an integer or out of range\r\n",
        b"+OK\r\n",
        b"-ERR increment or decrement would overflow\r\n",
        b"-ERR decrement would overflow\r\n",
        b"-ERR value is not an integer or out of range\r\n",
    ]


def test_mset_and_mget_work_on_many_keys_and_mset_wants_pairs(kv: KVService) -> None:
    assert ask(kv, ("MSET", "a", "1", "b", "2"), ("MGET", "a", "x", "b"), ("MSET", "a")) == [
        b"+OK\r\n",
        b"*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n",
        b"-ERR wrong number of arguments for 'mset' command\r\n",
    ]


# --- errors worded as Redis words them -------------------------------------------------------


def test_unknown_commands_and_wrong_arity_get_redis_errors(kv: KVService) -> None:
    assert ask(
        kv,
        ("foo", "a", "b"),
        ("nope",),
        ("foo", "x" * 200),
        ("GET",),
        ("get", "a", "b"),
        ("CLIENT",),
        ("CLIENT", "frob"),
        ("client", "setname"),
        ("PING", "a", "b"),
    ) == [
        b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
        b"-ERR unknown command 'nope', with args beginning with: \r\n",
        b"-ERR unknown command 'foo', with args beginning with: '" + b"x" * 128 + b"' \r\n",
        b"-ERR wrong number of arguments for 'get' command\r\n",
        b"-ERR wrong number of arguments for 'get' command\r\n",
        b"-ERR wrong number of arguments for 'client' command\r\n",
        b"-ERR unknown subcommand 'frob'. Try CLIENT HELP.\r\n",
        b"-ERR wrong number of arguments for 'client|setname' command\r\n",
        b"-ERR wrong number of arguments for 'ping' command\r\n",
    ]


def test_error_text_is_cut_at_nul_and_kept_on_one_line(kv: KVService) -> None:
    assert ask(kv, ("x\r\ny", "a\x00b")) == [
        b"-ERR unknown command 'x  y', with args beginning with: 'a' \r\n"
    ]


# --- SET options and expiry --------------------------------------------------------------------


def test_set_options_follow_redis(kv: KVService) -> None:
    assert ask(
        kv,
        ("SET", "k", "1", "NX"),
        ("SET", "k", "2", "NX"),
        ("SET", "k", "3", "XX", "GET"),
        ("SET", "new", "3", "XX"),
        ("SET", "k", "4", "NX", "GET"),
        ("SET", "k", "5", "NX", "XX"),
        ("SET", "k", "5", "EX", "10", "PX", "100"),
        ("SET", "k", "5", "EX"),
        ("SET", "k", "5", "KEEPTTL", "EX", "1"),
        ("SET", "k", "5", "EX", "0"),
        ("SET", "k", "5", "PX", "ten"),
        ("SET", "k", "5", "EX", LLONG_MAX // 1000 + 1),
        ("GET", "k"),
    ) == [
        b"+OK\r\n",
        b"$-1\r\n",
        b"$1\r\n1\r\n",
        b"$-1\r\n",
        b"$1\r\n3\r\n",
        b"-ERR syntax error\r\n",
        b"-ERR syntax error\r\n",
        b"-ERR syntax error\r\n",
        b"-ERR syntax error\r\n",
        b"-ERR invalid expire time in 'set' command\r\n",
        b"-ERR value is not an integer or out of range\r\n",
        b"-ERR invalid expire time in 'set' command\r\n",
        b"$1\r\n3\r\n",
    ]


def test_keys_expire_lazily_on_the_injected_clock(kv: KVService, clock: Clock) -> None:
    harness = connection(kv)
    assert send(harness, ("SET", "k", "v", "EX", "10"), ("TTL", "k"), ("PTTL", "k")) == [
        b"+OK\r\n",
        b":10\r\n",
        b":10000\r\n",
    ]
    clock.now += 9.4
    assert send(harness, ("TTL", "k"), ("PTTL", "k")) == [b":1\r\n", b":600\r\n"]
    clock.now += 0.6  # exactly at the deadline: Redis still has the key, with 0 left
    assert send(harness, ("TTL", "k"), ("GET", "k")) == [b":0\r\n", b"$1\r\nv\r\n"]
    clock.now += 0.001
    assert kv.keys.data  # nobody has looked yet
    assert send(harness, ("GET", "k"), ("TTL", "k"), ("DBSIZE",)) == [
        b"$-1\r\n",
        b":-2\r\n",
        b":0\r\n",
    ]


def test_writes_keep_or_drop_the_deadline_as_redis_does(kv: KVService) -> None:
    assert ask(
        kv,
        ("SET", "k", "1", "PX", "5000"),
        ("INCR", "k"),
        ("TTL", "k"),
        ("SET", "k", "2", "KEEPTTL"),
        ("TTL", "k"),
        ("SET", "k", "3"),
        ("TTL", "k"),
        ("EXPIRE", "k", "100"),
        ("MSET", "k", "4"),
        ("TTL", "k"),
        ("EXPIRE", "k", "100"),
        ("PERSIST", "k"),
        ("PERSIST", "k"),
        ("TTL", "k"),
    ) == [
        b"+OK\r\n",
        b":2\r\n",
        b":5\r\n",
        b"+OK\r\n",
        b":5\r\n",
        b"+OK\r\n",
        b":-1\r\n",
        b":1\r\n",
        b"+OK\r\n",
        b":-1\r\n",
        b":1\r\n",
        b":1\r\n",
        b":0\r\n",
        b":-1\r\n",
    ]


def test_expire_options_and_times_in_the_past(kv: KVService) -> None:
    assert ask(
        kv,
        ("EXPIRE", "missing", "10"),
        ("SET", "k", "v"),
        ("EXPIRE", "k", "10", "XX"),
        ("EXPIRE", "k", "10", "GT"),
        ("EXPIRE", "k", "10", "NX"),
        ("EXPIRE", "k", "20", "NX"),
        ("EXPIRE", "k", "5", "GT"),
        ("EXPIRE", "k", "20", "GT"),
        ("EXPIRE", "k", "30", "LT"),
        ("EXPIRE", "k", "15", "lt"),
        ("TTL", "k"),
        ("EXPIRE", "k", "1", "NX", "XX"),
        ("EXPIRE", "k", "1", "GT", "LT"),
        ("EXPIRE", "k", "1", "soon"),
        ("EXPIRE", "k", "x"),
        ("EXPIRE", "k", LLONG_MAX),
        ("EXPIRE", "k", "0"),
        ("EXISTS", "k"),
    ) == [
        b":0\r\n",
        b"+OK\r\n",
        b":0\r\n",
        b":0\r\n",
        b":1\r\n",
        b":0\r\n",
        b":0\r\n",
        b":1\r\n",
        b":0\r\n",
        b":1\r\n",
        b":15\r\n",
        b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
        b"-ERR GT and LT options at the same time are not compatible\r\n",
        b"-ERR Unsupported option soon\r\n",
        b"-ERR value is not an integer or out of range\r\n",
        b"-ERR invalid expire time in 'expire' command\r\n",
        b":1\r\n",
        b":0\r\n",
    ]


def test_a_sweep_looks_at_a_bounded_number_of_deadlines(clock: Clock) -> None:
    kv = KVService(clock, sweep_limit=100)
    ask(kv, *[("SET", f"k{i}", "v", "PX", 1000 + i) for i in range(250)], ("SET", "kept", "v"))
    assert kv.sweep() is False  # nothing due yet
    clock.now += 10
    assert kv.sweep() is True
    assert len(kv.keys) == 151
    assert kv.sweep() is True
    assert kv.sweep() is False
    assert list(kv.keys.data) == [b"kept"] and not kv.keys.expires


def test_rewritten_deadlines_do_not_pile_up_in_the_sweep_heap(kv: KVService) -> None:
    harness = connection(kv)
    for _ in range(20):
        send(harness, *[("EXPIRE", "k", 1000 + i) for i in range(200)], ("SET", "k", "v"))
    send(harness, ("EXPIRE", "k", "100"))
    assert len(kv.keys._heap) <= 2 * len(kv.keys.expires) + 1024


def test_the_periodic_sweep_runs_on_the_reactor_clock(clock: Clock) -> None:
    reactor = Reactor(clock=clock)
    try:
        kv = KVService(clock)
        ask(kv, ("SET", "a", "1", "EX", "1"), ("SET", "b", "2"))
        kv.start_expiry(reactor, interval=0.5)
        clock.now += 2
        reactor.run_once(0)
        assert list(kv.keys.data) == [b"b"]
        kv.stop_expiry()
    finally:
        reactor.close()


# --- what clients send on connect ----------------------------------------------------------------


def test_connection_commands_answer_what_clients_ask_on_connect(kv: KVService) -> None:
    harness = connection(kv)
    replies = send(
        harness,
        ("COMMAND", "DOCS"),
        ("COMMAND",),
        ("COMMAND", "COUNT"),
        ("CONFIG", "GET", "save"),
        ("CONFIG", "GET", "append*"),
        ("CLIENT", "SETINFO", "LIB-NAME", "redis-py"),
        ("CLIENT", "SETNAME", "worker-1"),
        ("CLIENT", "GETNAME"),
        ("CLIENT", "SETNAME", "has space"),
        ("SELECT", "0"),
        ("SELECT", "1"),
        ("HELLO", "3"),
        ("AUTH", "secret"),
    )
    assert replies == [
        b"*0\r\n",
        b"*0\r\n",
        b":%d\r\n" % len(COMMANDS),
        b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n",
        b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
        b"+OK\r\n",
        b"+OK\r\n",
        b"$8\r\nworker-1\r\n",
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
        b"+OK\r\n",
        b"-ERR DB index is out of range\r\n",
        b"-NOPROTO unsupported protocol version\r\n",
        replies[-1],
    ]
    assert replies[-1].startswith(b"-ERR AUTH <password> called without any password")
    assert harness.peer.extra["client_name"] == b"worker-1"
    hello = send(harness, ("HELLO", "2", "SETNAME", "w2"))[0]
    assert hello.startswith(b"*14\r\n$6\r\nserver\r\n$9\r\nmuxserver\r\n")
    assert send(harness, ("CLIENT", "GETNAME")) == [b"$2\r\nw2\r\n"]


def test_quit_answers_ok_then_closes(kv: KVService) -> None:
    harness = connection(kv)
    harness.feed(encode_command(["QUIT"]) + encode_command(["PING"]))
    harness.events()
    assert harness.output == b"+OK\r\n"
    assert harness.closed


def test_the_command_table_is_complete_and_documented() -> None:
    required = "ping echo set get del exists incr incrby decr mget mset expire ttl dbsize flushdb"
    assert set(required.split()) | {"quit"} <= set(COMMANDS)
    for name, spec in COMMANDS.items():
        assert name == name.lower() and spec.arity != 0
        for sub in [spec, *(spec.subcommands or {}).values()]:
            assert sub.function is None or sub.function.__doc__


def test_the_service_answers_commands_from_an_inline_request(kv: KVService) -> None:
    harness = HandlerHarness(RespHandler(), kv)
    harness.feed(b"SET a 1\r\nGET a\r\n")
    harness.events()
    assert harness.output == b"+OK\r\n$1\r\n1\r\n"
    assert kv.handle(Command([b"get", b"a"]), harness.peer) == b"1"


# --- end to end --------------------------------------------------------------------------------


def test_over_tcp_pipelined_commands_are_answered_in_order_and_quit_closes(
    mux_serve: Any, mux_connect: Any
) -> None:
    address = mux_serve(RespHandler, KVService())
    client = mux_connect(address)
    commands = [["SET", f"k{i}", i] for i in range(50)] + [["INCR", "k49"], ["MGET", "k0", "k49"]]
    client.sendall(b"".join(encode_command(c) for c in commands))
    replies = read_replies(client, len(commands))
    assert replies[:50] == [b"+OK\r\n"] * 50
    assert replies[50:] == [b":50\r\n", b"*2\r\n$1\r\n0\r\n$2\r\n50\r\n"]
    client.sendall(encode_command(["QUIT"]))
    assert read_replies(client, 1) == [b"+OK\r\n"]
    assert client.recv(10) == b""
