"""A job queue in SQLite served by an ordinary socketserver handler -- the seed's "SQL" note.

The seed's BaseServer docstring says requests need not come from a socket: one could "read
entries from a SQL database, overriding get_request() to return a table entry". This is that
server, on ``muxserver.socketserver`` and the standard library's ``sqlite3``.

How a job is run, and why nothing is lost or done twice
-------------------------------------------------------
``get_request`` takes the oldest pending row. It first counts the attempt in its own, committed
write (so a job that kills the process every time is not retried forever), then opens the
job's transaction with ``BEGIN IMMEDIATE`` and re-reads the row there. The handler runs inside
that transaction and writes its effects through ``self.request.db``. Only after the handler
returns is the row marked done, and the effects and the "done" mark are committed together:

* the process dies mid-job   -> the transaction never committed: no effects, row still pending;
* the handler raises         -> ``handle_error`` rolls back, records the error and puts the row
  back to pending, or parks it once ``max_attempts`` attempts have been made;
* the handler returns        -> effects and "done" commit at once, so it is never run again.

Effects *outside* the database (an e-mail, an HTTP call) are at-least-once, as always.
Holding the write lock for the length of a job keeps other writers waiting (they use a busy
timeout), so keep jobs short or move slow work out of the transaction.

Waiting: ``fileno()`` is a doorbell (a socketpair) rung by :meth:`JobServer.submit` and by
``service_actions`` when it sees pending rows added by other processes (every
``poll_interval``), so ``serve_forever`` sleeps in the reactor while there is nothing to do.

Command line::

    python examples/sqlite_jobs.py jobs.db add 1 2 3     # queue three jobs
    python examples/sqlite_jobs.py jobs.db work          # serve until Ctrl-C
    python examples/sqlite_jobs.py jobs.db drain         # serve until the queue is empty
    python examples/sqlite_jobs.py jobs.db show
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from muxserver import socketserver

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'parked')),
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS effects (
    job_id INTEGER NOT NULL,
    value TEXT NOT NULL
);
"""


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the schema in place.

    The server may be made in one thread and served in another; it uses its connection from
    one thread at a time, so sqlite3's same-thread check is turned off.
    """
    db = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    return db


def enqueue(path: str, *payloads: str) -> list[int]:
    """Queue jobs from any process; returns their ids. A running server finds them within its
    ``poll_interval``."""
    db = connect(path)
    try:
        return [
            int(db.execute("INSERT INTO jobs (payload) VALUES (?)", (p,)).lastrowid or 0)
            for p in payloads
        ]
    finally:
        db.close()


class Job:
    """The request a handler gets: one pending row, inside its open transaction."""

    def __init__(self, db: sqlite3.Connection, job_id: int, payload: str, attempt: int) -> None:
        self.db = db
        """The connection whose transaction commits the job's effects with its "done" mark."""
        self.id = job_id
        self.payload = payload
        self.attempt = attempt
        """1 on the first try, 2 on the first retry, ..."""
        self.result: str | None = None
        """Set by the handler; stored in the row when the job is done."""


class NoPendingJobError(OSError):
    """``get_request`` found nothing to do (BaseServer treats OSError there as "no request")."""


class JobServer(socketserver.BaseServer):
    """Serves the ``jobs`` table of an SQLite database, one job at a time.

    ``RequestHandlerClass`` is an ordinary ``socketserver.BaseRequestHandler`` subclass; its
    ``self.request`` is a :class:`Job` and ``self.client_address`` is ``"job <id>"``.
    """

    max_attempts = 3
    """Attempts (including ones that died with the process) before a job is parked."""

    def __init__(self, path: str, RequestHandlerClass: Any) -> None:  # noqa: N803
        super().__init__(path, RequestHandlerClass)
        try:
            self.db = connect(path)
        except BaseException:
            super().server_close()  # the reactor BaseServer made: nothing else would close it
            raise
        self._bell_in, self._bell_out = socket.socketpair()
        self._bell_in.setblocking(False)
        self._bell_out.setblocking(False)
        self._ring()  # there may be work left from a previous run

    # -- the request source ---------------------------------------------------------------

    def fileno(self) -> int:
        """The doorbell: readable while there may be pending jobs."""
        return self._bell_in.fileno()

    def submit(self, payload: str) -> int:
        """Queue a job from this process and wake the server."""
        job_id = int(
            self.db.execute("INSERT INTO jobs (payload) VALUES (?)", (payload,)).lastrowid or 0
        )
        self._ring()
        return job_id

    def pending(self) -> int:
        """How many jobs are waiting."""
        row = self.db.execute("SELECT count(*) FROM jobs WHERE state = 'pending'").fetchone()
        return int(row[0])

    def service_actions(self) -> None:
        """Every ``poll_interval``: ring for jobs that other processes added."""
        if self.pending():
            self._ring()

    def get_request(self) -> tuple[Job, str]:
        """Take the oldest pending job and open its transaction.

        Raises:
            NoPendingJobError: nothing to do (the doorbell stays quiet until the next job).
        """
        self._silence()
        db = self.db
        row = db.execute(
            "SELECT id, attempts FROM jobs WHERE state = 'pending' ORDER BY id LIMIT 1"
        ).fetchone()
        if row is None:
            raise NoPendingJobError("no pending job")
        self._ring()  # there may be more after this one
        job_id, attempts = row
        if attempts >= self.max_attempts:
            db.execute(
                "UPDATE jobs SET state = 'parked', last_error = coalesce(last_error, ?) "
                "WHERE id = ? AND state = 'pending'",
                (f"gave up: {attempts} attempts did not finish (did the process die?)", job_id),
            )
            raise NoPendingJobError(f"job {job_id} parked")
        # The attempt is counted and committed *before* the job runs, so a crash counts too.
        db.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id = ?", (job_id,))
        db.execute("BEGIN IMMEDIATE")
        row = db.execute(
            "SELECT payload, attempts FROM jobs WHERE id = ? AND state = 'pending'", (job_id,)
        ).fetchone()
        if row is None:  # another server took it meanwhile
            db.execute("ROLLBACK")
            raise NoPendingJobError(f"job {job_id} was taken")
        return Job(db, job_id, row[0], row[1]), f"job {job_id}"

    # -- the outcome ----------------------------------------------------------------------

    def process_request(self, request: Job, client_address: Any) -> None:
        """Run the handler; mark the job done in its own transaction only if it succeeded."""
        self.finish_request(request, client_address)
        request.db.execute(
            "UPDATE jobs SET state = 'done', result = ?, last_error = NULL WHERE id = ?",
            (request.result, request.id),
        )
        request.db.execute("COMMIT")
        self.shutdown_request(request)

    def handle_error(self, request: Job, client_address: Any) -> None:
        """Undo the job's effects, record the error; retry later or park it."""
        error = traceback.format_exc(limit=-3).strip()
        with contextlib.suppress(sqlite3.Error):
            request.db.execute("ROLLBACK")
        self.db.execute(
            "UPDATE jobs SET last_error = ?, "
            "state = CASE WHEN attempts >= ? THEN 'parked' ELSE 'pending' END WHERE id = ?",
            (error, self.max_attempts, request.id),
        )
        last_line = error.splitlines()[-1]
        print(f"{client_address} failed (attempt {request.attempt}): {last_line}", file=sys.stderr)

    def close_request(self, request: Job) -> None:
        """Make sure no transaction is left open, whatever happened."""
        if request.db.in_transaction:
            request.db.execute("ROLLBACK")

    def server_close(self) -> None:
        """Close the database, the doorbell and the reactor."""
        super().server_close()
        self.db.close()
        self._bell_in.close()
        self._bell_out.close()

    def _ring(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._bell_out.send(b"\0")

    def _silence(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._bell_in.recv(4096):
                pass


class Square(socketserver.BaseRequestHandler):
    """The demo job: square an integer, write it to ``effects``, return it as the result.

    ``fail`` always raises; ``slow`` sleeps a minute on its first attempt (to be killed).
    """

    request: Job

    def handle(self) -> None:
        """Do the job inside its transaction."""
        job = self.request
        if job.payload == "fail":
            raise ValueError("this job always fails")
        if job.payload == "slow" and job.attempt == 1:
            job.db.execute("INSERT INTO effects (job_id, value) VALUES (?, 'partial')", (job.id,))
            print(f"started slow job {job.id}", flush=True)
            time.sleep(60)
        value = "0" if job.payload == "slow" else str(int(job.payload) ** 2)
        job.db.execute("INSERT INTO effects (job_id, value) VALUES (?, ?)", (job.id, value))
        job.result = value


def main(argv: list[str]) -> int:
    """The command line (see the module docstring)."""
    if len(argv) < 2:
        print(__doc__.split("Command line::")[1], file=sys.stderr)
        return 2
    path, command, *args = argv
    if command == "add":
        print(*enqueue(path, *args))
        return 0
    if command == "show":
        db = connect(path)
        for row in db.execute("SELECT id, payload, state, attempts, result, last_error FROM jobs"):
            print(*row, sep="\t")
        db.close()
        return 0
    with JobServer(path, Square) as server:
        if command == "drain":
            while server.pending():
                server.handle_request()
        elif command == "work":
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever(poll_interval=1.0)
        else:
            print(f"unknown command {command!r}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
