"""One scrape of ``/metrics`` for every worker: pre-forked workers share metric snapshots.

Theory of operation
-------------------
With ``--workers N`` the workers accept on the same listening sockets, so a scrape of
``/metrics`` reaches whichever worker the kernel picks -- one worker's numbers, a different
worker's the next time. To answer for all of them, the supervisor makes one private directory
(mode 0700) before the first fork and every worker:

* writes its own metric families to ``<directory>/<pid>.json`` when it starts and then every
  :data:`PUBLISH_INTERVAL` seconds (written to a temporary name, then renamed over the old
  file, so a reader never sees half a file);
* answers a scrape with its own live numbers plus the latest file of every other worker, every
  sample labelled with its worker's ``pid`` (:func:`~muxserver.metrics.merge_workers`).

The supervisor deletes a worker's file when it reaps the worker (:meth:`MetricsShare.forget`),
so a dead worker's series stop being reported, and removes the directory when it exits. Other
workers' numbers are at most one interval old; counters of a worker that exited are gone with
it, which Prometheus's ``rate()`` treats as a counter reset.

What it costs: each publication reads the connection table once, as a scrape does -- about
0.7 µs per open connection (13 ms of loop time at 19,000 connections, the best of 20
``collect`` calls over an idle table). The interval stretches so that publishing never takes
more than :data:`PUBLISH_SHARE` (1%) of a worker's time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING

from muxserver.metrics import Family, Metrics, collect

if TYPE_CHECKING:
    from muxserver.reactor import Reactor

__all__ = ["PUBLISH_INTERVAL", "PUBLISH_SHARE", "MetricsShare"]

log = logging.getLogger("muxserver.metrics")

PUBLISH_INTERVAL = 2.0
"""Least seconds between two snapshots of one worker (the others' numbers are this old at most,
unless the table is so large that :data:`PUBLISH_SHARE` stretches the interval)."""

PUBLISH_SHARE = 0.01
"""Most of a worker's loop time that publishing may take: a snapshot that took ``d`` seconds
waits at least ``d / PUBLISH_SHARE`` seconds for the next one."""

_SUFFIX = ".json"


class MetricsShare:
    """A directory where each worker process leaves the latest snapshot of its metrics.

    Args:
        directory: an existing directory only this server's processes write to.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @classmethod
    def create(cls) -> MetricsShare:
        """Make a fresh private directory (in the system's temporary directory)."""
        return cls(tempfile.mkdtemp(prefix="muxserver-metrics-"))

    def _path(self, pid: int) -> str:
        return os.path.join(self.directory, f"{pid}{_SUFFIX}")

    def publish(self, families: list[Family], pid: int | None = None) -> None:
        """Replace this process's snapshot (``pid`` defaults to this process's)."""
        path = self._path(os.getpid() if pid is None else pid)
        temporary = path + ".tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump([family.to_json() for family in families], file)
            os.replace(temporary, path)
        except OSError as exc:  # the directory went away with the supervisor: nobody asks
            log.debug("metrics snapshot not written: %s", exc)

    def others(self, own_pid: int) -> list[tuple[int, list[Family]]]:
        """The latest snapshot of every process but ``own_pid``; unreadable ones are skipped."""
        found: list[tuple[int, list[Family]]] = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return found
        for name in names:
            stem, suffix = name[: -len(_SUFFIX)], name[-len(_SUFFIX) :]
            if suffix != _SUFFIX or not stem.isdigit() or int(stem) == own_pid:
                continue
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8") as file:
                    families = [Family.from_json(item) for item in json.load(file)]
            except (OSError, ValueError) as exc:  # removed meanwhile, or not ours
                log.debug("metrics snapshot %s skipped: %s", name, exc)
                continue
            found.append((int(stem), families))
        return found

    def forget(self, pid: int) -> None:
        """Drop the snapshot of process ``pid`` (the supervisor, once it reaped the worker)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(pid))

    def remove(self) -> None:
        """Delete the directory and every snapshot in it."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def publish_every(
        self, reactor: Reactor, metrics: Metrics, interval: float = PUBLISH_INTERVAL
    ) -> None:
        """Publish ``metrics`` now and then every ``interval`` seconds on ``reactor``; the
        metrics then include the other processes' snapshots (:attr:`Metrics.share`)."""
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        metrics.share = self

        def publish() -> None:
            started = time.perf_counter()
            self.publish(collect(metrics))
            took = time.perf_counter() - started
            reactor.call_later(max(interval, took / PUBLISH_SHARE), publish)

        publish()
