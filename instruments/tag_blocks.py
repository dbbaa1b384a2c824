"""Tag blocks as a time tagger hands them over, and the checks that keep counts honest.

A `TagBlock` is one chunk of a tagger's stream: int64 timestamps in picoseconds, sorted in
time, with the input channel of each tag, and the tagger's overflow flag (set when the tagger
or its link could not keep up and dropped tags inside this block).

Construction checks what costs nothing (dtypes, shapes, lengths, the overflow fields). The
per-tag checks (sorted, non-negative) are made by every consumer in this package inside the
same compiled pass that counts the block, so they cost nothing extra, and a block that fails
them is refused whole: no partial counts are kept. `TagBlock.validate` runs the same checks on
their own for code that reads blocks by other means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from qnetlab.instruments.errors import InstrumentError

__all__ = ["TagBlock", "TagBlockError", "first_out_of_order"]


class TagBlockError(InstrumentError, ValueError):
    """A tag block that cannot be counted correctly: names the block, the position and the fix.

    Attributes: ``block`` (the block's index in its stream, or None when unknown),
    ``position`` (the offending tag's position inside the block, or None when the problem is
    the whole block), ``problem`` and ``fix``.
    """

    def __init__(self, block: int | None, problem: str, fix: str,
                 position: int | None = None) -> None:
        self.block, self.position, self.problem, self.fix = block, position, problem, fix
        where = "tag block" if block is None else f"tag block {block}"
        if position is not None:
            where += f", position {position}"
        super().__init__(f"{where}: {problem}. Fix: {fix}")


@njit(cache=True, nogil=True)
def first_out_of_order(timestamps: Any, previous: int) -> int:
    """Position of the first timestamp below its predecessor (or below `previous`), or -1.

    `previous` is the last timestamp (ps) before this array, e.g. the end of the previous
    block; pass -1 to check only ordering and non-negativity of the first tag (with the
    array sorted and its first tag >= 0, every tag is >= 0).
    """
    prev = previous
    for k in range(timestamps.size):
        t = timestamps[k]
        if t < prev:
            return k
        prev = t
    if timestamps.size and timestamps[0] < 0:
        return 0
    return -1


_UNSORTED_FIX = (
    "timestamps must be non-decreasing within a block; if the block was assembled from "
    "per-channel arrays, merge them with TagBlock.from_channels (a stable sort); if it came "
    "from the tagger, the transfer reordered or corrupted it: re-read it"
)
_NEGATIVE_FIX = (
    "timestamps count picoseconds from the start of the acquisition and cannot be negative; "
    "a negative value means a wrong clock offset (subtract the offset before building the "
    "block) or corrupted data"
)


def order_error(block: int | None, timestamps: NDArray[np.int64], position: int,
                previous: int | None) -> TagBlockError:
    """The error for a block whose tag at `position` broke the order (found by a kernel).

    The error path may cost O(n): it looks for a negative time first, since one negative
    timestamp is the likelier cause of a break in the order.
    """
    negative = np.flatnonzero(timestamps < 0)
    if negative.size:
        k = int(negative[0])
        return TagBlockError(block, f"timestamp {int(timestamps[k])} ps is negative",
                             _NEGATIVE_FIX, k)
    t = int(timestamps[position])
    if position == 0 and previous is not None:
        return TagBlockError(
            block, f"the block starts at {t} ps, before the previous block ended at "
            f"{previous} ps",
            "feed blocks in time order; after a tagger restart (the clock starts again) "
            "start a new counter or call reset()", 0)
    return TagBlockError(
        block, f"timestamps are not sorted: {t} ps follows {int(timestamps[position - 1])} ps",
        _UNSORTED_FIX, position)


@dataclass(frozen=True, slots=True, eq=False)
class TagBlock:
    """One block of a tagger's stream.

    Parameters
    ----------
    timestamps
        Tag times in picoseconds (int64, non-decreasing, >= 0). Not copied when already a
        contiguous int64 array.
    channels
        Input channel of each tag: any integer dtype except uint64 (small ints; negative
        numbers are allowed, some taggers use them for falling edges).
    overflow
        The tagger's overflow flag: tags were dropped inside this block. Consumers refuse such
        a block unless created with ``accept_overflow=True``.
    lost_tags
        How many tags the tagger reports it dropped (None when it does not say).
    index
        The block's sequence number in its stream, used in error messages (consumers use the
        number of blocks fed so far when it is None).
    """

    timestamps: NDArray[np.int64]
    channels: NDArray[np.integer[Any]]
    overflow: bool = False
    lost_tags: int | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        block = self.index
        ts = np.asarray(self.timestamps)
        ch = np.asarray(self.channels)
        if ts.ndim != 1 or ch.ndim != 1:
            raise TagBlockError(
                block, f"timestamps and channels must be 1-D arrays, got shapes {ts.shape} "
                f"and {ch.shape}", "pass one flat array of each (use .ravel())")
        if ts.dtype != np.int64:
            raise TagBlockError(
                block, f"timestamps have dtype {ts.dtype}, expected int64 picoseconds",
                "convert with np.rint(seconds * 1e12).astype(np.int64); floats cannot hold "
                "picoseconds beyond 2**53 ps (2.5 hours) and int32 overflows after 2 ms")
        if not np.issubdtype(ch.dtype, np.integer) or ch.dtype == np.uint64:
            raise TagBlockError(
                block, f"channels have dtype {ch.dtype}, expected a signed or small "
                "unsigned integer type", "convert with channels.astype(np.int32)")
        if ts.size != ch.size:
            raise TagBlockError(
                block, f"{ts.size} timestamps but {ch.size} channels",
                "give exactly one channel number per timestamp")
        if not isinstance(self.overflow, bool | np.bool_):
            raise TagBlockError(block, f"overflow must be a bool, got {self.overflow!r}",
                                "pass the tagger's overflow flag as True or False")
        if self.lost_tags is not None and (int(self.lost_tags) != self.lost_tags
                                           or self.lost_tags < 0):
            raise TagBlockError(block, f"lost_tags must be a count >= 0, got {self.lost_tags!r}",
                                "pass the tagger's dropped-tag count, or None if unknown")
        if self.lost_tags and not self.overflow:
            raise TagBlockError(block, f"lost_tags={self.lost_tags} but overflow is False",
                                "set overflow=True when the tagger reports dropped tags")
        # The compiled kernels run fastest (and compile once) on contiguous arrays.
        object.__setattr__(self, "timestamps", np.ascontiguousarray(ts))
        object.__setattr__(self, "channels", np.ascontiguousarray(ch))
        object.__setattr__(self, "overflow", bool(self.overflow))

    def __len__(self) -> int:
        return int(self.timestamps.size)

    def __repr__(self) -> str:
        span = (f"{int(self.timestamps[0])}..{int(self.timestamps[-1])} ps"
                if len(self) else "empty")
        flag = ", overflow" if self.overflow else ""
        return f"<TagBlock {self.index} {len(self)} tags {span}{flag}>"

    @classmethod
    def from_channels(cls, tags: Mapping[int, ArrayLike], *, overflow: bool = False,
                      lost_tags: int | None = None, index: int | None = None,
                      dtype: type[np.integer[Any]] = np.int32) -> TagBlock:
        """Merge per-channel timestamp arrays (ps, each sorted) into one time-ordered block.

        Equal timestamps keep the order of `tags` (a stable sort). `dtype` is the channel
        number dtype.
        """
        parts = [np.asarray(t) for t in tags.values()]
        for channel, part in zip(tags, parts, strict=True):
            if part.dtype.kind not in "iu":
                raise TagBlockError(
                    index, f"channel {channel} timestamps have dtype {part.dtype}, expected "
                    "int64 picoseconds", "convert with np.rint(seconds * 1e12).astype(np.int64)")
        ts = np.concatenate(parts).astype(np.int64, copy=False) if parts else np.empty(0, np.int64)
        ch = np.concatenate([np.full(p.size, c, dtype) for c, p in zip(tags, parts, strict=True)]
                            ) if parts else np.empty(0, dtype)
        order = np.argsort(ts, kind="stable")
        return cls(ts[order], ch[order], overflow, lost_tags, index)

    def validate(self, *, accept_overflow: bool = False, previous: int | None = None) -> None:
        """Raise `TagBlockError` unless the block can be counted as it is.

        Checks the order and sign of every timestamp (one compiled pass), that the block
        does not start before `previous` (ps, the end of the previous block, when given), and
        the overflow flag unless `accept_overflow`.
        """
        check_overflow(self, self.index, accept_overflow)
        position = int(first_out_of_order(self.timestamps, -1 if previous is None else previous))
        if position >= 0:
            raise order_error(self.index, self.timestamps, position, previous)


def check_overflow(block: TagBlock, index: int | None, accept_overflow: bool) -> None:
    """Refuse an overflowed block unless the consumer opted in."""
    if block.overflow and not accept_overflow:
        lost = "an unknown number of" if block.lost_tags is None else str(block.lost_tags)
        raise TagBlockError(
            index, f"the tagger reported an overflow: {lost} tags were dropped in this block, "
            "so counts from it would be silently low",
            "lower the input rate (trigger levels, attenuation, the tagger's event filter) "
            "or, to count the remaining tags anyway, create the consumer with "
            "accept_overflow=True; it tallies overflowed_blocks and lost_tags")
