"""The SQLite job server example: done once, retried a bounded number of times, never lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import sqlite_jobs  # noqa: E402


def rows(db_path: Path, query: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(db_path)
    try:
        return list(db.execute(query))
    finally:
        db.close()


def drain(db_path: Path) -> None:
    with sqlite_jobs.JobServer(str(db_path), sqlite_jobs.Square) as server:
        while server.pending():
            server.handle_request()


def test_every_job_is_done_once_with_its_effects(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    sqlite_jobs.enqueue(str(db), *(str(n) for n in range(20)))
    drain(db)
    assert rows(db, "SELECT state, count(*) FROM jobs GROUP BY state") == [("done", 20)]
    effects = rows(db, "SELECT job_id, value FROM effects ORDER BY job_id")
    assert [int(str(v)) for _, v in effects] == [n * n for n in range(20)]


def test_a_failing_job_is_retried_then_parked_with_its_error_and_no_effects(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    sqlite_jobs.enqueue(str(db), "fail", "3")
    drain(db)
    (state, attempts, error), (ok_state,) = (
        rows(db, "SELECT state, attempts, last_error FROM jobs WHERE payload = 'fail'")[0],
        rows(db, "SELECT state FROM jobs WHERE payload = '3'")[0],
    )
    assert (state, attempts, ok_state) == ("parked", sqlite_jobs.JobServer.max_attempts, "done")
    assert "ValueError: this job always fails" in str(error)
    assert rows(db, "SELECT value FROM effects") == [("9",)]


def test_a_job_that_never_finishes_is_parked_after_max_attempts(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    (job,) = sqlite_jobs.enqueue(str(db), "4")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE jobs SET attempts = ? WHERE id = ?", (3, job))  # three crashes
    conn.commit()
    conn.close()
    drain(db)
    ((state, error),) = rows(db, "SELECT state, last_error FROM jobs")
    assert state == "parked" and "did not finish" in str(error)
    assert rows(db, "SELECT * FROM effects") == []


def test_serve_forever_picks_up_jobs_from_this_and_other_processes(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with sqlite_jobs.JobServer(str(db), sqlite_jobs.Square) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        sqlite_jobs.enqueue(str(db), "7")  # another connection: found by service_actions
        deadline = time.monotonic() + 10
        while rows(db, "SELECT count(*) FROM jobs WHERE state = 'done'") != [(1,)]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.shutdown()
        thread.join(5)
    assert rows(db, "SELECT value FROM effects") == [("49",)]


def test_killing_the_server_mid_job_loses_nothing_and_does_nothing_twice(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    sqlite_jobs.enqueue(str(db), "1", "2", "slow", "3", "4")
    script = str(EXAMPLES / "sqlite_jobs.py")
    worker = subprocess.Popen(
        [sys.executable, script, str(db), "work"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().startswith("started slow job")
        os.kill(worker.pid, signal.SIGKILL)  # mid-job: its effect is written, not committed
    finally:
        worker.wait(10)
    assert rows(db, "SELECT state FROM jobs WHERE payload = 'slow'") == [("pending",)]
    assert rows(db, "SELECT count(*) FROM effects WHERE value = 'partial'") == [(0,)]

    subprocess.run([sys.executable, script, str(db), "drain"], check=True, timeout=30)

    assert rows(db, "SELECT state, count(*) FROM jobs GROUP BY state") == [("done", 5)]
    assert rows(db, "SELECT attempts FROM jobs WHERE payload = 'slow'") == [(2,)]
    per_job = rows(db, "SELECT job_id, count(*) FROM effects GROUP BY job_id")
    assert [count for _, count in per_job] == [1] * 5
    assert rows(db, "SELECT count(*) FROM effects WHERE value = 'partial'") == [(0,)]


@pytest.mark.parametrize("command", ["show"])
def test_the_command_line_shows_the_queue(tmp_path: Path, command: str) -> None:
    db = tmp_path / "jobs.db"
    sqlite_jobs.enqueue(str(db), "5")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "sqlite_jobs.py"), str(db), command],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert out.split("\t")[:3] == ["1", "5", "pending"]
