"""Gating a time tagger's input to windows after a sync input's tags, and drawing events only
inside periodic windows.

Two jobs, both vectorised (no Python loop per tag or per window):

* `in_windows`: which tags of a gated input pass, i.e. fall in ``open <= t - s < close`` for
  some sync tag ``s`` (the union of every sync tag's window), found with one
  ``np.searchsorted`` over the sync tags. `SyncCarry` keeps the sync tags of earlier blocks
  whose windows still reach into later ones, so a stream gated block by block gives what
  gating it whole gives.
* `uniform_in_windows`: Poisson arrivals of a steady rate drawn only inside the periodic
  windows ``[k P + a, k P + b)`` that overlap ``[lo, hi)``: the count is Poisson with mean
  rate x (total open length), the times uniform over the open length. Restricted to those
  windows this is the same process as drawing everywhere and keeping what falls inside
  (a Poisson process restricted to a set is a Poisson process on it), for a fraction
  (b - a) / P of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

__all__ = ["Gate", "SyncCarry", "in_windows", "uniform_in_windows", "window_length"]


@dataclass(frozen=True)
class Gate:
    """What a gated input passes, in tagger time (the tags as recorded, ps).

    A tag at t is inside when ``open_ps <= t - s < close_ps`` for some tag s of
    `sync_input`; it passes if inside and `inside` is True, or outside and `outside` is True.
    A window that never opens (``sync_input`` None) makes every tag outside."""

    sync_input: int | None
    open_ps: int
    close_ps: int
    inside: bool = True
    outside: bool = False

    @property
    def is_window(self) -> bool:
        """Only tags inside the windows pass (a gate, not a pass-through or a mute)."""
        return self.sync_input is not None and self.inside and not self.outside


def in_windows(times: IntArray, syncs: IntArray, open_ps: int, close_ps: int) -> BoolArray:
    """For each of `times` (ps): does it lie in ``[s + open_ps, s + close_ps)`` for some of the
    sorted `syncs`? The latest sync with ``s <= t - open_ps`` is the one whose window could
    still hold t (every earlier one's window closed before it), so one search decides."""
    i = np.searchsorted(syncs, times - open_ps, side="right") - 1
    ok = i >= 0
    out = np.zeros(times.shape, bool)
    out[ok] = times[ok] - syncs[i[ok]] < close_ps
    return out


@dataclass
class SyncCarry:
    """The sync tags of earlier blocks whose windows can still hold later tags."""

    close_ps: int
    _syncs: IntArray = field(default_factory=lambda: np.empty(0, np.int64))

    def syncs(self, block_syncs: IntArray) -> IntArray:
        """The carried sync tags followed by this block's (both sorted, carried earlier)."""
        return np.concatenate([self._syncs, block_syncs]) if self._syncs.size else block_syncs

    def keep_after(self, syncs: IntArray, latest_ps: int) -> None:
        """Carry the `syncs` whose window can hold a tag at or after `latest_ps` (the latest
        tag seen: a stream's later tags come no earlier)."""
        self._syncs = syncs[syncs > latest_ps - self.close_ps]


def window_length(lo: int, hi: int, period: int, a: int, b: int) -> tuple[IntArray, IntArray]:
    """The windows ``[k period + a, k period + b)`` clipped to ``[lo, hi)``, those that stay
    open: (starts, stops), sorted. Requires ``0 < b - a <= period``."""
    if hi <= lo:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    first = (lo - b) // period + 1  # the first k whose window ends after lo
    last = -(-(hi - a) // period)   # one past the last k whose window opens before hi
    k = np.arange(first, max(first, last), dtype=np.int64)
    starts = np.maximum(k * period + a, lo)
    stops = np.minimum(k * period + b, hi)
    keep = stops > starts
    return starts[keep], stops[keep]


def uniform_in_windows(rng: np.random.Generator, rate_hz: float, lo: int, hi: int, period: int,
                       a: int, b: int) -> IntArray:
    """Sorted Poisson arrival times (ps) of rate `rate_hz` inside the windows
    ``[k period + a, k period + b)`` within ``[lo, hi)`` (see the module docstring)."""
    starts, stops = window_length(lo, hi, period, a, b)
    lengths = stops - starts
    total = int(lengths.sum())
    count = int(rng.poisson(max(rate_hz, 0.0) * total * 1e-12)) if total > 0 else 0
    if count == 0:
        return np.empty(0, np.int64)
    # a point of the open length, mapped to its window: uniform over the union
    u = np.sort(rng.integers(0, total, count, dtype=np.int64))
    ends = np.cumsum(lengths)
    w = np.searchsorted(ends, u, side="right")
    return starts[w] + (u - (ends[w] - lengths[w]))
