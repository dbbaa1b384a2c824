"""`MicrowaveResonanceScan`: find the transducer's microwave resonance with the VNA (the role's
`sweep()` only, in `segments` software-averaged sweeps so an interrupted scan keeps its
finished segments), fitting S11(f) = a (1 - 2 eta_e / (1 + 2i (f - f0) / kappa)) to the
complex trace with the background `a` free; the noise is estimated from the residuals.
Derivation: docs/transducer.md#5-how-the-characterization-measures-it (step 1).
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
from .fitting import Fit, scale_covariance
from .framework import DatasetParameter, LabSequence, Step

MIN_POINTS = 20
"""Fewer points than this cannot support a 5-parameter complex fit with a verdict."""
MIN_POINTS_PER_LINEWIDTH = 4
"""A linewidth sampled by fewer points is not resolved."""
DIP_SIGNIFICANCE = 5.0
"""eta_e must exceed this many standard errors for a dip to count as found."""


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

    def __post_init__(self) -> None:
        if not (self.span > 0 and self.center - self.span / 2 > 0):
            raise ValueError(f"span {self.span:g} Hz must be > 0 and fit above 0 Hz around "
                             f"center {self.center:g} Hz")
        if self.segments < 1 or self.points < 2 * self.segments:
            raise ValueError(f"need segments >= 1 and points >= 2 * segments, got "
                             f"{self.points} points in {self.segments} segments")
        if self.if_bandwidth <= 0 or self.averages < 1:
            raise ValueError("if_bandwidth must be > 0 Hz and averages >= 1")


class MicrowaveResonanceAnalysis(CurveAnalysis):
    """Complex Lorentzian fit of S11: resonance frequency, linewidth (FWHM), eta_e (own
    bounded optimiser `_fit` on the complex trace; the figure shows |S11|)."""

    sequence = "microwave_resonance_scan"
    x_column = "frequency"
    params = (Param("resonance_frequency", "Hz"), Param("linewidth", "Hz"), Param("eta_e"),
              Param("background_re"), Param("background_im"))
    min_points = MIN_POINTS
    figure_name = "s11"
    x_label, y_label, x_scale = "frequency (GHz)", "|S11|", 1e9

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        return _model(x, p[0], p[1], p[2], complex(p[3], p[4]))

    def load(self, run: StoredRun) -> CurveData | Verdict:
        f = np.asarray(run.data.get("frequency", []), float)
        s = np.asarray(run.data.get("s11", []), complex)
        order = np.argsort(f, kind="stable")
        f, s = f[order], s[order]
        # Point-to-point differences estimate the noise without a model (the trace is
        # smooth on the scale of one point spacing when the linewidth is resolved).
        noise = float(np.sqrt(np.mean(np.abs(np.diff(s)) ** 2) / 2))
        return CurveData(f, s, np.full(f.size, noise), {"noise_estimate": noise})

    def no_signal(self, data: CurveData) -> str:
        if np.median(np.abs(data.y)) < 5 * data.details["noise_estimate"]:
            return "no reflected signal above the receiver noise: check the VNA output and " \
                   "the line"
        return ""

    def fit(self, data: CurveData) -> Fit | Verdict:
        fit = _fit(data.x, data.y)
        if fit is None:
            return Verdict.bad(Reason.POOR_FIT, "the fit did not converge")
        data.extra["values"], data.extra["details"], curve = fit
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


def _model(f: np.ndarray, f0: float, kappa: float, eta: float, a: complex) -> np.ndarray:
    return a * (1.0 - 2.0 * eta / (1.0 + 2j * (f - f0) / kappa))


def _fit(f: np.ndarray, s: np.ndarray
         ) -> tuple[dict[str, FitValue], dict[str, float], Fit] | None:
    # Work in units of the span around the window centre: the Jacobian's columns are then
    # of similar size, which the covariance inversion needs.
    fc, span = float((f[0] + f[-1]) / 2), float(f[-1] - f[0])
    x = (f - fc) / span
    edge = max(f.size // 10, 2)
    a0 = complex(np.mean(np.concatenate([s[:edge], s[-edge:]])))
    if a0 == 0:
        a0 = 1.0
    dev = np.abs(s / a0 - 1.0)
    smooth = np.convolve(dev, np.ones(3) / 3, mode="same")  # one noisy point is not a dip
    i0 = int(np.argmax(smooth))
    depth = float(smooth[i0])
    half = np.flatnonzero(smooth > depth / 2)
    kappa0 = max(float(half.size) / f.size, 3.0 / f.size)
    p0 = np.array([x[i0], kappa0, min(max(depth / 2, 0.01), 0.99), a0.real, a0.imag])

    def residual(p: np.ndarray) -> np.ndarray:
        r = p[3] * (1 + 0j) + 1j * p[4]
        m = r * (1.0 - 2.0 * p[2] / (1.0 + 2j * (x - p[0]) / p[1]))
        d = m - s
        return np.concatenate([d.real, d.imag])

    lower = [-1.5, 1e-4, 0.0, -np.inf, -np.inf]
    upper = [1.5, 10.0, 1.0, np.inf, np.inf]
    try:
        res = least_squares(residual, p0, bounds=(lower, upper), x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not res.success or not np.all(np.isfinite(res.x)):
        return None
    p = res.x
    dof = res.fun.size - p.size
    s2 = float(2 * res.cost / dof)  # variance per quadrature
    try:
        # Unit weights: the residuals estimate the noise (docs/fitting.md#2-covariance-inflation).
        cov = scale_covariance(np.linalg.inv(res.jac.T @ res.jac), 2 * res.cost, dof,
                               shrink=True)
        err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    except np.linalg.LinAlgError:
        cov = np.diag(np.full(p.size, math.inf))
        err = np.full(p.size, math.inf)
    r = res.fun[: f.size] + 1j * res.fun[f.size:]
    values = {
        "resonance_frequency": FitValue(fc + p[0] * span, err[0] * span, "Hz"),
        "linewidth": FitValue(p[1] * span, err[1] * span, "Hz"),
        "eta_e": FitValue(float(p[2]), float(err[2]), ""),
    }
    details = {
        "background_re": float(p[3]), "background_im": float(p[4]),
        "noise_per_point": math.sqrt(2 * s2),  # complex, (E|n|^2)^(1/2)
        # Von Neumann ratio of the residuals: ~1 when they are white noise, well below 1
        # when the model misses a structure the data has.
        "residual_whiteness": float(np.sum(np.abs(np.diff(r)) ** 2)
                                    / (2 * np.sum(np.abs(r - r.mean()) ** 2))),
        "window_start": float(f[0]), "window_stop": float(f[-1]),
        "point_spacing": span / (f.size - 1), "points": float(f.size),
        "eta_e_at_bound": float(p[2] <= 1e-6 or p[2] >= 1 - 1e-6),
    }
    # The same fit in physical parameters, for the figure's band and residuals; the point
    # errors are the residuals' own scatter, so chi2 = dof by construction (the whiteness
    # above is this fit's test).
    scale = np.diag([span, span, 1.0, 1.0, 1.0])
    phys = np.array([fc + p[0] * span, p[1] * span, p[2], p[3], p[4]])
    model = _model(f, phys[0], phys[1], phys[2], complex(p[3], p[4]))
    curve = Fit(("resonance_frequency", "linewidth", "eta_e", "background_re",
                 "background_im"), phys, scale @ cov @ scale, 2 * res.cost / s2, dof, f, s, model,
                np.full(f.size, math.sqrt(s2)), {"resonance_frequency": "Hz", "linewidth": "Hz"})
    return values, details, curve


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


class MicrowaveResonanceScan(LabSequence[ResonanceScanOptions]):
    """VNA scan of the transducer's microwave mode (the station's `TransducerSetup` VNA).

    Proposes ``mw_resonance_frequency`` and ``mw_linewidth`` (Hz) when the verdict is good.
    """

    name: ClassVar[str] = "microwave_resonance_scan"
    options_class: ClassVar[type] = ResonanceScanOptions
    analysis_class: ClassVar[type[Analysis]] = MicrowaveResonanceAnalysis

    def dataset_parameters(self) -> list[DatasetParameter]:
        return [DatasetParameter("frequency", "Hz", "Frequency"),
                DatasetParameter("s11", "", "S11 (linear, complex)", ("frequency",),
                                 "complex")]

    def frequencies(self) -> np.ndarray:
        options = self.options
        return np.linspace(options.center - options.span / 2,
                           options.center + options.span / 2, options.points)

    def steps(self) -> list[Step]:
        chunks = np.array_split(self.frequencies(), self.options.segments)
        return [Step(i, f"segment {i + 1}/{len(chunks)} ({c[0] / 1e9:.6g}-{c[-1] / 1e9:.6g} "
                     "GHz)", {"start": float(c[0]), "stop": float(c[-1]),
                              "points": float(c.size)})
                for i, c in enumerate(chunks)]

    def prepare(self, station: LabStation) -> None:
        self._vna(station).if_bandwidth(self.options.if_bandwidth)

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        vna = self._vna(station)
        start, stop = step.settings["start"], step.settings["stop"]
        # The analyzer keeps start <= stop by moving the other end: set the end that keeps
        # the order first, or the window would be clipped.
        if start > vna.stop():
            vna.stop(stop)
            vna.start(start)
        else:
            vna.start(start)
            vna.stop(stop)
        vna.points(int(step.settings["points"]))
        total: np.ndarray | None = None
        freqs = np.empty(0)
        for _ in range(self.options.averages):
            freqs, s = vna.sweep()
            total = s if total is None else total + s
        assert total is not None  # averages >= 1
        return {"frequency": np.asarray(freqs, float),
                "s11": np.asarray(total / self.options.averages, complex)}

    @staticmethod
    def _vna(station: LabStation) -> Any:
        if station.setup is None:
            raise ValueError("the station has no transducer_setup: MicrowaveResonanceScan "
                             "needs its VNA (add qnetlab.transducer_setup to the lab config)")
        return station.setup.vna
