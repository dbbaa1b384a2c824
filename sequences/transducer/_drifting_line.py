"""A Lorentzian line whose height and centre drift during the scan, read through a meter
whose current ranges have their own gains: the conversion band's fit (`bandwidth`).

Why: the converted light follows the pump's detuning from the drifting optical resonance
(and the photorefractive shift, and the pump's delivery), so the band's height changes by up
to ~2 % during a five-second scan, smoothly in time but not linearly (the drift's slope
turns); the microwave resonance moves by hundreds of Hz. A fit with one height per pass
cancels only the linear part of such a drift and leaves the rest in the centre, kHz on a
10 MHz band, at residuals that look like noise in frequency order. Here the height is
exp(polynomial in time) and the centre linear in time over the scan. The interleaved scan
crosses the band once upwards and once downwards (`efficiency_fits.interleaved`): the part of
the height's drift odd in time about mid-scan differs between the passes at each frequency and
is measured; the even part changes both alike, is told from a distortion of the line only by
the Lorentzian shape, and its correlation with the centre widens the centre's error (what a
drift that is not linear costs). The reported centre is the one at mid-scan (the mean over the
scan), the height the scan's mean.

Auto-ranging reads the peak and the flanks on different current ranges, each with its own
fixed gain error (`meter_shape`): a step in the line, the same in both passes, which a
scatter estimate would count as noise at every point (the centre's error several times too
large). The gain of every range but the one holding most of the line is a free parameter
here (the step is measured, to the meter noise); the meter's systematic error is then what
is left (the linearity), propagated by `bandwidth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import legendre
from scipy.optimize import least_squares

from qnetlab.sequences.fitting import scale_covariance

from .efficiency_fits import fit_lorentzian

HEIGHT_ORDER = 4
"""Degree of the polynomial in time of the log height: the drifts are smooth over a scan (a
few seconds of processes with correlation times of an hour, whose slope turns now and then);
a quartic follows one turn of the slope (on the realistic lab degrees 4 and 5 gave the same
coverage, 3 too little). What it leaves is correlated in time and counted by the residuals'
lag-1 correlation in acquisition order."""
CENTRE_ORDER = 1
"""Degree of the polynomial in time of the centre: the microwave resonance drifts by ~1 kHz
rms in a scan (two-level-system diffusion). A bend of it (a rate that differs between the
passes) is degenerate with the width: `bandwidth` states it as an error instead."""


@dataclass(frozen=True)
class DriftingLineFit:
    """The line at mid-scan: centre, FWHM and height, with one-sigma errors (x units)."""

    center: float
    center_stderr: float
    fwhm: float
    fwhm_stderr: float
    peak: float
    peak_stderr: float
    chi2_reduced: float
    points: int
    free: int
    """Parameters fitted (dof = points - free)."""
    curve: np.ndarray
    """The fitted curve at the points, in their order."""
    centre_change: float = 0.0
    """How far the fitted centre moved from the scan's start to its end (x units)."""
    height_change: float = 0.0
    """The fitted height's range over the scan, relative to its mean."""


def time_axis(n: int) -> np.ndarray:
    """Acquisition index 0..n-1 mapped onto -1..1 (the points are evenly spaced in time)."""
    return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(n)


def fit_drifting_line(x: np.ndarray, y: np.ndarray, sigma: np.ndarray | float,
                      tau: np.ndarray, gains: Sequence[np.ndarray] = (),
                      height_order: int = HEIGHT_ORDER, centre_order: int = CENTRE_ORDER,
                      centre_offset: np.ndarray | None = None) -> DriftingLineFit | None:
    """Weighted least squares of ``y = exp(sum_k a_k P_k(tau)) A / (1 + (2 (x - c(tau)) /
    w)^2) + sum_r g_r gains[r]`` with `tau` each point's time on -1..1 (`time_axis`), P_k
    Legendre polynomials (k = 1..height_order, zero mean over the scan), c(tau) = c_0 +
    sum_k c_k P_k(tau) (k = 1..centre_order), and each `gains` pattern the change of every
    point's y per unit gain of one meter range (free: `g_r`). Errors from the covariance
    scaled by the residual chi^2 (both ways: the point errors are a noise estimate). None if
    the fit fails or has fewer than 3 degrees of freedom. `centre_offset` (x units, per
    point): a fixed motion of the centre added to c(tau) (`centre_drift_errors`)."""
    x, y, tau = (np.asarray(a, float) for a in (x, y, tau))
    offset = np.zeros_like(x) if centre_offset is None else np.asarray(centre_offset, float)
    sig = np.broadcast_to(np.asarray(sigma, float), x.shape)
    patterns = [np.asarray(g, float) for g in gains]
    free = 3 + height_order + centre_order + len(patterns)
    if x.size - free < 3:
        return None
    start = fit_lorentzian(x, y, sig)
    if start is None:
        return None
    c0, w0, a0 = start.center, start.fwhm, start.peak
    # Legendre basis without P_0 (the height's and centre's means are A and c_0).
    ph = legendre.legvander(tau, height_order)[:, 1:]
    pc = legendre.legvander(tau, centre_order)[:, 1:]
    # Gains in units of the start peak: the Jacobian's columns of similar size.
    scaled = [g * a0 for g in patterns]
    nh, nc = height_order, centre_order

    def unpack(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centre = c0 + offset + w0 * (p[0] + pc @ p[3:3 + nc])
        height = a0 * p[2] * np.exp(ph @ p[3 + nc:3 + nc + nh])
        gain = sum((p[3 + nc + nh + r] * g for r, g in enumerate(scaled)),
                   np.zeros_like(x))
        return centre, height, gain

    def curve(p: np.ndarray) -> np.ndarray:
        centre, height, gain = unpack(p)
        return np.asarray(height / (1 + 4 * ((x - centre) / (p[1] * w0)) ** 2) + gain, float)

    def residual(p: np.ndarray) -> np.ndarray:
        return (curve(p) - y) / sig

    p0 = np.zeros(free)
    p0[1] = p0[2] = 1.0
    try:
        res = least_squares(residual, p0, x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not res.success or not np.all(np.isfinite(res.x)) or not res.x[1] > 0:
        return None
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(cov)):
        return None
    dof = x.size - free
    chi2 = float(2 * res.cost / dof)
    cov = scale_covariance(cov, 2 * res.cost, dof, shrink=True)
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    p = res.x
    centre, height, _ = unpack(p)
    centre = centre - offset
    return DriftingLineFit(c0 + w0 * p[0], w0 * err[0], w0 * p[1], w0 * err[1], a0 * p[2],
                           a0 * err[2], chi2, int(x.size), free, curve(p),
                           float(centre[np.argmax(tau)] - centre[np.argmin(tau)]),
                           float(np.ptp(height) / np.mean(height)))


def free_gain_patterns(patterns: Sequence[tuple[np.ndarray, float]], noise: np.ndarray
                       ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, float]]]:
    """Split the meter's range-gain patterns (`meter_shape.gain_patterns` without its last,
    the linearity) into those to fit and those left as systematics: every range but the one
    that carries most of the line is fitted when it moves at least two points by more than
    their `noise` per per cent of gain (else its gain is not measurable and stays a
    systematic); the reference range's gain is the line's overall scale."""
    if not patterns:
        return [], []
    sizes = [float(np.sum(np.abs(d))) for d, _ in patterns]
    reference = int(np.argmax(sizes))
    fitted, kept = [], []
    for k, (d, sd) in enumerate(patterns):
        measurable = int(np.sum(np.abs(d) * 0.01 > np.asarray(noise, float))) >= 2
        if k != reference and measurable:
            fitted.append(d)
        else:
            kept.append((d, sd))
    return fitted, kept
