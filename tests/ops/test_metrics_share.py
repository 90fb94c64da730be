"""Metrics of every worker in one scrape: the snapshot directory, the merge, and --workers."""

from __future__ import annotations

import os
import re
import signal
import stat
from pathlib import Path

import pytest

from muxserver.metrics import Family, Histogram, Metrics, collect, merge_workers, render_families
from muxserver.metrics_share import MetricsShare
from muxserver.reactor import Reactor

from .support import children_of, http_get, running, wait_for


def families(requests: float) -> list[Family]:
    return [
        Family("muxserver_up", "gauge", "Up.", [("", {"pid": 0}, 1)]),
        Family(
            "muxserver_requests_total", "counter", "Requests.", [("", {"service": "kv"}, requests)]
        ),
    ]


def test_snapshots_round_trip_and_a_process_never_reads_its_own(tmp_path: Path) -> None:
    share = MetricsShare(str(tmp_path))
    share.publish(families(5), pid=101)
    share.publish(families(7), pid=202)
    (tmp_path / "303.json").write_text("not json")  # a damaged file is skipped, not fatal
    (tmp_path / "notes.txt").write_text("ignored")
    assert sorted(share.others(101)) == [(202, families(7))]
    share.publish(families(9), pid=202)  # replaced whole, never appended
    assert share.others(101) == [(202, families(9))]
    share.forget(202)
    share.forget(202)  # twice is fine: the supervisor may race a worker's last write
    assert share.others(101) == []
    assert sorted(os.listdir(tmp_path)) == ["101.json", "303.json", "notes.txt"]


def test_merge_labels_every_sample_with_its_pid_and_keeps_one_help_line() -> None:
    merged = merge_workers(10, families(1), [(30, families(3)), (20, families(2))])
    text = render_families(merged)
    assert text.count("# TYPE muxserver_requests_total counter") == 1
    lines = [line for line in text.splitlines() if line.startswith("muxserver_requests_total")]
    assert lines == [
        'muxserver_requests_total{service="kv",pid="10"} 1',
        'muxserver_requests_total{service="kv",pid="20"} 2',
        'muxserver_requests_total{service="kv",pid="30"} 3',
    ]
    assert 'muxserver_up{pid="20"} 1' in text  # the worker's own pid label wins


def test_a_histogram_survives_the_trip_through_json() -> None:
    reactor = Reactor()
    try:
        metrics = Metrics(reactor)
        metrics.loop_latency = histogram = Histogram((0.001, 0.01))
        for value in (0.0005, 0.005, 0.5):
            histogram.observe(value)
        own = collect(metrics)
        back = [Family.from_json(family.to_json()) for family in own]
        assert render_families(back) == render_families(own)
        assert 'muxserver_loop_pass_seconds_bucket{le="0.01"} 2' in render_families(back)
    finally:
        reactor.close()


def test_the_directory_is_private_and_removed_whole() -> None:
    share = MetricsShare.create()
    try:
        assert stat.S_IMODE(os.stat(share.directory).st_mode) == 0o700
        share.publish(families(1))
        assert os.listdir(share.directory) == [f"{os.getpid()}.json"]
    finally:
        share.remove()
    assert not os.path.exists(share.directory)
    share.publish(families(1))  # after removal: nothing written, nothing raised


def _pids(text: str, family: str) -> set[int]:
    return {int(pid) for pid in re.findall(family + r'\{[^}]*pid="(\d+)"', text)}


@pytest.mark.timeout(40)
def test_one_scrape_of_any_worker_reports_every_worker(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path)}  # where the supervisor makes the snapshot directory
    with running("http", "--bind", "127.0.0.1:0", "--workers", "2", env=env) as server:
        address = server.address("http")
        workers = wait_for(lambda: len(children_of(server.pid)) == 2 and children_of(server.pid))
        assert workers

        def scrape() -> str:
            code, body = http_get(address, "/metrics")
            assert code == 200
            return body.decode()

        assert wait_for(lambda: _pids(scrape(), "muxserver_up") == set(workers), timeout=10)
        text = scrape()
        assert _pids(text, "muxserver_requests_total") == set(workers)
        assert text.count("# TYPE muxserver_up gauge") == 1
        os.kill(workers[0], signal.SIGKILL)
        assert wait_for(
            lambda: (kids := children_of(server.pid)) and len(kids) == 2 and workers[0] not in kids
        )
        replaced = children_of(server.pid)
        assert wait_for(lambda: _pids(scrape(), "muxserver_up") == set(replaced), timeout=10)
        [directory] = os.listdir(tmp_path)
        assert directory.startswith("muxserver-metrics-")
        assert sorted(os.listdir(tmp_path / directory)) == sorted(f"{p}.json" for p in replaced)
        server.stop()
    assert server.process.returncode == 0
    assert os.listdir(tmp_path) == []  # removed at exit


def test_publishing_repeats_on_the_reactor_at_the_interval(tmp_path: Path) -> None:
    now = [1000.0]
    reactor = Reactor(clock=lambda: now[0])
    try:
        share = MetricsShare(str(tmp_path))
        published: list[float] = []
        share.publish = lambda families, pid=None: published.append(now[0])  # type: ignore[method-assign]
        metrics = Metrics(reactor)
        with pytest.raises(ValueError, match="positive"):
            share.publish_every(reactor, metrics, interval=0)
        share.publish_every(reactor, metrics, interval=5.0)
        assert metrics.share is share
        assert published == [1000.0]  # at once: a new worker is visible from its start
        for now[0] in (1004.9, 1005.0, 1009.0, 1010.0):
            reactor.run_once(timeout=0)
        assert published == [1000.0, 1005.0, 1010.0]
    finally:
        reactor.close()
