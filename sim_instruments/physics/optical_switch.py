"""Switched optical paths: what an optical cross-connect does to light.

One `SwitchPaths` per switch on a bench (the Polatis twin keeps its own in
``LabWorld.optical_switches``). A connected path passes light with its insertion loss once
the switch has settled; an ingress port that is not connected, or a path still switching,
passes nothing (a beam-steering switch sends no light anywhere while it moves). The link
physics reads a path through `LabWorld.switch_transmission`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SwitchPaths:
    """The paths of one N x M switch (ingress ports 1..N, egress N+1..N+M, as Polatis numbers
    them). Times are the world clock's, s; losses dB."""

    ingress: int
    egress: int
    switching_time: float
    """s, from a command to a settled path (the data sheet's switching time)."""
    loss_db: np.ndarray
    """dB, insertion loss of each (ingress, egress) path, indexed [ingress-1, egress-N-1]."""
    connections: dict[int, int] = field(default_factory=dict)
    """ingress port -> egress port"""
    settled_at: dict[int, float] = field(default_factory=dict)
    """ingress port -> world time its path carries light from"""
    light_in: dict[int, float] = field(default_factory=dict)
    """W launched into each ingress port (what a source in front of the switch sends)."""

    @property
    def ingress_ports(self) -> range:
        return range(1, self.ingress + 1)

    @property
    def egress_ports(self) -> range:
        return range(self.ingress + 1, self.ingress + self.egress + 1)

    def path_loss_db(self, ingress: int, egress: int) -> float:
        """dB, the insertion loss path (`ingress`, `egress`) has when connected."""
        return float(self.loss_db[ingress - 1, egress - self.ingress - 1])

    def connect(self, ingress: int, egress: int, now: float) -> None:
        self.connections[ingress] = egress
        self.settled_at[ingress] = now + self.switching_time

    def disconnect(self, ingress: int) -> None:
        self.connections.pop(ingress, None)
        self.settled_at.pop(ingress, None)

    def settled_by(self) -> float:
        """World time by which every path made so far has settled (-inf: none pending)."""
        return max(self.settled_at.values(), default=float("-inf"))

    def transmission(self, ingress: int, egress: int, now: float) -> float:
        """Linear power transmission from `ingress` to `egress` at world time `now`: 0 unless
        the path is connected and settled."""
        if self.connections.get(ingress) != egress or now < self.settled_at[ingress]:
            return 0.0
        return float(10 ** (-self.path_loss_db(ingress, egress) / 10))

    def power_at(self, port: int, now: float) -> float:
        """W of light at `port` now: an ingress port's launched light, or what its connected
        ingress sends an egress port."""
        if port in self.ingress_ports:
            return self.light_in.get(port, 0.0)
        return sum(power * self.transmission(ingress, port, now)
                   for ingress, power in self.light_in.items())


def draw_path_losses(rng: np.random.Generator, ingress: int, egress: int, typical_db: float,
                     max_db: float) -> np.ndarray:
    """dB per path, seeded: spread about the data sheet's typical loss so that the maximum
    is its 3-sigma bound, clipped into [typical/4, maximum] (no path beats a fused splice, none
    is worse than the data sheet allows)."""
    sigma = (max_db - typical_db) / 3
    draws = rng.normal(typical_db, sigma, size=(ingress, egress))
    return np.clip(draws, typical_db / 4, max_db)
