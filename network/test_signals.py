"""Test signals for the heralding station: a known, steady herald stream, no tagger.

For the tests and benchmarks of the control plane (fault injection, delivery at a set rate),
never the production path: `PeriodicHeralds` decides one herald every `period_ps` of station
time, optionally only inside `TimeSlots`, and hands them over in blocks every `block_s` as a
tagger's data link would (each herald's timestamp is its own time on the period grid, so it
is already past when its block arrives).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .herald_sources import SOURCE_HERALD_DTYPE, HeraldBlock, station_now_ps


@dataclass(frozen=True)
class TimeSlots:
    """Repeating windows of station time: every `cycle_ps`, from `offset_ps` for `length_ps`.
    A benchmark gives each setup on one machine its own slots, so that setups measured in the
    same run alternate every few hundred ms and share whatever the machine is doing."""

    cycle_ps: int
    offset_ps: int
    length_ps: int

    def contains(self, time_ps: np.ndarray | int) -> np.ndarray | bool:
        return (np.asarray(time_ps) - self.offset_ps) % self.cycle_ps < self.length_ps

    def next_on(self, time_ps: int) -> int:
        """The first time (ps) at or after `time_ps` inside a slot (plain ints: cheap)."""
        into = (time_ps - self.offset_ps) % self.cycle_ps
        return time_ps if into < self.length_ps else time_ps + self.cycle_ps - into


class PeriodicHeralds:
    """A test-signal herald source: attempt k at ``start_ps + k * period_ps`` (station ps) is
    heralded (only inside `slots`, if given), Bell state k % 2. Every attempt counts, heralded
    or not. ``functools.partial(PeriodicHeralds, period_ps)`` is a `HeraldSourceFactory`.

    Args:
        period_ps: ps between heralds.
        epoch_ns: the station's epoch (monotonic ns at station time 0).
        link_id: the heralds' link (the station's); seqs count from 0.
        start_ps: station time of attempt 0; default: now.
        slots: heralds only inside these, if given.
        block_s: s between blocks handed over (the tagger's block interval).
    """

    def __init__(self, period_ps: int, *, epoch_ns: int = 0, link_id: int = 0,
                 start_ps: int | None = None, slots: TimeSlots | None = None,
                 block_s: float = 0.001) -> None:
        if period_ps <= 0 or block_s <= 0:
            raise ValueError(f"PeriodicHeralds: period_ps {period_ps} and block_s {block_s} "
                             "must be > 0")
        self.period_ps, self.epoch_ns = int(period_ps), epoch_ns
        self.start_ps = station_now_ps(epoch_ns) if start_ps is None else int(start_ps)
        self.slots, self.block_s = slots, block_s
        self.next_id = 0
        self.link_id, self.next_seq = link_id, 0

    def until(self, station_time_ps: int) -> HeraldBlock:
        """Every attempt up to `station_time_ps` not handed over yet, as one block (arrived
        now). However the time is split, the same heralds come out."""
        end = max(self.next_id, (station_time_ps - self.start_ps) // self.period_ps + 1)
        ids = np.arange(self.next_id, end, dtype=np.uint64)
        times = self.start_ps + ids.astype(np.int64) * self.period_ps
        first, self.next_id = self.next_id, int(end)
        if self.slots is not None:
            on = np.asarray(self.slots.contains(times), bool)
            ids, times = ids[on], times[on]
        heralds = np.empty(len(ids), SOURCE_HERALD_DTYPE)
        heralds["link"] = self.link_id
        heralds["seq"] = np.arange(self.next_seq, self.next_seq + len(ids), dtype=np.uint64)
        self.next_seq += len(ids)
        heralds["attempt_id"] = ids
        heralds["timestamp_ps"] = times
        heralds["bell_state"] = ids % 2
        return HeraldBlock(heralds, int(end) - first, time.monotonic_ns())

    def blocks(self) -> Iterator[HeraldBlock]:
        """A block every `block_s` of station time (on a grid from `start_ps`), forever."""
        block_ns = max(1, round(self.block_s * 1e9))
        start_ns = self.epoch_ns + self.start_ps // 1000
        k = 1
        while True:
            wake_ns = start_ns + k * block_ns
            left_ns = wake_ns - time.monotonic_ns()
            if left_ns > 0:
                time.sleep(left_ns * 1e-9)
            else:  # woken late (a loaded machine): go on from now, not in a burst
                k += -left_ns // block_ns
            k += 1
            yield self.until(station_now_ps(self.epoch_ns))
