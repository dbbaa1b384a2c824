"""A node agent's herald latencies: one sample per herald, kept for the run's file and read
in part, every second, by its telemetry."""

from __future__ import annotations

import numpy as np

LATENCY_DTYPE = np.dtype([("seq", "<u8"), ("latency_ps", "<i8"), ("received_ps", "<i8")])
"""Per herald from the PUB: this node's receipt (station time, ps) and its latency from the
station's decision (receipt - herald timestamp, ps)."""

__all__ = ["LATENCY_DTYPE", "LatencySamples"]


class LatencySamples:
    """Samples from the two receipt paths: a batch comes as an array (`add_batch`); a lone
    herald, the common case at moderate rates, as a plain tuple (`add_one`), since building
    a one-row array would cost the node more than the herald's handling itself."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.singles: list[tuple[int, int, int]] = []
        """(seq, latency_ps, received_ps) of heralds taken by the one-herald path."""
        self._batched = 0

    def add_one(self, seq: int, latency_ps: int, received_ps: int) -> None:
        self.singles.append((seq, latency_ps, received_ps))

    def add_batch(self, sample: np.ndarray) -> None:
        """`sample`: `LATENCY_DTYPE` rows."""
        self.batches.append(sample)
        self._batched += len(sample)

    def __len__(self) -> int:
        """Heralds sampled so far (no copy)."""
        return self._batched + len(self.singles)

    def everything(self) -> np.ndarray:
        """Every sample of the run (`LATENCY_DTYPE`): a copy, for the end of a run."""
        one = np.array(self.singles, LATENCY_DTYPE)
        return np.concatenate([*self.batches, one]) if self.batches else one

    def recent_ps(self, count: int) -> np.ndarray:
        """Latencies (ps) of up to `count` of the newest heralds, from the tails of both
        paths. Its cost grows with `count`, not with the run: telemetry reads it every
        second while heralds arrive, and copying the whole run instead (tens of ms at 16 kHz
        after a minute) stalled the node's next receipt by as much."""
        singles = self.singles[-count:]
        parts = [np.fromiter((row[1] for row in singles), np.int64, len(singles))]
        taken = len(singles)
        for sample in reversed(self.batches):
            if taken >= count:
                break
            parts.append(sample["latency_ps"][-(count - taken):])
            taken += len(parts[-1])
        return np.concatenate(parts)
