"""The command line: flags, one-line errors, banner, summary, applications, log format."""

import json
import signal
import socket

import pytest

from .support import http_get, line_exchange, run_cli, running


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["echo", "--bind", "127.0.0.1:70000"], "port 70000 is out of range"),
        (["echo", "--bind", "::1:80"], "write IPv6 addresses in brackets"),
        (["echo", "--bind", "nohost"], "expected HOST:PORT"),
        (["echo"], "say where to serve echo"),
        (["--bind", ":0"], "--bind and --udp need a SERVICE"),
        (["echo", "--bind", ":0", "--dispatch", "threads"], "expected inline, thread:N"),
        (["echo", "--bind", ":0", "--dispatch", "process:0"], "at least 1"),
        (["echo", "--bind", ":0", "--high-water", "lots"], "expected a size"),
        (["echo", "--bind", ":0", "--high-water", "1k", "--low-water", "2k"], "low_water"),
        (["nowhere.at.all:make", "--bind", ":0"], "cannot import 'nowhere.at.all'"),
        (["tests.ops.apps:missing", "--bind", ":0"], "has no attribute 'missing'"),
        (["chat", "--udp", ":0"], "does not take datagrams"),
        (["echo", "--bind", "systemd:web"], "no sockets were passed by systemd"),
        (["echo", "--bind", "unix:/nonexistent-dir/x.sock"], "cannot bind unix:/nonexistent"),
        (["echo", "--bind", ":0", "--tls-key", "k.pem"], "need --tls-cert"),
        (["echo", "--bind", ":0", "--tls-cert", "/nonexistent.pem"], "No such file"),
        (["rpc", "--bind", ":0", "--workers", "2"], "one process only"),
    ],
)
def test_bad_flags_are_one_clear_line_and_exit_status_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_address_in_use_is_refused_at_start_up():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("kv", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"muxserver: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_help_explains_every_flag():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in (
        "--bind",
        "--udp",
        "--status",
        "--workers",
        "--dispatch",
        "--max-connections",
        "--idle-timeout",
        "--request-timeout",
        "--high-water",
        "--low-water",
        "--max-input",
        "--proxy-protocol",
        "--tls-cert",
        "--log-level",
        "--log-format",
        "--grace",
        "--echo-port",
        "--chat-port",
        "--rpc-port",
        "--kv-port",
        "--http-port",
        "MODULE:FACTORY",
    ):
        assert flag in result.stdout, flag


@pytest.mark.timeout(30)
def test_an_application_on_tcp_and_unix_with_a_banner_and_a_summary(tmp_path):
    path = str(tmp_path / "upper.sock")
    with running(
        "tests.ops.apps:upper",
        "--bind",
        "127.0.0.1:0",
        "--bind",
        f"unix:{path}",
        "--status",
        "127.0.0.1:0",
        "--dispatch",
        "thread:2",
    ) as server:
        assert server.banner[1] == f"tests.ops.apps:upper unix:{path}"
        assert "dispatch thread:2, 1 process" in server.banner[-1]
        address = server.address("tests.ops.apps:upper")
        assert line_exchange(address, b"hello") == b"HELLO\n"
        with socket.socket(socket.AF_UNIX) as unix:
            unix.connect(path)
            unix.sendall(b"over unix\n")
            assert unix.recv(100) == b"OVER UNIX\n"
        with socket.create_connection(address, timeout=5) as failing:
            failing.sendall(b"fail\n")
            assert failing.recv(100) == b""  # a line protocol has no error reply: closed
        code, body = http_get(server.address("http"), "/metrics")
        assert code == 200
        assert 'muxserver_errors_total{service="tests.ops.apps:upper"} 1' in body.decode()
        assert 'muxserver_dispatch_capacity{strategy="threads"}' in body.decode()
        out, err = server.stop(signal.SIGINT)
    assert server.process.returncode == 0
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("muxserver stopped: drained in ")
    assert summary.endswith("served 4 connections, 4 requests, 1 errors")
    assert "service failed on connection" in err  # logged with the connection's context


@pytest.mark.timeout(30)
def test_the_pair_form_and_json_log_lines():
    with running(
        "tests.ops.apps:pair", "--bind", ":0", "--log-format", "json", "--log-level", "debug"
    ) as server:
        assert line_exchange(server.address("tests.ops.apps:pair"), b"ok") == b"OK\n"
        _, err = server.stop()
    lines = [json.loads(line) for line in err.strip().splitlines()]
    assert any(entry["message"].startswith("SIGTERM received") for entry in lines)
    assert all({"time", "level", "logger", "pid", "message"} <= set(entry) for entry in lines)


@pytest.mark.timeout(30)
def test_echo_over_udp_and_the_proxy_protocol_required():
    with running("echo", "--bind", ":0", "--udp", ":0", "--proxy-protocol", "v1") as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            udp.sendto(b"ping", server.address("echo", "udp"))
            assert udp.recv(100) == b"ping"
        with socket.create_connection(server.address("echo"), timeout=5) as sock:
            sock.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\nhello")
            assert sock.recv(100) == b"hello"
        with socket.create_connection(server.address("echo"), timeout=5) as sock:
            sock.sendall(b"no header here\r\n")
            assert sock.recv(100) == b""  # dropped, never echoed
        server.stop()
