"""Two-node heralded-entanglement link: emitters, fibre, midpoint station (REFERENCE.md s.3).

Each node emits through its transducer (efficiency ``eta_t``, added noise ``N_add`` referred
to the input) and a collection optic into fibre (0.2 dB/km, 4.9 us/km) to a midpoint station:
a 50:50 beam splitter and two SNSPDs of efficiency ``eta_d``. The per-arm probability that an
emitted photon clicks a detector is ``eta = eta_t * collection * 10^(-0.02 L) * eta_d``.

Schemes, with the states the nodes hold (``|1>`` is a node's bright, photon-emitting state):

* ``single_click``: each node emits with probability alpha (bright-state population); a herald
  is exactly one detector clicking, which detector giving Psi+ (0) or Psi- (1). Success
  ``p ~ 2 alpha eta``; a genuine herald holds a state of fidelity
  ``1/2 + sqrt(V) sqrt(t_a t_b) / (t_a + t_b)`` (the photons' mode overlap is sqrt(V) for HOM
  visibility V; t the arm transmissions weight the two branches), and the both-bright
  admixture brings the mean to ``~ (1 - alpha)`` times that. A phase-stable link is assumed.
* ``two_click`` (Barrett-Kok): each node is in an equal superposition and emits in exactly one
  of two rounds (a spin flip between them); a herald is exactly one click in each round, the
  same detector twice giving Psi+ (0), different detectors Psi- (1). Success
  ``p = eta_a eta_b / 2``; a genuine herald holds fidelity ``(1 + V) / 2``.

Imperfections, each drawn per attempt:

* Double excitation: a bright emitter emits a second photon with probability
  ``double_excitation_probability``; the extra photon carries which-path information, so a
  herald involving it holds an incoherent state.
* Background clicks per detector and detection window: dark counts (``DCR * window``) and the
  transducers' noise photons, ``N_add * eta_t`` per mode leaving each transducer, attenuated
  like the signal and split by the beam splitter. All are Poisson, so each detector's
  background click is an independent Bernoulli draw with ``q = 1 - exp(-mean)``.
* Two photons arriving together, one from each node, bunch into one detector with
  probability ``(1 + V) / 2``; other multi-photon cases (which need a double excitation)
  route independently. SNSPDs do not resolve photon number.

Ground truth per herald: the fidelity with the announced Bell state of the spin state the
nodes hold, given which nodes emitted. Genuine (the intended photons clicked, no double
excitation): the coherent values above. Exactly one excitation shared but coherence lost (the
photon was lost and background clicked, or a double excitation): ``|01>`` or ``|10>``,
fidelity 0.5. Both or neither excited: ``|00>`` or ``|11>``, fidelity 0. This replaces a
blanket "mixed state, 0.25": a false single-click herald is usually ``|00>`` and worth 0.

The analytic formulas enumerate this same finite outcome tree exactly (no truncation in
alpha or eta), so simulation and formulas agree within statistics for any parameters; the
textbook forms above are their leading orders.

Heralding windows: the station looks for each arm's photons in a window of width W
(``detection_window``) centred where it EXPECTS them, at its calibrated arm delay; they arrive
at the TRUE light time of the fibre, spread by a Gaussian of ``arrival_time_spread`` (s rms:
SNSPD and time-tagger jitter and the photon's duration together). A window offset
``Delta = expected - true`` keeps the fraction ``Phi((W/2 - Delta)/s) - Phi((-W/2 - Delta)/s)``
of the arm's photons (and of its transducer's noise photons, which share the photon's mode)
inside the window; the rest are lost like fibre loss. Dark counts are uniform in time and do
not care. With the default offsets of 0 (a calibrated station) and W >> s the fraction is 1.
`arrival_histogram` is the measurement that calibrates the expected delays.

Timing: photons must meet at the beam splitter, so the node on the shorter arm emits later by
the difference in light time. Attempt k starts when the farther node emits, at
``start_ps + k * period``; the station decides at start plus the longer arm's light time.
The period is at least the round trip over the longer arm (the node waits for the herald)
and at least ``attempt_period``; a Barrett-Kok attempt fits both rounds inside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from .presets import get_preset

FIBRE_LOSS_DB_PER_KM = 0.2
FIBRE_DELAY_S_PER_KM = 4.9e-6

Scheme = Literal["single_click", "two_click"]
Node = Literal["a", "b"]

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


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_fraction(owner: str, name: str, value: float) -> None:
    _require(
        math.isfinite(value) and 0.0 <= value <= 1.0,
        f"{owner}.{name} = {value!r} must be a probability between 0 and 1",
    )


@dataclass(frozen=True)
class NodeOptics:
    """One node's emitter chain up to the station. Lengths in km, efficiencies 0..1."""

    fibre_length_km: float
    transducer_efficiency: float
    """eta of the node's transducer at its operating point."""
    transducer_added_noise: float
    """N_add: noise photons per mode referred to the transducer's input."""
    collection_efficiency: float = 0.5

    def __post_init__(self) -> None:
        length = self.fibre_length_km
        _require(
            math.isfinite(length) and length >= 0.0,
            f"NodeOptics.fibre_length_km = {length!r} must be a length >= 0 km",
        )
        _check_fraction("NodeOptics", "transducer_efficiency", self.transducer_efficiency)
        _check_fraction("NodeOptics", "collection_efficiency", self.collection_efficiency)
        noise = self.transducer_added_noise
        _require(
            math.isfinite(noise) and noise >= 0.0,
            f"NodeOptics.transducer_added_noise = {noise!r} must be >= 0 photons per mode",
        )

    @property
    def fibre_transmission(self) -> float:
        return 10.0 ** (-FIBRE_LOSS_DB_PER_KM * self.fibre_length_km / 10.0)

    @property
    def station_transmission(self) -> float:
        """Probability that an emitted photon reaches the station's beam splitter."""
        return self.transducer_efficiency * self.collection_efficiency * self.fibre_transmission

    @property
    def noise_photons_at_station(self) -> float:
        """Mean transducer noise photons per mode arriving at the beam splitter."""
        return self.transducer_added_noise * self.station_transmission

    @property
    def light_time(self) -> float:
        """One-way light time over this node's fibre, s."""
        return self.fibre_length_km * FIBRE_DELAY_S_PER_KM


@dataclass(frozen=True)
class LinkModel:
    """A two-node link and its midpoint station; rates in Hz, times in s."""

    scheme: Scheme
    node_a: NodeOptics
    node_b: NodeOptics
    detector_efficiency: float = 0.9
    dark_count_rate: float = 10.0
    """Hz per SNSPD at the station."""
    detection_window: float = 2e-9
    """s, heralding window per attempt (per round for two-click)."""
    bright_state_population: float = 0.05
    """alpha (single-click only)."""
    hom_visibility: float = 0.95
    double_excitation_probability: float = 0.0
    attempt_period: float = 1e-6
    """s, the emitters' shortest period."""
    window_offset_a: float = 0.0
    """s, where the station expects arm a's photons minus where they arrive (0: calibrated)."""
    window_offset_b: float = 0.0
    """s, the same for arm b."""
    arrival_time_spread: float = 70e-12
    """s rms of a photon's arrival time at the station as the time tagger sees it: SNSPD jitter
    (20-50 ps, REFERENCE.md s.2) and tagger jitter (~10 ps) in quadrature with the photon's
    own duration (~50 ps rms for the pulsed transducers); 70 ps in all."""

    def __post_init__(self) -> None:
        schemes = get_args(Scheme)
        _require(
            self.scheme in schemes,
            f"LinkModel.scheme = {self.scheme!r} is unknown; choose one of {schemes}",
        )
        for name in ("node_a", "node_b"):
            _require(
                isinstance(getattr(self, name), NodeOptics),
                f"LinkModel.{name} must be a NodeOptics (see node_optics_from_preset)",
            )
        for name in (
            "detector_efficiency",
            "bright_state_population",
            "hom_visibility",
            "double_excitation_probability",
        ):
            _check_fraction("LinkModel", name, getattr(self, name))
        _require(
            math.isfinite(self.dark_count_rate) and self.dark_count_rate >= 0.0,
            f"LinkModel.dark_count_rate = {self.dark_count_rate!r} must be >= 0 Hz",
        )
        for name in ("detection_window", "attempt_period", "arrival_time_spread"):
            value = getattr(self, name)
            _require(
                math.isfinite(value) and value > 0.0,
                f"LinkModel.{name} = {value!r} must be a time > 0 s",
            )
        for name in ("window_offset_a", "window_offset_b"):
            value = getattr(self, name)
            _require(
                math.isfinite(value),
                f"LinkModel.{name} = {value!r} must be a finite time in s",
            )

    def _node(self, node: Node) -> NodeOptics:
        if node == "a":
            return self.node_a
        if node == "b":
            return self.node_b
        raise ValueError(f"node {node!r} is unknown; choose 'a' or 'b'")

    def window_acceptance(self, node: Node) -> float:
        """Fraction of `node`'s photons that arrive inside the station's window for its arm."""
        self._node(node)  # refuses an unknown node
        offset = self.window_offset_a if node == "a" else self.window_offset_b
        return window_acceptance(offset, self.detection_window, self.arrival_time_spread)

    def signal_transmission(self, node: Node) -> float:
        """Probability that a photon emitted by `node` reaches the beam splitter inside the
        station's window for its arm."""
        return self._node(node).station_transmission * self.window_acceptance(node)

    def arm_transmission(self, node: Node) -> float:
        """Probability that a photon emitted by `node` clicks a station detector in its
        heralding window."""
        return self.signal_transmission(node) * self.detector_efficiency

    @property
    def effective_attempt_period(self) -> float:
        """s: attempt_period, or the round trip over the longer arm if that is longer."""
        longest = max(self.node_a.fibre_length_km, self.node_b.fibre_length_km)
        return max(self.attempt_period, 2.0 * longest * FIBRE_DELAY_S_PER_KM)

    def herald_delay(self, node: Node) -> float:
        """s, from `node`'s emission to the station's decision (its arm's light time)."""
        return self._node(node).light_time

    @property
    def background_click_probability(self) -> float:
        """Probability that one detector clicks in one window without a signal photon."""
        noise = (self.node_a.noise_photons_at_station * self.window_acceptance("a")
                 + self.node_b.noise_photons_at_station * self.window_acceptance("b"))
        mean = self.dark_count_rate * self.detection_window
        mean += self.detector_efficiency * noise / 2.0
        return -math.expm1(-mean)

    @property
    def _emission_probability(self) -> float:
        # Barrett-Kok: every node emits exactly once per attempt, in round 1 or round 2
        return self.bright_state_population if self.scheme == "single_click" else 1.0

    @property
    def _genuine_fidelity(self) -> float:
        v = self.hom_visibility
        if self.scheme == "two_click":
            return (1.0 + v) / 2.0
        ta, tb = self.signal_transmission("a"), self.signal_transmission("b")
        if ta + tb == 0.0:
            return 0.5
        return 0.5 + math.sqrt(v) * math.sqrt(ta * tb) / (ta + tb)


def window_acceptance(offset: float, window: float, spread: float) -> float:
    """Fraction of Gaussian arrivals (rms `spread`, s) inside a window of width `window` (s)
    whose centre is `offset` (s) away from the arrivals' mean."""
    half = window / 2.0
    return float(ndtr((half - offset) / spread) - ndtr((-half - offset) / spread))


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


# -- the outcome tree, shared by the formulas and the simulator's conditional draws -----------
def _node_outcomes(
    emit: float, double: float, transmission: float
) -> list[tuple[bool, bool, int, float]]:
    """(bright, double excitation, photons reaching the station, probability) of one node."""
    t = transmission
    return [
        (False, False, 0, 1.0 - emit),
        (True, False, 0, emit * (1.0 - double) * (1.0 - t)),
        (True, False, 1, emit * (1.0 - double) * t),
        (True, True, 0, emit * double * (1.0 - t) ** 2),
        (True, True, 1, emit * double * 2.0 * t * (1.0 - t)),
        (True, True, 2, emit * double * t * t),
    ]


def _routings(ka: int, kb: int, visibility: float) -> list[tuple[int, float]]:
    """(photons into detector 0, probability) at the beam splitter."""
    if ka == 1 and kb == 1:
        bunch = (1.0 + visibility) / 4.0
        return [(2, bunch), (0, bunch), (1, (1.0 - visibility) / 2.0)]
    n = ka + kb
    return [(j, math.comb(n, j) / 2.0**n) for j in range(n + 1)]


def _window_outcomes(
    model: LinkModel, ka: int, kb: int
) -> list[tuple[int, bool, float]]:
    """(detector, signal photon detected, probability) of the one-click outcomes of a window."""
    eta, q = model.detector_efficiency, model.background_click_probability
    outcomes = []
    for k0, p_route in _routings(ka, kb, model.hom_visibility):
        seen = (1.0 - (1.0 - eta) ** k0, 1.0 - (1.0 - eta) ** (ka + kb - k0))
        for det in (0, 1):
            silent_other = (1.0 - seen[1 - det]) * (1.0 - q)
            outcomes.append((det, True, p_route * seen[det] * silent_other))
            outcomes.append((det, False, p_route * (1.0 - seen[det]) * q * silent_other))
    return outcomes


@lru_cache(maxsize=256)
def _expectation(model: LinkModel) -> tuple[float, float]:
    """(success probability per attempt, mean ground-truth fidelity of heralded states)."""
    emit, double = model._emission_probability, model.double_excitation_probability
    tree_a = _node_outcomes(emit, double, model.signal_transmission("a"))
    tree_b = _node_outcomes(emit, double, model.signal_transmission("b"))
    f_genuine = model._genuine_fidelity
    success = weighted_fidelity = 0.0
    for bright_a, double_a, ka, pa in tree_a:
        for bright_b, double_b, kb, pb in tree_b:
            if model.scheme == "single_click":
                shared = bright_a != bright_b
                clean = shared and not (double_a or double_b)
                for _, signal, p in _window_outcomes(model, ka, kb):
                    f = f_genuine if clean and signal else 0.5 if shared else 0.0
                    success += pa * pb * p
                    weighted_fidelity += pa * pb * p * f
                continue
            for first_a in (True, False):  # which round each node emits in
                for first_b in (True, False):
                    shared = first_a != first_b
                    clean = shared and not (double_a or double_b)
                    round_1 = _window_outcomes(model, ka * first_a, kb * first_b)
                    round_2 = _window_outcomes(model, ka * (not first_a), kb * (not first_b))
                    for _, signal_1, p1 in round_1:
                        for _, signal_2, p2 in round_2:
                            genuine = clean and signal_1 and signal_2
                            f = f_genuine if genuine else 0.5 if shared else 0.0
                            p = 0.25 * pa * pb * p1 * p2
                            success += p
                            weighted_fidelity += p * f
    return success, (weighted_fidelity / success if success > 0.0 else math.nan)


def expected_success_probability(model: LinkModel) -> float:
    """Heralds per attempt (genuine or not)."""
    return _expectation(model)[0]


def expected_fidelity(model: LinkModel) -> float:
    """Mean fidelity of heralded states with their announced Bell state (nan if p = 0)."""
    return _expectation(model)[1]


def expected_pair_rate(model: LinkModel) -> float:
    """Heralds per second at the effective attempt period."""
    return expected_success_probability(model) / model.effective_attempt_period


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
        tree = _node_outcomes(emit, double, transmission)
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
        _require(isinstance(model, LinkModel), "LinkSimulator needs a LinkModel")
        _require(
            isinstance(seed, int | np.integer) and seed >= 0,
            f"LinkSimulator seed = {seed!r} must be an integer >= 0",
        )
        _require(isinstance(start_ps, int | np.integer), "start_ps must be an integer (ps)")
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
        _require(
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
    model: LinkModel, node: Node, attempts: int, edges: npt.ArrayLike, seed: int,
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
    _require(edges.ndim == 1 and edges.size >= 2 and bool(np.all(np.diff(edges) > 0)),
             "arrival_histogram: edges must be >= 2 increasing times in s")
    _require(isinstance(attempts, int | np.integer) and attempts >= 0,
             f"arrival_histogram: attempts = {attempts!r} must be an integer >= 0")
    _require(math.isfinite(pulse_photons) and 0.0 <= pulse_photons <= 1.0,
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
