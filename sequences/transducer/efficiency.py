"""`EfficiencyMap`: conversion efficiency against pump power and pump detuning (power meter,
tone on minus off), fitted with the cooperativity model
eta(P, d) = s P / (1 + c P)^2 / (1 + (2 (d - d0) / G)^2) for eta_max, P(C=1), d0 and G. The
grid runs power by power upwards, so the 20 mW/s pump ramp only climbs one spacing at a time.
An unresolved optical line and a device far below C = 1 are reported as what they are.
Model and regimes: docs/transducer.md#5-how-the-characterization-measures-it (step 3).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from matplotlib.figure import Figure

from qnetlab.instruments.station import LabStation
from qnetlab.sequences.analysis import (
    Analysis,
    AnalysisResult,
    FitValue,
    Reason,
    Verdict,
    with_relative_systematic,
)
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import chi2_bound
from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step

from .bench import (
    OFF,
    ON,
    MeterState,
    laser_step_frequency,
    prepare_drive,
    recentre_tone,
    require_setup,
    restore_bench,
    scan_detunings,
    switch_pump_on,
)
from .efficiency_fits import (
    MAX_RELATIVE_SCATTER,
    Calibration,
    ExcessScatter,
    column,
    full_conversion_power,
    pump_power_relative_error,
    usable_efficiency_points,
)
from .efficiency_map_figure import draw_efficiency_mesh, style_cuts
from .efficiency_map_fits import (
    EfficiencyMapFit,
    fit_efficiency_map_with_scatter,
    meter_shape_errors,
    with_row_drift,
)
from .meter_shape import MeterReadings

MIN_POWERS = 3
"""Distinct pump powers needed for s and c (two parameters and a residual)."""
MIN_DETUNINGS = 5
"""Distinct detunings needed to fit d0 and G besides s and c."""
MIN_RESOLVED_STEPS = 1.5
"""A fitted optical FWHM below this many laser steps is unresolved (see the module)."""
SIGNAL_SIGMAS = 6.0
"""The highest eta must exceed its noise by this much to count as a signal (the largest of a
few hundred noise points reaches ~3.5 sigma)."""
MIN_COOPERATIVITY_SIGMAS = 5.0
"""Below this significance c is poorly constrained: eta_max = s/4c and 1/c then have skewed,
heavy-tailed errors (c - sigma_c near 0 puts no upper bound on them) that a first-order
standard error misstates; at 5 sigma the first-order error is within ~20 % and the bias of
1/c ~4 %. Below it the verdict is bad, and their errors are the conservative distance to the
image of c - sigma_c (infinite if that is <= 0)."""
WIDE_GRID_STEPS = 128
"""Half-width, in grid steps (1.6 GHz of laser steps), of the detuning grid without a
linewidth hint."""
LOCKED_DETUNING_STEP = 250e3
"""Hz, the grid step with the pump locked to the resonance (`TransducerSetup.pump_lock`):
the lock's RF source sets the detuning to a fraction of a Hz, so the grid is planned for the
narrowest lines the lock is for (a 3 MHz line gets 12 points per linewidth; the wide grid
without a linewidth hint spans +-32 MHz)."""


@dataclass(frozen=True)
class EfficiencyMapOptions:
    """Options of `EfficiencyMap` (SI units; microwave power in dBm)."""

    mw_frequency: float = 8.0e9
    """Microwave tone, Hz: the microwave resonance (the VNA scan's result)."""
    mw_power: float | None = None
    """dBm at the source; None: the upper soft limit (the most converted light)."""
    min_pump_power: float = 0.5e-3
    """Lowest pump power, W (at the laser output)."""
    max_pump_power: float = 10e-3
    """Highest pump power, W: the bench's soft limit by default (C is largest there)."""
    powers: int = 8
    """Pump powers, evenly spaced from min to max."""
    detuning_center: float = 0.0
    """Pump detuning at the grid's centre, Hz (0: the setup's optical resonance)."""
    optical_linewidth: float = 0.0
    """Hz, a hint that shapes the detuning grid (0: unknown, a grid out to +-1.6 GHz dense
    near the centre; else out to +-3 linewidths, at least +-4 laser steps)."""
    averaging: int = 100
    """Power-meter samples per reading (~3 ms each): noise 50 pW / sqrt(averaging)."""
    settle_time: float = 0.0
    """s of lab time to wait after each pump power change."""
    mw_linewidth: float = 0.0
    """Hz, the microwave mode's FWHM (the VNA scan's), with `mw_frequency_stderr`: the tone
    can sit only as close to the resonance as the VNA found it, which lowers every measured
    efficiency by the Lorentzian factor. With both given, eta_max and the low-power slope are
    corrected for the expected loss and carry its spread (0: no correction)."""
    mw_frequency_stderr: float = 0.0
    """Hz, one-sigma error of `mw_frequency` as the resonance (the VNA fit's)."""
    detuning_step: float = 0.0
    """Hz between neighbouring grid detunings; 0: one laser step (the laser tunes alone).
    With the pump locked to the resonance the characterization passes
    `LOCKED_DETUNING_STEP`."""
    recentre: bool = False
    """Before each pump power, re-find the microwave resonance with one quick VNA sweep and
    move the tone there (`bench.recentre_tone`; needs `mw_linewidth`): for a mode narrow
    against its drift over a power's scan. The tones it set are in the data; the analysis
    takes the drift between them as the tone's detuning within each power
    (`_correct_for_tone_detuning`)."""

    def __post_init__(self) -> None:
        if self.mw_linewidth < 0 or self.mw_frequency_stderr < 0:
            raise ValueError("mw_linewidth and mw_frequency_stderr must be >= 0 Hz")
        if self.recentre and not self.mw_linewidth > 0:
            raise ValueError("recentre needs mw_linewidth (Hz, the VNA's) for its sweep's "
                             "width")
        if not (self.detuning_step >= 0 and math.isfinite(self.detuning_step)):
            raise ValueError(f"detuning_step must be a finite >= 0 Hz (0: one laser step), "
                             f"got {self.detuning_step!r}")
        if not 0 < self.min_pump_power < self.max_pump_power:
            raise ValueError(f"need 0 < min_pump_power < max_pump_power, got "
                             f"{self.min_pump_power:g} W and {self.max_pump_power:g} W")
        if self.powers < MIN_POWERS:
            raise ValueError(f"powers must be >= {MIN_POWERS} (s, c and a residual), got "
                             f"{self.powers}")
        if not self.mw_frequency > 0:
            raise ValueError(f"mw_frequency must be > 0 Hz, got {self.mw_frequency:g}")
        if self.optical_linewidth < 0 or self.settle_time < 0:
            raise ValueError("optical_linewidth (Hz) and settle_time (s) must be >= 0")
        if not 1 <= self.averaging <= 10_000:
            raise ValueError(f"averaging must be 1..10000 samples, got {self.averaging}")

    def pump_powers(self) -> np.ndarray:
        """W, ascending, rounded to the laser's 0.1 uW setting resolution."""
        p = np.linspace(self.min_pump_power, self.max_pump_power, self.powers)
        return np.asarray(np.round(p, 7), float)

    def detunings(self) -> np.ndarray:
        """Requested pump detunings, Hz: whole grid steps (`detuning_step`, default one
        laser step), dense near the centre and geometrically sparser out to the grid's edge."""
        step = self.detuning_step or laser_step_frequency()
        edge = WIDE_GRID_STEPS if self.optical_linewidth == 0 else max(
            4.0, 3 * self.optical_linewidth / step)
        far = np.round(np.geomspace(1, edge, 12))
        offsets = np.unique(np.concatenate([np.arange(5), far]))
        offsets = np.concatenate([-offsets[:0:-1], offsets])
        return np.asarray(self.detuning_center + step * offsets, float)


class EfficiencyMapAnalysis(Analysis):
    """Joint fit of the cooperativity model to the measured efficiency map.

    Not a `CurveAnalysis`: a 2-D surface eta(P, d), fitted in `efficiency_fits` with the
    rules of `sequences.fitting`."""

    sequence = "efficiency_map"
    uses_partial_steps = True
    """Every row is one complete on/off reading at one power and detuning: the detunings an
    interrupted power did measure are data like any other (the meter noise comes from
    successive readings within each power, which a shorter power still gives)."""

    def analyze(self, run: StoredRun) -> AnalysisResult:
        result = AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok())
        p, d = column(run, "pump_power"), column(run, "pump_detuning")
        if p.size < MIN_POWERS * 2 or np.unique(p).size < MIN_POWERS:
            result.verdict = Verdict.bad(Reason.TOO_FEW_POINTS, f"{p.size} points at "
                                         f"{np.unique(p).size} pump powers; at least "
                                         f"{MIN_POWERS} powers needed")
            return result
        points = usable_efficiency_points(run, groups=p)
        if isinstance(points, Verdict):
            result.verdict = points
            return result
        eta, noise = points.eta, points.noise
        step = run.options_as(EfficiencyMapOptions).detuning_step or laser_step_frequency(
            float(np.median(column(run, "pump_wavelength"))))
        result.details.update({"meter_noise": points.meter_noise, "laser_step": step,
                               "optical_linewidth_resolution_limit": MIN_RESOLVED_STEPS * step})
        result.tables["map"] = {"pump_power (W)": p.tolist(), "pump_detuning (Hz)": d.tolist(),
                                "eta": eta.tolist(), "eta_stderr": noise.tolist()}
        best = int(np.argmax(eta / noise))
        if eta[best] < SIGNAL_SIGMAS * noise[best]:
            result.verdict = Verdict.bad(Reason.NO_SIGNAL, f"no converted light above the "
                                         f"noise anywhere on the map (pump detuning "
                                         f"{d.min() / 1e6:.4g}..{d.max() / 1e6:.4g} MHz): is "
                                         "the pump near the optical resonance and the tone on "
                                         "the microwave resonance?")
            return result
        fit, sigma, scatter = _fit(p, d, eta, noise, step, points.noise_samples)
        resolved = sigma is not None
        if fit is None:
            result.verdict = Verdict.bad(Reason.POOR_FIT, "the cooperativity model did not "
                                         "converge on the map")
            return result
        _report(result, fit, resolved, p, d)
        if sigma is not None:
            _add_meter_shape_error(result, run, fit, sigma)
        _correct_for_tone_detuning(result, run.options_as(EfficiencyMapOptions),
                                   column(run, "mw_frequency"))
        # Systematic: eta's scale from the line attenuation and output loss (both eta_max
        # and s are proportional to it; c, P(C=1), d0 and G do not depend on it).
        scale_error = Calibration.from_run(run).efficiency_relative_error
        with_relative_systematic(result.values, ("eta_max", "low_power_slope"), scale_error)
        result.details["efficiency_scale_relative_error"] = scale_error
        # The pump power axis's scale (the laser's accuracy, the delivery's drift): c and
        # s scale with it, 1/c inversely; eta_max = s / 4c does not depend on it.
        pump_error = pump_power_relative_error()
        with_relative_systematic(result.values, ("cooperativity_slope", "low_power_slope",
                                                 "pump_power_at_unit_cooperativity"),
                                 pump_error)
        result.details["pump_power_scale_relative_error"] = pump_error
        result.details.update({"relative_scatter": scatter.relative,
                               "residual_correlation": scatter.correlation,
                               "variance_inflation": scatter.inflation})
        result.verdict = _verdict(fit, resolved, p, d, eta, noise, points.noise_samples,
                                  scatter)
        return result

    def plot(self, run: StoredRun, result: AnalysisResult) -> dict[str, Figure]:
        return {"map": _plot(run, result)}


def _fit(p: np.ndarray, d: np.ndarray, eta: np.ndarray, noise: np.ndarray, step: float,
         noise_samples: int
         ) -> tuple[EfficiencyMapFit | None, np.ndarray | None, ExcessScatter]:
    """The joint fit if the detuning axis resolves the line, else the power dependence at
    the brightest laser step (see the module docstring); each with the scatter beyond the
    meter noise in the point errors when the meter noise cannot explain it. The middle item:
    the joint fit's point errors (resolved), None for the power dependence alone. (s, c)
    and their covariance come from the rows with a drift between them where the rows show
    one (`efficiency_map_fits.with_row_drift`)."""
    if np.unique(np.round(d / 1e3)).size >= MIN_DETUNINGS:
        fit, sigma, scatter = fit_efficiency_map_with_scatter(
            p, d, eta, noise, chi2_bound(p.size - 4, noise_samples))
        if fit is not None and fit.optical_linewidth is not None \
                and fit.optical_linewidth >= MIN_RESOLVED_STEPS * step:
            return with_row_drift(fit, p, d, eta, sigma, scatter), sigma, scatter
    keys = np.round(d / 1e3)
    _, inverse = np.unique(keys, return_inverse=True)
    brightest = int(np.argmax(np.bincount(inverse, weights=eta / noise**2)))
    at = inverse == brightest
    fit, sigma_at, scatter = fit_efficiency_map_with_scatter(
        p[at], None, eta[at], noise[at], chi2_bound(int(np.count_nonzero(at)) - 2,
                                                    noise_samples))
    if fit is None:
        return None, None, scatter
    fit = with_row_drift(fit, p[at], None, eta[at], sigma_at, scatter)
    d_best = float(np.mean(d[at]))
    # The resonance lies within half a step of the brightest step: uniform there.
    cov = np.zeros((4, 4))
    cov[:2, :2] = fit.covariance
    cov[2, 2] = step**2 / 12
    return EfficiencyMapFit(fit.low_power_slope, fit.cooperativity_slope, d_best, None, cov,
                            fit.chi2_reduced, fit.points), None, scatter


def _add_meter_shape_error(result: AnalysisResult, run: StoredRun, fit: EfficiencyMapFit,
                           sigma: np.ndarray) -> None:
    """The optical linewidth's systematic error: the power meter's range gains and linearity
    propagated through this map's own fit (`efficiency_map_fits.meter_shape_errors`; the
    PM100D's and the sensor's data-sheet accuracies, `meter_shape`). The detuning axis adds
    none worth stating: set by the laser's steps or the lock's synthesizer, its scale errors
    (timebase 1e-7, a step's repeatability averaged over the grid) are far below the meter's.
    The offset's share is reported in the details."""
    width = result.values.get("optical_linewidth")
    if width is None:
        return
    cal = Calibration.from_run(run)
    full = full_conversion_power(run.data["mw_power"], run.data["mw_frequency"],
                                 run.data["pump_wavelength"], cal)
    readings = MeterReadings(column(run, ON), column(run, OFF), np.asarray(full, float))
    eta = (readings.on - readings.off) / readings.full
    width_sys, offset_sys = meter_shape_errors(column(run, "pump_power"),
                                               column(run, "pump_detuning"), eta, sigma, fit,
                                               readings)
    result.values["optical_linewidth"] = width.with_systematic(width_sys)
    result.details.update({"meter_shape_error_linewidth": width_sys,
                           "meter_shape_error_detuning_offset": offset_sys})


def _correct_for_tone_detuning(result: AnalysisResult, options: EfficiencyMapOptions,
                               tones: np.ndarray) -> None:
    """The tone sits at the VNA's resonance estimate, delta ~ N(0, sigma) from the truth, so
    each efficiency is measured times 1 / (1 + (2 delta / kappa)^2) ~ 1 - x (2 delta/sigma)^2/4
    with x = (2 sigma / kappa)^2: on average 1 - x, spread sqrt(2) x (chi-square, 1 dof).
    Scale eta_max and s by 1 + x and add the spread in quadrature (relative).

    Re-centred before each power (`EfficiencyMapOptions.recentre`), the tone starts each
    power on the resonance and the resonance drifts away from it until the next re-centre:
    by D_k, the step between successive tones (`tones`, the read-back column), about
    linearly, so delta^2 averages D_k^2 / 3 over the power; sigma^2 gains the mean of
    that."""
    kappa = float(options.mw_linewidth or 0.0)
    sigma = float(options.mw_frequency_stderr or 0.0)
    if options.recentre:
        drift = _tone_steps(tones)
        if drift.size:
            sigma = math.hypot(sigma, math.sqrt(float(np.mean(drift**2)) / 3))
            result.details["mw_tone_drift_rms"] = float(np.sqrt(np.mean(drift**2)))
    if kappa <= 0 or sigma <= 0:
        return
    x = (2 * sigma / kappa) ** 2
    for key in ("eta_max", "low_power_slope"):
        v = result.values.get(key)
        if v is not None:
            value = v.value * (1 + x)
            result.values[key] = FitValue(value, math.hypot(v.stderr * (1 + x),
                                                            math.sqrt(2) * x * value), v.unit)
    result.details["mw_tone_detuning_correction"] = x


def _tone_steps(tones: np.ndarray) -> np.ndarray:
    """The changes of the tone between successive re-centres, Hz (rows in acquisition order;
    a power's rows share its tone)."""
    tones = np.asarray(tones, float)
    tones = tones[np.isfinite(tones)]
    if tones.size < 2:
        return np.empty(0)
    steps = np.diff(tones)
    return steps[steps != 0]


def _report(result: AnalysisResult, fit: EfficiencyMapFit, resolved: bool, p: np.ndarray,
            d: np.ndarray) -> None:
    v = result.values
    s, c = fit.low_power_slope, fit.cooperativity_slope
    if c > 0:
        eta_max, eta_err = fit.eta_max
        p1, p1_err = fit.pump_power_at_unit_cooperativity
        low = c - fit.stderr(1)
        if c < MIN_COOPERATIVITY_SIGMAS * fit.stderr(1):
            eta_err = max(eta_err, s / (4 * low) - eta_max if low > 0 else math.inf)
            p1_err = max(p1_err, 1 / low - p1 if low > 0 else math.inf)
        v["eta_max"] = FitValue(eta_max, eta_err, "")
        v["pump_power_at_unit_cooperativity"] = FitValue(p1, p1_err, "W")
    v["cooperativity_slope"] = FitValue(c, fit.stderr(1), "1/W")
    v["low_power_slope"] = FitValue(s, fit.stderr(0), "1/W")
    if fit.detuning_offset is not None:
        v["detuning_offset"] = FitValue(fit.detuning_offset, fit.stderr(2), "Hz")
    if resolved and fit.optical_linewidth is not None:
        # its systematic error, the meter's shape, comes with `_add_meter_shape_error`
        v["optical_linewidth"] = FitValue(fit.optical_linewidth, fit.stderr(3), "Hz")
    result.details.update({
        "chi2_reduced": fit.chi2_reduced,
        "correlation_low_power_slope_cooperativity_slope": fit.correlation_s_c,
        "max_cooperativity": c * float(p.max()),
        "optical_linewidth_resolved": float(resolved),
        "eta_max_is_lower_bound": float(not resolved),
        "detuning_span": float(np.ptp(d)),
        # 1: the resonance was let move with the pump (one offset per power, d0 at the
        # lowest), the more likely model where the meter noise could not explain the map.
        "detuning_offset_per_power": float(fit.power_offsets is not None),
        # the rows' relative random walk and own scatter that s and c were refitted with
        "row_drift_step": fit.row_drift,
        "row_scatter": fit.row_scatter,
    })
    if fit.power_offsets is not None:
        result.details["detuning_offset_shift_over_powers"] = float(
            fit.power_offsets[-1][1] - fit.power_offsets[0][1])


def _verdict(fit: EfficiencyMapFit, resolved: bool, p: np.ndarray, d: np.ndarray,
             eta: np.ndarray, noise: np.ndarray, noise_samples: int,
             scatter: ExcessScatter) -> Verdict:
    s, c = fit.low_power_slope, fit.cooperativity_slope
    s_err, c_err = fit.stderr(0), fit.stderr(1)
    if resolved and fit.detuning_offset is not None and fit.optical_linewidth is not None:
        if not d.min() <= fit.detuning_offset <= d.max():
            return Verdict.bad(Reason.NO_SIGNAL, f"only a tail of the optical line on the map: "
                               f"the fit puts it at detuning {fit.detuning_offset / 1e6:.4g} "
                               "MHz; centre the grid there")
        if fit.optical_linewidth > np.ptp(d):
            return Verdict.bad(Reason.OUT_OF_RANGE, f"optical linewidth "
                               f"{fit.optical_linewidth:.3g} Hz is wider than the detuning "
                               f"range ({np.ptp(d):.3g} Hz)")
    if not s > 3 * s_err:
        return Verdict.bad(Reason.NO_SIGNAL, f"low-power slope s = {s:.3g} +- {s_err:.2g} /W "
                           "is not significant")
    # More than 5 sigma above 1 at any point, or a peak above 1: the calibration (line
    # attenuation, output loss) cannot be right.
    if np.any(eta - 5 * noise > 1):
        return Verdict.bad(Reason.OUT_OF_RANGE, f"measured eta up to {eta.max():.3g} > 1: "
                           "check mw_line_attenuation and optical_output_loss")
    bound = chi2_bound(fit.points - (4 if resolved else 2), noise_samples)
    if scatter.relative > MAX_RELATIVE_SCATTER or fit.chi2_reduced > bound:
        return Verdict.bad(Reason.POOR_FIT, f"the points scatter about the model by "
                           f"{scatter.relative:.2%} of it beyond the meter noise (reduced "
                           f"chi^2 {fit.chi2_reduced:.3g}; a right model leaves under "
                           f"{MAX_RELATIVE_SCATTER:.0%}): the cooperativity model does not "
                           "describe the map")
    if not c > MIN_COOPERATIVITY_SIGMAS * c_err:
        return Verdict.bad(Reason.POOR_FIT, f"cooperativity slope c = {c:.3g} +- {c_err:.2g} "
                           f"/W is poorly constrained (below {MIN_COOPERATIVITY_SIGMAS:g} "
                           f"sigma; C stayed far below 1 up to {p.max() * 1e3:.3g} mW): "
                           "eta_max and the pump power at C = 1 are not determined (their "
                           "errors are the conservative 1-sigma extent); the low-power slope "
                           f"s = {s:.4g} +- {s_err:.2g} /W stands. More microwave power or "
                           "averaging helps")
    eta_max, eta_err = fit.eta_max
    if eta_max - 5 * eta_err > 1:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"eta_max = {eta_max:.3g} +- {eta_err:.2g} > 1: "
                           "check mw_line_attenuation and optical_output_loss")
    notes = [f"eta_max {eta_max:.4g} +- {eta_err:.2g} at {1e3 / c:.4g} mW"]
    if c * p.max() < 0.1:
        notes.append(f"C reached only {c * p.max():.2g}: eta_max and P(C=1) are "
                     "extrapolated along the fitted model")
    if not resolved:
        notes.append("optical linewidth unresolved (narrower than 1.5 laser steps): s and "
                     "eta_max at the brightest laser step, lower bounds if the resonance lies "
                     "between steps")
    return Verdict.ok("; ".join(notes))


class EfficiencyMap(LabSequence[EfficiencyMapOptions]):
    """Pump power x pump detuning map of the conversion efficiency (power meter, mw on/off)."""

    name: ClassVar[str] = "efficiency_map"
    options_class: ClassVar[type] = EfficiencyMapOptions
    analysis_class: ClassVar[type[Analysis]] = EfficiencyMapAnalysis

    def __init__(self, options: EfficiencyMapOptions | None = None, **changes: Any) -> None:
        super().__init__(options, **changes)
        self._meter: MeterState | None = None

    def dataset_parameters(self) -> list[DatasetParameter]:
        sp = ("pump_power", "pump_detuning")
        return [DatasetParameter("pump_power", "W", "Pump power (read back)"),
                DatasetParameter("pump_detuning", "Hz", "Pump detuning (read back)"),
                DatasetParameter("pump_wavelength", "m", "Pump wavelength (read back)", sp),
                DatasetParameter("mw_frequency", "Hz", "Microwave frequency (read back)", sp),
                DatasetParameter("mw_power", "dBm", "Microwave power at source (read back)", sp),
                DatasetParameter(ON, "W", "Optical power, mw on", sp),
                DatasetParameter(OFF, "W", "Optical power, mw off", sp)]

    def steps(self) -> list[Step]:
        powers = self.options.pump_powers()
        return [Step(i, f"pump {p * 1e3:.4g} mW ({i + 1}/{powers.size})", {"pump_power": p})
                for i, p in enumerate(powers)]

    def prepare(self, station: LabStation) -> None:
        options = self.options
        setup = require_setup(station, type(self).__name__)
        self._meter = prepare_drive(setup, options.mw_frequency, options.mw_power,
                                    options.averaging)
        switch_pump_on(setup, float(options.pump_powers()[0]), float(options.detunings()[0]))

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        setup = require_setup(station, type(self).__name__)
        setup.pump_power(step.settings["pump_power"])
        if self.options.settle_time:
            station.sleep(self.options.settle_time)
        if self.options.recentre:
            recentre_tone(setup, self.options.mw_linewidth)
        detunings = self.options.detunings()
        # Serpentine: the laser never jumps back across the grid between powers.
        # Point by point into the step's buffer: an interrupted power keeps its detunings.
        return scan_detunings(setup, detunings[::-1] if step.index % 2 else detunings,
                              keep=self.keep)

    def finish(self, station: LabStation) -> None:
        setup = getattr(station, "setup", None)
        if setup is not None:
            restore_bench(setup, self._meter)


def _plot(run: StoredRun, result: AnalysisResult) -> Figure:
    """The measured map (colour, against pump detuning on a symmetric-log axis and pump
    power), and two cuts with the fitted model: eta against pump power at the resonance,
    eta against detuning at the highest power."""
    table = result.tables.get("map", {})
    p = np.asarray(table.get("pump_power (W)", column(run, "pump_power")), float)
    d = np.asarray(table.get("pump_detuning (Hz)", column(run, "pump_detuning")), float)
    eta = np.asarray(table.get("eta", np.full(p.size, np.nan)), float)
    err = np.asarray(table.get("eta_stderr", np.zeros(p.size)), float)
    fig = Figure(figsize=(14, 4.2))
    ax_map, ax_p, ax_d = fig.subplots(1, 3)
    step = result.details.get("laser_step", laser_step_frequency())
    draw_efficiency_mesh(fig, ax_map, p, d, eta, 5 * step)
    model = _model_from_values(result)
    d0 = result.values.get("detuning_offset")
    if p.size:
        keys = np.round(d / 1e3)
        at = keys == keys[np.argmin(np.abs(d - (d0.value if d0 is not None else 0.0)))]
        ax_p.errorbar(p[at] * 1e3, eta[at], err[at], fmt=".", label="measured")
        top = p == p.max()
        order = np.argsort(d[top])
        ax_d.errorbar(d[top][order] / 1e6, eta[top][order], err[top][order], fmt=".",
                      label="measured")
        ax_d.set_xscale("symlog", linthresh=5 * step / 1e6, linscale=3)
        if model is not None:
            pp = np.linspace(0, p.max(), 200)
            ax_p.plot(pp * 1e3, model.model(pp, float(np.mean(d[at]))), "-", label="fit")
            if model.optical_linewidth is not None:
                dd = np.linspace(d.min(), d.max(), 4000)
                ax_d.plot(dd / 1e6, model.model(np.full(dd.size, p.max()), dd), "-",
                          label="fit")
            else:  # unresolved: the model holds at the brightest step only
                ax_d.plot(np.mean(d[at]) / 1e6, model.model(p.max()), "x", ms=9,
                          label="fit (linewidth unresolved)")
            ax_d.legend(fontsize=8, loc="center right")
    ax_p.set_xlabel("pump power (mW)")
    ax_p.set_ylabel("eta")
    ax_p.set_title("at the resonance", fontsize=9)
    ax_d.set_xlabel("pump detuning (MHz)")
    ax_d.set_ylabel("eta")
    ax_d.set_title(f"at {p.max() * 1e3:.3g} mW" if p.size else "", fontsize=9)
    ax_p.legend(fontsize=8)
    style_cuts(ax_p, ax_d, 5 * step)
    fig.suptitle(textwrap.fill(f"run {run.run_id}: {result.verdict}", 170), fontsize=8)
    fig.tight_layout()
    return fig


def _model_from_values(result: AnalysisResult) -> EfficiencyMapFit | None:
    v = result.values
    if "low_power_slope" not in v or "cooperativity_slope" not in v:
        return None
    d0, width = v.get("detuning_offset"), v.get("optical_linewidth")
    return EfficiencyMapFit(v["low_power_slope"].value, v["cooperativity_slope"].value,
                            None if d0 is None or width is None else d0.value,
                            None if width is None else width.value, np.zeros((4, 4)),
                            math.nan, 0)
