"""Coincidence counting between two tagger channels, streamed over tag blocks.

A coincidence is a pair of tags, one on channel A and one on channel B, with
``|t_B - t_A| <= window`` (ps). Every such pair counts once: one A tag within the window of
two B tags makes two coincidences, as in the integral of a correlation histogram over the
window, so the accidental rate of independent streams is ``2 window r_A r_B``. Pairs split
across two blocks count once (see `._stream`).

The compiled pass walks the block's time-ordered tags (all channels interleaved, as the tagger
delivers them) once, with a second index trailing one window behind and running counts of the
A and B tags between the two: a B tag adds the A count to the total and the reverse. It checks
the order of the timestamps as it goes, at no extra cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

from ._stream import PairStream, as_blocks, as_ps
from .blocks import TagBlock

__all__ = ["CoincidenceCounter", "count_coincidences"]


@njit(cache=True, nogil=True)
def _coincidence_kernel(ts: Any, ch: Any, a: int, b: int, window: int,
                        start: int) -> tuple[int, int]:
    """Count A-B pairs within `window` whose later tag is at index >= `start`.

    Tags before `start` only fill the window. Returns (first out-of-order index or -1,
    pairs). ``ts[:start]`` must be sorted.
    """
    n = ts.size
    in_a = 0
    in_b = 0
    for j in range(start):
        c = ch[j]
        in_a += c == a
        in_b += c == b
    lo = 0
    pairs = 0
    prev = ts[start - 1] if start > 0 else (ts[0] if n > 0 else 0)
    for k in range(start, n):
        t = ts[k]
        if t < prev:
            return k, pairs
        prev = t
        threshold = t - window
        # ts[k] >= threshold bounds this loop without an index check.
        while ts[lo] < threshold:
            c = ch[lo]
            in_a -= c == a
            in_b -= c == b
            lo += 1
        c = ch[k]
        is_a = c == a
        is_b = c == b
        # Arithmetic rather than branches: channels interleave at random.
        pairs += is_a * in_b + is_b * in_a
        in_a += is_a
        in_b += is_b
    return -1, pairs


class CoincidenceCounter(PairStream):
    """Streaming coincidence counter: feed blocks in time order, read `count`.

    ``CoincidenceCounter(1, 2, window_ps=1000)`` counts pairs of a channel-1 and a channel-2
    tag at most 1000 ps apart. A block that is unsorted, negative, starts before the previous
    one ended, or overflowed (unless ``accept_overflow=True``, which tallies
    `overflowed_blocks` and `lost_tags` instead) raises `TagBlockError` and leaves the
    counter as it was, so the caller can skip the block and go on.
    """

    def __init__(self, channel_a: int, channel_b: int, window_ps: int, *,
                 accept_overflow: bool = False) -> None:
        self.window_ps = as_ps(window_ps, "window_ps")
        super().__init__(channel_a, channel_b, self.window_ps, accept_overflow=accept_overflow)

    def _reset_result(self) -> None:
        self.count = 0
        """Coincidences (A-B pairs within the window) counted so far."""

    def _count(self, timestamps: NDArray[np.int64], channels: NDArray[np.integer[Any]],
               start: int) -> tuple[int, Any]:
        bad, pairs = _coincidence_kernel(timestamps, channels, self.channel_a, self.channel_b,
                                         self.window_ps, start)
        return int(bad), int(pairs)

    def _commit(self, part: Any) -> None:
        self.count += part

    def __repr__(self) -> str:
        return (f"<CoincidenceCounter ch{self.channel_a}-ch{self.channel_b} "
                f"+-{self.window_ps} ps: {self.count} in {self.blocks} blocks>")


def count_coincidences(blocks: TagBlock | Iterable[TagBlock], channel_a: int, channel_b: int,
                       window_ps: int, *, accept_overflow: bool = False) -> int:
    """Coincidences between two channels within ``|t_B - t_A| <= window_ps`` (ps).

    `blocks` is one `TagBlock` or a stream of them in time order.
    """
    counter = CoincidenceCounter(channel_a, channel_b, window_ps,
                                 accept_overflow=accept_overflow)
    counter.feed_all(as_blocks(blocks))
    return counter.count
