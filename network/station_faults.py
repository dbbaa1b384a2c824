"""Faults injected into the heralding station's publications, for the fault tests.

Nothing here runs unless a test asks for it (`StationFaults()` injects nothing): the
production path of `network.herald_publisher` only asks `StationFaults.touch_heralds`, once
per block. A fault never changes what the station decided: skipped and delayed heralds keep
their seqs (so the nodes see gaps) and, unless told otherwise, stay in the history (so a
resend recovers them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

MALFORMED_FRAMES = (b"", b"\x01", b"\x02\x01\x00", b"\x01\x63", b"\x01\x01\x02\x00\x00\x00\x00",
                    b"\x01\x07\x00")
"""Frames injected by `StationFaults.malformed_every`, in turn: empty, truncated header,
wrong version, unknown type, truncated herald batch, truncated heartbeat."""


@dataclass(frozen=True)
class StationFaults:
    """Injected faults, for the fault tests (none by default)."""

    skip_every: int = 0
    """Every n-th herald (seq % n == n - 1) is not published; it stays in the history."""
    skip_history: bool = False
    """Skipped heralds are not kept for resends either, so the nodes must report them lost."""
    delay_every: int = 0
    """Every n-th herald (seq % n == n // 2) is published `delay_s` after its block."""
    delay_s: float = 0.0
    malformed_every: int = 0
    """A malformed frame is published after every n-th herald frame."""
    drop_tail_from: int | None = None
    """Heralds from this seq on are not published (they stay in the history): a stream's end
    lost, as when a socket closes with frames still queued (libzmq issue 4660). No later
    herald reveals the gap; only the AttemptStats' count of decided heralds does."""

    @property
    def touch_heralds(self) -> bool:
        """Whether any fault acts on the heralds themselves (skip, delay, drop the tail)."""
        return bool(self.skip_every or self.delay_every or self.drop_tail_from is not None)

    def split(self, records: np.ndarray, counters: Counter[str]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(published now, kept in the history, published late) rows of `records`
        (`HERALD_DTYPE`, decided together), counting what was held back in `counters`."""
        seqs = records["seq"].astype(np.int64)
        publish = np.ones(len(records), bool)
        keep = np.ones(len(records), bool)
        skipped = np.zeros(len(records), bool)
        if self.skip_every:
            skipped |= seqs % self.skip_every == self.skip_every - 1
        if self.drop_tail_from is not None:
            skipped |= seqs >= self.drop_tail_from
        publish &= ~skipped
        if self.skip_history:
            keep &= ~skipped
        counters["skipped_by_fault"] += int(skipped.sum())
        late = np.zeros(len(records), bool)
        if self.delay_every:
            late = (seqs % self.delay_every == self.delay_every // 2) & publish
            publish &= ~late
            counters["delayed_by_fault"] += int(late.sum())
        return records[publish], records[keep], records[late]

    def malformed_after(self, frames_sent: int) -> bytes | None:
        """The malformed frame to publish after the `frames_sent`-th herald frame, if any."""
        every = self.malformed_every
        if not every or frames_sent % every:
            return None
        return MALFORMED_FRAMES[(frames_sent // every - 1) % len(MALFORMED_FRAMES)]


class DelayedHeralds:
    """Heralds held back by `StationFaults.delay_every`, each with its release time."""

    def __init__(self) -> None:
        self._held: list[tuple[int, np.ndarray]] = []
        """(release, monotonic ns; rows), in release order (a constant delay keeps it)."""

    def add(self, records: np.ndarray, release_ns: int) -> None:
        if len(records):
            self._held.append((release_ns, records))

    def due_ns(self) -> int | None:
        """When the next release falls due (monotonic ns), None when nothing is held."""
        return self._held[0][0] if self._held else None

    def pop_due(self, now_ns: int) -> np.ndarray | None:
        """Every held row whose release time has come (one array), or None."""
        ready = [rows for release, rows in self._held if release <= now_ns]
        if not ready:
            return None
        self._held = [(release, rows) for release, rows in self._held if release > now_ns]
        return np.concatenate(ready)
