"""Hypothesis strategies for driving handlers: ways to split bytes, and ways to damage them.

Requires hypothesis (a dev dependency of muxserver, not a runtime one).

The chunking helpers are protocol-neutral: :func:`chunkings` draws the ways a byte string may
arrive from a socket (one piece, one byte at a time, or cut anywhere, with empty reads between),
and :func:`split` applies an explicit list of cut points, for regression tests that pin one
chunking hypothesis found. :func:`mutations` draws damaged copies of a valid message, for the
"only ProtocolError escapes" oracle.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from hypothesis import strategies as st

__all__ = ["chunkings", "mutations", "split"]


def split(data: bytes, cut_points: Iterable[int]) -> list[bytes]:
    """Cut ``data`` at each offset in ``cut_points`` (any order; repeats give empty chunks).

    Offsets are clamped to ``0..len(data)``, so the chunks always join back to ``data``:
    ``split(b"abcd", [1, 1, 3]) == [b"a", b"", b"bc", b"d"]``.
    """
    cuts = sorted(min(max(cut, 0), len(data)) for cut in cut_points)
    bounds = [0, *cuts, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def chunkings(data: bytes, *, max_cuts: int = 32) -> st.SearchStrategy[list[bytes]]:
    """Ways to split ``data`` into consecutive chunks that join back to ``data``.

    Draws the whole string in one chunk, one byte per chunk, or up to ``max_cuts`` random cut
    points (repeated cut points give empty chunks, which a driver must treat as "nothing
    read", never as end of input). Shrinks towards fewer cuts.
    """
    cut_lists = st.lists(st.integers(0, len(data)), max_size=max_cuts)
    return st.one_of(
        cut_lists.map(lambda cuts: split(data, cuts)),
        st.just([data[i : i + 1] for i in range(len(data))]),
    )


@st.composite
def mutations(draw: st.DrawFn, data: bytes, *, max_edits: int = 4) -> bytes:
    """A damaged copy of ``data``: 1 to ``max_edits`` byte flips, drops, inserts or truncations.

    The result may by chance still be valid; use it to check that bad input raises only
    :class:`~muxserver.handlers.base.ProtocolError`, not to expect an error every time.
    """
    mutated = bytearray(data)
    for _ in range(draw(st.integers(1, max_edits))):
        edit = draw(st.sampled_from(("flip", "drop", "insert", "truncate")))
        at = draw(st.integers(0, max(len(mutated) - 1, 0)))
        if edit == "flip" and mutated:
            mutated[at] ^= draw(st.integers(1, 255))
        elif edit == "drop" and mutated:
            del mutated[at]
        elif edit == "insert":  # anywhere, after the last byte included
            mutated.insert(draw(st.integers(0, len(mutated))), draw(st.integers(0, 255)))
        else:
            del mutated[at:]
    return bytes(mutated)


# Message streams for the built-in protocols (lines, RESP, HTTP) live in
# muxserver.testing.protocols, which builds on these helpers.
