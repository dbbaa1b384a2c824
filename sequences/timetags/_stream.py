"""Streaming over tag blocks: the carry that makes block boundaries invisible.

Both consumers count pairs of tags (one on channel A, one on channel B) less than a reach
apart in time: the coincidence window, or the correlation range. Each pair is counted once,
by the compiled pass, when it reaches the later of its two tags; the earlier one may sit in an
earlier block. So after each block we carry its A and B tags within the reach of its last
timestamp (only those can still pair with a later tag), and the next block is counted in two
calls of the same kernel: a short head (the carry followed by the block's tags within reach of
the carry) counting only the head's block part, then the whole block counting from the end of
that head. Nothing else is copied, so a 10^7-tag block costs the same as in one piece.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

from qnetlab.instruments.tag_blocks import TagBlock, check_overflow, order_error

_EMPTY = np.empty(0, np.int64)


@njit(cache=True, nogil=True)
def count_channels(channels: Any, a: int, b: int) -> tuple[int, int]:
    """Numbers of tags on channels `a` and `b`.

    A pass of its own rather than inside the pair kernels: this loop vectorises (about 0.1 ns
    a tag), while two more counters in a kernel's branchy loop cost ten times that.
    """
    n_a = 0
    n_b = 0
    for k in range(channels.size):
        c = channels[k]
        n_a += c == a
        n_b += c == b
    return n_a, n_b


def as_blocks(blocks: TagBlock | Iterable[TagBlock]) -> Iterable[TagBlock]:
    """A single block as a one-block stream; a stream as it is."""
    return (blocks,) if isinstance(blocks, TagBlock) else blocks


def as_ps(value: Any, name: str, *, positive: bool = False) -> int:
    """An integer number of picoseconds, or a ValueError naming the argument."""
    try:
        ps = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer number of picoseconds, got {value!r}; "
                        "convert with int(round(seconds * 1e12))") from None
    if ps < 0 or (positive and ps == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} ps, got {ps}")
    return ps


class PairStream:
    """Common state of the streaming consumers (see the module docstring).

    Subclasses supply `_count` (run the kernel on `timestamps[start:]` with the window
    reaching back before `start`; return the first out-of-order position or -1 and a partial
    result) and `_commit` (add a partial result).
    """

    def __init__(self, channel_a: int, channel_b: int, reach_ps: int, *,
                 accept_overflow: bool = False) -> None:
        a, b = operator.index(channel_a), operator.index(channel_b)
        if a == b:
            raise ValueError(f"channel_a and channel_b are both {a}; pairs need two different "
                             "channels (split one detector's signal to two inputs for an "
                             "autocorrelation)")
        self.channel_a, self.channel_b = a, b
        self._reach = reach_ps
        self.accept_overflow = accept_overflow
        self.reset()

    def reset(self) -> None:
        """Forget everything fed so far (for example after a tagger restart)."""
        self._carry_t: NDArray[np.int64] = _EMPTY
        self._carry_c: NDArray[np.int64] = _EMPTY
        self._first: int | None = None
        self._last: int | None = None
        self.blocks = 0
        """Blocks fed, empty ones included."""
        self.tags_a = 0
        """Tags seen on channel A."""
        self.tags_b = 0
        """Tags seen on channel B."""
        self.overflowed_blocks = 0
        """Blocks fed with the tagger's overflow flag set (only with accept_overflow)."""
        self.lost_tags = 0
        """Tags the tagger reported dropped in those blocks (where it gave a count)."""
        self._reset_result()

    @property
    def span_ps(self) -> int:
        """Time from the first to the last tag fed, any channel (ps); 0 before any tag."""
        return 0 if self._first is None or self._last is None else self._last - self._first

    def feed(self, block: TagBlock) -> None:
        """Count one block; raise `TagBlockError` (and keep no part of it) if it is bad."""
        if not isinstance(block, TagBlock):
            raise TypeError(f"feed() takes a TagBlock, got {type(block).__name__}; wrap arrays "
                            "with TagBlock(timestamps, channels)")
        index = self.blocks if block.index is None else block.index
        check_overflow(block, index, self.accept_overflow)
        ts, ch = block.timestamps, block.channels
        n = ts.size
        if n:
            if ts[0] < 0 or (self._last is not None and ts[0] < self._last):
                raise order_error(index, ts, 0, self._last)
            nc = self._carry_t.size
            head_part = None
            start = 0
            if nc:
                # Block tags within reach of the carry pair with it: count them with the carry
                # ahead of them, in a copy that is short (the carry plus about reach of tags).
                start = int(np.searchsorted(ts, self._carry_t[-1] + self._reach, "right"))
                head_t = np.concatenate((self._carry_t, ts[:start]))
                head_c = np.concatenate((self._carry_c, ch[:start].astype(np.int64)))
                bad, head_part = self._count(head_t, head_c, nc)
                if bad >= 0:
                    raise order_error(index, ts, bad - nc, self._last)
            bad, part = self._count(ts, ch, start)
            if bad >= 0:
                raise order_error(index, ts, bad, self._last)
            # The block is good: commit everything at once.
            if head_part is not None:
                self._commit(head_part)
            self._commit(part)
            n_a, n_b = count_channels(ch, self.channel_a, self.channel_b)
            self.tags_a += int(n_a)
            self.tags_b += int(n_b)
            self._carry_forward(ts, ch)
            if self._first is None:
                self._first = int(ts[0])
            self._last = int(ts[-1])
        if block.overflow:
            self.overflowed_blocks += 1
            self.lost_tags += block.lost_tags or 0
        self.blocks += 1

    def feed_all(self, blocks: Iterable[TagBlock]) -> None:
        """Feed blocks in stream order."""
        for block in blocks:
            self.feed(block)

    def _carry_forward(self, ts: NDArray[np.int64], ch: NDArray[np.integer[Any]]) -> None:
        # Only tags at or after last - reach can pair with a later tag (which is >= last).
        cut = int(ts[-1]) - self._reach
        keep = self._carry_t >= cut  # non-empty only when the block is shorter than the reach
        tail = int(np.searchsorted(ts, cut, "left"))
        tail_c = ch[tail:]
        mine = (tail_c == self.channel_a) | (tail_c == self.channel_b)
        self._carry_t = np.concatenate((self._carry_t[keep], ts[tail:][mine]))
        self._carry_c = np.concatenate((self._carry_c[keep], tail_c[mine].astype(np.int64)))

    def _reset_result(self) -> None:
        raise NotImplementedError

    def _count(self, timestamps: NDArray[np.int64], channels: NDArray[np.integer[Any]],
               start: int) -> tuple[int, Any]:
        raise NotImplementedError

    def _commit(self, part: Any) -> None:
        raise NotImplementedError
