"""The pump-heating scan's two-exponential fit: `heating_model`, `fit_heating` and its
result `HeatingFit` (values, one-sigma errors, the profile-likelihood intervals of the two
times). The scan and its analysis: `heating`. Derivation:
docs/transducer.md#pump-heating-the-cycle-and-the-probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from qnetlab.sequences.fitting import chi2_p_value, inflation_factor, scale_covariance

from .heating_profile import profile_interval

__all__ = ["MIN_DELAYS", "HeatingFit", "fit_heating", "heating_model", "model_sigma"]

MIN_DELAYS = 8
"""Fewer delays cannot support a 5-parameter fit with a verdict."""


def heating_model(delay: np.ndarray, floor: float, amp_fast: float, tau_fast: float,
                  amp_slow: float, tau_slow: float) -> np.ndarray:
    """R(t) (Hz) at delays t (s): floor + A_f e^(-t/tau_f) + A_s e^(-t/tau_s)."""
    t = np.asarray(delay, float)
    return floor + amp_fast * np.exp(-t / tau_fast) + amp_slow * np.exp(-t / tau_slow)


@dataclass(frozen=True)
class HeatingFit:
    """Two-exponential fit: values (Hz, s), one-sigma errors and fit statistics."""

    floor: float
    amp_fast: float
    tau_fast: float
    amp_slow: float
    tau_slow: float
    stderr: dict[str, float]
    chi2: float
    dof: int
    covariance: np.ndarray | None = field(default=None, compare=False)
    """Of (floor, amp_fast, tau_fast, amp_slow, tau_slow), for the figure's band."""
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict, compare=False)
    """One-sigma profile-likelihood intervals (s) of tau_fast and tau_slow: where the chi2,
    minimised over the other four parameters, rises by the covariance's inflation factor
    (1 for a good fit). `stderr` of a time is half this interval's width."""

    @property
    def fit_p(self) -> float:
        return chi2_p_value(self.chi2, self.dof)


def _linear_amplitudes(t: np.ndarray, y: np.ndarray, w: np.ndarray, tau_f: float,
                       tau_s: float) -> tuple[np.ndarray, float]:
    design = np.column_stack([np.ones_like(t), np.exp(-t / tau_f), np.exp(-t / tau_s)])
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
    return coef, float(np.sum(w * (y - design @ coef) ** 2))


def model_sigma(rate_err: np.ndarray, rate: np.ndarray, model: np.ndarray,
                exposure: np.ndarray, rel_var: np.ndarray | None = None) -> np.ndarray:
    """One-sigma errors (Hz) of the points at the model's rates: the probe's Poisson error
    `rate_err` rescaled from the data's counts to the model's (the data's errors carry the
    dead-time gain), plus the relative variance `rel_var` (reference counts and drift) of the
    model's rate."""
    expo = np.asarray(exposure, float)
    m = np.asarray(model, float)
    poisson = np.asarray(rate_err, float) ** 2 * (np.maximum(m, 1.0 / expo)
                                                  / np.maximum(rate, 1.0 / expo))
    extra = 0.0 if rel_var is None else np.asarray(rel_var, float) * m**2
    return np.sqrt(poisson + extra)


def fit_heating(delay: np.ndarray, rate: np.ndarray, rate_err: np.ndarray,
                exposure: np.ndarray, rel_var: np.ndarray | None = None) -> HeatingFit | None:
    """Fit `heating_model` to rates (Hz, one-sigma Poisson errors `rate_err`) at delays (s).

    `exposure` (s per point) sets the Poisson variances of the model, used as weights after
    the start; `rel_var` (per point, dimensionless) is a variance relative to the rate on top
    of the counting error (the reference's counting error and the drift left after
    normalising to it: `normalise_to_references`). None if the fit fails."""
    t = np.asarray(delay, float)
    y = np.asarray(rate, float)
    e = np.asarray(rate_err, float)
    expo = np.asarray(exposure, float)
    rv = None if rel_var is None else np.asarray(rel_var, float)
    if t.size < MIN_DELAYS or not np.all(np.isfinite(y)) or np.any(e <= 0):
        return None
    if rv is not None and (rv.shape != t.shape or not np.all(np.isfinite(rv))
                           or np.any(rv < 0)):
        return None
    e = np.sqrt(e**2 + (0.0 if rv is None else rv * y**2))
    w = 1.0 / e**2
    lo, hi = float(t.min()), float(t.max())
    grid = np.geomspace(lo / 3, hi * 3, 25)
    best: tuple[float, float, float] | None = None
    for i, tf in enumerate(grid):
        for ts in grid[i + 2:]:
            _, chi2 = _linear_amplitudes(t, y, w, float(tf), float(ts))
            if best is None or chi2 < best[0]:
                best = (chi2, float(tf), float(ts))
    assert best is not None
    coef, _ = _linear_amplitudes(t, y, w, best[1], best[2])
    p0 = np.array([coef[0], coef[1], math.log(best[1]), coef[2], math.log(best[2])])
    scale = max(float(np.max(np.abs(y))), 1.0)

    def residual(p: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        m = heating_model(t, p[0] * scale, p[1] * scale, math.exp(p[2]), p[3] * scale,
                          math.exp(p[4]))
        return (m - y) / sigma

    p = p0.copy()
    p[[0, 1, 3]] /= scale
    sigma = e
    try:
        for _ in range(2):  # data weights first, then the model's Poisson variances
            res = least_squares(residual, p, args=(sigma,), x_scale="jac", method="lm")
            p = res.x
            model = heating_model(t, p[0] * scale, p[1] * scale, math.exp(p[2]),
                                  p[3] * scale, math.exp(p[4]))
            sigma = model_sigma(rate_err, y, model, expo, rv)
        cov = np.linalg.inv(res.jac.T @ res.jac)
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not (res.success and np.all(np.isfinite(p)) and np.all(np.isfinite(cov))):
        return None
    chi2 = float(np.sum(res.fun**2))
    dof = max(t.size - 5, 1)
    cov = scale_covariance(cov, chi2, dof)
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    tau_f, tau_s = math.exp(p[2]), math.exp(p[4])
    # The times' errors from the profile of the chi2, not from the curvature at the minimum:
    # in ln tau the chi2 is far from parabolic when the fast channel shows at a few delays
    # only, and the linearised interval (tau * err_ln_tau) then comes out too narrow.
    rise = inflation_factor(chi2, dof)
    interval = {i: profile_interval(residual, p, i, sigma, chi2, rise, float(err[i]))
                for i in (2, 4)}
    tau_err = {i: (hi - lo) / 2 for i, (lo, hi) in interval.items()}
    values = [p[0] * scale, p[1] * scale, tau_f, p[3] * scale, tau_s]
    errs = [err[0] * scale, err[1] * scale, tau_err[2], err[3] * scale, tau_err[4]]
    jac = np.diag([scale, scale, tau_f, scale, tau_s])  # to the physical parameters
    cov = jac @ cov @ jac
    bounds = {"tau_fast": interval[2], "tau_slow": interval[4]}
    if tau_f > tau_s:  # name the channels by their time, not by the fit's order
        values = [values[0], values[3], values[4], values[1], values[2]]
        errs = [errs[0], errs[3], errs[4], errs[1], errs[2]]
        cov = cov[np.ix_([0, 3, 4, 1, 2], [0, 3, 4, 1, 2])]
        bounds = {"tau_fast": interval[4], "tau_slow": interval[2]}
    # The covariance's time rows carry the profile errors (same correlations), so the
    # figure's band and any propagation use the errors that are reported.
    for k in (2, 4):
        lin = math.sqrt(cov[k, k]) if cov[k, k] > 0 else 0.0
        if lin > 0 and math.isfinite(errs[k]):
            ratio = errs[k] / lin
            cov[k, :] *= ratio
            cov[:, k] *= ratio
    names = ("floor", "amp_fast", "tau_fast", "amp_slow", "tau_slow")
    v = [float(x) for x in values]
    return HeatingFit(v[0], v[1], v[2], v[3], v[4],
                      stderr={n: float(x) for n, x in zip(names, errs, strict=True)},
                      chi2=chi2, dof=dof, covariance=cov,
                      intervals={k: (float(lo), float(hi)) for k, (lo, hi) in bounds.items()})
