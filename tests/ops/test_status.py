"""The status service and metrics on a live reactor: paging, sorting, health, PROXY addresses."""

import json
import re

from muxserver.handlers.echo import EchoHandler
from muxserver.handlers.proxy import ProxyProtocolHandler, encode_v2
from muxserver.metrics import Histogram, Metrics
from muxserver.reactor.dispatch import ThreadPoolStrategy
from muxserver.services.status import StatusService, status_handler
from muxserver.testing.live import ReactorThread, connect

from .support import http_get, wait_for


def serve_status(live: ReactorThread, *, proxy: bool = False):
    metrics = Metrics(live.reactor)
    factory = (lambda: ProxyProtocolHandler(status_handler())) if proxy else status_handler
    server, address = live.serve(factory, StatusService(metrics, name="test"), name="http")
    live.call(metrics.add_server, server)
    live.call(metrics.watch_loop)
    return metrics, address


def test_status_json_pages_and_sorts_server_side():
    with ReactorThread() as live:
        metrics, status = serve_status(live)
        echo, echo_address = live.serve(EchoHandler, None, name="echo")
        live.call(metrics.add_server, echo)
        clients = [connect(echo_address) for _ in range(120)]
        try:
            for index, client in enumerate(clients[:5]):
                client.sendall(b"x" * (index + 1) * 10)
                client.recv(100)
            wait_for(lambda: live.call(lambda: len(live.reactor.table)) >= 120)
            code, body = http_get(status, "/status.json?page=2&size=50&service=echo")
            assert code == 200
            page = json.loads(body)
            assert page["page"] == {
                "number": 2,
                "size": 50,
                "pages": 3,
                "total": 120,
                "sort": "id",
                "state": "",
                "service": "echo",
            }
            assert len(page["rows"]) == 50
            ids = [row["id"] for row in page["rows"]]
            assert ids == sorted(ids)
            _, body = http_get(status, "/status.json?size=3&sort=-bytes_in&service=echo")
            rows = json.loads(body)["rows"]
            assert [row["bytes_in"] for row in rows] == [50, 40, 30]
            row = rows[0]
            assert row["state"] == "idle" and row["service"] == "echo"
            assert row["client"] == f"127.0.0.1:{clients[4].getsockname()[1]}"
            assert set(row) >= {"handler", "bytes_out", "in_flight", "age", "idle"}
            summary = json.loads(body)
            assert summary["connections"]["open"] >= 121
            assert {s["name"] for s in summary["services"]} == {"http", "echo"}
        finally:
            for client in clients:
                client.close()


def test_bad_parameters_are_a_400_that_says_what_is_allowed():
    with ReactorThread() as live:
        _, status = serve_status(live)
        code, body = http_get(status, "/status.json?sort=colour")
        assert code == 400 and b"sort must be one of" in body
        code, body = http_get(status, "/status.json?size=100000")
        assert code == 400
        assert http_get(status, "/nowhere")[0] == 404


def test_healthz_is_live_and_readyz_turns_false_while_draining():
    with ReactorThread() as live:
        _, status = serve_status(live)
        assert http_get(status, "/healthz") == (200, b"ok\n")
        assert http_get(status, "/readyz") == (200, b"ready\n")
        held = connect(status)
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        held.recv(1000)
        service = live.call(lambda: live.reactor.table.records()[0].server.service)
        live.call(live.reactor.shutdown, 5.0)
        # The listener is closed now; ask the service directly, in the reactor thread.
        answer = live.call(lambda: service.readyz({}, None))
        assert answer.status == 503 and answer.body == "draining\n"
        held.close()


def test_the_client_address_comes_from_the_proxy_header():
    with ReactorThread() as live:
        _, status = serve_status(live, proxy=True)
        sock = connect(status)
        header = encode_v2(("203.0.113.7", 41000), ("198.51.100.1", 80))
        sock.sendall(header + b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
        whoami = json.loads(data.partition(b"\r\n\r\n")[2])
        assert whoami["client"] == "203.0.113.7:41000"
        assert whoami["peer"].startswith("127.0.0.1:")


def test_metrics_are_prometheus_text_with_every_family():
    with ReactorThread() as live:
        metrics, status = serve_status(live)
        pool = ThreadPoolStrategy(2, name="pool")
        server, _ = live.serve(EchoHandler, None, name="echo", strategy=pool)
        live.call(metrics.add_server, server)
        http_get(status, "/healthz")
        code, body = http_get(status, "/metrics")
        assert code == 200
        text = body.decode()
        sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$|^.*Inf')
        for line in text.splitlines():
            assert line.startswith("# ") or sample.match(line), line
        for family in (
            'muxserver_connections{state="idle"}',
            "muxserver_connections_accepted_total",
            "muxserver_connections_closed_total",
            'muxserver_requests_total{service="http"}',
            'muxserver_errors_total{service="echo"} 0',
            'muxserver_received_bytes_total{service="http"}',
            'muxserver_sent_bytes_total{service="http"}',
            'muxserver_dispatch_queue_depth{strategy="pool"} 0',
            'muxserver_dispatch_busy_workers{strategy="pool"} 0',
            'muxserver_loop_pass_seconds_bucket{le="+Inf"}',
            'muxserver_timeouts_total{service="echo"} 0',
            'muxserver_refused_total{service="echo"} 0',
        ):
            assert family in text, family
        requests = re.search(r'muxserver_requests_total\{service="http"\} (\d+)', text)
        assert requests is not None and int(requests.group(1)) >= 2


def test_histogram_buckets_are_cumulative_and_quantiles_are_bucket_bounds():
    histogram = Histogram((0.001, 0.01, 0.1))
    for value in (0.0005, 0.002, 0.002, 0.05, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.001, 1), (0.01, 3), (0.1, 4), (float("inf"), 5)]
    assert histogram.quantile(0.5) == 0.01
    assert histogram.count == 5
