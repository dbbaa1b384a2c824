"""Profile-likelihood intervals of the heating times (`heating_fit.fit_heating`): in ln tau the
chi2 is far from parabolic when a channel shows at a few delays only, so the one-sigma
interval is where the chi2, minimised over the other parameters, rises by the covariance's
inflation factor (docs/fitting.md)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq, least_squares

PROFILE_MAX_STEPS = 12
"""Doublings of the step out from the best ln tau before a profile bound is given up (the
interval is then open on that side: its half-width is infinite, the verdict says not
constrained)."""
LN_TAU_LIMIT = 50.0
"""|ln(tau / s)| beyond this (tau outside 2e-22 .. 5e21 s) is no longer a time: the profile
stops there and leaves that side open."""


def profile_interval(residual: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     best: np.ndarray, index: int, sigma: np.ndarray, chi2_min: float,
                     rise: float, step: float) -> tuple[float, float]:
    """One-sigma profile-likelihood interval (s) of the time whose ln is parameter `index`.

    The profile chi2(x) minimises the chi2 over the other parameters with parameter `index`
    held at x; the bounds are where it reaches ``chi2_min + rise`` (rise 1 for a good fit,
    the inflation factor chi2/dof for a poor one, like the covariance). `step` (the
    linearised error in ln tau) sets the first bracket; a side that never reaches the rise
    within `PROFILE_MAX_STEPS` doublings is open (bound 0 or inf)."""
    free = [i for i in range(best.size) if i != index]

    def excess(x: float) -> float:
        def sub(q: np.ndarray) -> np.ndarray:
            full = best.copy()
            full[free] = q
            full[index] = x
            return residual(full, sigma)

        try:
            fit = least_squares(sub, best[free], x_scale="jac", method="lm")
            value = float(np.sum(fit.fun**2))
        except (ValueError, OverflowError, FloatingPointError, np.linalg.LinAlgError):
            return math.inf  # a time so far out that the model overflows: excluded
        if not math.isfinite(value):
            return math.inf
        # never below the global minimum: a lower sub-minimum is the optimiser's noise
        return max(value, chi2_min) - chi2_min - rise

    centre = float(best[index])
    step = step if math.isfinite(step) and step > 0 else 0.1
    bounds = []
    for sign in (-1.0, 1.0):
        inner, d = centre, step
        for _ in range(PROFILE_MAX_STEPS):
            outer = centre + sign * d
            if abs(outer) > LN_TAU_LIMIT:
                bounds.append(0.0 if sign < 0 else math.inf)
                break
            if excess(outer) > 0:
                bounds.append(math.exp(_crossing(excess, inner, outer, 1e-3 * step)))
                break
            inner, d = outer, 2 * d
        else:
            bounds.append(0.0 if sign < 0 else math.inf)
    return bounds[0], bounds[1]


def _crossing(f: Callable[[float], float], inside: float, outside: float,
              tol: float) -> float:
    """x between `inside` (f <= 0) and `outside` (f > 0, possibly inf) where f crosses 0:
    bisection (robust to an infinite f), then Brent's method once both ends are finite."""
    f_out = f(outside)
    while abs(outside - inside) > tol and not math.isfinite(f_out):
        mid = 0.5 * (inside + outside)
        f_mid = f(mid)
        if f_mid > 0:
            outside, f_out = mid, f_mid
        else:
            inside = mid
    if abs(outside - inside) <= tol:
        return 0.5 * (inside + outside)
    return float(brentq(f, inside, outside, xtol=tol))
