"""The pairs a node agent holds between its OK and the orchestrator's verdict."""

from __future__ import annotations

import numpy as np

from .messages import HERALD_DTYPE


class HeldPairs:
    """Pairs a node OK'd and holds until the orchestrator's verdict: `HERALD_DTYPE`-like rows
    kept sorted by seq, added and taken in batches (numpy, nothing per pair in Python)."""

    def __init__(self) -> None:
        self.rows: np.ndarray | None = None

    def __len__(self) -> int:
        return 0 if self.rows is None else len(self.rows)

    def __contains__(self, seq: object) -> bool:
        if self.rows is None or not isinstance(seq, int | np.integer):
            return False
        seqs = self.rows["seq"]
        index = int(np.searchsorted(seqs, seq))
        return index < len(seqs) and int(seqs[index]) == seq

    def add(self, rows: np.ndarray) -> None:
        """Hold `rows` (seqs not held yet: the tracker gives each seq once)."""
        if not len(rows):
            return
        rows = np.sort(rows, order="seq") if len(rows) > 1 else rows.copy()
        if self.rows is None or not len(self.rows):
            self.rows = rows
            return
        merged = np.concatenate([self.rows, rows])
        if int(rows["seq"][0]) <= int(self.rows["seq"][-1]):  # a resent one filled a gap
            merged = np.sort(merged, order="seq", kind="stable")
        self.rows = merged

    def take(self, seqs: np.ndarray) -> np.ndarray:
        """The held rows of `seqs` (sorted unique u64), no longer held."""
        if self.rows is None or not len(self.rows):
            return np.zeros(0, HERALD_DTYPE)
        mine = self.rows["seq"]
        index = np.minimum(np.searchsorted(mine, seqs), len(mine) - 1)
        hit = index[mine[index] == seqs]
        taken = self.rows[hit]
        if len(hit):
            keep = np.ones(len(mine), bool)
            keep[hit] = False
            self.rows = self.rows[keep]
        return taken

    def clear(self) -> None:
        self.rows = None
