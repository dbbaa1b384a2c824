"""The recommended operating point of a transducer, from its characterization.

Three fitted models meet here, each a function of the pump power P at the device (W):

* efficiency, from `EfficiencyMap`: eta(P) = s P / (1 + c P)^2 (peak eta_max = s / 4c at
  P = 1/c, where the cooperativity is 1);
* added noise, from `AddedNoiseScan`: N_add(P) = n0 + k P (heating by the absorbed pump);
* absorbed power, from `FridgeLoadScan`: P_abs = f P.

The recommendation is the pump power of highest efficiency among those where N_add stays at or
below `max_added_noise` and the absorbed power within `fridge_budget`, searched over the
range the characterization measured (no extrapolation). Uncertainties at the chosen point
come from first-order propagation of each model's stated errors (the three fits are
independent runs, so their errors are uncorrelated; within the efficiency fit the s, c
covariance is used).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EfficiencyModel:
    low_power_slope: float
    """s, 1/W: eta = s P at low power."""
    cooperativity_slope: float
    """c, 1/W: C = c P."""
    covariance: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))
    """Covariance of (s, c)."""

    def efficiency(self, pump_power: np.ndarray) -> np.ndarray:
        p = np.asarray(pump_power, float)
        return self.low_power_slope * p / (1.0 + self.cooperativity_slope * p) ** 2

    def efficiency_stderr(self, pump_power: np.ndarray) -> np.ndarray:
        p = np.asarray(pump_power, float)
        s, c = self.low_power_slope, self.cooperativity_slope
        d_ds = p / (1 + c * p) ** 2
        d_dc = -2 * s * p**2 / (1 + c * p) ** 3
        cov = np.asarray(self.covariance, float)
        var = d_ds**2 * cov[0, 0] + 2 * d_ds * d_dc * cov[0, 1] + d_dc**2 * cov[1, 1]
        return np.sqrt(np.maximum(var, 0.0))


@dataclass(frozen=True)
class LinearModel:
    """y = intercept + slope x, with the stated standard errors (uncorrelated if no cov)."""

    intercept: float
    slope: float
    intercept_stderr: float = 0.0
    slope_stderr: float = 0.0
    covariance: float = 0.0

    def value(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(x, float)

    def stderr(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float)
        var = (self.intercept_stderr**2 + 2 * x * self.covariance
               + x**2 * self.slope_stderr**2)
        return np.sqrt(np.maximum(var, 0.0))


@dataclass(frozen=True)
class OperatingPoint:
    """The recommendation, or why there is none (`found` False and `reason`)."""

    found: bool
    reason: str
    pump_power: float = float("nan")
    """W at the device."""
    efficiency: float = float("nan")
    efficiency_stderr: float = float("nan")
    added_noise: float = float("nan")
    added_noise_stderr: float = float("nan")
    absorbed_power: float = float("nan")
    """W at the mixing chamber (average; CW pump)."""
    absorbed_power_stderr: float = float("nan")
    pump_power_sys: float = 0.0
    """W, systematic error of `pump_power`: how far the recommendation moves when the
    calibration constants behind the noise and fridge limits move by one sigma (the
    characterization re-runs `recommend` with them shifted; inf if the recommendation
    disappears)."""
    limited_by: str = ""
    """What set the pump power: 'cooperativity (C = 1)', 'added noise', 'fridge budget' or
    'measured range'."""
    heating_upper_limit: float = float("nan")
    """Photons (input-referred) that pump heating the heating scan did not resolve adds at
    `pump_power`, 95 % upper limit (`characterization`: the scan's limit on the heating's
    share of N_add, scaled to this power). It is already inside `added_noise` (the steady
    N_add holds all the heating), so it is never subtracted: it says that "not resolved"
    is not zero. NaN when the heating was resolved or not measured."""

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in asdict(self).items()}


def recommend(efficiency: EfficiencyModel, added_noise: LinearModel, absorbed: LinearModel,
              *, pump_range: tuple[float, float], max_added_noise: float = 1.0,
              fridge_budget: float = 10e-6, grid_points: int = 2001) -> OperatingPoint:
    """Highest-efficiency pump power in `pump_range` (W) with N_add <= `max_added_noise` and
    absorbed power <= `fridge_budget` (W). See the module docstring."""
    low, high = pump_range
    if not 0 < low < high:
        raise ValueError(f"pump_range must be 0 < low < high, got {pump_range}")
    p = np.geomspace(low, high, grid_points)
    eta = efficiency.efficiency(p)
    n_add = added_noise.value(p)
    p_abs = absorbed.value(p)
    quiet = n_add <= max_added_noise
    cool = p_abs <= fridge_budget
    feasible = quiet & cool
    if not feasible.any():
        if not quiet.any():
            why = (f"N_add is above {max_added_noise:g} at every measured pump power (lowest "
                   f"{n_add.min():.3g} at {p[np.argmin(n_add)] * 1e3:.3g} mW)")
        elif not cool.any():
            why = (f"the absorbed pump power exceeds the fridge budget "
                   f"{fridge_budget * 1e6:.3g} uW at every measured pump power")
        else:
            why = (f"no pump power has both N_add <= {max_added_noise:g} and absorbed power "
                   f"<= {fridge_budget * 1e6:.3g} uW")
        return OperatingPoint(False, why + "; relax the threshold or improve the device")
    best = int(np.argmax(np.where(feasible, eta, -np.inf)))
    pb = p[best : best + 1]
    return OperatingPoint(
        True, "", pump_power=float(pb[0]),
        efficiency=float(eta[best]), efficiency_stderr=float(efficiency.efficiency_stderr(pb)[0]),
        added_noise=float(n_add[best]), added_noise_stderr=float(added_noise.stderr(pb)[0]),
        absorbed_power=float(p_abs[best]), absorbed_power_stderr=float(absorbed.stderr(pb)[0]),
        limited_by=_limit(best, feasible, quiet, cool, eta),
    )


def _limit(best: int, feasible: np.ndarray, quiet: np.ndarray, cool: np.ndarray,
           eta: np.ndarray) -> str:
    if best + 1 < len(feasible) and not feasible[best + 1]:
        return "added noise" if not quiet[best + 1] else "fridge budget"
    if best + 1 < len(eta) and eta[best + 1] < eta[best]:
        return "cooperativity (C = 1)"
    return "measured range"
