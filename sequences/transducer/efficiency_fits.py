"""The fits of the efficiency-side transducer sequences: photon-number efficiency from
stored power-meter readings, the meter's noise, the Lorentzian peak (optical resonance,
conversion bandwidth), and the excess-scatter machinery the efficiency map's fit
(`efficiency_map_fits`) shares.
Derivation: docs/transducer.md#5-how-the-characterization-measures-it (step 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import numpy as np
from scipy.optimize import brentq, least_squares

from qnetlab.sequences.analysis import Reason, Verdict
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import pass_drift_error, scale_covariance

from .bench import DB_TO_LN, OFF, ON, PLANCK, SETUP, SPEED_OF_LIGHT, constant_error

# -- from stored readings to efficiency -------------------------------------------------------

DATA_SHEET_COVERAGE = 2.0
"""A data sheet's +-bound read as two standard deviations (k = 2, ~95 %)."""
MW_SOURCE_LEVEL_ACCURACY_DB = 0.9
"""+-dB, the microwave source's absolute CW level accuracy (Keysight N5183B data sheet,
"Amplitude", 3.2-20 GHz at moderate levels): every efficiency is referred to the flux the
source's setting implies, so eta carries this scale error besides the line's calibration."""
POWER_METER_SENSOR_ACCURACY = 0.05
"""+-relative, the power meter's sensor calibration (Thorlabs S-series InGaAs photodiode at
1550 nm, S155C / S144C spec sheets: measurement uncertainty +-5 %): the converted power's
scale."""
PUMP_POWER_ACCURACY_DB = 0.3
"""+-dB, the pump laser's emitted power against its setting (santec TSL-570 specifications
state power flatness and linearity rather than one absolute accuracy; typical): the pump
power axis's scale, so the cooperativity slope's and P(C=1)'s."""
PUMP_DELIVERY_DRIFT = 0.01
"""Relative rms wander of the pump power delivered into the device (fibre coupling and
polarisation over an hour of lab time; typical of a fibre-coupled cryostat, not from a data
sheet): the device sees the set power times a slowly varying factor no bench reading
shows."""


METER_RANGE_ACCURACY = 0.005
"""+-fraction, the power meter console's accuracy on each photocurrent range (Thorlabs PM100D
data sheet, photodiode input: +-0.5 % of full scale on the 50 nA and 500 nA ranges, +-0.2 %
above): the gain differs that much from one range to the next, so a line whose points span
ranges (auto-ranging) is distorted by up to this fraction of itself, and a fitted width moves
by about as much. The lowest ranges' figure: the converted light of the scans is nW to tens
of nW, where the peak and the flanks of a line sit on the 50 nA and 500 nA ranges."""
PUMP_POWER_STABILITY_DB = 0.01
"""+-dB, the pump laser's power stability (santec TSL-570 specifications): each setting
(every laser step of a scan) emits within this of the last, and the converted light follows
the pump power (at most linearly: eta ~ C ~ P for C << 1). A per-point relative error the
meter's own noise (the mw-off readings) does not show."""


def pump_stability_relative_error() -> float:
    """Relative one-sigma error of each point of a line scanned with the pump laser: its
    power stability per setting (`PUMP_POWER_STABILITY_DB`), read as k = 2."""
    return DB_TO_LN * PUMP_POWER_STABILITY_DB / DATA_SHEET_COVERAGE


def instrument_efficiency_relative_error() -> float:
    """Relative systematic error of every efficiency from the instruments' data-sheet
    accuracies: the source's level (flux in) and the meter's sensor (power out)."""
    return math.hypot(DB_TO_LN * MW_SOURCE_LEVEL_ACCURACY_DB,
                      POWER_METER_SENSOR_ACCURACY) / DATA_SHEET_COVERAGE


def pump_power_relative_error() -> float:
    """Relative systematic error of the pump power the device sees, against its setting:
    the laser's power accuracy and the delivery's drift (`PUMP_POWER_ACCURACY_DB`,
    `PUMP_DELIVERY_DRIFT`)."""
    return math.hypot(DB_TO_LN * PUMP_POWER_ACCURACY_DB / DATA_SHEET_COVERAGE,
                      PUMP_DELIVERY_DRIFT)


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
        """Relative systematic error of every efficiency from these constants and the
        instruments' accuracies: eta is proportional to 10^((L_mw + L_o) / 10)
        (`full_conversion_power` divides by 10^(-(L_mw + L_o) / 10)), so d ln(eta) =
        (ln 10 / 10) (dL_mw + dL_o), the two calibrations independent, and to the meter's
        and the source's scale (`instrument_efficiency_relative_error`)."""
        return math.hypot(DB_TO_LN * math.hypot(self.mw_line_attenuation_error,
                                                self.optical_output_loss_error),
                          instrument_efficiency_relative_error())


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


# -- scatter beyond the meter noise (the realistic lab) ---------------------------------------

MAX_RELATIVE_SCATTER = 0.10
"""Largest scatter of the points about a fitted curve, relative to the curve, that a right
model leaves on this bench. The pump's power stability (TSL-570 data sheet, +-0.01 dB per
setting, ~0.1 %), the meter's relative noise (~0.05 % per sample) and the pump delivery's
drift over a scan (~1 % an hour) add to under 1 %; but a line only two or three laser steps
wide that drifts by a tenth of its width during the scan moves its flank points by several
per cent (measured on the realistic lab: up to ~8 % for a 25 MHz line). Above 10 % the
curve is not the model (two lines, a wrong shape): a poor fit."""

MAX_LINE_JITTER = 0.15
"""Largest rms motion of a line against the scan, in linewidths, that still leaves its
shape measured: the resonance drifting during the scan (scanned up and down, the passes
differ by about this) or the laser's fine-step jitter. Beyond it the points are not one
line: a poor fit."""


class _Fit(Protocol):
    """What `fit_with_excess_scatter` asks of a fit result: its reduced chi^2 (the rest it
    only passes to the callables it is given)."""

    @property
    def chi2_reduced(self) -> float: ...


_FitT = TypeVar("_FitT", bound=_Fit)
"""`LorentzianFit`, `EfficiencyMapFit`, the conversion band's drifting-line fit."""


@dataclass(frozen=True)
class ExcessScatter:
    """How far the points scatter beyond the meter noise, and what that does to the errors.

    The meter's additive noise (from the mw-off readings) cannot be all: on a real bench each
    point also moves with the pump's power (each setting lands within the laser's stability,
    and the delivery drifts slowly), a scatter proportional to the converted light. Its size
    is estimated from the data as the relative error r that brings the reduced chi^2 to 1 with
    point errors sqrt(sigma_meter^2 + (r y_model)^2) (r = 0 when the meter noise already
    explains the scatter). Slow drifts make neighbouring residuals alike; their lag-1
    correlation rho inflates the variance of every fitted parameter by (1 + rho) / (1 - rho)
    (an AR(1) series: fewer independent points than points)."""

    relative: float = 0.0
    correlation: float = 0.0
    inflation: float = 1.0
    """Variance factor (1 + rho) / (1 - rho) for rho > 0, else 1."""
    jitter: float = 0.0
    """For a line: the rms of its position against the scan, in linewidths, when that
    explains the scatter better than a relative error (`fit_lorentzian_with_scatter`)."""

    @property
    def stderr_factor(self) -> float:
        return math.sqrt(self.inflation)

    @property
    def too_large(self) -> bool:
        """More scatter than a right model leaves (`MAX_RELATIVE_SCATTER`,
        `MAX_LINE_JITTER`)."""
        return self.relative > MAX_RELATIVE_SCATTER or self.jitter > MAX_LINE_JITTER

    def describe(self) -> str:
        if self.jitter > 0:
            return (f"the line moves against the scan by {self.jitter:.2g} linewidths rms "
                    f"(a right model leaves under {MAX_LINE_JITTER:g})")
        return (f"the points scatter by {self.relative:.2%} of the curve beyond the meter "
                f"noise (a right model leaves under {MAX_RELATIVE_SCATTER:.0%})")


def fit_with_excess_scatter(fit: Callable[[np.ndarray], _FitT | None],
                            model: Callable[[_FitT], np.ndarray],
                            chi2_reduced: Callable[[_FitT], float],
                            y: np.ndarray, noise: np.ndarray | float, bound: float,
                            shape: Callable[[_FitT], np.ndarray] | None = None
                            ) -> tuple[_FitT | None, np.ndarray, ExcessScatter]:
    """`fit` (a function of the point errors) with the meter `noise` alone; if its reduced
    chi^2 exceeds `bound` (the meter noise cannot explain the scatter), again with the
    excess scatter of `ExcessScatter` in the point errors. Returns the fit, the point errors
    it used and the scatter (its errors are not yet scaled by `ExcessScatter.inflation`: the
    caller does, for its own parameters). `y` in the fit's order, which should be the order
    of acquisition for the correlation to mean drift. `shape` changes what the excess is
    proportional to (default the model's magnitude: a relative error; the model's slope
    times a width makes it an x-error in units of that width)."""
    y = np.asarray(y, float)
    sigma0 = np.broadcast_to(np.asarray(noise, float), y.shape).astype(float)
    first = fit(sigma0)
    if first is None or not chi2_reduced(first) > bound:
        return first, sigma0, ExcessScatter()
    level = np.abs(model(first) if shape is None else shape(first))

    def excess(log_r: float) -> float:
        trial = fit(np.hypot(sigma0, math.exp(log_r) * level))
        return (chi2_reduced(trial) if trial is not None else math.inf) - 1.0

    try:
        log_r = brentq(excess, math.log(1e-7), math.log(10.0), xtol=1e-3)
    except ValueError:  # no r in range brings chi^2 to 1 (or the fit fails): keep the worst
        log_r = math.log(10.0)
    sigma = np.hypot(sigma0, math.exp(log_r) * level)
    final = fit(sigma)
    if final is None:
        return None, sigma, ExcessScatter(math.exp(log_r))
    r = (y - model(final)) / sigma
    r = r - r.mean()
    rho = float(np.sum(r[1:] * r[:-1]) / np.sum(r * r)) if r.size > 2 else 0.0
    inflation = (1 + rho) / (1 - rho) if 0 < rho < 1 else 1.0
    return final, sigma, ExcessScatter(math.exp(log_r), rho, inflation)


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
    pass_curve: Callable[[np.ndarray], np.ndarray] | None = field(default=None, compare=False,
                                                                  repr=False)
    """For a `fit_lorentzian_passes` fit: the curve at the scan's points with each pass's own
    centre and peak (`model` is the passes' mean line)."""

    def model(self, x: np.ndarray) -> np.ndarray:
        return self.peak / (1 + (2 * (np.asarray(x, float) - self.center) / self.fwhm) ** 2)

    def errors_scaled(self, factor: float) -> LorentzianFit:
        """This fit with every standard error times `factor`."""
        return replace(self, center_stderr=self.center_stderr * factor,
                       fwhm_stderr=self.fwhm_stderr * factor,
                       peak_stderr=self.peak_stderr * factor)


def fit_lorentzian_with_scatter(x: np.ndarray, y: np.ndarray, noise: np.ndarray | float,
                                bound: float, up: np.ndarray | None = None,
                                relative: float = 0.0, correlated: bool = True
                                ) -> tuple[LorentzianFit | None, np.ndarray, ExcessScatter]:
    """`fit_lorentzian` with the meter noise, or, when its reduced chi^2 exceeds `bound`,
    with an excess scatter in the point errors and the errors inflated for its correlation
    (`fit_with_excess_scatter`; `x` in frequency order). Two excess models are tried, the
    more likely kept (the smaller sum of ln sigma^2 at chi^2 = n): a relative error (the
    light's power fluctuates) and an x-error (the line moves against the scan: the
    resonance's drift, the laser's jitter), whose size is `ExcessScatter.jitter` in
    linewidths.

    `up` (per point, in `x`'s order): the passes of an interleaved scan, each fitted with a
    centre and a peak of its own (`fit_lorentzian_passes`: the line moved and the pump power
    drifted between them). `relative`: a known relative error of every point (the pump's
    power stability per setting), added to `noise` at the fitted curve before any excess is
    looked for. `correlated` False: the residuals' lag-1 correlation is reported but does
    not inflate the errors (`x` in frequency order with `up`: neighbours come from opposite
    passes, so the correlation measures a shape common to both, not drift)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)

    def fit_once(sig: np.ndarray) -> LorentzianFit | None:
        return fit_lorentzian(x, y, sig) if up is None else fit_lorentzian_passes(x, y, sig, up)

    if relative > 0:
        noise = _with_relative_error(fit_once, x, y, noise, relative)

    def curve(f: LorentzianFit) -> np.ndarray:
        return _pass_model(f, x)

    def chi2(f: LorentzianFit) -> float:
        return f.chi2_reduced

    def attempt(shape: Callable[[LorentzianFit], np.ndarray] | None
                ) -> tuple[LorentzianFit | None, np.ndarray, ExcessScatter]:
        return fit_with_excess_scatter(fit_once, curve, chi2, y, noise, bound, shape)

    fit, sigma, scatter = attempt(None)
    if fit is not None and scatter.relative > 0:
        def slope_times_width(f: LorentzianFit) -> np.ndarray:
            u = 2 * (x - f.center) / f.fwhm
            return np.asarray(f.peak * 4 * np.abs(u) / (1 + u * u) ** 2, float)

        moved = attempt(slope_times_width)
        if moved[0] is not None and np.sum(np.log(moved[1])) < np.sum(np.log(sigma)):
            fit, sigma = moved[0], moved[1]
            scatter = replace(moved[2], relative=0.0, jitter=moved[2].relative)
    if fit is not None and correlated and scatter.inflation != 1.0:
        fit = fit.errors_scaled(scatter.stderr_factor)
    return fit, sigma, scatter


def _with_relative_error(fit: Callable[[np.ndarray], LorentzianFit | None], x: np.ndarray,
                         y: np.ndarray, noise: np.ndarray | float, relative: float
                         ) -> np.ndarray:
    """`noise` with `relative` x the fitted curve added in quadrature (the curve from a fit
    with `noise` alone, then once more with the combined errors); `noise` as it was if a fit
    fails."""
    base = np.broadcast_to(np.asarray(noise, float), y.shape).astype(float)
    sigma = base
    for _ in range(2):
        f = fit(sigma)
        if f is None:
            return sigma
        sigma = np.hypot(base, relative * np.abs(_pass_model(f, x)))
    return sigma


def _pass_model(f: LorentzianFit, x: np.ndarray) -> np.ndarray:
    """The fitted curve at `x`: each pass's own line for a `fit_lorentzian_passes` fit."""
    return f.model(x) if f.pass_curve is None else f.pass_curve(x)


def fit_lorentzian_passes(x: np.ndarray, y: np.ndarray, noise: np.ndarray | float,
                          up: np.ndarray) -> LorentzianFit | None:
    """A Lorentzian whose centre and peak differ between the up and the down pass of an
    interleaved scan (`up` per point) and whose width is shared: the line drifts and the
    pump power wanders between the passes (seconds apart), while crossing the line takes a
    fraction of a second. The fit reports the passes' mean centre and peak (their errors from
    the covariance of the mean; `with_pass_difference` adds the drift between them) and the
    common width. A single-centre fit of such data sees the two passes' points as a jagged
    line and its width moves by many times its error. None if either pass has fewer than 4
    points or the fit fails."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    up = np.asarray(up, bool)
    sigma = np.broadcast_to(np.asarray(noise, float), x.shape)
    one = fit_lorentzian(x, y, sigma)
    if one is None or min(int(up.sum()), int((~up).sum())) < 4 or x.size < 6:
        return None
    c0, w0, a0 = one.center, one.fwhm, one.peak

    def curve(p: np.ndarray, at: np.ndarray, on_up: np.ndarray) -> np.ndarray:
        centre = c0 + w0 * np.where(on_up, p[0], p[1])
        peak = a0 * np.where(on_up, p[3], p[4])
        return np.asarray(peak / (1 + 4 * ((at - centre) / (p[2] * w0)) ** 2), float)

    def residual(p: np.ndarray) -> np.ndarray:
        return (curve(p, x, up) - y) / sigma

    try:
        res = least_squares(residual, [0.0, 0.0, 1.0, 1.0, 1.0], x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    cov = _covariance(res)
    if cov is None or not res.x[2] > 0:
        return None
    dof = x.size - 5
    cov = scale_covariance(cov, 2 * res.cost, dof, shrink=True)
    p = res.x
    mean = np.array([0.5, 0.5])
    centre_var = float(mean @ cov[np.ix_([0, 1], [0, 1])] @ mean)
    peak_var = float(mean @ cov[np.ix_([3, 4], [3, 4])] @ mean)
    fitted = p.copy()

    def pass_curve(at: np.ndarray) -> np.ndarray:
        at = np.asarray(at, float)
        # points of the scan: their own pass; any other x: the passes' mean line
        on_up = up if at.shape == x.shape and np.array_equal(at, x) else None
        if on_up is None:
            return np.asarray(0.5 * (curve(fitted, at, np.ones(at.shape, bool))
                                     + curve(fitted, at, np.zeros(at.shape, bool))), float)
        return curve(fitted, at, on_up)

    return LorentzianFit(c0 + w0 * 0.5 * (p[0] + p[1]), w0 * math.sqrt(max(centre_var, 0.0)),
                         p[2] * w0, w0 * math.sqrt(max(float(cov[2, 2]), 0.0)),
                         a0 * 0.5 * (p[3] + p[4]), a0 * math.sqrt(max(peak_var, 0.0)),
                         float(2 * res.cost / dof), int(x.size), pass_curve)


def interleaved(grid: np.ndarray) -> np.ndarray:
    """A scan grid in the order to measure it: up on every other point, then down on the
    ones between, so a drift during the scan shows as a difference between the two passes
    (`passes`) instead of a stretched or shifted line."""
    grid = np.asarray(grid, float)
    return np.concatenate([grid[0::2], grid[1::2][::-1]])


def passes(x_acquired: np.ndarray) -> np.ndarray | None:
    """For points in the order they were measured, True for the up pass of an `interleaved`
    scan and False for the down pass; None when the order is not one (an older run, a
    single pass, too few points for a fit of each pass)."""
    x = np.asarray(x_acquired, float)
    if x.size < 8:
        return None
    turn = int(np.argmax(x))
    up, down = x[: turn + 1], x[turn + 1:]
    if up.size < 4 or down.size < 4 or not (np.all(np.diff(up) > 0)
                                            and np.all(np.diff(down) < 0)):
        return None
    return np.arange(x.size) <= turn


def with_pass_difference(fit: LorentzianFit, x: np.ndarray, y: np.ndarray,
                         sigma: np.ndarray, up: np.ndarray | None
                         ) -> tuple[LorentzianFit, dict[str, float]]:
    """`fit` (of all the points) with half the difference between the fits of the up and
    the down pass added in quadrature to its centre's, width's and peak's errors: the
    line's drift during the scan, measured as a real lab would, by scanning both ways (a
    fit of all points keeps only a second-order remainder of it, so this is conservative),
    beyond what the passes' own errors explain.
    Unchanged when the passes are unknown or either pass does not fit."""
    if up is None:
        return fit, {}
    a = fit_lorentzian(x[up], y[up], sigma[up])
    b = fit_lorentzian(x[~up], y[~up], sigma[~up])
    if a is None or b is None:
        return fit, {}

    drift = pass_drift_error
    dc = drift(a.center - b.center, a.center_stderr, b.center_stderr)
    dw = drift(a.fwhm - b.fwhm, a.fwhm_stderr, b.fwhm_stderr)
    dp = drift(a.peak - b.peak, a.peak_stderr, b.peak_stderr)
    return replace(fit, center_stderr=math.hypot(fit.center_stderr, dc),
                   fwhm_stderr=math.hypot(fit.fwhm_stderr, dw),
                   peak_stderr=math.hypot(fit.peak_stderr, dp)), {
        "pass_difference_center": a.center - b.center, "pass_difference_fwhm": a.fwhm - b.fwhm,
        "drift_error_center": dc, "drift_error_fwhm": dw, "drift_error_peak": dp}


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
