"""`MicrowaveResonanceScan`: find the transducer's microwave resonance with the VNA (the role's
`sweep()` only, in `segments` software-averaged sweeps so an interrupted scan keeps its
finished segments), fitting S11(f) = B(f) (1 - 2 eta_e e^(i phi) / (1 + 2i (f - f0) / kappa))
to the complex trace; the noise is estimated from the residuals.
Derivation: docs/transducer.md#5-how-the-characterization-measures-it (step 1).

The background B(f) is what a real VNA and its cables leave on the trace: a mismatch a cable
length away makes a complex ripple, an uncalibrated electrical delay a linear phase (both
multiply S11), and the residual directivity adds a constant that interferes with the
resonance (Probst et al., Rev. Sci. Instrum. 86, 024706 (2015), the "circle fit" model). B(f)
is a complex Chebyshev polynomial in frequency across the window, of the order the data ask
for (the lowest Bayesian information criterion up to `BACKGROUND_MAX_ORDER`, or fixed by the
option `background_order`); the directivity's interference shows as the Fano phase phi,
which the model carries so the asymmetry it makes does not pull f0. The polynomial's
coefficients are solved linearly at every step of the fit (variable projection, Golub and
Pereyra 1973): only f0, kappa, eta_e and phi are searched for.

Systematic errors (FitValue.sys, docs/transducer.md#microwave-resonance). The BIC stops at the
order whose next term the noise hides, but a term the noise hides over the whole window can
still bend the background under the dip: on piezo_om's realistic bench (1 MHz mode, 20 MHz
window) the BIC's order 2 left the linewidth 0.75 stat sigma off (rms; up to 1.9), one order
more about a tenth of that. So the fit is redone one order higher and the difference of each
of f0, kappa and eta_e joins its systematic error (the difference itself, noise and all: the
bias it estimates is known no better; on 400 simulated realistic traces the linewidth's pulls
then have an rms of 1.01, 1.14 without). A fixed `background_order` gets the same, so an
order set too low shows in the errors. eta_e also carries the VNA's residual directivity
(`VNA_RESIDUAL_DIRECTIVITY`).

Drift during the scan. A narrow mode (membrane_eom's 20 kHz) drifts by a measurable fraction
of its width within seconds (two-level-system spectral diffusion: the realistic lab's
`DriftSettings.microwave`). With ``passes=2`` the window is swept up (segment by segment) and
then down again (the segments in reverse order), as the optical scans run up then down
(`transducer.efficiency_fits.interleaved`): the fit is of the two passes' mean trace, and half
the difference between the passes' own fits (less what their noise explains,
`fitting.pass_drift_error`) is the centre's drift error, a systematic; the linewidth carries
the same for its own difference plus the broadening two lines that far apart make in the
mean trace (1.5 D^2 / kappa for a difference D << kappa);
docs/fitting.md#drift-seen-by-scanning-both-ways.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import least_squares

from qnetlab.instruments.station import LabStation

from .analysis import Analysis, FitValue, Reason, Verdict
from .curve_analysis import CurveAnalysis, CurveData, Param
from .data import StoredRun
from .fitting import Fit, pass_drift_error
from .framework import DatasetParameter, LabSequence, Step

MIN_POINTS = 20
"""Fewer points than this cannot support a 5-parameter complex fit with a verdict."""
MIN_POINTS_PER_LINEWIDTH = 4
"""A linewidth sampled by fewer points is not resolved."""
DIP_SIGNIFICANCE = 5.0
"""eta_e must exceed this many standard errors for a dip to count as found."""
BACKGROUND_MAX_ORDER = 24
"""Highest order of the background polynomial the fit tries: a cable ripple of 1-2 m
repeats every 50-100 MHz, so a 100 MHz window holds up to two periods, which a Chebyshev
series of order ~20 follows to below the receiver noise."""
AUTO_ORDER = -1
VNA_RESIDUAL_DIRECTIVITY = 0.01
"""|d|, the calibrated VNA's residual directivity (about -40 dB: typical of a corrected
Keysight P937xA port with a mechanical cal kit; the data sheet states it per kit): it adds
to S11, so the dip's depth relative to the background, and with it eta_e, is off by
-Re(d / B) of itself, up to |d| / |B| (the Fano phase shows only the quadrature part, Im).
d's phase is unknown, so that error is a phasor's projection: piled up near +-|d| / |B|
(arcsine, rms 0.71 |d| / |B| for a fixed |d|), not near 0 as a normal's. Its standard error
is the bound's over sqrt(3) (a rectangular distribution on +-bound, GUM 4.3.7), between the
rms of a |d| anywhere in the bound's disc (bound / 2, what this once was: a third inside
1 sigma for a |d| near its bound) and of a |d| at the bound (bound / sqrt(2))."""
TWO_LINE_BROADENING = 1.5
"""FWHM of the mean of two equal Lorentzians a distance D << kappa apart, minus kappa, in
units of D^2 / kappa (expand the mean to second order in D; numerically 1.49-1.50 for
D / kappa = 0.02-0.2)."""


@dataclass(frozen=True)
class ResonanceScanOptions:
    """Options of `MicrowaveResonanceScan` (SI units)."""

    center: float = 8.0e9
    """Centre of the scan window, Hz."""
    span: float = 100e6
    """Width of the scan window, Hz."""
    points: int = 401
    """Frequency points over the whole window."""
    if_bandwidth: float = 1e3
    """VNA IF bandwidth, Hz: the receiver noise grows as its square root."""
    averages: int = 1
    """Sweeps averaged per segment (noise falls as 1/sqrt(averages))."""
    segments: int = 10
    """VNA sweeps the window is split into (progress and interruption granularity)."""
    background_order: int = AUTO_ORDER
    """Order of the complex polynomial background B(f) (module docstring); -1 lets the data
    choose (the lowest BIC up to `BACKGROUND_MAX_ORDER`), 0 is a constant background (a VNA
    without cable ripple)."""
    passes: int = 1
    """1: the window swept once, up; 2: up, then down again (the segments in reverse order),
    so the resonance's drift during the scan shows as the passes' difference and joins the
    centre's and the linewidth's errors (module docstring)."""

    def __post_init__(self) -> None:
        if not AUTO_ORDER <= self.background_order <= BACKGROUND_MAX_ORDER:
            raise ValueError(f"background_order must be -1 (chosen from the data) or "
                             f"0..{BACKGROUND_MAX_ORDER}, got {self.background_order}")
        if not (self.span > 0 and self.center - self.span / 2 > 0):
            raise ValueError(f"span {self.span:g} Hz must be > 0 and fit above 0 Hz around "
                             f"center {self.center:g} Hz")
        if self.segments < 1 or self.points < 2 * self.segments:
            raise ValueError(f"need segments >= 1 and points >= 2 * segments, got "
                             f"{self.points} points in {self.segments} segments")
        if self.if_bandwidth <= 0 or self.averages < 1:
            raise ValueError("if_bandwidth must be > 0 Hz and averages >= 1")
        if self.passes not in (1, 2):
            raise ValueError(f"passes must be 1 (up) or 2 (up, then down), got {self.passes}")


class MicrowaveResonanceAnalysis(CurveAnalysis):
    """Complex Lorentzian fit of S11: resonance frequency, linewidth (FWHM), eta_e (own
    bounded optimiser `_fit` on the complex trace; the figure shows |S11|)."""

    sequence = "microwave_resonance_scan"
    x_column = "frequency"
    params = (Param("resonance_frequency", "Hz"), Param("linewidth", "Hz"), Param("eta_e"),
              Param("fano_phase", "rad"))
    min_points = MIN_POINTS
    figure_name = "s11"
    x_label, y_label, x_scale = "frequency (GHz)", "|S11|", 1e9

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        # p: f0, kappa, eta_e, phi, window centre, window half-span, then the background's
        # Chebyshev coefficients as (re, im) pairs (`_fit`'s curve).
        t = (np.asarray(x, float) - p[4]) / p[5]
        coefficients = np.asarray(p[6::2]) + 1j * np.asarray(p[7::2])
        return _model(t, (p[0] - p[4]) / p[5], p[1] / p[5], p[2], p[3], coefficients)

    def load(self, run: StoredRun) -> CurveData | Verdict:
        f = np.asarray(run.data.get("frequency", []), float)
        s = np.asarray(run.data.get("s11", []), complex)
        f, s, both = _mean_of_passes(f, s, np.asarray(run.data.get("sweep_pass", []), float))
        # Point-to-point differences estimate the noise without a model (the trace is
        # smooth on the scale of one point spacing when the linewidth is resolved).
        noise = float(np.sqrt(np.mean(np.abs(np.diff(s)) ** 2) / 2)) if f.size > 1 else 0.0
        background_order = run.options_as(ResonanceScanOptions).background_order
        return CurveData(f, s, np.full(f.size, noise), {"noise_estimate": noise,
                                                        "passes": 1.0 if both is None else 2.0},
                         extra={"background_order": background_order, "passes": both})

    def no_signal(self, data: CurveData) -> str:
        if np.median(np.abs(data.y)) < 5 * data.details["noise_estimate"]:
            return "no reflected signal above the receiver noise: check the VNA output and " \
                   "the line"
        return ""

    def fit(self, data: CurveData) -> Fit | Verdict:
        fit = _fit(data.x, data.y, data.extra["background_order"])
        if fit is None:
            return Verdict.bad(Reason.POOR_FIT, "the fit did not converge")
        data.extra["values"], data.extra["details"], curve = fit
        if data.extra["passes"] is not None:
            order = int(data.extra["details"]["background_order"])
            if not _with_drift_error(data.x, data.extra["passes"], order,
                                     data.extra["values"], data.extra["details"]):
                return Verdict.bad(Reason.POOR_FIT, "the up and the down pass do not each "
                                   "fit a resonance: no drift estimate (one pass at a time "
                                   "is too noisy? average more)")
        return curve

    def values(self, fit: Fit, data: CurveData) -> dict[str, FitValue]:
        return dict(data.extra["values"])

    def fit_details(self, fit: Fit, data: CurveData) -> dict[str, float]:
        return dict(data.extra["details"])

    def judge(self, fit: Fit, data: CurveData, values: dict[str, FitValue]) -> Verdict:
        return _verdict(data.x, values, data.extra["details"])

    def x_axis(self, data: CurveData) -> tuple[float, float, str]:
        return _detuning_axis(data.x)

    def propose(self, values: dict[str, FitValue], data: CurveData) -> dict[str, float]:
        return {"mw_resonance_frequency": float(values["resonance_frequency"].value),
                "mw_linewidth": float(values["linewidth"].value)}


def _detuning_axis(f: np.ndarray) -> tuple[float, float, str]:
    """A figure's frequency axis as the detuning from the window's centre, in MHz or kHz."""
    ref = float(np.round(np.mean(f))) if f.size else 0.0
    scale, unit = (1e6, "MHz") if f.size and np.ptp(f) > 5e6 else (1e3, "kHz")
    return ref, scale, f"frequency - {ref / 1e9:.9g} GHz ({unit})"


def _mean_of_passes(f: np.ndarray, s: np.ndarray, sweep_pass: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The trace to fit, ordered by frequency: the mean of the up and the down pass where
    both swept the same frequencies (and the two passes, for their drift), else every point
    of the first pass (a one-pass scan, or one whose down pass was interrupted)."""
    if sweep_pass.size == f.size and f.size:
        up, down = sweep_pass == 0, sweep_pass == 1
        fu, su = _ordered(f[up], s[up])
        fd, sd = _ordered(f[down], s[down])
        if fu.size and np.array_equal(fu, fd):
            return fu, (su + sd) / 2, (su, sd)
        return fu, su, None
    fo, so = _ordered(f, s)
    return fo, so, None


def _ordered(f: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(f, kind="stable")
    return f[order], s[order]


def _with_drift_error(f: np.ndarray, passes: tuple[np.ndarray, np.ndarray], order: int,
                      values: dict[str, FitValue], details: dict[str, float]) -> bool:
    """Add the drift the two passes show to the centre's and the linewidth's systematic
    errors (module docstring), each pass fitted at the mean trace's background order;
    False if either pass does not fit."""
    a, b = (_fit(f, s, order) for s in passes)
    if a is None or b is None:
        return False
    (fa, wa), (fb, wb) = ((fit[0]["resonance_frequency"], fit[0]["linewidth"]) for fit in (a, b))
    # The passes' noise only: the background order's systematic is common to both.
    centre = pass_drift_error(fa.value - fb.value, fa.stat, fb.stat)
    kappa = values["linewidth"].value
    # The mean trace holds two lines 2 x centre apart: that broadens it (second order).
    broadening = TWO_LINE_BROADENING * (2 * centre) ** 2 / kappa if kappa > 0 else 0.0
    width = math.hypot(pass_drift_error(wa.value - wb.value, wa.stat, wb.stat), broadening)
    values["resonance_frequency"] = values["resonance_frequency"].with_systematic(centre)
    values["linewidth"] = values["linewidth"].with_systematic(width)
    details.update({"pass_difference_center": fa.value - fb.value,
                    "pass_difference_linewidth": wa.value - wb.value,
                    "drift_error_center": centre, "drift_error_linewidth": width})
    return True


def _model(t: np.ndarray, t0: float, width: float, eta: float, phi: float,
           coefficients: np.ndarray) -> np.ndarray:
    """S11 at window coordinates `t` (-1..1 across the window): the background polynomial
    times the resonance, centre `t0` and FWHM `width` in the same coordinates."""
    return np.asarray(_chebyshev(t, coefficients.size - 1) @ coefficients
                      * _resonance(t, (t0, width, eta, phi)), complex)


def _resonance(t: np.ndarray, theta: np.ndarray | tuple[float, ...]) -> np.ndarray:
    t0, width, eta, phi = theta
    return 1.0 - 2.0 * eta * np.exp(1j * phi) / (1.0 + 2j * (t - t0) / width)


def _chebyshev(t: np.ndarray, order: int) -> np.ndarray:
    return np.polynomial.chebyshev.chebvander(t, order)


def _background(t: np.ndarray, s: np.ndarray, theta: np.ndarray, order: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """The best background coefficients for resonance parameters `theta` (linear least
    squares) and the residual trace they leave."""
    design = _chebyshev(t, order) * _resonance(t, theta)[:, None]
    # Normal equations: the Chebyshev columns are well conditioned on -1..1.
    gram = design.conj().T @ design
    coefficients = np.linalg.solve(gram, design.conj().T @ s)
    return coefficients, s - design @ coefficients


def _search(t: np.ndarray, s: np.ndarray, theta0: np.ndarray, order: int) -> Any:
    """Variable-projection fit of (t0, width, eta_e, phi) at one background order."""
    def residual(theta: np.ndarray) -> np.ndarray:
        r = _background(t, s, theta, order)[1]
        return np.concatenate([r.real, r.imag])

    lower = np.array([-1.5, 1e-4, 0.0, -math.pi / 2])
    upper = np.array([1.5, 10.0, 1.0, math.pi / 2])
    start = np.clip(theta0, lower + 1e-9, upper - 1e-9)
    return least_squares(residual, start, bounds=(lower, upper), x_scale="jac")


def _choose_order(t: np.ndarray, s: np.ndarray, theta: np.ndarray) -> int:
    """The background order with the lowest BIC, n ln(RSS / n) + k ln n over the 2n real
    residuals, at resonance parameters `theta` (Schwarz 1978)."""
    n = 2 * t.size
    top = min(BACKGROUND_MAX_ORDER, _top_order(t.size))
    best, best_bic = 0, math.inf
    for order in range(top + 1):
        rss = float(np.sum(np.abs(_background(t, s, theta, order)[1]) ** 2))
        bic = n * math.log(max(rss, 1e-300) / n) + (4 + 2 * (order + 1)) * math.log(n)
        if bic < best_bic:
            best, best_bic = order, bic
    return best


def _top_order(points: int) -> int:
    """The highest background order `points` complex points leave residual degrees of
    freedom for (4 points of data per order, 8 for the resonance)."""
    return (points - 8) // 4


def _order_error(t: np.ndarray, s: np.ndarray, theta: np.ndarray, order: int) -> np.ndarray:
    """|(t0, width, eta_e) one background order higher - at `order`| (window units): the
    bias an `order` too low for the background leaves, a systematic error (module
    docstring). Zeros when no higher order fits the points, or its fit fails."""
    if order + 1 > _top_order(t.size):
        return np.zeros(3)
    try:
        res = _search(t, s, theta, order + 1)
    except (ValueError, np.linalg.LinAlgError):
        return np.zeros(3)
    if not res.success or not np.all(np.isfinite(res.x)):
        return np.zeros(3)
    return np.abs(np.asarray(res.x[:3]) - theta[:3])


def _start(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Start values (t0, width, eta_e, phi) from the deepest smoothed dip."""
    edge = max(t.size // 10, 2)
    a0 = complex(np.mean(np.concatenate([s[:edge], s[-edge:]])))
    if a0 == 0:
        a0 = 1.0
    dev = np.abs(s / a0 - 1.0)
    smooth = np.convolve(dev, np.ones(3) / 3, mode="same")  # one noisy point is not a dip
    i0 = int(np.argmax(smooth))
    depth = float(smooth[i0])
    half = np.flatnonzero(smooth > depth / 2)
    width = max(2.0 * half.size / t.size, 6.0 / t.size)
    return np.array([t[i0], width, min(max(depth / 2, 0.01), 0.99), 0.0])


def _fit(f: np.ndarray, s: np.ndarray, background_order: int = AUTO_ORDER
         ) -> tuple[dict[str, FitValue], dict[str, float], Fit] | None:
    # Work in window coordinates t = -1..1: the Jacobian's columns are then of similar
    # size, which the covariance inversion needs, and the Chebyshev basis is orthogonal.
    fc, half_span = float((f[0] + f[-1]) / 2), float(f[-1] - f[0]) / 2
    if not half_span > 0:
        return None
    t = (f - fc) / half_span
    try:
        theta = _start(t, s)
        if background_order == AUTO_ORDER:
            # A first fit under a moderate background finds the dip; the data then choose
            # the order, and the fit is redone at that order.
            res = _search(t, s, theta, min(2, _top_order(t.size)))
            order = _choose_order(t, s, res.x) if res.success else 0
            theta = res.x if res.success else theta
        else:
            order = background_order
        res = _search(t, s, theta, order)
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not res.success or not np.all(np.isfinite(res.x)):
        return None
    theta = res.x
    order_error = _order_error(t, s, theta, order) * np.array([half_span, half_span, 1.0])
    coefficients, r = _background(t, s, theta, order)
    phys = np.concatenate([[fc + theta[0] * half_span, theta[1] * half_span, theta[2],
                            theta[3], fc, half_span],
                           np.column_stack([coefficients.real, coefficients.imag]).ravel()])
    names = ("resonance_frequency", "linewidth", "eta_e", "fano_phase", "window_center",
             "window_half_span", *(f"background_{k}_{part}" for k in range(order + 1)
                                   for part in ("re", "im")))
    dof = 2 * f.size - (4 + 2 * (order + 1))
    if dof <= 0:
        return None
    rss = float(np.sum(np.abs(r) ** 2))
    s2 = rss / dof  # variance per quadrature
    # Unit weights: the residuals estimate the noise (docs/fitting.md#2-covariance-inflation).
    # The covariance is over every parameter, the background's too (the full Jacobian at
    # the optimum), so the resonance's errors carry what the background leaves uncertain.
    cov = _full_covariance(t, theta, coefficients) * s2
    scale = np.concatenate([[half_span, half_span, 1.0, 1.0],
                            np.ones(2 * (order + 1))])
    cov = cov * np.outer(scale, scale)
    full = np.zeros((phys.size, phys.size))
    fitted = [0, 1, 2, 3, *range(6, phys.size)]
    full[np.ix_(fitted, fitted)] = cov
    err = np.sqrt(np.clip(np.diag(full), 0.0, None))
    centre = complex(_chebyshev(np.zeros(1), order)[0] @ coefficients)
    directivity = float(theta[2]) * VNA_RESIDUAL_DIRECTIVITY / math.sqrt(3) \
        / max(abs(centre), 1e-12)
    values = {
        "resonance_frequency": FitValue.combined(phys[0], err[0], order_error[0], "Hz"),
        "linewidth": FitValue.combined(phys[1], err[1], order_error[1], "Hz"),
        "eta_e": FitValue.combined(float(theta[2]), float(err[2]),
                                   math.hypot(order_error[2], directivity), ""),
    }
    details = {
        # The background at the window's centre (the old constant background's place).
        "background_re": float(centre.real), "background_im": float(centre.imag),
        "background_order": float(order),
        # What the background's order adds to the systematic errors (module docstring).
        "order_error_center": float(order_error[0]),
        "order_error_linewidth": float(order_error[1]),
        "order_error_eta_e": float(order_error[2]),
        # eta_e's rectangular part (the directivity's bound / sqrt(3)): a bounded error,
        # never beyond sqrt(3) of it, so eta_e's pulls are not a normal's.
        "eta_e_directivity_error": float(directivity),
        "fano_phase": float(theta[3]), "fano_phase_stderr": float(err[3]),
        "noise_per_point": math.sqrt(2 * s2),  # complex, (E|n|^2)^(1/2)
        # Von Neumann ratio of the residuals: ~1 when they are white noise, well below 1
        # when the model misses a structure the data has.
        "residual_whiteness": float(np.sum(np.abs(np.diff(r)) ** 2)
                                    / (2 * np.sum(np.abs(r - r.mean()) ** 2))),
        "window_start": float(f[0]), "window_stop": float(f[-1]),
        "point_spacing": 2 * half_span / (f.size - 1), "points": float(f.size),
        "eta_e_at_bound": float(theta[2] <= 1e-6 or theta[2] >= 1 - 1e-6),
    }
    # The same fit in physical parameters, for the figure's band and residuals; the point
    # errors are the residuals' own scatter, so chi2 = dof by construction (the whiteness
    # above is this fit's test).
    model = s - r
    curve = Fit(names, phys, full, rss / s2, dof, f, s, model,
                np.full(f.size, math.sqrt(s2)), {"resonance_frequency": "Hz",
                                                 "linewidth": "Hz", "fano_phase": "rad",
                                                 "window_center": "Hz",
                                                 "window_half_span": "Hz"})
    return values, details, curve


def _full_covariance(t: np.ndarray, theta: np.ndarray, coefficients: np.ndarray
                     ) -> np.ndarray:
    """(J^T J)^-1 over (t0, width, eta_e, phi, then the coefficients' re, im pairs) of the
    model at the optimum, for unit noise per quadrature; the resonance's columns by central
    differences, the background's exactly (the model is linear in them)."""
    basis = _chebyshev(t, coefficients.size - 1)
    background = basis @ coefficients
    columns = []
    for i in range(4):
        step = np.zeros(4)
        step[i] = 1e-6 * max(abs(theta[i]), 1e-3)
        d = background * (_resonance(t, theta + step) - _resonance(t, theta - step)) \
            / (2 * step[i])
        columns.append(d)
    lorentz = _resonance(t, theta)
    for k in range(coefficients.size):
        columns.append(basis[:, k] * lorentz)
        columns.append(1j * basis[:, k] * lorentz)
    jac = np.array(columns).T
    real_jac = np.concatenate([jac.real, jac.imag])
    return np.asarray(np.linalg.inv(real_jac.T @ real_jac), float)


def _verdict(f: np.ndarray, values: dict[str, FitValue], details: dict[str, float]) -> Verdict:
    f0, kappa, eta = (values[k] for k in ("resonance_frequency", "linewidth", "eta_e"))
    start, stop = details["window_start"], details["window_stop"]
    if not (eta.stderr < math.inf and eta.value > DIP_SIGNIFICANCE * eta.stderr):
        return Verdict.bad(Reason.NO_SIGNAL, f"no resonance dip in the scan window "
                           f"{start / 1e9:.6g}-{stop / 1e9:.6g} GHz (dip depth eta_e = "
                           f"{eta}); move or widen the window")
    if not start <= f0.value <= stop:
        return Verdict.bad(Reason.NO_SIGNAL, f"no resonance dip in the scan window "
                           f"{start / 1e9:.6g}-{stop / 1e9:.6g} GHz: only a tail, the fit "
                           f"puts it at {f0.value / 1e9:.6g} GHz; centre the window there")
    if details["eta_e_at_bound"]:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"eta_e = {eta} sits at the edge of 0..1")
    spacing = details["point_spacing"]
    if kappa.value < MIN_POINTS_PER_LINEWIDTH * spacing:
        return Verdict.bad(Reason.TOO_FEW_POINTS, f"linewidth {kappa.value:.3g} Hz spans "
                           f"fewer than {MIN_POINTS_PER_LINEWIDTH} points ({spacing:.3g} Hz "
                           "apart); narrow the span or add points")
    if kappa.value > stop - start:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"linewidth {kappa.value:.3g} Hz is wider "
                           f"than the scan window ({stop - start:.3g} Hz); widen it")
    n = f.size
    whiteness = details["residual_whiteness"]
    # For white residuals the ratio is 1 with a standard deviation of about 1/sqrt(n).
    if whiteness < 1 - 5 / math.sqrt(n):
        return Verdict.bad(Reason.POOR_FIT, f"the residuals are structured (von Neumann "
                           f"ratio {whiteness:.2f}, white noise gives 1): the Lorentzian "
                           "does not describe this trace")
    return Verdict.ok(f"f0 = {f0}, linewidth = {kappa}, eta_e = {eta}")


def _set_window(vna: Any, start: float, stop: float) -> None:
    """The VNA's sweep from `start` to `stop` (Hz). The analyzer keeps start <= stop by
    moving the other end: set the end that keeps the order first, or the window would be
    clipped."""
    if start > vna.stop():
        vna.stop(stop)
        vna.start(start)
    else:
        vna.start(start)
        vna.stop(stop)


def locate_resonance(vna: Any, center: float, span: float, points: int = 201,
                     if_bandwidth: float = 1e3) -> tuple[FitValue, FitValue] | None:
    """One VNA sweep of `span` Hz around `center` (Hz), fitted as the scan's analysis fits
    one (`points` points at `if_bandwidth` Hz: 0.2 s with the defaults): the resonance's
    centre and linewidth (Hz) if the fit's verdict is good, else None. The quick re-centre
    of a step that holds a tone on a narrow, drifting mode (`transducer.bench.recentre_tone`);
    it stores nothing (the step records the tone it set)."""
    _set_window(vna, center - span / 2, center + span / 2)
    vna.points(int(points))
    vna.if_bandwidth(if_bandwidth)
    freqs, s = vna.sweep()
    f = np.asarray(freqs, float)
    fit = _fit(f, np.asarray(s, complex))
    if fit is None:
        return None
    values, details, _ = fit
    if not _verdict(f, values, details).good:
        return None
    return values["resonance_frequency"], values["linewidth"]


class MicrowaveResonanceScan(LabSequence[ResonanceScanOptions]):
    """VNA scan of the transducer's microwave mode (the station's `TransducerSetup` VNA).

    Proposes ``mw_resonance_frequency`` and ``mw_linewidth`` (Hz) when the verdict is good.
    """

    name: ClassVar[str] = "microwave_resonance_scan"
    options_class: ClassVar[type] = ResonanceScanOptions
    analysis_class: ClassVar[type[Analysis]] = MicrowaveResonanceAnalysis

    def dataset_parameters(self) -> list[DatasetParameter]:
        columns = [DatasetParameter("frequency", "Hz", "Frequency"),
                   DatasetParameter("s11", "", "S11 (linear, complex)", ("frequency",),
                                    "complex")]
        if self.options.passes == 2:
            columns.append(DatasetParameter("sweep_pass", "", "Pass (0 up, 1 down)",
                                            ("frequency",)))
        return columns

    def frequencies(self) -> np.ndarray:
        options = self.options
        return np.linspace(options.center - options.span / 2,
                           options.center + options.span / 2, options.points)

    def steps(self) -> list[Step]:
        chunks = np.array_split(self.frequencies(), self.options.segments)
        order = [(0, i) for i in range(len(chunks))]
        if self.options.passes == 2:  # then down: the same segments in reverse order
            order += [(1, i) for i in reversed(range(len(chunks)))]
        two = self.options.passes == 2
        return [Step(k, f"segment {i + 1}/{len(chunks)}{', down' if p else ''} "
                     f"({chunks[i][0] / 1e9:.6g}-{chunks[i][-1] / 1e9:.6g} GHz)",
                     {"start": float(chunks[i][0]), "stop": float(chunks[i][-1]),
                      "points": float(chunks[i].size), **({"pass": float(p)} if two else {})})
                for k, (p, i) in enumerate(order)]

    def prepare(self, station: LabStation) -> None:
        self._vna(station).if_bandwidth(self.options.if_bandwidth)

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        vna = self._vna(station)
        _set_window(vna, step.settings["start"], step.settings["stop"])
        vna.points(int(step.settings["points"]))
        total: np.ndarray | None = None
        freqs = np.empty(0)
        for _ in range(self.options.averages):
            freqs, s = vna.sweep()
            total = s if total is None else total + s
        assert total is not None  # averages >= 1
        out = {"frequency": np.asarray(freqs, float),
               "s11": np.asarray(total / self.options.averages, complex)}
        if self.options.passes == 2:
            out["sweep_pass"] = np.full(out["frequency"].size, step.settings["pass"])
        return out

    @staticmethod
    def _vna(station: LabStation) -> Any:
        if station.setup is None:
            raise ValueError("the station has no transducer_setup: MicrowaveResonanceScan "
                             "needs its VNA (add qnetlab.transducer_setup to the lab config)")
        return station.setup.vna
