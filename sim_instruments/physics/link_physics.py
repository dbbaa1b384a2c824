"""`LinkPhysics`: the true world behind a heralding station (two nodes, their fibres, the
link's settings), as the simulated link (`link_clicks.LinkClicks`) draws it, and its analytic
`LinkModel` for a detector state. Times are integer ps."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qnetlab.network.link_model import LinkModel, NodeOptics, Scheme, require

__all__ = ["DetectorState", "LinkPhysics"]

DetectorState = tuple[tuple[float, float], tuple[float, float]]
"""((efficiency, background click rate Hz) of detector 0, the same of detector 1)."""


@dataclass(frozen=True)
class LinkPhysics:
    """The true world behind the station: two nodes, their fibres, the link's settings.

    Times are integer ps. Detector efficiency and dark counts are not here: they are the
    SNSPDs' state (`DetectorState`), read when each block is drawn.
    """

    scheme: Scheme
    attempt_period_ps: int
    """ps between attempts (two-click: two rounds per attempt, a sync per round)."""
    nodes: tuple[NodeOptics, NodeOptics]
    """Node 0 and node 1 (arm 0 and arm 1) in emission order."""
    bright_state_population: float = 0.05
    hom_visibility: float = 0.95
    double_excitation_probability: float = 0.0
    arrival_time_spread_ps: float = 70.0
    """rms of a photon's arrival time at the station (photon duration, SNSPD jitter), ps."""
    detection_window_ps: int = 2000
    """Width of the truth's windows (the link's heralding window), ps."""
    seed: int = 0
    phase_drift_rate: float = 0.0
    """rad^2/s, the single-click interferometer's phase diffusion (`LinkModel`)."""
    phase_stabilisation_period: float | None = None
    """s between phase corrections (None: none)."""
    phase_residual: float = 0.0
    """rad rms right after a correction."""

    def __post_init__(self) -> None:
        require(self.scheme in ("single_click", "two_click"),
                f"LinkPhysics.scheme = {self.scheme!r} is unknown")
        require(len(self.nodes) == 2 and all(isinstance(n, NodeOptics) for n in self.nodes),
                "LinkPhysics.nodes must be two NodeOptics")
        require(self.round_period_ps > 0 and self.round_period_ps * self.rounds_per_attempt
                == self.attempt_period_ps,
                f"LinkPhysics.attempt_period_ps = {self.attempt_period_ps} must be a positive "
                f"multiple of {self.rounds_per_attempt} ps")
        require(0 < self.detection_window_ps <= self.round_period_ps,
                f"LinkPhysics.detection_window_ps = {self.detection_window_ps} must be > 0 "
                f"and at most the round period ({self.round_period_ps} ps)")
        require(math.isfinite(self.arrival_time_spread_ps) and self.arrival_time_spread_ps >= 0,
                "LinkPhysics.arrival_time_spread_ps must be >= 0 ps")
        require(isinstance(self.seed, int) and self.seed >= 0, "LinkPhysics.seed must be >= 0")
        self.model(((1.0, 0.0), (1.0, 0.0)))  # the phase and node settings, checked there

    @property
    def rounds_per_attempt(self) -> int:
        return 1 if self.scheme == "single_click" else 2

    @property
    def round_period_ps(self) -> int:
        return self.attempt_period_ps // self.rounds_per_attempt

    @property
    def light_ps(self) -> tuple[int, int]:
        """True one-way light time of each node's fibre, ps."""
        a, b = (round(n.light_time * 1e12) for n in self.nodes)
        return a, b

    def model(self, detectors: DetectorState) -> LinkModel:
        """The analytic `LinkModel` of this world with the detectors' mean state."""
        efficiency = (detectors[0][0] + detectors[1][0]) / 2.0
        dark = (detectors[0][1] + detectors[1][1]) / 2.0
        return LinkModel(
            scheme=self.scheme, node_a=self.nodes[0], node_b=self.nodes[1],
            detector_efficiency=efficiency, dark_count_rate=dark,
            detection_window=self.detection_window_ps * 1e-12,
            bright_state_population=self.bright_state_population,
            hom_visibility=self.hom_visibility,
            double_excitation_probability=self.double_excitation_probability,
            attempt_period=self.attempt_period_ps * 1e-12,
            arrival_time_spread=max(self.arrival_time_spread_ps, 1e-3) * 1e-12,
            phase_drift_rate=self.phase_drift_rate,
            phase_stabilisation_period=self.phase_stabilisation_period,
            phase_residual=self.phase_residual)

    @property
    def photon_duration_ps(self) -> tuple[float, float]:
        """Each node's photon time constant (exponential shape), ps."""
        a, b = (n.photon_duration * 1e12 for n in self.nodes)
        return a, b
