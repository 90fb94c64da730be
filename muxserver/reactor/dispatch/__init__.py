"""Dispatch strategies: inline, threads and processes behind one interface."""

from muxserver.reactor.dispatch.base import DispatchError, DispatchStrategy, DoneCallback
from muxserver.reactor.dispatch.inline import InlineStrategy

__all__ = ["DispatchError", "DispatchStrategy", "DoneCallback", "InlineStrategy"]
