"""The heralded two-node link, analytically: its parts, and the rate and fidelity they give.

`LinkModel` sums the exact outcome tree of single-click and Barrett-Kok heralding (fibre loss
and delay, detector efficiency, dark counts, transducer noise, double excitation, heralding
windows). The control plane and the link's calibration use it; the link twin
(`sim_instruments.physics.link_clicks`) draws attempts from the same tree, so formulas and
simulation agree within statistics.

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
from scipy.special import ndtr

FIBRE_LOSS_DB_PER_KM = 0.2
FIBRE_DELAY_S_PER_KM = 4.9e-6

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
    (20-50 ps, docs/detectors.md) and tagger jitter (~10 ps) in quadrature with the photon's
    own duration (~50 ps rms for the pulsed transducers); 70 ps in all."""

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
        return window_acceptance(offset, self.detection_window, self.arrival_time_spread)

    def signal_transmission(self, node: Arm) -> float:
        """Probability that a photon emitted by `node` reaches the beam splitter inside the
        station's window for its arm."""
        return self._node(node).station_transmission * self.window_acceptance(node)

    def arm_transmission(self, node: Arm) -> float:
        """Probability that a photon emitted by `node` clicks a station detector in its
        heralding window."""
        return self.signal_transmission(node) * self.detector_efficiency

    @property
    def effective_attempt_period(self) -> float:
        """s: attempt_period, or the round trip over the longer arm if that is longer."""
        longest = max(self.node_a.fibre_length_km, self.node_b.fibre_length_km)
        return max(self.attempt_period, 2.0 * longest * FIBRE_DELAY_S_PER_KM)

    def herald_delay(self, node: Arm) -> float:
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
def _expectation(model: LinkModel) -> tuple[float, float]:
    """(success probability per attempt, mean ground-truth fidelity of heralded states)."""
    emit, double = model._emission_probability, model.double_excitation_probability
    tree_a = node_outcomes(emit, double, model.signal_transmission("a"))
    tree_b = node_outcomes(emit, double, model.signal_transmission("b"))
    f_genuine = model._genuine_fidelity
    success = weighted_fidelity = 0.0
    for bright_a, double_a, ka, pa in tree_a:
        for bright_b, double_b, kb, pb in tree_b:
            if model.scheme == "single_click":
                shared = bright_a != bright_b
                clean = shared and not (double_a or double_b)
                for _, signal, p in window_outcomes(model, ka, kb):
                    f = f_genuine if clean and signal else 0.5 if shared else 0.0
                    success += pa * pb * p
                    weighted_fidelity += pa * pb * p * f
                continue
            for first_a in (True, False):  # which round each node emits in
                for first_b in (True, False):
                    shared = first_a != first_b
                    clean = shared and not (double_a or double_b)
                    round_1 = window_outcomes(model, ka * first_a, kb * first_b)
                    round_2 = window_outcomes(model, ka * (not first_a), kb * (not first_b))
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
