"""Drawing primitives of the simulated link (`link_clicks`): a node's outcome tree drawn
given whether its photon arrived, the positions of rare events among many attempts, and
sort-based set operations on (mostly sorted) int64 arrays."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class Tree:
    """One node's outcome tree (`node_outcomes`), drawn given whether a photon arrived."""

    def __init__(self, tree: list[tuple[bool, bool, int, float]]) -> None:
        self.bright = np.array([o[0] for o in tree])
        self.double = np.array([o[1] for o in tree])
        self.photons = np.array([o[2] for o in tree], np.int64)
        probability = np.array([o[3] for o in tree])
        self.arrival_probability = float(probability[self.photons > 0].sum())
        # per branch (no photon arrived, some did): its rows and cumulative weights
        self._branches: dict[bool, tuple[IntArray, npt.NDArray[np.float64]]] = {}
        for branch in (False, True):
            rows = np.flatnonzero((self.photons > 0) == branch)
            weight = probability[rows]
            if weight.sum() > 0.0:
                self._branches[branch] = (rows, np.cumsum(weight) / weight.sum())

    def outcome(self, u: npt.NDArray[np.float64],
                arrived: BoolArray) -> tuple[BoolArray, BoolArray, IntArray]:
        """(bright, double, photons at the station) for uniforms `u` given `arrived`."""
        pick = np.zeros(u.size, np.int64)
        for branch, (rows, cum) in self._branches.items():
            mask = arrived == branch
            index = np.minimum(np.searchsorted(cum, u[mask], side="right"), rows.size - 1)
            pick[mask] = rows[index]
        return self.bright[pick], self.double[pick], self.photons[pick]


DENSE_ABOVE = 0.1
"""Above this probability a dense uniform draw beats choosing the event positions."""


def event_positions(rng: np.random.Generator, n: int, p: float) -> IntArray:
    """Sorted positions of a Bernoulli(p) event among n attempts: a dense draw above
    `DENSE_ABOVE`, else the gaps between events (geometric, exactly), sorted by making."""
    if p <= 0.0:
        return np.empty(0, dtype=np.int64)
    if p >= DENSE_ABOVE:
        return np.flatnonzero(rng.random(n) < p).astype(np.int64)
    expected = n * p
    gaps = [rng.geometric(p, int(expected + 6.0 * math.sqrt(expected)) + 16)]
    positions = np.cumsum(gaps[0]) - 1
    while positions[-1] < n - 1:  # more events than drawn for (rare): draw on
        more = rng.geometric(p, int(expected) + 16)
        positions = np.concatenate([positions, positions[-1] + np.cumsum(more)])
    return positions[positions < n].astype(np.int64)


# Sort-based set operations: numpy's hash-based unique costs several times more on these
# (mostly sorted) int64 arrays.
def unique(values: IntArray) -> IntArray:
    """The distinct values, sorted."""
    values = np.sort(values, kind="stable")  # radix sort for integers
    return values[np.r_[True, values[1:] != values[:-1]]] if values.size else values


def unique_inverse(values: IntArray) -> tuple[IntArray, IntArray]:
    """(distinct values sorted, index of each value's distinct value)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]] if values.size else np.empty(0, bool)
    inverse = np.empty(values.size, np.int64)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


def contains(sorted_set: IntArray, values: IntArray) -> BoolArray:
    """Whether each of `values` is in `sorted_set` (sorted, distinct)."""
    if sorted_set.size == 0:
        return np.zeros(values.size, bool)
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[at] == values
