"""The simulated link bench: two nodes' fibres to a midpoint heralding station, for calibration.

Built from a network lab config the way `qnetlab link` builds its `LinkModel`, it holds what
the world knows and the station does not: the true fibre lengths (hence light times), the
station's expected arm delays (set by calibration, `set_expected_delay`), and the transducers'
and detectors' true efficiencies (faults can change all of them). Two measurements,
`arrival_histogram` and `herald`, each drawn from its own generator seeded by (link seed,
measurement number), so a session is reproducible.

Physics: docs/link.md; role in the simulated lab: docs/simulation.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from .physics.link import (
    LinkModel,
    LinkSimulator,
    NodeOptics,
    arrival_histogram,
    expected_fidelity,
    expected_success_probability,
    node_optics_from_preset,
)

if TYPE_CHECKING:
    from qnetlab.network.network_config import NetworkConfig


@dataclass(frozen=True)
class ArrivalHistogram:
    """Clicks per time bin at the station, times relative to the pulse's emission (s)."""

    node: str
    edges: npt.NDArray[np.float64]
    """Bin edges, s."""
    counts: npt.NDArray[np.int64]
    attempts: int
    pulse_photons: float
    """Mean photons per calibration pulse launched into the fibre."""

    @property
    def centres(self) -> npt.NDArray[np.float64]:
        return (self.edges[1:] + self.edges[:-1]) / 2.0


@dataclass(frozen=True)
class HeraldingRun:
    """N attempts of the link: what the station saw, and the world's ground truth."""

    attempts: int
    successes: int
    """Heralded attempts."""
    link_time: float
    """s of link time the attempts took (attempts x effective attempt period)."""
    true_success_probability: float
    """Ground truth: the analytic success probability of the world as it is."""
    true_mean_fidelity: float
    """Ground truth: mean fidelity of this run's heralded states (nan without heralds)."""
    window_offsets: dict[str, float]
    """Ground truth: expected minus true arm delay per node, s."""


class SimulatedLinkBench:
    """The link between the two nodes of a network config (module docstring)."""

    def __init__(self, config: NetworkConfig, *, seed: int | None = None,
                 arrival_time_spread: float = 70e-12) -> None:
        self.nodes: tuple[str, str] = config.link.nodes
        self.scheme = config.link.scheme
        self._physics = dict(config.link.physics, arrival_time_spread=arrival_time_spread)
        self._optics: dict[str, NodeOptics] = {}
        for name in self.nodes:
            node = config.nodes[name]
            self._optics[name] = node_optics_from_preset(
                node.transducer, node.fibre_length_km, node.collection_efficiency)
        self._expected = {name: self._optics[name].light_time for name in self.nodes}
        self._seed = config.link.seed if seed is None else int(seed)
        self._measurements = 0
        self.model()  # refuse impossible physics now, not at the first measurement

    # -- the world -------------------------------------------------------------------------
    def _check(self, node: str) -> str:
        if node not in self._optics:
            raise ValueError(f"the link has no node {node!r}; its nodes are "
                             f"{', '.join(self.nodes)}")
        return node

    def fibre_length_km(self, node: str) -> float:
        return self._optics[self._check(node)].fibre_length_km

    def change_fibre_length(self, node: str, length_km: float) -> None:
        """Fault: `node`'s fibre is now `length_km` long (rerouted, spliced, re-spooled)."""
        self._set_optics(node, fibre_length_km=length_km)

    def change_transducer(self, node: str, *, efficiency: float | None = None,
                          added_noise: float | None = None) -> None:
        """Fault: `node`'s transducer efficiency or added noise (photons) changes."""
        changes: dict[str, float] = {}
        if efficiency is not None:
            changes["transducer_efficiency"] = efficiency
        if added_noise is not None:
            changes["transducer_added_noise"] = added_noise
        self._set_optics(node, **changes)

    def change_detector_efficiency(self, efficiency: float) -> None:
        """Fault: the station's SNSPD efficiency changes."""
        self._physics["detector_efficiency"] = float(efficiency)
        self.model()

    def _set_optics(self, node: str, **changes: float) -> None:
        self._optics[self._check(node)] = dataclasses.replace(self._optics[node], **changes)

    def node_optics(self, node: str) -> NodeOptics:
        """Ground truth of `node`'s emitter chain."""
        return self._optics[self._check(node)]

    @property
    def detector_efficiency(self) -> float:
        return float(self._physics.get("detector_efficiency", LinkModel.detector_efficiency))

    def true_delay(self, node: str) -> float:
        """s: light time of `node`'s fibre as it really is."""
        return self._optics[self._check(node)].light_time

    # -- the station's settings ------------------------------------------------------------
    def expected_delay(self, node: str) -> float:
        """s: where the station centres `node`'s heralding window after the emission."""
        return self._expected[self._check(node)]

    def set_expected_delay(self, node: str, delay: float) -> None:
        if not (math.isfinite(delay) and delay >= 0.0):
            raise ValueError(f"expected arm delay of {node!r} = {delay!r} must be a time "
                             ">= 0 s")
        self._expected[self._check(node)] = float(delay)

    def model(self) -> LinkModel:
        """The link as it is: true fibres, the station's windows where it expects them."""
        a, b = self.nodes
        return LinkModel(
            self.scheme,  # type: ignore[arg-type]  # validated by network.network_config
            self._optics[a], self._optics[b],
            window_offset_a=self._expected[a] - self.true_delay(a),
            window_offset_b=self._expected[b] - self.true_delay(b),
            **self._physics,
        )

    @property
    def attempt_period(self) -> float:
        """s between heralding attempts (and between calibration pulses)."""
        return self.model().effective_attempt_period

    # -- measurements ----------------------------------------------------------------------
    def _next_seed(self) -> int:
        self._measurements += 1
        sequence = np.random.SeedSequence([self._seed, self._measurements])
        return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))

    def arrival_histogram(self, node: str, attempts: int, *, start: float, stop: float,
                          bin_width: float, pulse_photons: float = 0.2) -> ArrivalHistogram:
        """`node` emits a calibration pulse per attempt, the other node is dark; the station's
        clicks between `start` and `stop` (s after the emission) in bins of `bin_width` (s).
        """
        if not (0.0 <= start < stop and bin_width > 0.0):
            raise ValueError(f"arrival histogram gate {start!r}..{stop!r} s in bins of "
                             f"{bin_width!r} s: need 0 <= start < stop and a bin width > 0")
        bins = max(1, math.ceil((stop - start) / bin_width - 1e-9))
        edges = np.asarray(start + bin_width * np.arange(bins + 1), dtype=np.float64)
        model = self.model()
        side: Literal["a", "b"] = "a" if self._check(node) == self.nodes[0] else "b"
        counts = arrival_histogram(model, side, attempts, edges, self._next_seed(),
                                   pulse_photons=pulse_photons)
        return ArrivalHistogram(node, edges, counts, int(attempts), pulse_photons)

    def herald(self, attempts: int) -> HeraldingRun:
        """Make `attempts` heralding attempts with the station's windows where it expects."""
        model = self.model()
        batch = LinkSimulator(model, self._next_seed()).run(attempts)
        fidelities = batch.heralds["fidelity"]
        a, b = self.nodes
        return HeraldingRun(
            attempts=batch.attempts,
            successes=int(batch.heralds.size),
            link_time=batch.attempts * model.effective_attempt_period,
            true_success_probability=expected_success_probability(model),
            true_mean_fidelity=float(fidelities.mean()) if fidelities.size else math.nan,
            window_offsets={a: model.window_offset_a, b: model.window_offset_b},
        )

    def expected_fidelity(self) -> float:
        """Ground truth: mean fidelity of heralded states of the world as it is."""
        return expected_fidelity(self.model())
