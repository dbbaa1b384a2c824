"""A network bridge: QNUs and heralding stations on one optical switch, and what each path
gives (rate and fidelity from the link model).

Every QNU's fibre ends on a switch port; every station has two input ports (its beam
splitter's arms). Connecting QNUs A and B to station S makes a heralding link whose arms are
A's fibre + S's arm fibre and B's fibre + S's other arm fibre, each through the switch's
insertion loss (`network.link_model.LinkModel`, Barrett-Kok by default). A path (QNU, station)
has its own arm delay and calibration time (the orchestrator reads them from each path's
calibration record, `path_calibration`): a path older than `calibration_lifetime` is
re-checked before use.

Defaults: the single-link lab's nodes and station (lab_configs/two_node_link.yaml: 10 MHz-band
transducers at 8.7 %, 0.16 added noise photons, 40 ns windows, 20 us attempts), memories of
T2 = 1 s with a 0.1 s cutoff; a switch that settles in 25 ms (the Polatis Series 6000's
specified switching time) with 1 dB insertion loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..link_model import (
    FIBRE_DELAY_S_PER_KM,
    LinkModel,
    NodeOptics,
    Scheme,
    expected_fidelity,
    expected_pair_rate,
)


@dataclass(frozen=True)
class LinkParameters:
    """What every node and station of the bridge shares (units: s, Hz, fractions)."""

    scheme: Scheme = "two_click"
    transducer_efficiency: float = 0.087
    transducer_added_noise: float = 0.16
    collection_efficiency: float = 0.5
    conversion_bandwidth: float = 10e6
    memory_t2: float = 1.0
    repetition_limit: float = 1e5
    detection_window: float = 4e-8
    attempt_period: float = 2e-5
    hom_visibility: float = 0.95
    switch_insertion_loss_db: float = 1.0


@dataclass(frozen=True)
class PathLink:
    """A QNU pair heralded at a station: expected herald rate (Hz) and fresh fidelity."""

    rate: float
    fidelity: float
    fidelity_floor: float
    """Fidelity of a pair held forever (its coherence gone)."""
    dephasing_rate: float
    """1/s, the pair's coherence decay rate (both memories' 1/T2)."""

    def usable_age(self, min_fidelity: float, cutoff: float) -> float:
        """s a pair stays at or above `min_fidelity` (at most `cutoff`); 0 if not even
        fresh."""
        if self.fidelity < min_fidelity:
            return 0.0
        if min_fidelity <= self.fidelity_floor or self.dephasing_rate == 0.0:
            return cutoff
        age = math.log((self.fidelity - self.fidelity_floor)
                       / (min_fidelity - self.fidelity_floor)) / self.dephasing_rate
        return min(cutoff, age)

    def fidelity_at(self, age: float) -> float:
        """Fidelity of a pair held `age` s after its herald."""
        decay = math.exp(-self.dephasing_rate * age)
        return self.fidelity_floor + (self.fidelity - self.fidelity_floor) * decay

    def expected_time(self, pairs: int, window: float) -> float:
        """s to hold `pairs` pairs at once when each is usable for `window` s: pairs / rate,
        over the chance that the other pairs - 1 herald within one pair's window (Poisson at
        `rate`); an estimate for the scheduler, inf if the window is 0. (The lower bound
        uses pairs / rate alone, docs/bridge.md.)"""
        if pairs <= 0:
            return 0.0
        if self.rate <= 0.0 or window <= 0.0:
            return math.inf
        if pairs == 1:
            return 1.0 / self.rate
        together = poisson_tail(self.rate * window, pairs - 1)
        return math.inf if together < 1e-9 else pairs / self.rate / together


def poisson_tail(mean: float, k: int) -> float:
    """P(N >= k) for N Poisson of `mean`."""
    term = total = math.exp(-mean)
    for i in range(1, k):
        term *= mean / i
        total += term
    return max(0.0, 1.0 - total)


@lru_cache(maxsize=4096)
def _path_link(params: LinkParameters, length_a: float, length_b: float) -> PathLink:
    transmission = 10.0 ** (-params.switch_insertion_loss_db / 10.0)
    optics = [NodeOptics(length, params.transducer_efficiency, params.transducer_added_noise,
                         params.collection_efficiency * transmission,
                         conversion_bandwidth=params.conversion_bandwidth,
                         memory_t2=params.memory_t2, repetition_limit=params.repetition_limit)
              for length in (length_a, length_b)]
    model = LinkModel(params.scheme, optics[0], optics[1],
                      detection_window=params.detection_window,
                      attempt_period=params.attempt_period,
                      hom_visibility=params.hom_visibility)
    return PathLink(expected_pair_rate(model), expected_fidelity(model),
                    expected_fidelity(model, 1e12), model.dephasing_rate)


@dataclass(frozen=True)
class BridgeTopology:
    """QNUs and stations on one switch. Lengths in km, times in s (calibration times on the
    run's clock: negative = before the run)."""

    name: str
    qnus: tuple[str, ...]
    stations: tuple[str, ...]
    qnu_fibre_km: Mapping[str, float]
    """Fibre from each QNU to its switch port."""
    station_fibre_km: Mapping[str, float]
    """Fibre from the switch to each station (both arms)."""
    switch_ports: Mapping[str, int]
    """Switch port of each QNU (1..N) and each station's two arms (name/a, name/b)."""
    path_calibrated_at: np.ndarray = field(compare=False)
    """s, [QNU index, station index] -> when the path's arm delay was last calibrated (an
    array: N x S floats, 8 bytes a path)."""
    link: LinkParameters = LinkParameters()
    settle_time: float = 0.025
    """s a reconfigured switch port takes to settle (Polatis Series 6000: < 25 ms)."""
    recheck_time: float = 0.2
    """s to re-check a stale path's arm delay before using it."""
    calibration_lifetime: float = 600.0
    memory_cutoff: float = 0.1
    """s a QNU holds a pair before it is expired (wasted)."""
    _qnu_index: dict[str, int] = field(default_factory=dict, init=False, repr=False,
                                       compare=False)
    _station_index: dict[str, int] = field(default_factory=dict, init=False, repr=False,
                                           compare=False)
    _links: dict[tuple[float, float, float], PathLink] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    _pair_links: dict[tuple[float, float], tuple[PathLink, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.qnus)) != len(self.qnus) or len(set(self.stations)) != len(self.stations):
            raise ValueError(f"bridge {self.name}: QNU and station names must be unique")
        for q in self.qnus:
            if q not in self.qnu_fibre_km:
                raise ValueError(f"bridge {self.name}: QNU {q!r} has no fibre length")
        for s in self.stations:
            if s not in self.station_fibre_km:
                raise ValueError(f"bridge {self.name}: station {s!r} has no fibre length")
        for name in ("settle_time", "recheck_time", "calibration_lifetime", "memory_cutoff"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"bridge {self.name}: {name} = {value!r} must be >= 0 s")
        shape = (len(self.qnus), len(self.stations))
        if np.shape(self.path_calibrated_at) != shape:
            raise ValueError(f"bridge {self.name}: path_calibrated_at must be QNUs x stations "
                             f"{shape}")
        self._qnu_index.update({q: i for i, q in enumerate(self.qnus)})
        self._station_index.update({s: j for j, s in enumerate(self.stations)})

    def calibrated_at(self, qnu: str, station: str) -> float:
        """s on the run's clock when path (`qnu`, `station`) was last calibrated."""
        return float(self.path_calibrated_at[self._qnu_index[qnu],
                                             self._station_index[station]])

    def arm_length(self, qnu: str, station: str) -> float:
        """km of fibre from `qnu` to `station`'s beam splitter through the switch."""
        return self.qnu_fibre_km[qnu] + self.station_fibre_km[station]

    def arm_delay(self, qnu: str, station: str) -> float:
        """s, the path's arm delay (placeholder: its fibre's light time; the calibration graph
        holds the measured value)."""
        return self.arm_length(qnu, station) * FIBRE_DELAY_S_PER_KM

    def path_link(self, a: str, b: str, station: str) -> PathLink:
        """Rate and fidelity of A and B heralded at `station` (cached per fibre lengths: the
        scheduler asks this in its inner loops)."""
        la, lb = self.qnu_fibre_km[a], self.qnu_fibre_km[b]
        key = (la, lb, self.station_fibre_km[station]) if la <= lb \
            else (lb, la, self.station_fibre_km[station])
        link = self._links.get(key)
        if link is None:
            link = _path_link(self.link, round(key[0] + key[2], 6), round(key[1] + key[2], 6))
            self._links[key] = link
        return link

    def path_links(self, a: str, b: str) -> tuple[PathLink, ...]:
        """The links A-B gets over the stations (one per distinct station fibre: what "the
        best station" needs, without a pass over all stations)."""
        la, lb = self.qnu_fibre_km[a], self.qnu_fibre_km[b]
        key = (la, lb) if la <= lb else (lb, la)
        links = self._pair_links.get(key)
        if links is None:
            firsts = {self.station_fibre_km[s]: s for s in reversed(self.stations)}
            links = tuple(self.path_link(a, b, s) for s in firsts.values())
            self._pair_links[key] = links
        return links

    def best_rate(self, a: str, b: str) -> float:
        """Hz, the fastest any station heralds A-B."""
        return max(link.rate for link in self.path_links(a, b))

    def classical_delay(self, a: str, b: str) -> float:
        """s for A's bits to reach B (over fibre beside the quantum channel, via the switch
        room)."""
        return (self.qnu_fibre_km[a] + self.qnu_fibre_km[b]) * FIBRE_DELAY_S_PER_KM


def bridge_topology(n_qnus: int, qnus_per_station: int = 4, seed: int = 0,
                    name: str | None = None, qnu_fibre_spread_km: float = 0.0,
                    **settings: float) -> BridgeTopology:
    """N QNUs (qnu0...) and ceil(N / `qnus_per_station`) stations (st0...) in one data
    centre: QNU fibres of 100 m (+- `qnu_fibre_spread_km` / 2) and station fibres of 10-14 m
    (seeded, whole metres; a station's two arms alike), each
    path last calibrated up to 1.5 calibration lifetimes before the run (so about a third
    start stale). `settings` override BridgeTopology's times."""
    if n_qnus < 2 or qnus_per_station < 2:
        raise ValueError("a bridge needs at least 2 QNUs and at least 2 QNUs per station")
    rng = np.random.default_rng(seed)
    qnus = tuple(f"qnu{i}" for i in range(n_qnus))
    stations = tuple(f"st{i}" for i in range(math.ceil(n_qnus / qnus_per_station)))
    # QNU fibres matched (patch cords of one length): two arms that differ by half a metre
    # (2.5 ns) already widen the station's windows enough to take these noisy transducers'
    # fidelity from 0.571 to 0.559, and by a metre below 0.55 (LinkModel.window_span).
    spread = qnu_fibre_spread_km / 2.0
    qnu_fibre = {q: round(0.1 + float(rng.uniform(-spread, spread)), 4) for q in qnus}
    station_fibre = {s: round(float(rng.uniform(0.010, 0.014)), 3) for s in stations}
    ports = {q: i + 1 for i, q in enumerate(qnus)}
    for j, s in enumerate(stations):
        ports[f"{s}/a"] = n_qnus + 2 * j + 1
        ports[f"{s}/b"] = n_qnus + 2 * j + 2
    lifetime = float(settings.get("calibration_lifetime", 600.0))
    calibrated = -rng.uniform(0.0, 1.5 * lifetime, (n_qnus, len(stations)))
    return BridgeTopology(name or f"bridge_{n_qnus}", qnus, stations, qnu_fibre, station_fibre,
                          ports, calibrated, **settings)  # type: ignore[arg-type]
