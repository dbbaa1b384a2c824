"""The fits of the efficiency-side transducer sequences: photon-number efficiency from
stored power-meter readings, the meter's noise, the Lorentzian peak (optical resonance,
conversion bandwidth) and the cooperativity model eta(P, d) (efficiency map).
Derivation: docs/transducer.md#5-how-the-characterization-measures-it (step 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from qnetlab.sequences.analysis import Reason, Verdict
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import scale_covariance

from .bench import DB_TO_LN, OFF, ON, PLANCK, SETUP, SPEED_OF_LIGHT, constant_error

# -- from stored readings to efficiency -------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The bench's calibration constants, as stored with the run (dB), with their one-sigma
    errors (0 for exact constants)."""

    mw_line_attenuation: float
    optical_output_loss: float
    mw_line_attenuation_error: float = 0.0
    optical_output_loss_error: float = 0.0

    @classmethod
    def from_run(cls, run: StoredRun) -> Calibration:
        """From the run's station snapshot; KeyError naming what is missing."""
        return cls(float(run.snapshot_value(SETUP, "mw_line_attenuation")),
                   float(run.snapshot_value(SETUP, "optical_output_loss")),
                   constant_error(run, "mw_line_attenuation"),
                   constant_error(run, "optical_output_loss"))

    @property
    def efficiency_relative_error(self) -> float:
        """Relative systematic error of every efficiency from these constants: eta is
        proportional to 10^((L_mw + L_o) / 10) (`full_conversion_power` divides by
        10^(-(L_mw + L_o) / 10)), so d ln(eta) = (ln 10 / 10) (dL_mw + dL_o), the two
        calibrations independent."""
        return DB_TO_LN * math.hypot(self.mw_line_attenuation_error,
                                     self.optical_output_loss_error)


def full_conversion_power(mw_power_dbm: np.ndarray, mw_frequency: np.ndarray,
                          pump_wavelength: np.ndarray, cal: Calibration) -> np.ndarray:
    """Optical power (W) at the meter that eta = 1 would give: Phi_mw * h c / lambda_pump,
    less the output loss."""
    flux = 1e-3 * 10 ** ((np.asarray(mw_power_dbm, float) - cal.mw_line_attenuation) / 10) \
        / (PLANCK * np.asarray(mw_frequency, float))
    photon_energy = PLANCK * SPEED_OF_LIGHT / np.asarray(pump_wavelength, float)
    return np.asarray(flux * photon_energy * 10 ** (-cal.optical_output_loss / 10), float)


def meter_noise(p_off: np.ndarray, groups: np.ndarray | None = None) -> tuple[float, int]:
    """Power-meter noise per reading (W rms) from successive mw-off readings within each
    group (e.g. one pump power), and the number of differences it rests on; NaN with fewer
    than 2 differences."""
    p_off = np.asarray(p_off, float)
    keys = np.zeros(p_off.size) if groups is None else np.asarray(groups, float)
    diffs = [np.diff(p_off[keys == k]) for k in np.unique(keys)]
    d = np.concatenate(diffs) if diffs else np.empty(0)
    if d.size < 2:
        return math.nan, int(d.size)
    return float(np.sqrt(np.mean(d**2) / 2)), int(d.size)


@dataclass(frozen=True)
class EfficiencyPoints:
    """eta and its one-sigma noise per stored point."""

    eta: np.ndarray
    noise: np.ndarray
    meter_noise: float
    """W rms per reading."""
    noise_samples: int
    """Differences the noise estimate rests on."""


def efficiency_points(run: StoredRun, groups: np.ndarray | None = None) -> EfficiencyPoints:
    """eta per point of a run with the efficiency columns; KeyError if the snapshot lacks
    the calibration constants."""
    cal = Calibration.from_run(run)
    full = full_conversion_power(run.data["mw_power"], run.data["mw_frequency"],
                                 run.data["pump_wavelength"], cal)
    p_on, p_off = np.asarray(run.data[ON], float), np.asarray(run.data[OFF], float)
    sigma, samples = meter_noise(p_off, groups)
    return EfficiencyPoints((p_on - p_off) / full, math.sqrt(2) * sigma / full, sigma, samples)


def column(run: StoredRun, name: str) -> np.ndarray:
    return np.asarray(run.data.get(name, []), float)


# -- Lorentzian peak (optical resonance, conversion bandwidth) --------------------------------


@dataclass(frozen=True)
class LorentzianFit:
    """y = peak / (1 + (2 (x - center) / fwhm)^2), with one-sigma errors (x units of input)."""

    center: float
    center_stderr: float
    fwhm: float
    fwhm_stderr: float
    peak: float
    peak_stderr: float
    chi2_reduced: float
    """Residual chi^2 per degree of freedom against the given noise (1 for a good fit)."""
    points: int

    def model(self, x: np.ndarray) -> np.ndarray:
        return self.peak / (1 + (2 * (np.asarray(x, float) - self.center) / self.fwhm) ** 2)


def lorentzian_start(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Start values (center, fwhm, peak): the highest point of the 3-point-smoothed trace and
    the extent of the points above half of it."""
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    smooth = np.convolve(ys, np.ones(3) / 3, mode="same") if ys.size >= 3 else ys
    i0 = int(np.argmax(smooth))
    peak = float(max(ys[i0], smooth[i0]))
    above = xs[smooth > peak / 2]
    spacing = float(np.median(np.diff(xs))) if xs.size > 1 else 1.0
    width = float(above.max() - above.min()) if above.size > 1 else spacing
    return float(xs[i0]), max(width, spacing / 2), peak


def fit_lorentzian(x: np.ndarray, y: np.ndarray, noise: np.ndarray | float
                   ) -> LorentzianFit | None:
    """Weighted least-squares Lorentzian peak (no background: the data are on-off
    differences). Errors from the covariance scaled by the residual chi^2. None if the fit
    fails or has no degrees of freedom."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    sigma = np.broadcast_to(np.asarray(noise, float), x.shape)
    if x.size < 4 or not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
        return None
    c0, w0, a0 = lorentzian_start(x, y)
    if a0 <= 0:
        return None
    # Work in units of the start width around the start centre, and of the start peak: the
    # Jacobian's columns are then of similar size for the covariance inversion.
    span = float(np.ptp(x)) or 1.0

    def residual(p: np.ndarray) -> np.ndarray:
        xc = (x - (c0 + p[0] * w0)) / (p[1] * w0)
        return (a0 * p[2] / (1 + 4 * xc**2) - y) / sigma

    lower = [-(span / w0) - 2, 1e-3, 0.0]
    upper = [(span / w0) + 2, 10 * span / w0 + 10, np.inf]
    try:
        res = least_squares(residual, [0.0, 1.0, 1.0], bounds=(lower, upper), x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    cov = _covariance(res)
    if cov is None:
        return None
    # The point errors are a noise estimate: the residuals scale them both ways.
    p, chi2 = res.x, float(2 * res.cost / (x.size - 3))
    cov = scale_covariance(cov, 2 * res.cost, x.size - 3, shrink=True)
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return LorentzianFit(c0 + p[0] * w0, err[0] * w0, p[1] * w0, err[1] * w0, a0 * p[2],
                         a0 * err[2], chi2, int(x.size))


def _covariance(res: Any) -> np.ndarray | None:
    """(J^T J)^-1 of a converged least-squares result of weighted residuals (unit noise)."""
    if not res.success or not np.all(np.isfinite(res.x)) or res.fun.size <= res.x.size:
        return None
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac)
    except np.linalg.LinAlgError:
        return None
    return cov if np.all(np.isfinite(cov)) else None


# -- the cooperativity model eta(P, d) -------------------------------------------------------


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
        x = 2 * (np.asarray(detuning, float) - self.detuning_offset) / self.optical_linewidth
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
                       noise: np.ndarray | float) -> EfficiencyMapFit | None:
    """Weighted least-squares fit of the cooperativity model to eta at (P, d) points.

    `detuning` None fits the power dependence alone (s, c). Errors: covariance (J^T J)^-1 of
    the noise-weighted residuals scaled by the residual chi^2. None if the fit fails.
    """
    p, y = np.asarray(pump_power, float), np.asarray(eta, float)
    sigma = np.broadcast_to(np.asarray(noise, float), p.shape)
    n_par = 2 if detuning is None else 4
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

    # Scaled parameters: s / s0, c * P_max, (d0 - d_pk) / g0, G / g0 (all of order one).
    def model(q: np.ndarray) -> np.ndarray:
        eta_p = s0 * q[0] * p / (1 + q[1] * p / p_ref) ** 2
        if detuning is None:
            return np.asarray(eta_p)
        x = 2 * ((d - d_pk) / g0 - q[2]) / q[3]
        return np.asarray(eta_p / (1 + x**2))

    def residual(q: np.ndarray) -> np.ndarray:
        return np.asarray((model(q) - y) / sigma)

    q0 = [1.0, c0 * p_ref, 0.0, 1.0][:n_par]
    lower = [0.0, -0.5, -span, 1e-3][:n_par]
    upper = [np.inf, np.inf, span, 10 * span][:n_par]
    try:
        res = least_squares(residual, q0, bounds=(lower, upper), x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    cov = _covariance(res)
    if cov is None:
        return None
    chi2 = float(2 * res.cost / (p.size - n_par))
    scale = np.array([s0, 1 / p_ref, g0, g0][:n_par])
    q = res.x
    return EfficiencyMapFit(
        low_power_slope=float(s0 * q[0]), cooperativity_slope=float(q[1] / p_ref),
        detuning_offset=None if detuning is None else float(d_pk + g0 * q[2]),
        optical_linewidth=None if detuning is None else float(g0 * q[3]),
        covariance=scale_covariance(cov, 2 * res.cost, p.size - n_par, shrink=True)
        * np.outer(scale, scale), chi2_reduced=chi2, points=int(p.size))


def _detuning_profile(p: np.ndarray, d: np.ndarray, eta: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """eta summed over pump powers at each distinct detuning (grid points that the laser set
    alike at every power; 1 kHz apart counts as alike)."""
    keys = np.round(d / 1e3)
    uniq, inverse = np.unique(keys, return_inverse=True)
    total = np.bincount(inverse, weights=eta)
    centers = np.bincount(inverse, weights=d) / np.bincount(inverse)
    return centers[: uniq.size], total


def usable_efficiency_points(run: StoredRun, groups: np.ndarray | None = None
                             ) -> EfficiencyPoints | Verdict:
    """`efficiency_points`, or the bad verdict that says why a run's optical power cannot be
    turned into efficiencies (calibration constants missing from its snapshot, or no meter
    noise estimate from the mw-off readings)."""
    try:
        points = efficiency_points(run, groups=groups)
    except KeyError as exc:
        return Verdict.bad(Reason.OUT_OF_RANGE,
                           f"cannot convert optical power to efficiency: {exc.args[0]}")
    if not np.all(np.isfinite(points.noise)) or np.any(points.noise <= 0):
        return Verdict.bad(Reason.TOO_FEW_POINTS, "cannot estimate the power meter's noise "
                           "from the mw-off readings")
    return points
