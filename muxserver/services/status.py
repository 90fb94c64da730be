"""The status service: a live status page, ``/status.json``, ``/metrics``, health and readiness.

Routes (GET or HEAD):

==================  ===========================================================================
``/``               the status page (:mod:`~muxserver.services.status_page`): plain HTML and
                    a little JavaScript, no external assets. It polls ``/status.json`` every
                    second and shows a summary, every service's totals, dispatch pool usage and
                    one page of the connection table, sortable by clicking a column heading.
``/status.json``    the same data: ``?page=N&size=N&sort=[-]COLUMN&state=STATE&service=NAME``.
                    Paging and sorting happen here, on live records, so a page costs the same
                    whether the process holds 50 or 50,000 connections: only the rows shown are
                    copied (with :meth:`~muxserver.reactor.StreamConnection.snapshot`).
``/metrics``        Prometheus text exposition format (:func:`muxserver.metrics.render_prometheus`).
``/healthz``        ``200 ok`` while the process runs (liveness).
``/readyz``         ``200 ready`` while accepting, ``503 draining`` once a graceful stop began
                    (readiness: take this process out of a load balancer's rotation).
``/whoami``         JSON: the client address as this process sees it (after the PROXY
                    protocol, when the listener requires it), the socket's peer and the pid --
                    for checking a deployment behind a load balancer.
==================  ===========================================================================

The service reads the reactor's connection table, which only the reactor thread may touch, so
it must run inline (the :class:`~muxserver.reactor.dispatch.InlineStrategy`, the default); it
checks and answers 500 otherwise. With ``--workers`` each worker process serves its own page:
the page names the pid that answered.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from muxserver.handlers.base import Handler, Request
from muxserver.handlers.http import HTTPHandler, HTTPRequest, HTTPResponse
from muxserver.metrics import Metrics, render_prometheus
from muxserver.reactor.listen import format_address
from muxserver.reactor.loop import ReactorState
from muxserver.reactor.table import ConnectionState
from muxserver.service import Peer, Service
from muxserver.services.status_page import status_page

if TYPE_CHECKING:
    from muxserver.reactor.stream import StreamConnection

__all__ = ["SORT_KEYS", "StatusService", "status_handler"]

_JSON = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
_TEXT = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]
_PROMETHEUS = [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")]
_HTML = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
_MAX_PAGE_SIZE = 500

SORT_KEYS: dict[str, Callable[[StreamConnection], Any]] = {
    "id": lambda r: r.id,
    "service": lambda r: r.server.name,
    "peer": lambda r: format_address(r.peer_address),
    "client": lambda r: format_address(r.snapshot().client_address),
    "state": lambda r: r.state.value,
    "handler": lambda r: str(getattr(r.handler.state, "name", r.handler.state)),
    "buffered_in": lambda r: r.handler.buffered,
    "buffered_out": lambda r: r.out_bytes,
    "bytes_in": lambda r: r.bytes_in,
    "bytes_out": lambda r: r.bytes_out,
    "requests": lambda r: r.requests,
    "in_flight": lambda r: r.in_flight,
    "age": lambda r: -r.created,
    "idle": lambda r: -r.last_activity,
}
"""The columns ``/status.json`` sorts by (``sort=-name`` for descending), read off live records."""


def status_handler() -> Handler:
    """The handler the status service is served with: HTTP/1.1 with small limits."""
    return HTTPHandler(max_body_size=64 * 1024)


class StatusService(Service):
    """Answer the routes in the module docstring from ``metrics`` (its reactor, servers...).

    ``name`` is shown as the page's title (e.g. the instance name behind a load balancer).
    """

    def __init__(self, metrics: Metrics, *, name: str = "muxserver") -> None:
        self.metrics = metrics
        self.name = name
        self.sequence = 0
        """How many ``/status.json`` answers were made (the page shows it: proof of refresh)."""

    def handle(self, request: Request, peer: Peer) -> HTTPResponse:
        """Route one HTTP request (see the module docstring)."""
        assert isinstance(request, HTTPRequest)
        if request.method not in (b"GET", b"HEAD"):
            return HTTPResponse(405, [*_TEXT, ("Allow", "GET, HEAD")], "only GET and HEAD\n")
        try:
            url = urlsplit(request.target.decode("latin-1"))
        except ValueError:  # e.g. "//[" : not a target this service can route
            return HTTPResponse(400, _TEXT, "malformed request target\n")
        route = _ROUTES.get(url.path)
        if route is None:
            return HTTPResponse(404, _TEXT, f"no such page: {url.path}\n")
        reactor = self.metrics.reactor
        if route.needs_table and not reactor.in_reactor_thread():
            return HTTPResponse(
                500, _TEXT, "the status service must run inline, in the reactor thread\n"
            )
        return route.answer(self, parse_qs(url.query), peer)

    # -- the routes -------------------------------------------------------------------------

    def page(self, query: dict[str, list[str]], peer: Peer) -> HTTPResponse:
        """The HTML status page."""
        return HTTPResponse(200, _HTML, status_page(self.name))

    def status_json(self, query: dict[str, list[str]], peer: Peer) -> HTTPResponse:
        """One page of the connection table plus the summary, as JSON."""
        try:
            body = self.status(
                page=int(_one(query, "page", "1")),
                size=int(_one(query, "size", "50")),
                sort=_one(query, "sort", "id"),
                state=_one(query, "state", ""),
                service=_one(query, "service", ""),
            )
        except ValueError as exc:
            return HTTPResponse(400, _TEXT, f"{exc}\n")
        return HTTPResponse(200, _JSON, json.dumps(body, separators=(",", ":")))

    def prometheus(self, query: dict[str, list[str]], peer: Peer) -> HTTPResponse:
        """The Prometheus exposition."""
        return HTTPResponse(200, _PROMETHEUS, render_prometheus(self.metrics))

    def healthz(self, query: dict[str, list[str]], peer: Peer) -> HTTPResponse:
        """Liveness: answering at all is the proof."""
        return HTTPResponse(200, _TEXT, "ok\n")

    def readyz(self, query: dict[str, list[str]], peer: Peer) -> HTTPResponse:
        """Readiness: 200 while running, 503 while draining or stopped."""
        state = self.metrics.reactor.state
        if state is ReactorState.RUNNING:
            return HTTPResponse(200, _TEXT, "ready\n")
        return HTTPResponse(503, _TEXT, f"{state.value}\n")

    def whoami(self, query: dict[str, list[str]], peer: Peer) -> HTTPResponse:
        """The client address as seen here, the socket peer and the pid."""
        body = {
            "client": format_address(peer.client_address),
            "peer": format_address(peer.address),
            "pid": os.getpid(),
            "name": self.name,
        }
        return HTTPResponse(200, _JSON, json.dumps(body))

    # -- the data ---------------------------------------------------------------------------

    def status(
        self, *, page: int = 1, size: int = 50, sort: str = "id", state: str = "", service: str = ""
    ) -> dict[str, Any]:
        """The ``/status.json`` document (reactor thread only).

        Raises:
            ValueError: naming the parameter, for an unknown sort column or state, or a page
                or size out of range.
        """
        if page < 1 or not 1 <= size <= _MAX_PAGE_SIZE:
            raise ValueError(f"page must be >= 1 and size between 1 and {_MAX_PAGE_SIZE}")
        descending = sort.startswith("-")
        column = sort.lstrip("-")
        key = SORT_KEYS.get(column)
        if key is None:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)} (prefix - to reverse)")
        wanted: ConnectionState | None = None
        if state:
            try:
                wanted = ConnectionState(state)
            except ValueError:
                names = ", ".join(s.value for s in ConnectionState)
                raise ValueError(f"state must be one of {names}") from None
        metrics = self.metrics
        reactor = metrics.reactor
        now = reactor.time()
        records = reactor.table.records()
        if wanted is not None or service:
            records = [
                r
                for r in records
                if (wanted is None or r.state is wanted)
                and (not service or r.server.name == service)
            ]
        total = len(records)
        end = page * size

        def full_key(record: StreamConnection) -> tuple[Any, int]:
            return (key(record), record.id)

        if descending:
            chosen = heapq.nlargest(end, records, key=full_key)
        else:
            chosen = heapq.nsmallest(end, records, key=full_key)
        rows = [_row(record.snapshot(), now) for record in chosen[end - size :]]
        self.sequence += 1
        latency = metrics.loop_latency
        table = reactor.table
        by_state, totals = metrics.census()
        return {
            "name": self.name,
            "pid": os.getpid(),
            "state": reactor.state.value,
            "uptime": round(time.time() - metrics.started, 3),
            "sequence": self.sequence,
            "connections": {
                "open": len(table),
                "accepted": table.accepted,
                "closed": table.closed,
                "by_state": {s.value: n for s, n in by_state.items()},
            },
            "services": [dataclasses.asdict(t) for t in totals],
            "dispatch": [
                {"name": load.name, "busy": load.busy, "queued": load.queued, **load.stats}
                for load in metrics.strategy_loads()
            ],
            "loop": None
            if latency is None
            else {
                "passes": latency.count,
                "p50_ms": _ms(latency.quantile(0.5)),
                "p99_ms": _ms(latency.quantile(0.99)),
            },
            "page": {
                "number": page,
                "size": size,
                "pages": max(1, -(-total // size)),
                "total": total,
                "sort": sort,
                "state": state,
                "service": service,
            },
            "rows": rows,
        }


class _Route:
    """One path: the method that answers it, and whether it reads the reactor's table."""

    __slots__ = ("answer", "needs_table")

    def __init__(
        self,
        answer: Callable[[StatusService, dict[str, list[str]], Peer], HTTPResponse],
        needs_table: bool,
    ) -> None:
        self.answer = answer
        self.needs_table = needs_table


_ROUTES: dict[str, _Route] = {
    "/": _Route(StatusService.page, False),
    "/status.json": _Route(StatusService.status_json, True),
    "/metrics": _Route(StatusService.prometheus, True),
    "/healthz": _Route(StatusService.healthz, False),
    "/readyz": _Route(StatusService.readyz, False),
    "/whoami": _Route(StatusService.whoami, False),
}


def _one(query: dict[str, list[str]], name: str, default: str) -> str:
    values = query.get(name)
    return values[-1] if values else default


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _row(snap: Any, now: float) -> dict[str, Any]:
    return {
        "id": snap.id,
        "service": snap.server,
        "client": format_address(snap.client_address),
        "peer": format_address(snap.peer),
        "state": snap.state.value,
        "handler": snap.handler_state,
        "buffered_in": snap.input_buffered,
        "buffered_out": snap.output_buffered,
        "bytes_in": snap.bytes_in,
        "bytes_out": snap.bytes_out,
        "requests": snap.requests,
        "in_flight": snap.in_flight,
        "age": round(now - snap.created, 3),
        "idle": round(now - snap.last_activity, 3),
        "paused": list(snap.reading_paused),
    }
