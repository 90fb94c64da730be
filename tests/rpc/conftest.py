"""Fixtures shared by the RPC tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from muxserver.testing.live import ReactorThread


@pytest.fixture
def live() -> Iterator[ReactorThread]:
    """A reactor thread (the test starts it), stopped with a 2-second graceful drain."""
    thread = ReactorThread()
    try:
        yield thread
    finally:
        thread.stop(grace=2.0)
