"""--workers: pre-forked workers share the sockets, are restarted, reload and drain gracefully."""

import os
import signal
import socket
import threading
import time

import pytest

from .support import children_of, http_get, line_exchange, running, wait_for


@pytest.mark.timeout(40)
def test_workers_share_the_socket_and_a_dead_worker_is_replaced():
    with running("http", "--bind", "127.0.0.1:0", "--workers", "2") as server:
        address = server.address("http")
        workers = wait_for(lambda: len(children_of(server.pid)) == 2 and children_of(server.pid))
        seen = set()
        for _ in range(40):
            seen.add(int(http_get(address, "/whoami")[1].split(b'"pid": ')[1].split(b",")[0]))
            if seen == set(workers):
                break
        assert seen <= set(workers)
        os.kill(workers[0], signal.SIGKILL)
        replaced = wait_for(
            lambda: (kids := children_of(server.pid)) and len(kids) == 2 and workers[0] not in kids
        )
        assert replaced
        assert http_get(address, "/healthz") == (200, b"ok\n")
        out, err = server.stop()
    assert f"worker 0 (pid {workers[0]}) died (killed by SIGKILL)" in err
    assert "(1 restarts, 0 reloads)" in out
    assert server.process.returncode == 0


@pytest.mark.timeout(60)
def test_a_reload_under_load_refuses_no_connection_and_loses_no_request():
    with running("http", "--bind", "127.0.0.1:0", "--workers", "2", "--grace", "5") as server:
        address = server.address("http")
        first = wait_for(lambda: len(children_of(server.pid)) == 2 and children_of(server.pid))
        stop = threading.Event()
        counts = {"ok": 0, "refused": 0, "failed": 0}
        failures: list[str] = []

        def load() -> None:
            deadline = time.monotonic() + 30  # bounded in time and count
            while not stop.is_set() and time.monotonic() < deadline and counts["ok"] < 50_000:
                try:
                    code, body = http_get(address, "/healthz")
                    if code == 200 and body == b"ok\n":
                        counts["ok"] += 1
                    else:
                        counts["failed"] += 1
                        failures.append(f"{code} {body!r}")
                except ConnectionRefusedError:
                    counts["refused"] += 1
                except OSError as exc:
                    counts["failed"] += 1
                    failures.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: counts["ok"] > 200)
            current = first
            for _ in range(3):
                before = counts["ok"]
                os.kill(server.pid, signal.SIGHUP)
                current = wait_for(
                    lambda old=current: (
                        (kids := children_of(server.pid))
                        and len(kids) == 2
                        and not set(kids) & set(old)
                        and kids
                    ),
                    timeout=20,
                )
                wait_for(lambda before=before: counts["ok"] > before + 100)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert counts["refused"] == 0
        assert counts["failed"] == 0, failures[:5]
        assert counts["ok"] > 500
        out, _ = server.stop()
    assert "(0 restarts, 3 reloads)" in out


@pytest.mark.timeout(40)
def test_sigterm_drains_every_worker_and_answers_requests_in_progress():
    with running(
        "tests.ops.apps:upper", "--bind", "127.0.0.1:0", "--workers", "2", "--dispatch", "thread:2"
    ) as server:
        address = server.address("tests.ops.apps:upper")
        workers = wait_for(lambda: len(children_of(server.pid)) == 2 and children_of(server.pid))
        answers: list[bytes] = []
        slow = threading.Thread(
            target=lambda: answers.append(line_exchange(address, b"sleep 1", timeout=10))
        )
        slow.start()
        time.sleep(0.3)  # the request is in a worker now
        server.process.send_signal(signal.SIGTERM)
        slow.join(10)
        assert answers == [b"SLEEP 1\n"]
        out, _ = server.process.communicate(timeout=20)
    assert server.process.returncode == 0
    assert "muxserver stopped: 2 workers drained in" in out
    assert "1 requests, 0 errors" in out
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}")


@pytest.mark.timeout(40)
def test_a_unix_socket_survives_a_reload_and_is_removed_at_exit(tmp_path):
    path = str(tmp_path / "http.sock")
    with running("http", "--bind", f"unix:{path}", "--workers", "2") as server:
        first = wait_for(lambda: len(children_of(server.pid)) == 2 and children_of(server.pid))
        os.kill(server.pid, signal.SIGHUP)
        wait_for(lambda: not set(children_of(server.pid)) & set(first) and children_of(server.pid))
        time.sleep(0.7)  # the old workers have drained and closed their copies
        assert os.path.exists(path)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(1000).endswith(b"ok\n")
        server.stop()
    assert not os.path.exists(path)
