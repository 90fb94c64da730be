"""Flow control: partial writes, output water marks, and peers that do not read."""

import socket
import threading
import time

from muxserver.reactor import Limits
from muxserver.testing.live import ReactorThread, connect

from .support import lines, recv_until, upper, wait_for


def small_send_buffer(sock: socket.socket, address: object) -> None:
    """An admission hook that shrinks the server side's send buffer (and admits)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return None


def test_large_answers_cross_tiny_socket_buffers_intact(live: ReactorThread):
    payload = bytes(range(256)) * 4096  # 1 MiB

    _, address = live.serve(lines, lambda request, peer: payload, admit=small_send_buffer)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(10)
    client.connect(address)
    with client:
        client.sendall(b"big\n")
        received = bytearray()
        while len(received) < len(payload) + 1:
            chunk = client.recv(1000)  # small reads: the server sees many partial writes
            assert chunk
            received += chunk
        assert bytes(received) == payload + b"\n"


def test_a_client_that_never_reads_cannot_grow_server_memory(live: ReactorThread):
    answer = b"x" * 50
    limits = Limits(high_water=64 * 1024, low_water=16 * 1024)
    _, address = live.serve(lines, lambda r, p: answer, limits=limits, admit=small_send_buffer)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(10)
    client.connect(address)
    requests = 200_000  # 10 MB of answers if the server buffered them all
    with client:
        client.setblocking(False)
        sent = 0
        request_bytes = b"give\n" * requests
        deadline = time.monotonic() + 5
        while sent < len(request_bytes) and time.monotonic() < deadline:
            try:
                sent += client.send(request_bytes[sent:])
            except BlockingIOError:
                time.sleep(0.01)
        assert wait_for(lambda: live.call(_paused_for_output, live))
        peak = live.call(_max_output, live)
        assert peak <= limits.high_water + len(answer) + 1
        # The server stopped reading: what it took in stays put while we do not read.
        taken = live.call(lambda: _records(live)[0].bytes_in)
        time.sleep(0.2)
        assert live.call(lambda: _records(live)[0].bytes_in) == taken < len(request_bytes)

        # Now read everything: reading resumes and every request is answered.
        client.settimeout(20)
        rest = threading.Thread(target=client.sendall, args=(request_bytes[sent:],))
        rest.start()
        total = requests * (len(answer) + 1)
        try:
            assert len(recv_until(client, total, timeout=20)) == total
        finally:
            rest.join(20)


def _records(live):
    return live.reactor.table.snapshot()


def _paused_for_output(live):
    return any("output" in s.reading_paused for s in _records(live))


def _max_output(live):
    return max(s.output_buffered for s in _records(live))


def test_unsent_output_past_the_hard_cap_drops_the_connection(live: ReactorThread):
    pushes: list = []

    def service(request, peer):
        if not pushes:
            pushes.append(peer.connection)
            return b"registered"
        for _ in range(50):
            pushes[0].push(b"y" * 10_000)
        return b"pushed"

    limits = Limits(high_water=32 * 1024, low_water=8 * 1024, max_output=128 * 1024)
    _, address = live.serve(lines, service, limits=limits, admit=small_send_buffer)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(address)
    with slow, connect(address) as pusher:
        slow.sendall(b"register\n")
        assert wait_for(lambda: pushes)
        pusher.sendall(b"push\n")
        assert recv_until(pusher, 7) == b"pushed\n"
        assert wait_for(lambda: live.call(len, live.reactor.table) == 1)


def test_connections_table_reports_bytes_and_requests(live: ReactorThread):
    _, address = live.serve(lines, upper)
    with connect(address) as client:
        client.sendall(b"abc\n")
        assert recv_until(client, 4) == b"ABC\n"
        client.sendall(b"partial")
        assert wait_for(lambda: _records(live)[0].input_buffered == 7)
        (snapshot,) = _records(live)
        assert snapshot.bytes_in == 11
        assert snapshot.bytes_out == 4
        assert snapshot.requests == 1
        assert snapshot.state.value == "reading"
        assert snapshot.peer == client.getsockname()
