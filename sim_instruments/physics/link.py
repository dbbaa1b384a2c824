"""The simulated two-node link: per-attempt draws from the model of `network.link_model`.

`LinkSimulator` draws every attempt (emissions, fibre, beam splitter, detectors, background)
from the same outcome tree the analytic formulas of `network.link_model` sum exactly, so the
two agree within statistics; each herald carries the ground truth the world knows (fidelity,
genuine or not). `arrival_histogram` is the station's calibration measurement of one arm's
photon arrival times. `node_optics_from_preset` puts a `presets` transducer on a node.

Simulation: attempts come in independently seeded blocks of 65,536, so results do not depend
on how calls split them; within a block only attempts where something can click are drawn in
detail (exact conditional samples, no Python loop per attempt).

The model: docs/link.md#3-imperfections-and-the-outcome-tree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qnetlab.network.link_model import (
    FIBRE_DELAY_S_PER_KM,
    FIBRE_LOSS_DB_PER_KM,
    Arm,
    LinkModel,
    NodeOptics,
    Scheme,
    expected_fidelity,
    expected_pair_rate,
    expected_success_probability,
    node_outcomes,
    require,
    window_acceptance,
)

from .presets import get_preset

HERALD_TRUTH_DTYPE = np.dtype(
    [
        ("attempt_id", "<u8"),
        ("time_ps", "<i8"),
        ("bell_state", "u1"),
        ("fidelity", "<f4"),
        ("genuine", "?"),
    ]
)

_BLOCK = 1 << 16
"""Attempts per independently seeded block: results do not depend on how calls split them."""
_DENSE_ABOVE = 0.1
"""Above this event probability a dense uniform draw beats choosing the event positions."""

_MAX_PHOTONS = 4
"""At most two photons per node per window (one double excitation)."""
_FAIR_SPLIT = np.array(
    [[bin(u & ((1 << n) - 1)).count("1") for u in range(1 << _MAX_PHOTONS)]
     for n in range(_MAX_PHOTONS + 1)],
    dtype=np.int64,
)
"""[n, u]: how many of n photons go to detector 0 when their ports are the bits of u."""

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def node_optics_from_preset(
    preset: str, fibre_length_km: float, collection_efficiency: float = 0.5
) -> NodeOptics:
    """A node whose transducer is a `presets` device at its operating pump power."""
    try:
        found = get_preset(preset)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    model, power = found.model, found.operating_pump_power
    return NodeOptics(
        fibre_length_km=fibre_length_km,
        transducer_efficiency=model.efficiency(power, 0.0, 0.0),
        transducer_added_noise=model.steady_added_noise(model.absorbed_fraction * power),
        collection_efficiency=collection_efficiency,
    )


# -- the simulator -------------------------------------------------------------------------------
@dataclass
class AttemptBatch:
    attempts: int
    """Attempts made in this batch, successful or not."""
    first_attempt_id: int
    heralds: np.ndarray
    """HERALD_TRUTH_DTYPE rows, one per heralded attempt, in time order. time_ps is the
    station's decision time; bell_state 0 = Psi+, 1 = Psi-; fidelity and genuine are ground
    truth the control software must not see."""


def _event_positions(rng: np.random.Generator, n: int, p: float) -> IntArray:
    """Positions of a Bernoulli(p) event among n attempts (a count, then where)."""
    if p <= 0.0:
        return np.empty(0, dtype=np.int64)
    if p >= _DENSE_ABOVE:
        return np.flatnonzero(rng.random(n) < p).astype(np.int64)
    count = int(rng.binomial(n, p))
    return rng.choice(n, size=count, replace=False).astype(np.int64)


class _NodeSampler:
    """Draws a node's (bright, double, photons at station) given whether a photon arrived."""

    def __init__(self, emit: float, double: float, transmission: float) -> None:
        tree = node_outcomes(emit, double, transmission)
        self.bright = np.array([o[0] for o in tree])
        self.double = np.array([o[1] for o in tree])
        self.photons = np.array([o[2] for o in tree], dtype=np.int64)
        probability = np.array([o[3] for o in tree])
        self.arrival_probability = float(probability[self.photons > 0].sum())
        # per branch (no photon arrived / some arrived): its rows and their cumulative weights
        self._tables: list[tuple[bool, IntArray, npt.NDArray[np.float64]]] = []
        for arrived in (False, True):
            rows = np.flatnonzero((self.photons > 0) == arrived)
            weight = probability[rows]
            if weight.sum() > 0.0:
                self._tables.append((arrived, rows, np.cumsum(weight) / weight.sum()))

    def draw(
        self, rng: np.random.Generator, arrived: BoolArray
    ) -> tuple[BoolArray, BoolArray, IntArray]:
        u = rng.random(arrived.size)
        pick = np.zeros(arrived.size, dtype=np.int64)
        for branch, rows, cum in self._tables:
            mask = arrived == branch
            index = np.minimum(np.searchsorted(cum, u[mask], side="right"), rows.size - 1)
            pick[mask] = rows[index]
        return self.bright[pick], self.double[pick], self.photons[pick]


def _draw_window(
    rng: np.random.Generator,
    model: LinkModel,
    ka: IntArray,
    kb: IntArray,
    background: tuple[BoolArray, BoolArray],
) -> tuple[BoolArray, BoolArray, BoolArray]:
    """Beam splitter and detectors for one window: (click 0, click 1, signal detected)."""
    n = ka + kb
    # each photon picks a port with a fair bit: photons into 0 = set bits among the first n
    into_0 = _FAIR_SPLIT[n, rng.integers(0, 1 << _MAX_PHOTONS, size=n.size)]
    pair = (ka == 1) & (kb == 1)
    pairs = int(pair.sum())
    if pairs:
        bunched = rng.random(pairs) < (1.0 + model.hom_visibility) / 2.0
        left = rng.random(pairs) < 0.5
        into_0[pair] = np.where(bunched, np.where(left, 2, 0), 1)
    seen = 1.0 - (1.0 - model.detector_efficiency) ** np.arange(_MAX_PHOTONS + 1)
    seen_0 = rng.random(n.size) < seen[into_0]
    seen_1 = rng.random(n.size) < seen[n - into_0]
    return seen_0 | background[0], seen_1 | background[1], seen_0 | seen_1


class LinkSimulator:
    """Draws attempts of a `LinkModel`, vectorised and seeded.

    Attempts come in fixed blocks, each from its own generator seeded by (seed, block), so the
    heralds of a given seed do not depend on how `run`/`run_until` calls split the attempts
    (a real-time station pacing to the wall clock reproduces an offline run). Within a block
    only attempts where something can click are drawn in detail: a photon reaching the
    station or a background click; every other attempt has no click and cannot herald.
    """

    def __init__(self, model: LinkModel, seed: int, *, start_ps: int = 0) -> None:
        require(isinstance(model, LinkModel), "LinkSimulator needs a LinkModel")
        require(
            isinstance(seed, int | np.integer) and seed >= 0,
            f"LinkSimulator seed = {seed!r} must be an integer >= 0",
        )
        require(isinstance(start_ps, int | np.integer), "start_ps must be an integer (ps)")
        self.model = model
        self._seed = int(seed)
        self._start_ps = int(start_ps)
        self.attempt_period_ps = round(model.effective_attempt_period * 1e12)
        """Effective attempt period, integer ps."""
        self.decision_delay_ps = round(
            max(model.herald_delay("a"), model.herald_delay("b")) * 1e12
        )
        """ps from an attempt's start to the station's decision."""
        emit, double = model._emission_probability, model.double_excitation_probability
        self._node_a = _NodeSampler(emit, double, model.signal_transmission("a"))
        self._node_b = _NodeSampler(emit, double, model.signal_transmission("b"))
        self._background = model.background_click_probability
        self._genuine_fidelity = np.float32(model._genuine_fidelity)
        self._next_attempt = 0
        self._cached: tuple[int, np.ndarray] | None = None

    @property
    def attempts_made(self) -> int:
        return self._next_attempt

    def decision_time_ps(self, attempt_id: int) -> int:
        """Station time (ps) of the herald decision of attempt `attempt_id`."""
        return self._start_ps + attempt_id * self.attempt_period_ps + self.decision_delay_ps

    def run(self, attempts: int) -> AttemptBatch:
        """Make the next `attempts` attempts."""
        require(
            isinstance(attempts, int | np.integer) and attempts >= 0,
            f"attempts = {attempts!r} must be an integer >= 0",
        )
        first, stop = self._next_attempt, self._next_attempt + int(attempts)
        parts = []
        for block in range(first // _BLOCK, -(-stop // _BLOCK)):
            rows = self._block(block)
            ids = rows["attempt_id"]
            parts.append(rows[(ids >= first) & (ids < stop)])
        heralds = np.concatenate(parts) if parts else np.empty(0, HERALD_TRUTH_DTYPE)
        heralds["time_ps"] = (
            self._start_ps
            + heralds["attempt_id"].astype(np.int64) * self.attempt_period_ps
            + self.decision_delay_ps
        )
        self._next_attempt = stop
        return AttemptBatch(attempts=stop - first, first_attempt_id=first, heralds=heralds)

    def run_until(self, station_time_ps: int) -> AttemptBatch:
        """Make every attempt not yet made whose decision time is <= `station_time_ps`."""
        elapsed = int(station_time_ps) - self._start_ps - self.decision_delay_ps
        due = elapsed // self.attempt_period_ps + 1 if elapsed >= 0 else 0
        return self.run(max(0, due - self._next_attempt))

    # -- one block -------------------------------------------------------------------------
    def _block(self, block: int) -> np.ndarray:
        if self._cached is not None and self._cached[0] == block:
            return self._cached[1]
        rng = np.random.default_rng([self._seed, block])
        windows = 1 if self.model.scheme == "single_click" else 2
        events = np.zeros((2 + 2 * windows, _BLOCK), dtype=bool)
        probabilities = [self._node_a.arrival_probability, self._node_b.arrival_probability]
        probabilities += [self._background] * (2 * windows)
        for row, p in zip(events, probabilities, strict=True):
            row[_event_positions(rng, _BLOCK, p)] = True
        candidates = np.flatnonzero(events.any(axis=0))
        arrived_a, arrived_b, *bg = events[:, candidates]
        bright_a, double_a, ka = self._node_a.draw(rng, arrived_a)
        bright_b, double_b, kb = self._node_b.draw(rng, arrived_b)
        if windows == 1:
            click_0, click_1, signal = _draw_window(rng, self.model, ka, kb, (bg[0], bg[1]))
            herald = click_0 ^ click_1
            bell = click_1
            shared = bright_a ^ bright_b
        else:
            first_a = rng.random(candidates.size) < 0.5
            first_b = rng.random(candidates.size) < 0.5
            r1 = _draw_window(rng, self.model, ka * first_a, kb * first_b, (bg[0], bg[1]))
            r2 = _draw_window(rng, self.model, ka * ~first_a, kb * ~first_b, (bg[2], bg[3]))
            herald = (r1[0] ^ r1[1]) & (r2[0] ^ r2[1])
            bell = r1[1] != r2[1]
            signal = r1[2] & r2[2]
            shared = first_a != first_b
        genuine = herald & shared & ~double_a & ~double_b & signal
        fidelity = np.where(genuine, self._genuine_fidelity, np.where(shared, 0.5, 0.0))
        rows = np.empty(int(herald.sum()), HERALD_TRUTH_DTYPE)
        rows["attempt_id"] = block * _BLOCK + candidates[herald]
        rows["time_ps"] = 0
        rows["bell_state"] = bell[herald]
        rows["fidelity"] = fidelity[herald]
        rows["genuine"] = genuine[herald]
        self._cached = (block, rows)
        return rows


# -- the arm-delay calibration measurement -------------------------------------------------------
_MAX_PULSE_PHOTONS = 12
"""Photons per detector and pulse drawn at most; the Poisson tail beyond is < 1e-12 for the
weak pulses (mean << 1 per detector) this measurement uses."""


def arrival_histogram(
    model: LinkModel, node: Arm, attempts: int, edges: npt.ArrayLike, seed: int,
    *, pulse_photons: float = 0.2,
) -> IntArray:
    """Station clicks per time bin, relative to the emission of `node`'s calibration pulse.

    Per attempt `node` launches a weak laser pulse (mean `pulse_photons` into its fibre; the
    calibration laser shares the fibre, not the transducer) and the other node is dark. Its
    photons reach the beam splitter at the fibre's TRUE light time, spread by
    ``arrival_time_spread``, and split fairly between the two detectors. The time tagger
    keeps each detector's first click of the attempt inside the gate ``[edges[0],
    edges[-1])`` (s): the earliest photon detected, or a dark count, uniform over the gate,
    if that came first. Both detectors go into one histogram over `edges` (s). Keep the
    pulse weak (<< 1 photon per detector): with several photons the first one is early.
    """
    edges = np.asarray(edges, dtype=float)
    require(edges.ndim == 1 and edges.size >= 2 and bool(np.all(np.diff(edges) > 0)),
             "arrival_histogram: edges must be >= 2 increasing times in s")
    require(isinstance(attempts, int | np.integer) and attempts >= 0,
             f"arrival_histogram: attempts = {attempts!r} must be an integer >= 0")
    require(math.isfinite(pulse_photons) and 0.0 <= pulse_photons <= 1.0,
             f"arrival_histogram: pulse_photons = {pulse_photons!r} must be 0..1 photons; "
             "a brighter pulse biases the first click early")
    rng = np.random.default_rng(seed)
    start, stop = float(edges[0]), float(edges[-1])
    optics = model._node(node)
    cells = 2 * int(attempts)  # (attempt, detector)
    mean = pulse_photons * optics.fibre_transmission * model.detector_efficiency / 2.0
    k = np.arange(_MAX_PULSE_PHOTONS + 1)
    pmf = np.exp(-mean) * mean**k / np.array([math.factorial(int(i)) for i in k])
    per_k = rng.multinomial(cells, pmf / pmf.sum())
    photon_times = [
        optics.light_time
        + model.arrival_time_spread * rng.standard_normal((int(n), int(j))).min(axis=1)
        for j, n in enumerate(per_k) if j > 0 and n > 0
    ]
    first = np.concatenate(photon_times) if photon_times else np.empty(0)
    first[(first < start) | (first >= stop)] = np.inf  # outside the gate: never recorded
    q_dark = -math.expm1(-model.dark_count_rate * (stop - start))
    dark = rng.random(first.size) < q_dark
    first[dark] = np.minimum(first[dark], rng.uniform(start, stop, int(dark.sum())))
    dark_only = rng.uniform(start, stop, int(rng.binomial(cells - first.size, q_dark)))
    times = np.concatenate([first[np.isfinite(first)], dark_only])
    return np.histogram(times, edges)[0].astype(np.int64)

__all__ = [  # the model is re-exported: simulator users need not know where it lives
    "FIBRE_DELAY_S_PER_KM", "FIBRE_LOSS_DB_PER_KM", "HERALD_TRUTH_DTYPE", "AttemptBatch",
    "LinkModel", "LinkSimulator", "NodeOptics", "Scheme", "arrival_histogram",
    "expected_fidelity", "expected_pair_rate", "expected_success_probability",
    "node_optics_from_preset", "window_acceptance",
]
