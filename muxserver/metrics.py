"""Metrics: what one reactor process is doing, in numbers, for ``/metrics`` and the status page.

Theory of operation
-------------------
Nearly every number already exists where the work happens: the connection table counts
connections by state and keeps accepted/closed totals, each
:class:`~muxserver.reactor.StreamServer` counts timeouts, refusals and errors, each connection
counts its requests and bytes (and its server adds them up when it closes), each dispatch
strategy reports ``stats()``. So :class:`Metrics` keeps almost nothing itself: when asked it
*reads* those counters -- in the reactor thread, which owns them -- and lays them out. Reading
costs one pass over the table (tens of milliseconds at 50,000 connections) and nothing at all
when nobody asks.

The one thing measured here is the loop's own latency: :meth:`Metrics.watch_loop` sets the
reactor's ``pass_observer``, and every pass adds its handling time to a :class:`Histogram`
(a bisect and two additions). Without it the reactor pays one ``None`` test per pass.

:func:`collect` lays the numbers out as metric :class:`Family` objects and
:func:`render_prometheus` writes them in the Prometheus text exposition format (version 0.0.4).
Pre-forked workers share their families through :mod:`muxserver.metrics_share`, so one scrape
of any worker answers for all of them (:func:`merge_workers`).
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from muxserver.reactor.listen import format_address
from muxserver.reactor.table import ConnectionState

if TYPE_CHECKING:
    from muxserver.metrics_share import MetricsShare
    from muxserver.reactor import DatagramEndpoint, DispatchStrategy, Reactor, StreamServer

__all__ = [
    "LOOP_BUCKETS",
    "Family",
    "Histogram",
    "Metrics",
    "ServerTotals",
    "StrategyLoad",
    "collect",
    "merge_workers",
    "render_families",
    "render_prometheus",
]

LOOP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Upper bounds (seconds) of the loop latency histogram's buckets; +Inf is implied."""


class Histogram:
    """Counts of observations by upper bound, with their sum: a Prometheus histogram.

    ``counts[i]`` holds the observations in ``(bounds[i-1], bounds[i]]``; the last slot holds
    those above every bound. Only the reactor thread observes.
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LOOP_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"histogram bounds must be increasing and distinct, not {bounds!r}")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Add one observation."""
        # hot path when metrics are on: called once per reactor pass
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at or below it)`` pairs, ending with ``(inf, count)``."""
        running = 0
        pairs = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs

    def quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile (the upper bound of its bucket), or ``None``."""
        if not self.count:
            return None
        rank = q * self.count
        for bound, running in self.cumulative():
            if running >= rank:
                return bound if bound != float("inf") else self.bounds[-1]
        return self.bounds[-1]


@dataclass(frozen=True)
class ServerTotals:
    """Lifetime numbers of one stream server (open connections included)."""

    name: str
    addresses: tuple[str, ...]
    connections: int
    requests: int
    errors: int
    bytes_in: int
    bytes_out: int
    timeouts: int
    refused: int


@dataclass(frozen=True)
class StrategyLoad:
    """How busy one dispatch strategy is: requests running, waiting, and its raw stats."""

    name: str
    busy: int
    queued: int
    capacity: int
    stats: dict[str, int]


class Metrics:
    """The numbers of one reactor and the servers, endpoints and strategies registered here.

    Register every :class:`~muxserver.reactor.StreamServer` and
    :class:`~muxserver.reactor.DatagramEndpoint` whose numbers should appear (their dispatch
    strategies are found through them). Every method is for the reactor thread.
    """

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.servers: list[StreamServer] = []
        self.endpoints: list[DatagramEndpoint] = []
        self.loop_latency: Histogram | None = None
        self.banner: list[str] = []
        """Lines describing what the process serves beyond the registered servers."""
        self.started = time.time()
        """Wall-clock start time (seconds since the epoch)."""
        self.share: MetricsShare | None = None
        """Where the other worker processes' numbers are found (``--workers``), if anywhere."""

    def add_server(self, server: StreamServer) -> None:
        """Report ``server``'s numbers."""
        if server not in self.servers:
            self.servers.append(server)

    def add_endpoint(self, endpoint: DatagramEndpoint) -> None:
        """Report ``endpoint``'s datagram counts."""
        if endpoint not in self.endpoints:
            self.endpoints.append(endpoint)

    def watch_loop(self, bounds: Sequence[float] = LOOP_BUCKETS) -> Histogram:
        """Start measuring every reactor pass; returns the histogram that collects them."""
        if self.loop_latency is None:
            self.loop_latency = Histogram(bounds)
            self.reactor.pass_observer = self.loop_latency.observe
        return self.loop_latency

    def strategies(self) -> list[DispatchStrategy]:
        """Every distinct dispatch strategy of the registered servers and endpoints."""
        seen: dict[int, DispatchStrategy] = {}
        for server in self.servers:
            for strategy in server.strategies.values():
                seen.setdefault(id(strategy), strategy)
        for endpoint in self.endpoints:
            seen.setdefault(id(endpoint.strategy), endpoint.strategy)
        return list(seen.values())

    def server_totals(self) -> list[ServerTotals]:
        """Lifetime totals per server: closed connections' counts plus the open ones'."""
        return self.census()[1]

    def census(self) -> tuple[dict[ConnectionState, int], list[ServerTotals]]:
        """Open connections by state, and :meth:`server_totals`, from one pass over the table."""
        by_state = dict.fromkeys(ConnectionState, 0)
        live: dict[int, list[int]] = {id(server): [0, 0, 0] for server in self.servers}
        for record in self.reactor.table.records():
            by_state[record.state] += 1
            sums = live.get(id(record.server))
            if sums is not None:
                sums[0] += record.requests
                sums[1] += record.bytes_in
                sums[2] += record.bytes_out
        totals = []
        for server in self.servers:
            requests, bytes_in, bytes_out = live[id(server)]
            totals.append(
                ServerTotals(
                    name=server.name,
                    addresses=tuple(format_address(a) for a in server.addresses),
                    connections=server.connections,
                    requests=server.requests_closed + requests,
                    errors=server.errors,
                    bytes_in=server.bytes_in_closed + bytes_in,
                    bytes_out=server.bytes_out_closed + bytes_out,
                    timeouts=server.timeouts,
                    refused=server.refused,
                )
            )
        return by_state, totals

    def strategy_loads(self) -> list[StrategyLoad]:
        """Busy and queued requests of every strategy (see :func:`strategy_load`).

        Strategies that share a name (each server has its own inline strategy) are added up,
        so every name appears once.
        """
        loads: dict[str, StrategyLoad] = {}
        for strategy in self.strategies():
            load = strategy_load(strategy)
            seen = loads.get(load.name)
            if seen is not None:
                stats = dict(seen.stats)
                for key, value in load.stats.items():
                    stats[key] = stats.get(key, 0) + value
                load = StrategyLoad(
                    load.name,
                    seen.busy + load.busy,
                    seen.queued + load.queued,
                    seen.capacity + load.capacity,
                    stats,
                )
            loads[load.name] = load
        return list(loads.values())


def strategy_load(strategy: DispatchStrategy) -> StrategyLoad:
    """Read busy workers and queue depth from a strategy's ``stats()``, whatever its kind.

    Process pools report ``busy``/``queued``, fork-per-request ``children``/``waiting``,
    thread-per-request ``running``; a thread pool reports only ``outstanding`` and
    ``threads``, so its busy count is the smaller of the two and the rest are queued. The
    inline strategy is never busy between passes.
    """
    stats = strategy.stats()
    outstanding = stats.get("outstanding", 0)
    if "busy" in stats:
        busy = stats["busy"]
    elif "children" in stats:
        busy = stats["children"]
    elif "running" in stats:
        busy = stats["running"]
    else:
        busy = min(outstanding, stats.get("threads", 0))
    queued = stats.get("queued", stats.get("waiting", max(0, outstanding - busy)))
    return StrategyLoad(strategy.name, busy, queued, stats.get("capacity", 0), stats)


# -- Prometheus text format -------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, Any]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


Sample = tuple[str, dict[str, Any], float]
"""One sample of a family: the suffix of its name (``""``, ``"_bucket"``...), labels, value."""


@dataclass
class Family:
    """One metric family: its name, Prometheus type, help text and samples."""

    name: str
    kind: str
    help: str
    samples: list[Sample]

    def to_json(self) -> list[Any]:
        """A JSON-able form (for sharing between worker processes)."""
        return [self.name, self.kind, self.help, [list(sample) for sample in self.samples]]

    @classmethod
    def from_json(cls, data: list[Any]) -> Family:
        """The inverse of :meth:`to_json`.

        Raises:
            ValueError: ``data`` is not what :meth:`to_json` makes.
        """
        try:
            name, kind, help_text, samples = data
            return cls(
                str(name),
                str(kind),
                str(help_text),
                [(str(suffix), dict(labels), float(value)) for suffix, labels, value in samples],
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a metric family: {exc}") from None


class _Collector:
    """Collects metric families in order."""

    def __init__(self) -> None:
        self.families: list[Family] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, Any], float]]
    ) -> None:
        self.families.append(
            Family(name, kind, help_text, [("", labels, value) for labels, value in samples])
        )

    def histogram(self, name: str, help_text: str, histogram: Histogram) -> None:
        buckets = histogram.cumulative()
        samples: list[Sample] = [("_bucket", {"le": _number(le)}, n) for le, n in buckets]
        samples += [("_sum", {}, histogram.sum), ("_count", {}, histogram.count)]
        self.families.append(Family(name, "histogram", help_text, samples))


def render_families(families: Iterable[Family]) -> str:
    """``families`` in the Prometheus text exposition format."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            lines.append(f"{family.name}{suffix}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def merge_workers(
    own_pid: int, own: list[Family], others: Iterable[tuple[int, list[Family]]]
) -> list[Family]:
    """One family list for several processes: every sample gets its process's ``pid`` label.

    Families keep the order of ``own``; one that only another process has comes after them.
    """
    merged: dict[str, Family] = {}

    def add(pid: int, families: list[Family]) -> None:
        for family in families:
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Family(family.name, family.kind, family.help, [])
            into.samples += [
                (suffix, {**labels, "pid": pid}, value) for suffix, labels, value in family.samples
            ]

    add(own_pid, own)
    for pid, families in sorted(others, key=lambda other: other[0]):
        add(pid, families)
    return list(merged.values())


def collect(metrics: Metrics) -> list[Family]:
    """Every number of ``metrics`` as metric families (reactor thread)."""
    reactor = metrics.reactor
    table = reactor.table
    out = _Collector()
    out.family(
        "muxserver_up",
        "gauge",
        "1 while the process serves; the pid label tells workers apart.",
        [({"pid": os.getpid()}, 1)],
    )
    out.family(
        "muxserver_ready",
        "gauge",
        "1 while accepting new connections, 0 while draining.",
        [({}, 1 if reactor.state.value == "running" else 0)],
    )
    out.family(
        "muxserver_start_time_seconds",
        "gauge",
        "When the process started, in seconds since the epoch.",
        [({}, metrics.started)],
    )
    by_state, totals = metrics.census()
    out.family(
        "muxserver_connections",
        "gauge",
        "Open stream connections by the state of their partially finished request.",
        [({"state": state.value}, count) for state, count in by_state.items()],
    )
    out.family(
        "muxserver_connections_accepted_total",
        "counter",
        "Stream connections opened.",
        [({}, table.accepted)],
    )
    out.family(
        "muxserver_connections_closed_total",
        "counter",
        "Stream connections closed.",
        [({}, table.closed)],
    )
    per_server: list[tuple[str, str, str, str]] = [
        ("muxserver_server_connections", "gauge", "connections", "Open connections by service."),
        ("muxserver_requests_total", "counter", "requests", "Requests received by service."),
        ("muxserver_errors_total", "counter", "errors", "Service and protocol errors."),
        ("muxserver_received_bytes_total", "counter", "bytes_in", "Bytes read by service."),
        ("muxserver_sent_bytes_total", "counter", "bytes_out", "Bytes written by service."),
        ("muxserver_timeouts_total", "counter", "timeouts", "Connections closed by timeouts."),
        ("muxserver_refused_total", "counter", "refused", "Connections refused at accept."),
    ]
    for name, kind, field, help_text in per_server:
        samples = [({"service": t.name}, getattr(t, field)) for t in totals]
        out.family(name, kind, help_text, samples)
    if metrics.endpoints:
        for name, field, help_text in (
            ("muxserver_datagrams_received_total", "received", "Datagrams received."),
            ("muxserver_datagrams_sent_total", "sent", "Datagrams sent."),
            ("muxserver_datagrams_dropped_total", "dropped", "Datagrams dropped."),
        ):
            samples = [({"service": e.name}, getattr(e, field)) for e in metrics.endpoints]
            out.family(name, "counter", help_text, samples)
    loads = metrics.strategy_loads()
    out.family(
        "muxserver_dispatch_busy_workers",
        "gauge",
        "Requests being served by each dispatch strategy.",
        [({"strategy": load.name}, load.busy) for load in loads],
    )
    out.family(
        "muxserver_dispatch_queue_depth",
        "gauge",
        "Requests waiting for a worker of each dispatch strategy.",
        [({"strategy": load.name}, load.queued) for load in loads],
    )
    out.family(
        "muxserver_dispatch_capacity",
        "gauge",
        "Requests each strategy admits at once (0: unbounded or inline).",
        [({"strategy": load.name}, load.capacity) for load in loads],
    )
    if metrics.loop_latency is not None:
        out.histogram(
            "muxserver_loop_pass_seconds",
            "Time each reactor pass spent handling ready sockets, timers and callbacks.",
            metrics.loop_latency,
        )
    return out.families


def render_prometheus(metrics: Metrics) -> str:
    """Every number of ``metrics`` in the Prometheus text exposition format (reactor thread).

    With a :attr:`Metrics.share` (``--workers``), the other workers' latest snapshots are
    included and every sample carries a ``pid`` label.
    """
    families = collect(metrics)
    if metrics.share is not None:
        own = os.getpid()
        families = merge_workers(own, families, metrics.share.others(own))
    return render_families(families)
