"""Herald sequence bookkeeping: what a node has seen, and what the station still holds.

Every herald of a link carries a sequence number (0, 1, 2, ...). A node's `SequenceTracker`
classifies each arrival (new, duplicate, filling a gap, or late after the gap was given up) and
lists the gaps to ask the station for; the station's `HeraldHistory` answers from a ring buffer
of its last heralds. `expired` applies the node's memory cutoff.

Counter meanings (`SequenceTracker.counters`), all counts of sequence numbers:

- ``received``: arrivals observed, duplicates included;
- ``duplicates``: arrivals of a seq already seen;
- ``reordered``: first arrivals of a seq below the highest seen (filled gaps and late ones);
- ``gaps_detected``: seqs found missing (a jump past them, or `give_up` beyond the highest);
- ``recovered``: missing seqs that then arrived (FILLED_GAP);
- ``lost``: missing seqs given up (`give_up`);
- ``late``: arrivals of a seq already given up (never delivered: the peer was told it was lost).

Invariant: ``gaps_detected == recovered + lost + (seqs still missing)``.

Protocol context: docs/link.md#sequence-numbers.
"""

from __future__ import annotations

import bisect
from enum import Enum
from typing import overload

import numpy as np

from .messages import HERALD_DTYPE, MAX_SEQ

# Seqs are handled as int64, with room above MAX_SEQ, the highest legal one (the wire's
# limit: a decoded herald never exceeds it, so the checks below guard only direct calls).


class Arrival(Enum):
    NEW = "new"
    """Beyond the highest seq seen so far (in order, or past a gap it opens)."""
    DUPLICATE = "duplicate"
    FILLED_GAP = "filled_gap"
    """A seq that was missing arrived (reordered, or resent)."""
    LATE = "late"
    """A seq that was given up arrived: not to be used (it was reported lost)."""


_FEW_BELOW = 16
"""Up to this many arrivals below the highest seen in a batch are looked up one by one (cheap
per seq); more are done with arrays over all the gaps (cheap per gap)."""

_COUNTERS = ("received", "duplicates", "reordered", "gaps_detected", "recovered", "lost", "late")


class SequenceTracker:
    """A node's view of one link's herald sequence numbers."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._next = 0
        """One past the highest seq seen (or given up)."""
        # Missing ranges below `_next`, disjoint, sorted, inclusive.
        self._gap_first: list[int] = []
        self._gap_last: list[int] = []
        # Given-up ranges, disjoint, sorted, inclusive (merged when adjacent).
        self._lost_first: list[int] = []
        self._lost_last: list[int] = []

    @property
    def next_seq(self) -> int:
        """One past the highest seq seen or given up."""
        return self._next

    def reset(self) -> None:
        """Forget every seq (e.g. the station restarted and numbers from 0 again). Counters
        are kept."""
        self._next = 0
        self._gap_first.clear()
        self._gap_last.clear()
        self._lost_first.clear()
        self._lost_last.clear()

    def observe(self, seq: int) -> Arrival:
        """Classify and record one arrival."""
        counters = self.counters
        counters["received"] += 1
        if seq == self._next:
            self._next += 1
            return Arrival.NEW
        if seq > self._next:
            if seq > MAX_SEQ:
                raise ValueError(f"herald seq {seq} beyond MAX_SEQ ({MAX_SEQ})")
            self._gap_first.append(self._next)
            self._gap_last.append(seq - 1)
            counters["gaps_detected"] += seq - self._next
            self._next = seq + 1
            return Arrival.NEW
        if seq < 0:
            raise ValueError(f"herald seq {seq} is negative")
        return self._observe_below(seq)

    def _observe_below(self, seq: int) -> Arrival:
        """One arrival below `_next` (not counted in ``received`` here)."""
        counters = self.counters
        index = bisect.bisect_right(self._gap_first, seq) - 1
        if index >= 0 and seq <= self._gap_last[index]:
            first, last = self._gap_first[index], self._gap_last[index]
            pieces = [(a, b) for a, b in ((first, seq - 1), (seq + 1, last)) if a <= b]
            self._gap_first[index:index + 1] = [a for a, _ in pieces]
            self._gap_last[index:index + 1] = [b for _, b in pieces]
            counters["reordered"] += 1
            counters["recovered"] += 1
            return Arrival.FILLED_GAP
        index = bisect.bisect_right(self._lost_first, seq) - 1
        if index >= 0 and seq <= self._lost_last[index]:
            # Once arrived, a further copy is a plain duplicate.
            self._lost_first, self._lost_last = _remove(
                self._lost_first, self._lost_last, np.array([seq], dtype=np.int64))
            counters["reordered"] += 1
            counters["late"] += 1
            return Arrival.LATE
        counters["duplicates"] += 1
        return Arrival.DUPLICATE

    def observe_many(self, seqs: np.ndarray) -> np.ndarray:
        """Record a batch of arrivals in order; return the mask of NEW or FILLED_GAP ones
        (the heralds to use). Same result and counters as `observe` on each in turn."""
        seqs = np.asarray(seqs)
        n = len(seqs)
        if n == 0:
            return np.zeros(0, dtype=bool)
        if seqs.dtype.kind not in "iu":
            raise ValueError(f"herald seqs must be integers, got dtype {seqs.dtype}")
        if seqs.dtype.kind == "u" and int(seqs.max()) > MAX_SEQ:
            raise ValueError(f"herald seq {int(seqs.max())} beyond MAX_SEQ ({MAX_SEQ})")
        seqs = seqs.astype(np.int64, copy=False)
        first = int(seqs[0])
        self.counters["received"] += n
        # The common case: the next seqs, in order, nothing missing.
        if first == self._next and int(seqs[-1]) == first + n - 1 and (
                n == 1 or bool((np.diff(seqs) == 1).all())):
            self._next += n
            return np.ones(n, dtype=bool)
        if int(seqs.min()) < 0:
            self.counters["received"] -= n
            raise ValueError(f"herald seq {int(seqs.min())} is negative")
        # Seqs below `_next` touch only the old gaps and given-up ranges, seqs from `_next` on
        # only the new range: the two parts are independent whatever their interleaving.
        below = seqs < self._next
        use = np.zeros(n, dtype=bool)
        count_below = int(below.sum())
        if count_below > _FEW_BELOW:
            use[below] = self._observe_below_many(seqs[below])
        elif count_below:
            for index in np.flatnonzero(below).tolist():
                arrival = self._observe_below(int(seqs[index]))
                use[index] = arrival is Arrival.FILLED_GAP
        if count_below < n:
            use[~below] = self._observe_beyond(seqs[~below])
        return use

    def _observe_below_many(self, seqs: np.ndarray) -> np.ndarray:
        """Vectorised `_observe_below` (O(gaps) per call: for resent batches, not the stream)."""
        first_time = np.zeros(len(seqs), dtype=bool)
        first_time[np.unique(seqs, return_index=True)[1]] = True
        filled = first_time & _inside(seqs, self._gap_first, self._gap_last)
        late = first_time & ~filled & _inside(seqs, self._lost_first, self._lost_last)
        counters = self.counters
        counters["duplicates"] += len(seqs) - int(filled.sum()) - int(late.sum())
        counters["reordered"] += int(filled.sum()) + int(late.sum())
        counters["recovered"] += int(filled.sum())
        counters["late"] += int(late.sum())
        self._gap_first, self._gap_last = _remove(self._gap_first, self._gap_last,
                                                  np.sort(seqs[filled]))
        if late.any():
            self._lost_first, self._lost_last = _remove(self._lost_first, self._lost_last,
                                                        np.sort(seqs[late]))
        return filled

    def _observe_beyond(self, seqs: np.ndarray) -> np.ndarray:
        """Arrivals all at or beyond `_next`, in arrival order."""
        start = self._next
        unique, first_index = np.unique(seqs, return_index=True)
        first_time = np.zeros(len(seqs), dtype=bool)
        first_time[first_index] = True
        # Highest seq seen before each arrival (start - 1 if none in this batch yet).
        before = np.empty(len(seqs), dtype=np.int64)
        before[0] = start - 1
        np.maximum(np.maximum.accumulate(seqs)[:-1], start - 1, out=before[1:])
        new = first_time & (seqs > before)
        # Below an earlier arrival of this batch: it fills a gap the batch opened.
        filled = first_time & ~new
        counters = self.counters
        counters["duplicates"] += len(seqs) - len(unique)
        counters["reordered"] += int(filled.sum())
        counters["recovered"] += int(filled.sum())
        counters["gaps_detected"] += int((seqs[new] - before[new] - 1).sum())
        end = int(unique[-1]) + 1
        firsts, lasts = _remove([start], [end - 1], unique)
        self._gap_first += firsts
        self._gap_last += lasts
        self._next = end
        return first_time

    def expect_through(self, last: int) -> int:
        """Seqs up to `last` exist (the station said so): unseen ones beyond the highest seen
        become a gap (``gaps_detected``), to be asked for like any other. Returns how many."""
        if last < self._next:
            return 0
        count = last + 1 - self._next
        self.counters["gaps_detected"] += count
        self._gap_first.append(self._next)
        self._gap_last.append(last)
        self._next = last + 1
        return count

    def missing(self) -> list[tuple[int, int]]:
        """Inclusive seq ranges not yet seen (below the highest seen), oldest first."""
        return list(zip(self._gap_first, self._gap_last, strict=True))

    def give_up(self, first: int, last: int) -> None:
        """Mark `first`..`last` (inclusive) lost: missing seqs in it count as ``lost`` and a later
        arrival of one is LATE. Seqs beyond the highest seen count as detected, then lost
        (e.g. the station's AttemptStats showed heralds that never came)."""
        if first < 0 or last < first:
            raise ValueError(f"give_up({first}, {last}): need 0 <= first <= last")
        if last >= self._next:
            # Unseen tail: it becomes a gap now, so the loop below gives it up.
            self.counters["gaps_detected"] += last + 1 - max(first, self._next)
            self._gap_first.append(max(first, self._next))
            self._gap_last.append(last)
            self._next = last + 1
        kept_first: list[int] = []
        kept_last: list[int] = []
        for a, b in zip(self._gap_first, self._gap_last, strict=True):
            lo, hi = max(a, first), min(b, last)
            if lo > hi:
                kept_first.append(a)
                kept_last.append(b)
                continue
            self.counters["lost"] += hi - lo + 1
            self._add_lost(lo, hi)
            for x, y in ((a, lo - 1), (hi + 1, b)):
                if x <= y:
                    kept_first.append(x)
                    kept_last.append(y)
        self._gap_first, self._gap_last = kept_first, kept_last

    def _add_lost(self, first: int, last: int) -> None:
        index = bisect.bisect_left(self._lost_first, first)
        self._lost_first.insert(index, first)
        self._lost_last.insert(index, last)
        # Merge neighbours that touch, so the list stays short after many small give-ups.
        merged_first: list[int] = []
        merged_last: list[int] = []
        for a, b in zip(self._lost_first, self._lost_last, strict=True):
            if merged_last and a <= merged_last[-1] + 1:
                merged_last[-1] = max(merged_last[-1], b)
            else:
                merged_first.append(a)
                merged_last.append(b)
        self._lost_first, self._lost_last = merged_first, merged_last


def _remove(firsts: list[int], lasts: list[int],
            points: np.ndarray) -> tuple[list[int], list[int]]:
    """Sorted disjoint inclusive ranges minus the sorted unique `points` (int64)."""
    starts = np.asarray(firsts, dtype=np.int64)
    ends = np.asarray(lasts, dtype=np.int64)
    points = points[_inside(points, firsts, lasts)]
    # Each point inside a range splits it in two; as the ranges are disjoint and sorted,
    # sorting all the pieces' starts and all their ends pairs them up again.
    new_starts = np.sort(np.concatenate([starts, points + 1]))
    new_ends = np.sort(np.concatenate([points - 1, ends]))
    keep = new_starts <= new_ends
    return new_starts[keep].tolist(), new_ends[keep].tolist()


def _inside(values: np.ndarray, firsts: list[int], lasts: list[int]) -> np.ndarray:
    """Mask of `values` inside any of the sorted, disjoint inclusive ranges."""
    if not firsts:
        return np.zeros(len(values), dtype=bool)
    starts = np.asarray(firsts, dtype=np.int64)
    index = np.searchsorted(starts, values, side="right") - 1
    ends = np.asarray(lasts, dtype=np.int64)
    return (index >= 0) & (values <= ends[np.maximum(index, 0)])


class HeraldHistory:
    """The station's last `capacity` heralds of one link, for resend requests."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"HeraldHistory capacity {capacity}: need at least 1 record")
        self.capacity = capacity
        self._ring = np.zeros(capacity, dtype=HERALD_DTYPE)
        self._written = 0
        """Records ever appended; the next goes to `_written % capacity`."""

    def __len__(self) -> int:
        return min(self._written, self.capacity)

    def append(self, records: np.ndarray) -> None:
        """Keep `records` (HERALD_DTYPE rows, seqs increasing, after every seq held)."""
        if records.dtype != HERALD_DTYPE:
            raise ValueError(f"HeraldHistory holds HERALD_DTYPE records, got {records.dtype}")
        if len(records) == 0:
            return
        seqs = records["seq"]
        if (len(seqs) > 1 and bool((seqs[1:] <= seqs[:-1]).any())) or (
                self._written and seqs[0] <= self._ring["seq"][(self._written - 1)
                                                               % self.capacity]):
            raise ValueError("HeraldHistory.append: seqs must increase across appends "
                             "(one history per link; the station numbers heralds in order)")
        records = records[-self.capacity:]
        position = self._written % self.capacity
        head = min(len(records), self.capacity - position)
        self._ring[position:position + head] = records[:head]
        self._ring[:len(records) - head] = records[head:]
        self._written += len(records)

    def get(self, first_seq: int, last_seq: int) -> np.ndarray:
        """A copy of the rows held with `first_seq` <= seq <= `last_seq`, in seq order (fewer
        than asked, or none, once they have been overwritten)."""
        held = len(self)
        first_seq = max(first_seq, 0)
        if held == 0 or last_seq < first_seq:
            return np.zeros(0, dtype=HERALD_DTYPE)
        oldest = self._written % self.capacity if self._written > self.capacity else 0
        # The ring in seq order is ring[oldest:] then ring[:oldest], each sorted.
        pieces = []
        for segment in (self._ring[oldest:held], self._ring[:oldest]):
            seqs = segment["seq"]
            lo = np.searchsorted(seqs, first_seq, side="left")
            hi = np.searchsorted(seqs, last_seq, side="right")
            pieces.append(segment[lo:hi])
        return np.concatenate(pieces)


@overload
def expired(herald_time_ps: np.ndarray, now_ps: int, cutoff_s: float) -> np.ndarray: ...


@overload
def expired(herald_time_ps: int, now_ps: int, cutoff_s: float) -> bool: ...


def expired(herald_time_ps: np.ndarray | int, now_ps: int,
            cutoff_s: float) -> np.ndarray | bool:
    """True where a herald decided at `herald_time_ps` is older than `cutoff_s` at `now_ps`
    (both station time, ps: convert the node's clock with `ClockSync.to_station_ns`)."""
    cutoff_ps = round(cutoff_s * 1e12)
    if isinstance(herald_time_ps, np.ndarray):
        return np.asarray(now_ps - herald_time_ps > cutoff_ps)
    return bool(now_ps - herald_time_ps > cutoff_ps)
