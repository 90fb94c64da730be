"""Reactor tests run on every poller backend (epoll directly, and the selectors module)."""

from collections.abc import Iterator

import pytest

from muxserver.reactor.poller import EpollPoller, Poller, SelectorPoller
from muxserver.testing.live import ReactorThread

POLLERS = {"epoll": EpollPoller, "selectors": SelectorPoller}


@pytest.fixture(params=sorted(POLLERS))
def poller(request: pytest.FixtureRequest) -> Poller:
    """A fresh poller of each backend."""
    return POLLERS[request.param]()


@pytest.fixture
def live(poller: Poller) -> Iterator[ReactorThread]:
    """A reactor on a background thread, on each poller backend."""
    thread = ReactorThread(poller=poller).start()
    try:
        yield thread
    finally:
        thread.stop()
