"""`ConversionBandwidthScan`: conversion efficiency against the microwave tone's frequency.

At a fixed pump (power and detuning), the microwave tone steps across the microwave
resonance; at each frequency the power meter reads the optical output with the tone on and
off, and eta follows from the difference (`efficiency_fits`, calibration from the run's
station snapshot; the photon flux of the tone is computed at each frequency). The
conversion band is the microwave mode's Lorentzian: the fit gives its FWHM (the conversion
bandwidth), its centre and the peak efficiency, errors from the covariance of the
noise-weighted fit scaled by the residual chi^2 (with a relative excess scatter when the meter
noise does not explain it) and inflated for the residuals' lag-1 correlation in acquisition
order.

The scan runs up on every other frequency and down on the ones between. The band's height
drifts during it (the pump's detuning from the drifting optical resonance, its delivery) and
its centre moves (the microwave mode's diffusion): the fit (`_drifting_line`) gives the height
a smooth drift in time and the centre a linear one, separable from the band's shape because
the two passes cross it at different times, and reports the band at mid-scan; the passes'
difference is kept in the details. The power meter's range steps are fitted too (a gain per
range but the band's main one). Systematic errors: the centre carries the source's timebase
accuracy (the scan's axis is the source's setting); width and centre carry the sensor's
linearity (and any range too faint for its gain to be fitted), propagated through the band's
own fit. Derivation: docs/fitting.md#drift-seen-by-scanning-both-ways.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from qnetlab.instruments.station import LabStation
from qnetlab.sequences.analysis import Analysis, FitValue, Reason, Verdict
from qnetlab.sequences.curve_analysis import CurveAnalysis, CurveData, Param
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import Fit, chi2_bound
from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step

from ._drifting_line import (
    CENTRE_ORDER,
    HEIGHT_ORDER,
    DriftingLineFit,
    fit_drifting_line,
    free_gain_patterns,
    time_axis,
)
from .bench import (
    OFF,
    ON,
    MeterState,
    drive_readback,
    prepare_drive,
    read_on_off,
    require_setup,
    restore_bench,
    switch_pump_on,
)
from .efficiency_fits import (
    DATA_SHEET_COVERAGE,
    Calibration,
    ExcessScatter,
    column,
    fit_lorentzian,
    fit_lorentzian_with_scatter,
    fit_with_excess_scatter,
    full_conversion_power,
    interleaved,
    passes,
    usable_efficiency_points,
)
from .meter_shape import GAIN_STEP, MeterReadings, gain_patterns

MIN_POINTS = 10
MIN_POINTS_PER_LINEWIDTH = 4
"""A bandwidth sampled by fewer points is not resolved."""
SIGNAL_SIGMAS = 6.0
"""The highest eta must exceed its noise by this much (see optical_resonance.SIGNAL_SIGMAS)."""


@dataclass(frozen=True)
class ConversionBandwidthOptions:
    """Options of `ConversionBandwidthScan` (SI units; microwave power in dBm)."""

    center: float = 8.0e9
    """Centre of the microwave scan, Hz: the microwave resonance (the VNA scan's result)."""
    span: float = 60e6
    """Width of the microwave scan, Hz (about 6 microwave linewidths is right)."""
    points: int = 81
    """Microwave frequencies over the span."""
    pump_power: float = 4e-3
    """W at the laser output, fixed during the scan."""
    pump_detuning: float = 0.0
    """Hz from the setup's optical resonance, fixed during the scan."""
    mw_power: float | None = None
    """dBm at the source; None: the upper soft limit (the most converted light)."""
    averaging: int = 10
    """Power-meter samples per reading (~3 ms each): noise 50 pW / sqrt(averaging). Few and
    fast: the converted light is far above the noise, and the optical resonance drifts
    (tens of MHz an hour), so a slow scan would see the band move under it."""
    segments: int = 8
    """Steps the scan is split into (progress and interruption granularity)."""

    def __post_init__(self) -> None:
        if not (self.span > 0 and self.center - self.span / 2 > 0):
            raise ValueError(f"span {self.span:g} Hz must be > 0 and fit above 0 Hz around "
                             f"center {self.center:g} Hz")
        if self.points < MIN_POINTS or self.segments < 1 or self.points < self.segments:
            raise ValueError(f"need points >= {MIN_POINTS} and >= segments >= 1, got "
                             f"{self.points} points in {self.segments} segments")
        if not self.pump_power > 0:
            raise ValueError(f"pump_power must be > 0 W, got {self.pump_power:g}")
        if not 1 <= self.averaging <= 10_000:
            raise ValueError(f"averaging must be 1..10000 samples, got {self.averaging}")

    def frequencies(self) -> np.ndarray:
        """Hz, rounded to whole Hz: what the source reads back exactly (a set value it
        reports rounded would put a wrong abscissa under a narrow band's steep flanks)."""
        return np.round(np.linspace(self.center - self.span / 2, self.center + self.span / 2,
                                    self.points))

    def acquisition_order(self) -> np.ndarray:
        """`frequencies` in the order they are measured: up on every other frequency, then
        down on the ones between, so a drift of the resonances during the scan shows as a
        difference between the passes, which the analysis counts
        (`efficiency_fits.interleaved`)."""
        return interleaved(self.frequencies())


MW_SOURCE_FREQUENCY_ACCURACY = 1e-7
"""+-fraction, the microwave source's frequency accuracy (Keysight N5183B data sheet,
standard timebase a year after calibration): the scan's axis is the source's setting, so the
fitted centre carries it as a systematic (800 Hz at 8 GHz: invisible beside a 10 MHz band,
dominant for a 20 kHz one); the width, a difference of frequencies, does not."""


def timebase_relative_error() -> float:
    """Relative one-sigma systematic error of the conversion centre from the source's
    timebase: `MW_SOURCE_FREQUENCY_ACCURACY` read as k = 2 (`DATA_SHEET_COVERAGE`)."""
    return MW_SOURCE_FREQUENCY_ACCURACY / DATA_SHEET_COVERAGE


class ConversionBandwidthAnalysis(CurveAnalysis):
    """Lorentzian fit of eta against the microwave frequency, its height and centre drifting
    in time (`_drifting_line.fit_drifting_line`; the verdict judges chi2 by the meter-noise
    bound)."""

    sequence = "conversion_bandwidth_scan"
    uses_partial_steps = True
    """Every row is one complete on/off reading at one mw frequency."""
    x_column = "mw_frequency"
    params = (Param("conversion_bandwidth", "Hz"), Param("conversion_center_frequency", "Hz"),
              Param("peak_efficiency"))
    min_points = MIN_POINTS
    figure_name = "bandwidth"
    y_label = "eta"

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        width, center, peak = p
        return peak / (1 + (2 * (np.asarray(x, float) - center) / width) ** 2)

    def load(self, run: StoredRun) -> CurveData | Verdict:
        f = column(run, "mw_frequency")
        points = usable_efficiency_points(run)
        if isinstance(points, Verdict):
            return points
        order = np.argsort(f, kind="stable")
        up = passes(f)
        cal = Calibration.from_run(run)
        full = full_conversion_power(run.data["mw_power"], run.data["mw_frequency"],
                                     run.data["pump_wavelength"], cal)
        readings = MeterReadings(column(run, ON)[order], column(run, OFF)[order],
                                 np.asarray(full, float)[order])
        f, eta, noise = f[order], points.eta[order], points.noise[order]
        spacing = float(np.ptp(f)) / (f.size - 1)
        # The peak efficiency carries eta's scale from the line losses; width and centre
        # do not depend on it.
        scale_error = cal.efficiency_relative_error
        return CurveData(f, eta, noise, {"meter_noise": points.meter_noise,
                                         "point_spacing": spacing,
                                         "efficiency_scale_relative_error": scale_error},
                         {"bandwidth": {"mw_frequency (Hz)": f.tolist(), "eta": eta.tolist(),
                                        "eta_stderr": noise.tolist()}},
                         {"noise_samples": points.noise_samples,
                          "up_pass": None if up is None else up[order],
                          # each point's time on -1..1 (rows are stored as measured)
                          "tau": time_axis(f.size)[order],
                          "readings": readings},
                         # width and centre get the meter's shape errors in `fit`
                         systematic={"peak_efficiency": scale_error})

    def no_signal(self, data: CurveData) -> str:
        f, eta, noise = data.x, data.y, data.sigma
        assert noise is not None
        best = int(np.argmax(eta / noise))
        if eta[best] < SIGNAL_SIGMAS * noise[best]:
            return (f"no converted light above the noise at {f[0] / 1e9:.6g}.."
                    f"{f[-1] / 1e9:.6g} GHz: check the pump (on the optical resonance?) and "
                    "the microwave window")
        return ""

    def x_axis(self, data: CurveData) -> tuple[float, float, str]:
        ref = float(np.round(np.mean(data.x))) if data.x.size else 0.0
        return ref, 1e6, f"microwave frequency - {ref / 1e9:.9g} GHz (MHz)"

    def fit(self, data: CurveData) -> Fit | Verdict:
        assert data.sigma is not None
        f_ref = float(np.round(np.mean(data.x)))
        x, y, up = data.x - f_ref, data.y, data.extra["up_pass"]
        tau = data.extra["tau"]
        # Scanned up and down, the band's height and centre may drift in time (separable
        # from its shape); scanned one way, time is frequency and they may not.
        patterns = gain_patterns(data.extra["readings"])
        gains, kept = free_gain_patterns(patterns[:-1], data.sigma)
        orders = _drift_orders(data.x.size, len(gains)) if up is not None else (0, 0)
        kept.append(patterns[-1])  # the sensor's linearity: a systematic
        # In acquisition order: the residuals' lag-1 correlation then measures what the
        # drift model leaves (slow, so neighbours in time alike), and inflates the errors.
        acq = np.argsort(tau, kind="stable")

        def fit_once(sig: np.ndarray, shift: np.ndarray | None = None) -> DriftingLineFit | None:
            y_acq = y[acq] if shift is None else (y + shift)[acq]
            return fit_drifting_line(x[acq], y_acq, sig, tau[acq], [g[acq] for g in gains],
                                     *orders)

        free = 3 + sum(orders) + len(gains)
        bound = chi2_bound(data.x.size - free, data.extra["noise_samples"])
        fit, sigma_acq, scatter = fit_with_excess_scatter(
            fit_once, lambda f: f.curve, lambda f: f.chi2_reduced, y[acq], data.sigma[acq],
            bound)
        if fit is None:
            # A window beside the band has no drift to be had from its tail: say so if the
            # plain fit (one line per pass) puts the centre outside.
            plain = fit_lorentzian_with_scatter(x, y, data.sigma, bound, up=up,
                                                correlated=False)[0] or fit_lorentzian(
                                                    x, y, data.sigma)
            if plain is not None and not x.min() <= plain.center <= x.max():
                return _tail_verdict(f_ref + plain.center)
            edge = _rising_edge(x, y)
            if edge is not None:  # no fit at all, but the light peaks at an edge: a flank
                return _tail_verdict(f_ref + edge, fitted=False)
            return Verdict.bad(Reason.POOR_FIT, "the Lorentzian fit did not converge")
        sigma = np.empty_like(sigma_acq)
        sigma[acq] = sigma_acq
        k = scatter.stderr_factor
        bend = _centre_bend_errors(fit, tau[acq], lambda offset: fit_drifting_line(
            x[acq], y[acq], sigma_acq, tau[acq], [g[acq] for g in gains], *orders,
            centre_offset=offset)) if up is not None else (0.0, 0.0)
        data.extra["stderr"] = (math.hypot(fit.fwhm_stderr * k, bend[0]),
                                math.hypot(fit.center_stderr * k, bend[1]), fit.peak_stderr * k)
        data.extra["chi2_reduced"] = fit.chi2_reduced
        data.extra["scatter"] = scatter
        data.extra["drift"] = {"fitted_range_gains": float(len(gains)),
                               "centre_change": fit.centre_change,
                               "drift_error_fwhm": bend[0], "drift_error_center": bend[1],
                               "height_change": fit.height_change,
                               **_pass_differences(x, y, sigma, up)}
        width_sys, centre_sys = _shape_errors(
            lambda shift: fit_once(sigma_acq, shift), fit, kept)
        data.systematic["conversion_bandwidth"] = width_sys / abs(fit.fwhm)
        data.systematic["conversion_center_frequency"] = math.hypot(
            timebase_relative_error(), centre_sys / abs(f_ref + fit.center))
        data.extra["meter_shape"] = {"meter_shape_error_fwhm": width_sys,
                                     "meter_shape_error_center": centre_sys}
        p = np.array([fit.fwhm, f_ref + fit.center, fit.peak])
        # Only the errors are kept: the band is drawn from the diagonal.
        cov = np.diag(np.square(data.extra["stderr"]))
        dof = fit.points - fit.free
        return Fit(tuple(x.name for x in self.params), p, cov, fit.chi2_reduced * dof, dof,
                   data.x, data.y, self.model(data.x, *p), sigma,
                   {x.name: x.unit for x in self.params})

    def values(self, fit: Fit, data: CurveData) -> dict[str, FitValue]:
        return {x.name: FitValue(float(v), float(e), x.unit) for x, v, e in
                zip(self.params, fit.params, data.extra["stderr"], strict=True)}

    def fit_details(self, fit: Fit, data: CurveData) -> dict[str, float]:
        scatter = data.extra["scatter"]
        return {"chi2_reduced": data.extra["chi2_reduced"], **data.extra["drift"],
                **data.extra["meter_shape"],
                "relative_scatter": scatter.relative,
                "residual_correlation": scatter.correlation,
                "variance_inflation": scatter.inflation}

    def judge(self, fit: Fit, data: CurveData, values: dict[str, FitValue]) -> Verdict:
        spacing = float(np.ptp(data.x)) / (data.x.size - 1)
        return _verdict(values, data.x, spacing, data.extra["chi2_reduced"],
                        chi2_bound(fit.dof, data.extra["noise_samples"]),
                        data.extra["scatter"])


def _drift_orders(points: int, gains: int) -> tuple[int, int]:
    """(height, centre) polynomial degrees of the drift for a scan of `points` with `gains`
    fitted range gains: `HEIGHT_ORDER`, `CENTRE_ORDER`, fewer when a short scan could not
    keep a third of its points (at least 3) as degrees of freedom."""
    room = max(points - 3 - gains - max(3, points // 3), 0)
    centre = min(CENTRE_ORDER, room)
    return min(HEIGHT_ORDER, room - centre), centre


def _centre_bend_errors(fit: DriftingLineFit, tau: np.ndarray,
                        refit: Callable[[np.ndarray], DriftingLineFit | None]
                        ) -> tuple[float, float]:
    """(width, centre) errors, Hz, from a bend of the centre's drift the fit cannot see: a
    drift rate that differs between the passes' crossings of the band stretches one pass's
    line and compresses the other's unequally, which is a change of width (a quadratic
    centre in time is degenerate with it). Taken as the rate changing by its own mean size
    (the fitted `centre_change` over the scan) between the crossings (tau = -1/2, +1/2): the
    shift of a refit with that bend, 0.5 P_2(tau) |centre_change| / 3 (its rate 3 c_2 tau
    differs by |centre_change| / 2 per unit tau between them)."""
    c2 = abs(fit.centre_change) / 2 / 3
    moved = refit(c2 * (1.5 * tau**2 - 0.5))
    if moved is None:
        return 0.0, 0.0
    return abs(moved.fwhm - fit.fwhm), abs(moved.center - fit.center)


def _pass_differences(x: np.ndarray, y: np.ndarray, sigma: np.ndarray,
                      up: np.ndarray | None) -> dict[str, float]:
    """The up pass's centre and width less the down pass's (each fitted alone), for the
    record: how far the band moved between the passes ({} if not interleaved)."""
    if up is None:
        return {}
    a = fit_lorentzian(x[up], y[up], sigma[up])
    b = fit_lorentzian(x[~up], y[~up], sigma[~up])
    if a is None or b is None:
        return {}
    return {"pass_difference_center": a.center - b.center,
            "pass_difference_fwhm": a.fwhm - b.fwhm}


def _shape_errors(refit: Callable[[np.ndarray], DriftingLineFit | None], base: DriftingLineFit,
                  patterns: list[tuple[np.ndarray, float]]) -> tuple[float, float]:
    """(width, centre) systematic errors, Hz, from the meter gains the fit does not measure
    (`meter_shape.gain_patterns`: the linearity, a range whose gain is not measurable):
    the shift of a refit with each gain changed by `GAIN_STEP`, per unit gain, times the
    gain's standard deviation, in quadrature (`meter_shape.line_shape_errors`' rule; a refit
    that fails counts as the width's full relative `GAIN_STEP` shift)."""
    width_var = centre_var = 0.0
    for d_eta, sd in patterns:
        if not np.any(d_eta):
            continue
        moved = refit(GAIN_STEP * d_eta)
        if moved is None:
            dw, dc = abs(base.fwhm), 0.0
        else:
            dw, dc = (moved.fwhm - base.fwhm) / GAIN_STEP, (moved.center - base.center) / GAIN_STEP
        width_var += (dw * sd) ** 2
        centre_var += (dc * sd) ** 2
    return math.sqrt(width_var), math.sqrt(centre_var)


def _tail_verdict(centre: float, fitted: bool = True) -> Verdict:
    """The band's centre (Hz) fitted outside the scan, or (not `fitted`) the scan's edge the
    light rises towards: only a tail was measured."""
    if not fitted:
        return Verdict.bad(Reason.NO_SIGNAL, "only a tail of the conversion band: the "
                           f"converted light rises towards the scan's edge at "
                           f"{centre / 1e9:.7g} GHz and no line fits; centre the scan beyond it")
    return Verdict.bad(Reason.NO_SIGNAL, f"only a tail of the conversion band: the fit puts "
                       f"its centre at {centre / 1e9:.7g} GHz, outside the scan; centre the "
                       "scan there")


EDGE_FRACTION = 0.1
"""The band's light peaking within this fraction of the scan's points of either end (in
frequency order, smoothed) says the scan holds a flank, not the band."""


def _rising_edge(x: np.ndarray, y: np.ndarray) -> float | None:
    """The scan's edge (x, Hz) where the converted light peaks, when it peaks within
    `EDGE_FRACTION` of the points of an end (a 5-point running median against the meter's
    noise), else None."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    if xs.size < 10:
        return None
    width = 5
    smooth = np.array([np.median(ys[max(0, i - width // 2):i + width // 2 + 1])
                       for i in range(ys.size)])
    peak = int(np.argmax(smooth))
    edge = max(1, int(EDGE_FRACTION * xs.size))
    if peak < edge:
        return float(xs[0])
    if peak >= xs.size - edge:
        return float(xs[-1])
    return None


def _verdict(values: dict[str, FitValue], f: np.ndarray, spacing: float, chi2: float,
             bound: float, scatter: ExcessScatter) -> Verdict:
    width, f0, peak = (values[k] for k in ("conversion_bandwidth",
                                           "conversion_center_frequency", "peak_efficiency"))
    if not f.min() <= f0.value <= f.max():
        return _tail_verdict(f0.value)
    if width.value < MIN_POINTS_PER_LINEWIDTH * spacing:
        return Verdict.bad(Reason.TOO_FEW_POINTS, f"bandwidth {width.value:.3g} Hz spans "
                           f"fewer than {MIN_POINTS_PER_LINEWIDTH} points ({spacing:.3g} Hz "
                           "apart): narrow the span or add points")
    if width.value > np.ptp(f):
        return Verdict.bad(Reason.OUT_OF_RANGE, f"bandwidth {width.value:.3g} Hz is wider than "
                           f"the scan ({np.ptp(f):.3g} Hz): widen it")
    if peak.value - 5 * peak.stderr > 1:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"peak efficiency {peak} > 1: check "
                           "mw_line_attenuation and optical_output_loss")
    if scatter.too_large or chi2 > bound:
        return Verdict.bad(Reason.POOR_FIT, f"{scatter.describe()} (reduced chi^2 "
                           f"{chi2:.3g}): the conversion band is not one Lorentzian")
    return Verdict.ok(f"bandwidth {width}, centre {f0.value / 1e9:.9g} GHz, peak eta {peak}")


class ConversionBandwidthScan(LabSequence[ConversionBandwidthOptions]):
    """Microwave-frequency scan of the conversion efficiency at a fixed pump."""

    name: ClassVar[str] = "conversion_bandwidth_scan"
    options_class: ClassVar[type] = ConversionBandwidthOptions
    analysis_class: ClassVar[type[Analysis]] = ConversionBandwidthAnalysis

    def __init__(self, options: ConversionBandwidthOptions | None = None,
                 **changes: Any) -> None:
        super().__init__(options, **changes)
        self._meter: MeterState | None = None

    def dataset_parameters(self) -> list[DatasetParameter]:
        sp = ("mw_frequency",)
        return [DatasetParameter("mw_frequency", "Hz", "Microwave frequency (read back)"),
                DatasetParameter("mw_power", "dBm", "Microwave power at source (read back)", sp),
                DatasetParameter("pump_power", "W", "Pump power (read back)", sp),
                DatasetParameter("pump_detuning", "Hz", "Pump detuning (read back)", sp),
                DatasetParameter("pump_wavelength", "m", "Pump wavelength (read back)", sp),
                DatasetParameter(ON, "W", "Optical power, mw on", sp),
                DatasetParameter(OFF, "W", "Optical power, mw off", sp)]

    def _chunks(self) -> list[np.ndarray]:
        return [c for c in np.array_split(self.options.acquisition_order(),
                                          self.options.segments) if c.size]

    def steps(self) -> list[Step]:
        chunks = self._chunks()
        return [Step(i, f"mw {c[0] / 1e9:.7g}..{c[-1] / 1e9:.7g} GHz ({i + 1}/{len(chunks)})",
                     {"start": float(c[0]), "stop": float(c[-1]), "points": float(c.size)})
                for i, c in enumerate(chunks)]

    def prepare(self, station: LabStation) -> None:
        options = self.options
        setup = require_setup(station, type(self).__name__)
        self._meter = prepare_drive(setup, float(options.frequencies()[0]), options.mw_power,
                                    options.averaging)
        switch_pump_on(setup, options.pump_power, options.pump_detuning)

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        setup = require_setup(station, type(self).__name__)
        pump = {"pump_detuning": float(setup.pump_detuning()),
                "pump_wavelength": float(setup.pump_laser.wavelength())}
        # Point by point into the step's buffer: an interrupted chunk keeps its frequencies.
        for frequency in self._chunks()[step.index]:
            setup.mw_frequency(float(frequency))
            point = dict(drive_readback(setup))
            point[ON], point[OFF] = read_on_off(setup)
            self.keep({**point, **pump})
        return {}

    def finish(self, station: LabStation) -> None:
        setup = getattr(station, "setup", None)
        if setup is not None:
            restore_bench(setup, self._meter)
