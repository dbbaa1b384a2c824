"""The cooperativity model eta(P, d) of the efficiency map, fitted: the power dependence
(s, c) and, with a detuning axis, the optical line (d0, G), with excess scatter where the
meter's noise does not explain the points. Derivation:
docs/transducer.md#5-how-the-characterization-measures-it (step 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from qnetlab.sequences.fitting import scale_covariance

from ._row_drift import row_drift_covariance, row_heights
from .efficiency_fits import (
    ExcessScatter,
    _covariance,
    fit_with_excess_scatter,
    lorentzian_start,
)
from .meter_shape import MeterReadings, line_shape_errors


@dataclass(frozen=True, eq=False)
class EfficiencyMapFit:
    """eta(P, d) = s P / (1 + c P)^2 / (1 + (2 (d - d0) / G)^2), fitted.

    With `detuning_offset` and `optical_linewidth` None, only the power dependence was
    fitted (one detuning: the Lorentzian factor is folded into s). SI units: s and c in 1/W,
    d0 and G in Hz. `covariance` is over (s, c[, d0, G]), already scaled by `chi2_reduced`.
    """

    low_power_slope: float
    cooperativity_slope: float
    detuning_offset: float | None
    optical_linewidth: float | None
    covariance: np.ndarray
    chi2_reduced: float
    points: int
    power_offsets: tuple[tuple[float, float], ...] | None = None
    """(pump power W, detuning offset Hz) per power when the resonance was let move with the
    pump (`fit_efficiency_map`'s `per_power_offsets`); None: one offset for all."""
    row_drift: float = 0.0
    """The rows' relative random walk per row that the covariance of (s, c) was read with
    (`with_row_drift`); 0: not read as a walk."""
    row_scatter: float = 0.0
    """The rows' own relative error beyond their points' that the covariance of (s, c) was
    read with; 0: not read as the rows' own errors."""

    def stderr(self, index: int) -> float:
        return float(math.sqrt(max(self.covariance[index, index], 0.0)))

    @property
    def correlation_s_c(self) -> float:
        denom = self.stderr(0) * self.stderr(1)
        return float(self.covariance[0, 1] / denom) if denom > 0 else 0.0

    @property
    def eta_max(self) -> tuple[float, float]:
        """Peak efficiency s / (4c) (at C = 1) and its standard error (first-order
        propagation with the s, c covariance)."""
        s, c = self.low_power_slope, self.cooperativity_slope
        grad = np.array([1 / (4 * c), -s / (4 * c * c)])
        var = float(grad @ self.covariance[:2, :2] @ grad)
        return s / (4 * c), math.sqrt(max(var, 0.0))

    @property
    def pump_power_at_unit_cooperativity(self) -> tuple[float, float]:
        """1 / c (W) and its standard error."""
        c = self.cooperativity_slope
        return 1 / c, self.stderr(1) / c**2

    def model(self, pump_power: np.ndarray, detuning: np.ndarray | float = 0.0) -> np.ndarray:
        p = np.asarray(pump_power, float)
        eta = self.low_power_slope * p / (1 + self.cooperativity_slope * p) ** 2
        if self.detuning_offset is None or self.optical_linewidth is None:
            return np.asarray(eta * np.ones_like(np.asarray(detuning, float)), float)
        d0: np.ndarray | float = self.detuning_offset
        if self.power_offsets is not None:
            powers, shifts = (np.array(v, float) for v in zip(*self.power_offsets, strict=True))
            d0 = np.interp(p, powers, shifts)
        x = 2 * (np.asarray(detuning, float) - d0) / self.optical_linewidth
        return np.asarray(eta / (1 + x**2), float)


def power_curve_start(pump_power: np.ndarray, eta: np.ndarray, noise: np.ndarray
                      ) -> tuple[float, float]:
    """Start values (s, c) of eta = s P / (1 + c P)^2: sqrt(P / eta) = (1 + c P) / sqrt(s)
    is a straight line in P, fitted to the points well above the noise."""
    use = eta > 3 * noise
    if np.count_nonzero(use) < 2 or np.ptp(pump_power[use]) == 0:
        use = eta > 0
    if np.count_nonzero(use) < 2 or np.ptp(pump_power[use]) == 0:
        return float(np.max(eta) / np.max(pump_power)), 0.0
    b, a = np.polyfit(pump_power[use], np.sqrt(pump_power[use] / eta[use]), 1)
    a = a if a > 0 else float(np.sqrt(np.min(pump_power[use] / eta[use])))
    return float(1 / a**2), float(max(b / a, 0.0))


def fit_efficiency_map(pump_power: np.ndarray, detuning: np.ndarray | None, eta: np.ndarray,
                       noise: np.ndarray | float, per_power_offsets: bool = False
                       ) -> EfficiencyMapFit | None:
    """Weighted least-squares fit of the cooperativity model to eta at (P, d) points.

    `detuning` None fits the power dependence alone (s, c). `per_power_offsets` lets the
    optical resonance sit at its own detuning at each pump power (a lithium-niobate
    device's photorefractive shift grows with the pump); the fit then reports d0 at the
    lowest power. Errors: covariance (J^T J)^-1 of the noise-weighted residuals scaled by
    the residual chi^2. None if the fit fails.
    """
    p, y = np.asarray(pump_power, float), np.asarray(eta, float)
    sigma = np.broadcast_to(np.asarray(noise, float), p.shape)
    _, group = np.unique(p, return_inverse=True)
    offsets = int(group.max()) + 1 if per_power_offsets and detuning is not None else 1
    n_par = 2 if detuning is None else 3 + offsets
    if p.size <= n_par or not np.all(np.isfinite(sigma)) or np.any(sigma <= 0) \
            or not np.all(p > 0):
        return None
    p_ref = float(p.max())
    if detuning is None:
        d = np.zeros_like(p)
        s0, c0 = power_curve_start(p, y, sigma)
        d_pk, g0 = 0.0, 1.0
    else:
        d = np.asarray(detuning, float)
        d_pk, g0, _ = lorentzian_start(*_detuning_profile(p, d, y))
        column = np.isclose(d, d_pk, rtol=0, atol=1e3)
        s0, c0 = power_curve_start(p[column], y[column], sigma[column])
    s0 = s0 if s0 > 0 else float(np.max(np.abs(y)) / p_ref) or 1.0
    span = float(np.ptp(d)) / g0 + 2

    # Scaled parameters: s / s0, c * P_max, (d0 - d_pk) / g0 (one, or one per power),
    # G / g0 (all of order one).
    def model(q: np.ndarray) -> np.ndarray:
        eta_p = s0 * q[0] * p / (1 + q[1] * p / p_ref) ** 2
        if detuning is None:
            return np.asarray(eta_p)
        d0 = q[2 + group] if offsets > 1 else q[2]
        x = 2 * ((d - d_pk) / g0 - d0) / q[-1]
        return np.asarray(eta_p / (1 + x**2))

    def residual(q: np.ndarray) -> np.ndarray:
        return np.asarray((model(q) - y) / sigma)

    if detuning is None:
        q0, lower, upper = [1.0, c0 * p_ref], [0.0, -0.5], [np.inf, np.inf]
    else:
        q0 = [1.0, c0 * p_ref, *([0.0] * offsets), 1.0]
        lower = [0.0, -0.5, *([-span] * offsets), 1e-3]
        upper = [np.inf, np.inf, *([span] * offsets), 10 * span]
    try:
        res = least_squares(residual, q0, bounds=(lower, upper), x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    cov = _covariance(res)
    if cov is None:
        return None
    chi2 = float(2 * res.cost / (p.size - n_par))
    q = res.x
    by_power = None
    if detuning is not None and offsets > 1:
        by_power = tuple((float(power), float(d_pk + g0 * shift)) for power, shift in
                         zip(np.unique(p), q[2:2 + offsets], strict=True))
        # Keep (s, c, d0 at the lowest power, G): what the map reports.
        keep = [0, 1, 2, n_par - 1]
        cov, q = cov[np.ix_(keep, keep)], q[keep]
        n_used = n_par
        n_par = 4
    else:
        n_used = n_par
    scale = np.array([s0, 1 / p_ref, g0, g0][:n_par])
    return EfficiencyMapFit(
        low_power_slope=float(s0 * q[0]), cooperativity_slope=float(q[1] / p_ref),
        detuning_offset=None if detuning is None else float(d_pk + g0 * q[2]),
        optical_linewidth=None if detuning is None else float(g0 * q[3]),
        covariance=scale_covariance(cov, 2 * res.cost, p.size - n_used, shrink=True)
        * np.outer(scale, scale), chi2_reduced=chi2, points=int(p.size),
        power_offsets=by_power)


def fit_efficiency_map_with_scatter(pump_power: np.ndarray, detuning: np.ndarray | None,
                                    eta: np.ndarray, noise: np.ndarray | float, bound: float
                                    ) -> tuple[EfficiencyMapFit | None, np.ndarray,
                                               ExcessScatter]:
    """`fit_efficiency_map` with the meter noise, or, when its reduced chi^2 exceeds `bound`,
    with the excess scatter in the point errors and the covariance inflated for its
    correlation (`fit_with_excess_scatter`; the points in the order of acquisition). Returns
    the fit, the point errors it used (for refits of the same model, e.g. the meter's shape
    errors) and the scatter."""
    p = np.asarray(pump_power, float)
    d = None if detuning is None else np.asarray(detuning, float)
    def fit_once(sig: np.ndarray) -> EfficiencyMapFit | None:
        return fit_efficiency_map(p, d, eta, sig)

    def fit_moving(sig: np.ndarray) -> EfficiencyMapFit | None:
        return fit_efficiency_map(p, d, eta, sig, per_power_offsets=True)

    def curve(f: EfficiencyMapFit) -> np.ndarray:
        return f.model(p, 0.0 if d is None else d)

    def chi2(f: EfficiencyMapFit) -> float:
        return f.chi2_reduced

    y = np.asarray(eta, float)
    fit, sigma, scatter = fit_with_excess_scatter(fit_once, curve, chi2, y, noise, bound)
    if d is not None and scatter.relative > 0 and np.unique(p).size > 1:
        # The meter noise does not explain the map: let the resonance move with the pump
        # (photorefractive shift) and keep that model if it is the more likely one.
        moved, moved_sigma, moved_scatter = fit_with_excess_scatter(fit_moving, curve, chi2,
                                                                    y, noise, bound)
        if moved is not None and np.sum(np.log(moved_sigma)) < np.sum(np.log(sigma)):
            fit, sigma, scatter = moved, moved_sigma, moved_scatter
    if fit is not None and scatter.inflation != 1.0:
        fit = replace(fit, covariance=_inflated(fit.covariance, scatter.inflation))
    return fit, sigma, scatter


def with_row_drift(fit: EfficiencyMapFit, pump_power: np.ndarray, detuning: np.ndarray | None,
                   eta: np.ndarray, sigma: np.ndarray, scatter: ExcessScatter
                   ) -> EfficiencyMapFit:
    """`fit` with the covariance of (s, c) from its rows' heights where they drift or
    scatter beyond their points' errors (`_row_drift`; the heights' errors are the point
    errors `sigma` with the within-row correlation's inflation); (s, c) then no longer
    correlate with the line's (d0, G), which the heights take as given. The values stay the
    joint fit's."""
    p = np.asarray(pump_power, float)
    shape = fit.model(p, 0.0 if detuning is None else detuning)
    if not np.all(shape > 0):
        return fit
    powers, height, err = row_heights(p, eta, sigma, shape)
    drift = row_drift_covariance(powers, height, err * math.sqrt(scatter.inflation),
                                 fit.low_power_slope, fit.cooperativity_slope,
                                 fit.covariance[:2, :2])
    if drift is None:
        return fit
    cov = np.array(fit.covariance, float)
    cov[:2, :] = 0.0
    cov[:, :2] = 0.0
    cov[:2, :2] = drift.covariance
    return replace(fit, covariance=cov, row_drift=drift.step_rms, row_scatter=drift.row_rms)


def _inflated(covariance: np.ndarray, inflation: float) -> np.ndarray:
    """The covariance of (s, c[, d0, G]) with the residuals' correlation inflation applied to
    every parameter but the optical linewidth G. In acquisition order, neighbouring residuals
    are neighbouring detunings of one power's row. What makes them alike there is a drift
    during the row: of the efficiency (the pump's delivery, the tone on a drifting microwave
    mode), a scale of the row (s, c) or a tilt across it (d0), which the inflation is for; or
    of the optical line against the pump (a laser-stepped bench), which stretches the row's
    line when the scan runs with the drift and compresses it when it runs against it. The
    rows run alternately up and down (the serpentine), so G, shared by all rows, is their
    mean, in which a drift linear over two rows cancels: inflating G's variance for it
    would count it although the scan already cancelled it (as the bandwidth scan's mean of
    its passes, docs/fitting.md#drift-seen-by-scanning-both-ways)."""
    factor = np.full(covariance.shape[0], math.sqrt(inflation))
    if factor.size == 4:
        factor[3] = 1.0
    return np.asarray(covariance * np.outer(factor, factor), float)


def meter_shape_errors(pump_power: np.ndarray, detuning: np.ndarray, eta: np.ndarray,
                       sigma: np.ndarray, fit: EfficiencyMapFit, readings: MeterReadings
                       ) -> tuple[float, float]:
    """(optical linewidth, detuning offset) systematic errors, Hz, of the joint fit `fit`
    from the power meter's range gains and linearity (`meter_shape.line_shape_errors`: each an
    unknown, fixed data-sheet error, independent of the others). For each, the map is refit
    (the same model, per-power offsets or not, and the same point errors `sigma`) with eta
    changed by `GAIN_STEP` of that gain; the shift per unit gain times the gain's standard
    deviation, added in quadrature. The map's readings span several current ranges (the
    flanks at the pump's leakage, the peak decades above), so this depends on where each
    map's light fell, which a fixed fraction of every width does not say. A refit that
    fails counts as the width's full `GAIN_STEP`-relative shift (conservative)."""
    if fit.optical_linewidth is None or fit.detuning_offset is None:
        return 0.0, 0.0
    per_power = fit.power_offsets is not None

    def refit(values: np.ndarray) -> tuple[float, float] | None:
        moved = fit_efficiency_map(pump_power, detuning, values, sigma,
                                   per_power_offsets=per_power)
        if moved is None or moved.optical_linewidth is None or moved.detuning_offset is None:
            return None
        return moved.optical_linewidth, moved.detuning_offset

    # the shifts against the same fit of the unchanged points (the analysis' fit, unless the
    # refit lands elsewhere by the optimiser's tolerance)
    y = np.asarray(eta, float)
    base = refit(y) or (fit.optical_linewidth, fit.detuning_offset)
    return line_shape_errors(refit, y, readings, base)


def _detuning_profile(p: np.ndarray, d: np.ndarray, eta: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """eta summed over pump powers at each distinct detuning (grid points that the laser set
    alike at every power; 1 kHz apart counts as alike)."""
    keys = np.round(d / 1e3)
    uniq, inverse = np.unique(keys, return_inverse=True)
    total = np.bincount(inverse, weights=eta)
    centers = np.bincount(inverse, weights=d) / np.bincount(inverse)
    return centers[: uniq.size], total
