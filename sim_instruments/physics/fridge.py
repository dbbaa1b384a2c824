"""Dilution refrigerator model: the mixing-chamber temperature under a heat load.

Cooling power ``a (T^2 - T_base^2)``, so the equilibrium under a load P is
``sqrt(T_base^2 + P / a)``, reached with one time constant.
Numbers and their sources: docs/transducer.md#3-the-fridge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FridgeModel:
    base_temperature: float = 0.010
    """Mixing-chamber temperature with no load, K."""
    cooling_coefficient: float = 0.04
    """a in P_cool = a (T^2 - T_base^2), W/K^2."""
    time_constant: float = 60.0
    """Relaxation time of the mixing-chamber stage, s."""
    still_temperature: float = 0.80
    cold_plate_temperature: float = 0.10
    plate_4k_temperature: float = 3.5
    plate_50k_temperature: float = 45.0

    def equilibrium_temperature(self, load: float) -> float:
        """Mixing-chamber temperature (K) in equilibrium with a heat load (W)."""
        return math.sqrt(self.base_temperature**2 + max(load, 0.0) / self.cooling_coefficient)

    def relax(self, temperature: float, load: float, dt: float) -> float:
        """Mixing-chamber temperature after `dt` seconds under a constant load."""
        target = self.equilibrium_temperature(load)
        return target + (temperature - target) * math.exp(-dt / self.time_constant)
