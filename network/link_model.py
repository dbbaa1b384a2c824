"""The heralded two-node link, analytically: its parts, and the rate and fidelity they give.

`LinkModel` sums the exact outcome tree of single-click and Barrett-Kok heralding (fibre loss
and delay, detector efficiency, dark counts, transducer noise counted per window length, double
excitation, heralding windows and the fraction of each photon's exponential shape inside them),
then applies what happens to a heralded pair's coherence: single-click phase drift (and its
stabilisation) and memory dephasing at each node's T2 during the heralding round trip and
until use. Each node's repetition limit bounds the attempt period. The control plane and the
link's calibration use it; the link twin (`sim_instruments.physics.link_clicks`) draws
attempts from the same tree, so formulas and simulation agree within statistics.

Derivation: docs/link.md#3-imperfections-and-the-outcome-tree (schemes, ground truth per
herald, heralding windows and timing in docs/link.md sections 2-4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr, ndtr

FIBRE_LOSS_DB_PER_KM = 0.2
FIBRE_DELAY_S_PER_KM = 4.9e-6
PHOTON_TAIL_DURATIONS = math.log(100.0)
"""A photon (exponential, time constant tau) has left its transducer to within 1 % after this
many tau: a device cannot start its next round sooner (docs/link.md#1-the-link)."""

Scheme = Literal["single_click", "two_click"]
Arm = Literal["a", "b"]

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def require(ok: bool, message: str) -> None:
    """Raise ValueError(message) unless `ok` (argument checks of the link model)."""
    if not ok:
        raise ValueError(message)


def _check_fraction(owner: str, name: str, value: float) -> None:
    require(
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
    conversion_bandwidth: float | None = None
    """Hz, FWHM of the transducer's conversion band (a Lorentzian). It sets the emitted
    photon's temporal shape, an exponential of time constant 1 / (2 pi B) (`photon_duration`),
    and the flux of its noise photons (`noise_rate_at_station`). None: an instantaneous photon
    and noise counted per mode (the pre-issue-13 model)."""
    memory_t2: float | None = None
    """s, the node memory's dephasing time: a heralded pair's coherence decays as
    exp(-t / T2) per node while it waits. None: no decoherence."""
    repetition_limit: float | None = None
    """Hz, the fastest the node's device can be fired (a pulsed transducer's repetition rate,
    or its pump duty cycle over its pulse length). None: no limit (continuous wave)."""

    def __post_init__(self) -> None:
        length = self.fibre_length_km
        require(
            math.isfinite(length) and length >= 0.0,
            f"NodeOptics.fibre_length_km = {length!r} must be a length >= 0 km",
        )
        _check_fraction("NodeOptics", "transducer_efficiency", self.transducer_efficiency)
        _check_fraction("NodeOptics", "collection_efficiency", self.collection_efficiency)
        noise = self.transducer_added_noise
        require(
            math.isfinite(noise) and noise >= 0.0,
            f"NodeOptics.transducer_added_noise = {noise!r} must be >= 0 photons per mode",
        )
        for name, unit in (("conversion_bandwidth", "Hz"), ("memory_t2", "s"),
                           ("repetition_limit", "Hz")):
            value = getattr(self, name)
            require(
                value is None or (isinstance(value, int | float) and math.isfinite(value)
                                  and value > 0.0),
                f"NodeOptics.{name} = {value!r} must be > 0 {unit} (or None: "
                f"{'instantaneous' if name == 'conversion_bandwidth' else 'no limit'})",
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

    @property
    def photon_duration(self) -> float:
        """s, the time constant tau of the emitted photon's intensity, exp(-t / tau) / tau.

        A cavity-limited emitter of (intensity) linewidth B Hz FWHM decays at kappa = 2 pi B,
        so tau = 1 / (2 pi B): 15.9 ns for a 10 MHz band, 8 us for a 20 kHz one (Gardiner and
        Collett, PRA 31, 3761 (1985), input-output theory of a damped cavity). 0 if
        `conversion_bandwidth` is None."""
        band = self.conversion_bandwidth
        return 0.0 if band is None else 1.0 / (2.0 * math.pi * band)

    @property
    def noise_rate_at_station(self) -> float | None:
        """Transducer noise photons per second arriving at the beam splitter (None without a
        `conversion_bandwidth`: noise then counts per mode).

        N_add photons per mode referred to the input is a white noise density of N_add
        photons per second per Hz; through the Lorentzian conversion band (peak efficiency
        eta_t, FWHM B) it leaves at N_add eta_t (pi / 2) B photons per second (the
        Lorentzian's noise-equivalent bandwidth is pi B / 2), then pays collection and fibre
        like the signal. A window of length W counts this flux times W."""
        band = self.conversion_bandwidth
        if band is None:
            return None
        return self.noise_photons_at_station * (math.pi / 2.0) * band

    @property
    def min_round_period(self) -> float:
        """s, the shortest round this node's device allows: its repetition limit, and the
        photon's tail (`PHOTON_TAIL_DURATIONS` time constants) out of the transducer."""
        limit = 0.0 if self.repetition_limit is None else 1.0 / self.repetition_limit
        return max(limit, PHOTON_TAIL_DURATIONS * self.photon_duration)


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
    (20-50 ps, docs/detectors.md) and tagger jitter (~10 ps) in quadrature with the photon's
    own duration (~50 ps rms for the pulsed transducers); 70 ps in all. A transducer's
    exponential photon shape (`NodeOptics.photon_duration`) comes on top of it."""
    phase_drift_rate: float = 0.0
    """rad^2/s, diffusion of the single-click interferometer's optical phase (both arms'
    fibres): the phase's variance grows by this much per second. 0: phase-stable."""
    phase_stabilisation_period: float | None = None
    """s between the phase stabilisation's corrections (a reference-light measurement that
    resets the phase to within `phase_residual`). None: no stabilisation, so with any drift
    the phase is uniformly random over the run and a single-click herald holds no
    coherence."""
    phase_residual: float = 0.0
    """rad rms, the phase error left right after a correction (or the fixed error of a
    phase-stable link)."""

    def __post_init__(self) -> None:
        schemes = get_args(Scheme)
        require(
            self.scheme in schemes,
            f"LinkModel.scheme = {self.scheme!r} is unknown; choose one of {schemes}",
        )
        for name in ("node_a", "node_b"):
            require(
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
        require(
            math.isfinite(self.dark_count_rate) and self.dark_count_rate >= 0.0,
            f"LinkModel.dark_count_rate = {self.dark_count_rate!r} must be >= 0 Hz",
        )
        for name in ("detection_window", "attempt_period", "arrival_time_spread"):
            value = getattr(self, name)
            require(
                math.isfinite(value) and value > 0.0,
                f"LinkModel.{name} = {value!r} must be a time > 0 s",
            )
        for name in ("window_offset_a", "window_offset_b"):
            value = getattr(self, name)
            require(
                math.isfinite(value),
                f"LinkModel.{name} = {value!r} must be a finite time in s",
            )
        for name, unit in (("phase_drift_rate", "rad^2/s"), ("phase_residual", "rad")):
            value = getattr(self, name)
            require(
                math.isfinite(value) and value >= 0.0,
                f"LinkModel.{name} = {value!r} must be >= 0 {unit}",
            )
        period = self.phase_stabilisation_period
        require(
            period is None or (math.isfinite(period) and period > 0.0),
            f"LinkModel.phase_stabilisation_period = {period!r} must be a time > 0 s (or None: "
            "no stabilisation)",
        )

    def _node(self, node: Arm) -> NodeOptics:
        if node == "a":
            return self.node_a
        if node == "b":
            return self.node_b
        raise ValueError(f"node {node!r} is unknown; choose 'a' or 'b'")

    def window_acceptance(self, node: Arm) -> float:
        """Fraction of `node`'s photons that arrive inside the station's window for its arm."""
        self._node(node)  # refuses an unknown node
        offset = self.window_offset_a if node == "a" else self.window_offset_b
        return window_acceptance(offset, self.detection_window, self.arrival_time_spread,
                                 self._node(node).photon_duration)

    def signal_transmission(self, node: Arm) -> float:
        """Probability that a photon emitted by `node` reaches the beam splitter inside the
        station's window for its arm."""
        return self._node(node).station_transmission * self.window_acceptance(node)

    def arm_transmission(self, node: Arm) -> float:
        """Probability that a photon emitted by `node` clicks a station detector in its
        heralding window."""
        return self.signal_transmission(node) * self.detector_efficiency

    @property
    def rounds_per_attempt(self) -> int:
        """1 (single-click) or 2 (Barrett-Kok: two rounds, a sync tag each)."""
        return 1 if self.scheme == "single_click" else 2

    @property
    def min_attempt_period(self) -> float:
        """s, the shortest attempt period the link allows: the round trip over the longer
        arm (a node's memory holds one qubit), and each node's device limit per round
        (`NodeOptics.min_round_period`: repetition limit, photon tail)."""
        longest = max(self.node_a.fibre_length_km, self.node_b.fibre_length_km)
        device = max(self.node_a.min_round_period, self.node_b.min_round_period)
        return max(2.0 * longest * FIBRE_DELAY_S_PER_KM, self.rounds_per_attempt * device)

    @property
    def effective_attempt_period(self) -> float:
        """s: attempt_period, capped below by `min_attempt_period` (the devices fire no
        faster than they can, whatever the clock asks)."""
        return max(self.attempt_period, self.min_attempt_period)

    @property
    def herald_age(self) -> float:
        """s each node's memory has held its qubit when both know the attempt's outcome:
        from the attempt's first emission, the rounds after it, the longer arm's light time
        to the station (both photons must be in) and back to the farther node."""
        round_period = self.attempt_period / self.rounds_per_attempt
        longest = max(self.node_a.light_time, self.node_b.light_time)
        return (self.rounds_per_attempt - 1) * round_period + 2.0 * longest

    @property
    def dephasing_rate(self) -> float:
        """1/s: the sum of both nodes' 1 / T2 (a pair's coherence decays as exp(-rate t))."""
        return sum(0.0 if n.memory_t2 is None else 1.0 / n.memory_t2
                   for n in (self.node_a, self.node_b))

    def memory_decay(self, age: float = 0.0) -> float:
        """Factor on a heralded pair's coherence after the heralding round trip and `age`
        more seconds in both memories (pure dephasing at each node's T2)."""
        require(math.isfinite(age) and age >= 0.0, f"age = {age!r} must be a time >= 0 s")
        return math.exp(-self.dephasing_rate * (self.herald_age + age))

    @property
    def phase_coherence(self) -> float:
        """E[cos phi] of the single-click interferometer's phase error phi (1 for two-click,
        which is insensitive to the optical phase: Barrett and Kok, PRA 71, 060310 (2005)).

        Right after a correction phi has variance s_r^2 (`phase_residual`); it then diffuses,
        variance s_r^2 + D t, until the next correction a period T later. Attempts are
        uniform over the cycle, so E[cos phi] = exp(-s_r^2 / 2) (1 - exp(-x)) / x with
        x = D T / 2. Without stabilisation and D > 0 the phase is uniform: 0."""
        if self.scheme == "two_click":
            return 1.0
        base = math.exp(-self.phase_residual**2 / 2.0)
        drift = self.phase_drift_rate
        if drift == 0.0:
            return base
        period = self.phase_stabilisation_period
        if period is None:
            return 0.0
        x = drift * period / 2.0
        return base * -math.expm1(-x) / x

    def herald_delay(self, node: Arm) -> float:
        """s, from `node`'s emission to the station's decision (its arm's light time)."""
        return self._node(node).light_time

    @property
    def window_span(self) -> float:
        """s of each detector's time that a round's windows cover: one window when both arms'
        coincide, two apart when their centres differ by W or more (unequal arms). Background
        that is uniform in time (dark counts, a transducer's noise flux) counts over it."""
        delta = abs((self.node_b.light_time + self.window_offset_b)
                    - (self.node_a.light_time + self.window_offset_a))
        return self.detection_window + min(self.detection_window, delta)

    def noise_photons_in_window(self, node: Arm) -> float:
        """Mean noise photons of `node`'s transducer reaching the beam splitter in a round's
        windows: its noise flux times their length (`NodeOptics.noise_rate_at_station`,
        `window_span`), or, without a conversion bandwidth, per mode like the signal (the
        window's acceptance)."""
        optics = self._node(node)
        rate = optics.noise_rate_at_station
        if rate is None:
            return optics.noise_photons_at_station * self.window_acceptance(node)
        return rate * self.window_span

    @property
    def background_click_probability(self) -> float:
        """Probability that one detector clicks in a round's windows without a signal
        photon."""
        noise = self.noise_photons_in_window("a") + self.noise_photons_in_window("b")
        mean = self.dark_count_rate * self.window_span
        mean += self.detector_efficiency * noise / 2.0
        return -math.expm1(-mean)

    @property
    def _emission_probability(self) -> float:
        # Barrett-Kok: every node emits exactly once per attempt, in round 1 or round 2
        return self.bright_state_population if self.scheme == "single_click" else 1.0

    @property
    def _genuine_fidelity(self) -> float:
        """Fidelity of a genuine herald the moment it is decided, phase-stable (the phase
        error and memory dephasing are applied on top, `genuine_fidelity`)."""
        v = self.hom_visibility
        if self.scheme == "two_click":
            return (1.0 + v) / 2.0
        ta, tb = self.signal_transmission("a"), self.signal_transmission("b")
        if ta + tb == 0.0:
            return 0.5
        return 0.5 + math.sqrt(v) * math.sqrt(ta * tb) / (ta + tb)

    def genuine_fidelity(self, age: float = 0.0) -> float:
        """Mean fidelity of a genuine herald's pair when both nodes know of it plus `age` s:
        its coherence (`_genuine_fidelity` - 1/2) times the phase's E[cos phi] and the
        memories' dephasing."""
        coherence = self._genuine_fidelity - 0.5
        return 0.5 + coherence * self.phase_coherence * self.memory_decay(age)


def exponential_gaussian_cdf(x: float, spread: float, duration: float) -> float:
    """P(E + G <= x) for E exponential of mean `duration` and G Gaussian of rms `spread`
    (the exponentially modified Gaussian; either may be 0)."""
    if duration <= 0.0:
        if spread <= 0.0:
            return 1.0 if x >= 0.0 else 0.0
        return float(ndtr(x / spread))
    if spread <= 0.0:
        return -math.expm1(-x / duration) if x > 0.0 else 0.0
    u = x / spread
    r = spread / duration
    # Phi(u) - exp(-x/tau + r^2/2) Phi(u - r), the second term in logs (no overflow far left)
    tail = math.exp(-x / duration + r * r / 2.0 + float(log_ndtr(u - r)))
    return max(0.0, float(ndtr(u)) - tail)


def window_acceptance(offset: float, window: float, spread: float,
                      duration: float = 0.0) -> float:
    """Fraction of arrivals inside a window of width `window` (s) whose centre is `offset` (s)
    after the photon's start: a Gaussian timing jitter (rms `spread`, s) on an exponential
    photon of time constant `duration` (s; 0: instantaneous)."""
    half = window / 2.0
    return (exponential_gaussian_cdf(half + offset, spread, duration)
            - exponential_gaussian_cdf(-half + offset, spread, duration))


# -- the outcome tree, shared by the formulas and the simulator's conditional draws -----------
def node_outcomes(
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


def routings(ka: int, kb: int, visibility: float) -> list[tuple[int, float]]:
    """(photons into detector 0, probability) at the beam splitter."""
    if ka == 1 and kb == 1:
        bunch = (1.0 + visibility) / 4.0
        return [(2, bunch), (0, bunch), (1, (1.0 - visibility) / 2.0)]
    n = ka + kb
    return [(j, math.comb(n, j) / 2.0**n) for j in range(n + 1)]


def window_outcomes(
    model: LinkModel, ka: int, kb: int
) -> list[tuple[int, bool, float]]:
    """(detector, signal photon detected, probability) of the one-click outcomes of a window."""
    eta, q = model.detector_efficiency, model.background_click_probability
    outcomes = []
    for k0, p_route in routings(ka, kb, model.hom_visibility):
        seen = (1.0 - (1.0 - eta) ** k0, 1.0 - (1.0 - eta) ** (ka + kb - k0))
        for det in (0, 1):
            silent_other = (1.0 - seen[1 - det]) * (1.0 - q)
            outcomes.append((det, True, p_route * seen[det] * silent_other))
            outcomes.append((det, False, p_route * (1.0 - seen[det]) * q * silent_other))
    return outcomes


@lru_cache(maxsize=256)
def _expectation(model: LinkModel) -> tuple[float, float, float]:
    """(success probability per attempt, the summed probability x fidelity of the heralds that
    are not genuine, the probability of a genuine herald) over the outcome tree."""
    emit, double = model._emission_probability, model.double_excitation_probability
    tree_a = node_outcomes(emit, double, model.signal_transmission("a"))
    tree_b = node_outcomes(emit, double, model.signal_transmission("b"))
    success = other_fidelity = genuine_mass = 0.0
    for bright_a, double_a, ka, pa in tree_a:
        for bright_b, double_b, kb, pb in tree_b:
            if model.scheme == "single_click":
                shared = bright_a != bright_b
                clean = shared and not (double_a or double_b)
                for _, signal, p in window_outcomes(model, ka, kb):
                    success += pa * pb * p
                    if clean and signal:
                        genuine_mass += pa * pb * p
                    elif shared:
                        other_fidelity += pa * pb * p * 0.5
                continue
            for first_a in (True, False):  # which round each node emits in
                for first_b in (True, False):
                    shared = first_a != first_b
                    clean = shared and not (double_a or double_b)
                    round_1 = window_outcomes(model, ka * first_a, kb * first_b)
                    round_2 = window_outcomes(model, ka * (not first_a), kb * (not first_b))
                    for _, signal_1, p1 in round_1:
                        for _, signal_2, p2 in round_2:
                            p = 0.25 * pa * pb * p1 * p2
                            success += p
                            if clean and signal_1 and signal_2:
                                genuine_mass += p
                            elif shared:
                                other_fidelity += p * 0.5
    return success, other_fidelity, genuine_mass


def expected_success_probability(model: LinkModel) -> float:
    """Heralds per attempt (genuine or not)."""
    return _expectation(model)[0]


def expected_genuine_fraction(model: LinkModel) -> float:
    """Of the heralds, the fraction that are genuine (the intended photons clicked, no double
    excitation): the ones whose coherence phase drift and dephasing take (nan if p = 0)."""
    success, _, genuine = _expectation(model)
    return genuine / success if success > 0.0 else math.nan


def expected_fidelity(model: LinkModel, age: float = 0.0) -> float:
    """Mean fidelity of heralded states with their announced Bell state (nan if p = 0), held
    `age` s after both nodes know of the herald (0: at that moment; the heralding round trip's
    dephasing is always included). Only genuine heralds hold coherence to lose:
    F(age) = F_other + P_genuine (1/2 + (F_g - 1/2) E[cos phi] exp(-(t_h + age) sum 1/T2))."""
    success, other, genuine = _expectation(model)
    if success <= 0.0:
        return math.nan
    return (other + genuine * model.genuine_fidelity(age)) / success


def expected_pair_rate(model: LinkModel) -> float:
    """Heralds per second at the effective attempt period."""
    return expected_success_probability(model) / model.effective_attempt_period
