"""Dispatch strategies: inline, threads and processes behind one interface."""

from muxserver.reactor.dispatch.base import DispatchError, DispatchStrategy, DoneCallback
from muxserver.reactor.dispatch.children import ParentChange, RemoteTracebackError
from muxserver.reactor.dispatch.fork import ForkPerRequestStrategy
from muxserver.reactor.dispatch.inline import InlineStrategy
from muxserver.reactor.dispatch.prefork import ProcessPoolStrategy, WorkerState
from muxserver.reactor.dispatch.threads import ThreadPerRequestStrategy, ThreadPoolStrategy

__all__ = [
    "DispatchError",
    "DispatchStrategy",
    "DoneCallback",
    "ForkPerRequestStrategy",
    "InlineStrategy",
    "ParentChange",
    "ProcessPoolStrategy",
    "RemoteTracebackError",
    "ThreadPerRequestStrategy",
    "ThreadPoolStrategy",
    "WorkerState",
]
