"""`OpticalResonanceScan`: find the transducer's optical (pump) resonance from the light it
converts.

With the microwave tone on at the microwave resonance, the pump laser steps across the
optical resonance; at each wavelength the power meter reads the optical output with the
tone on and off, and the difference is the converted light alone. Its dependence on the pump
detuning is the optical Lorentzian, fitted for its centre and linewidth (FWHM). Their
systematic error is the power meter's shape (its current ranges' gains and the sensor's
linearity, `meter_shape`), propagated through the scan's own fit.

Resolution: the laser tunes in 0.1 pm steps (12.5 MHz at 1550 nm). A line narrower than
`MIN_RESOLVED_STEPS` steps is "unresolved": its width is not reported (only the fact and the
resolution limit, in the details), and its centre is the laser step of the most converted
light, with the standard error of a position known to lie within +-half a step (step/sqrt 12),
never a Lorentzian's extrapolation between steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from qnetlab.instruments.station import LabStation
from qnetlab.sequences.analysis import Analysis, AnalysisResult, FitValue, Reason, Verdict
from qnetlab.sequences.curve_analysis import CurveAnalysis, CurveData, Param
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import Fit, chi2_bound
from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step

from .bench import (
    OFF,
    ON,
    SPEED_OF_LIGHT,
    MeterState,
    laser_step_frequency,
    prepare_drive,
    release_pump_lock,
    require_setup,
    restore_bench,
    restore_pump_lock,
    scan_detunings,
    switch_pump_on,
)
from .efficiency_fits import (
    ExcessScatter,
    LorentzianFit,
    column,
    fit_lorentzian,
    fit_lorentzian_passes,
    fit_lorentzian_with_scatter,
    interleaved,
    meter_noise,
    passes,
    pump_stability_relative_error,
    with_pass_difference,
)
from .meter_shape import MeterReadings, line_shape_errors

MIN_POINTS = 10
MIN_RESOLVED_STEPS = 1.5
"""A fitted FWHM below this many laser steps is unresolved: the fit would rest on the line
shape between steps, which the scan never sampled."""
LASER_WAVELENGTH_ACCURACY_PM = 1.5
"""+-pm, the pump laser's absolute wavelength accuracy (santec TSL-570 specifications): the
resonance is found at the wavelength the laser reads, which is off by up to this."""
LASER_WAVELENGTH_REPEATABILITY_PM = 0.5
"""+-pm, the laser's wavelength repeatability (TSL-570 specifications): where the scan's
coarse move to its start landed; the fine steps after it share that error."""
DATA_SHEET_COVERAGE = 2.0
"""A data sheet's +-bound read as two standard deviations."""
SIGNAL_SIGMAS = 6.0
"""The brightest point must exceed the noise by this much: the largest of ~300 pure-noise
points reaches ~3 sigma, and a 6-sigma excursion has odds ~1e-9 per point."""


@dataclass(frozen=True)
class OpticalResonanceOptions:
    """Options of `OpticalResonanceScan` (SI units; microwave power in dBm)."""

    mw_frequency: float = 8.0e9
    """Microwave tone, Hz: the microwave resonance (the VNA scan's result)."""
    mw_power: float | None = None
    """dBm at the source; None: the upper soft limit (the most converted light)."""
    pump_power: float = 2e-3
    """W at the laser output."""
    center: float = 0.0
    """Centre of the scan, Hz of pump detuning from the setup's optical_resonance_wavelength."""
    span: float = 4e9
    """Width of the scan, Hz (covers a 1 GHz line with its tails)."""
    laser_steps_per_point: int = 1
    """Spacing of the points in laser steps (0.1 pm, ~12.5 MHz); 1 cannot step over a
    line narrower than the step."""
    averaging: int = 10
    """Power-meter samples per reading (~3 ms each): noise 50 pW / sqrt(averaging). Few and
    fast: the converted light is far above the noise, and the optical resonance drifts
    (tens of MHz an hour), so a slow scan would see the line move under it."""
    segments: int = 16
    """Steps the scan is split into (progress and interruption granularity)."""

    def __post_init__(self) -> None:
        if not self.mw_frequency > 0:
            raise ValueError(f"mw_frequency must be > 0 Hz, got {self.mw_frequency:g}")
        if not self.pump_power > 0:
            raise ValueError(f"pump_power must be > 0 W, got {self.pump_power:g}")
        if self.laser_steps_per_point < 1:
            raise ValueError("laser_steps_per_point must be >= 1")
        if not self.span >= MIN_POINTS * self.laser_steps_per_point * laser_step_frequency():
            raise ValueError(f"span {self.span:g} Hz holds fewer than {MIN_POINTS} points "
                             f"{self.laser_steps_per_point} laser step(s) "
                             f"({laser_step_frequency():.3g} Hz each) apart: widen it")
        if not 1 <= self.averaging <= 10_000:
            raise ValueError(f"averaging must be 1..10000 samples, got {self.averaging}")
        if self.segments < 1:
            raise ValueError("segments must be >= 1")

    def detunings(self) -> np.ndarray:
        """Requested pump detunings, Hz, on the laser's step grid around `center`."""
        step = self.laser_steps_per_point * laser_step_frequency()
        half = int(self.span / 2 // step)
        return np.asarray(self.center + step * np.arange(-half, half + 1), float)

    def acquisition_order(self) -> np.ndarray:
        """`detunings` in the order they are measured: up across the line on every other
        grid point, then down on the ones between. A resonance drifting during the scan
        (temperature, the photorefractive effect) then shifts neighbouring points in
        opposite directions, which shows as scatter between them (and the analysis counts
        it) instead of a silently stretched or squeezed line. The whole scan stays within
        the laser's fine-tuning range of its first point."""
        return interleaved(self.detunings())


class OpticalResonanceAnalysis(CurveAnalysis):
    """Lorentzian fit of converted optical power against the pump's optical frequency (own
    optimiser `efficiency_fits.fit_lorentzian`). A line narrower than `MIN_RESOLVED_STEPS`
    laser steps ends without a curve: the brightest step is the result (module docstring)."""

    sequence = "optical_resonance_scan"
    uses_partial_steps = True
    """Every row is one complete on/off reading at one pump detuning."""
    params = (Param("optical_frequency", "Hz"), Param("optical_linewidth", "Hz"),
              Param("fitted_peak_power", "W"))
    min_points = MIN_POINTS
    figure_name = "resonance"
    y_label = "converted optical power (W)"

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        return p[2] / (1 + (2 * (np.asarray(x, float) - p[0]) / p[1]) ** 2)

    def load(self, run: StoredRun) -> CurveData | Verdict:
        scan = _Scan.from_run(run)
        if scan.nu.size < MIN_POINTS:  # the base says "too few points"
            return CurveData(scan.nu, scan.converted)
        sigma_p, samples = meter_noise(scan.p_off)
        if not (math.isfinite(sigma_p) and sigma_p > 0):
            return Verdict.bad(Reason.TOO_FEW_POINTS, "cannot estimate the power meter's "
                               "noise from the mw-off readings")
        noise = math.sqrt(2) * sigma_p
        step = laser_step_frequency(float(np.median(scan.wavelength)))
        # The line is Lorentzian in photon number: power per photon energy h nu, which
        # changes by 1e-5 across a GHz-wide line (enough to pull its centre by a kHz).
        per_photon = scan.nu_ref / scan.nu
        return CurveData(scan.nu, scan.converted * per_photon, noise * per_photon, {
            "meter_noise": sigma_p, "laser_step": step,
            "peak_converted_power": float(scan.converted.max()),
            "optical_linewidth_resolution_limit": MIN_RESOLVED_STEPS * step},
            extra={"scan": scan, "noise": noise, "step": step, "samples": samples})

    def no_signal(self, data: CurveData) -> str:
        scan, noise = data.extra["scan"], data.extra["noise"]
        if scan.converted.max() < SIGNAL_SIGMAS * noise:
            return (f"no converted light above the noise ({noise:.2g} W) in the scan "
                    f"{scan.window_text()}: move the scan or check the microwave drive and "
                    "the pump")
        return ""

    def fit(self, data: CurveData) -> Fit | Verdict:
        scan, step, sigma = data.extra["scan"], data.extra["step"], data.sigma
        assert sigma is not None
        bound = chi2_bound(scan.nu.size - 3, data.extra["samples"])
        # Each pass of the interleaved scan gets its own centre and peak (the line drifts
        # between them), and every point the pump's power stability per laser setting.
        fit, sigma, scatter = fit_lorentzian_with_scatter(
            scan.nu - scan.nu_ref, data.y, sigma, bound, up=scan.up_pass,
            relative=pump_stability_relative_error())
        if fit is not None:
            fit, differences = with_pass_difference(fit, scan.nu - scan.nu_ref, data.y, sigma,
                                                    scan.up_pass)
            data.details.update(differences)
            data.details.update({"chi2_reduced": fit.chi2_reduced,
                                 "relative_scatter": scatter.relative,
                                 "residual_correlation": scatter.correlation,
                                 "variance_inflation": scatter.inflation})
        if fit is None or fit.fwhm < MIN_RESOLVED_STEPS * step:
            # No curve: what the brightest step says, in data.values (kept by the base).
            return _unresolved(data.values, data.details, scan, step)
        shape = _meter_shape_errors(scan, data.y, sigma, fit)
        data.details.update({"meter_shape_error_fwhm": shape[0],
                             "meter_shape_error_center": shape[1]})
        data.extra["verdict"] = _resolved(data.values, data.details, scan, fit,
                                          data.extra["samples"], scatter, shape)
        p = np.array([scan.nu_ref + fit.center, fit.fwhm, fit.peak])
        cov = np.diag(np.square([fit.center_stderr, fit.fwhm_stderr, fit.peak_stderr]))
        dof = fit.points - 3
        # fit_lorentzian keeps only the errors: the band is drawn from the diagonal.
        return Fit(tuple(x.name for x in self.params), p, cov, fit.chi2_reduced * dof, dof,
                   data.x, data.y, self.model(data.x, *p), sigma)

    def values(self, fit: Fit, data: CurveData) -> dict[str, FitValue]:
        return {}  # `_resolved` put them in data.values

    def fit_details(self, fit: Fit, data: CurveData) -> dict[str, float]:
        return dict(data.details)

    def judge(self, fit: Fit, data: CurveData, values: dict[str, FitValue]) -> Verdict:
        return data.extra["verdict"]

    def propose(self, values: dict[str, FitValue], data: CurveData) -> dict[str, float]:
        return {"optical_resonance_wavelength": values["optical_resonance_wavelength"].value}

    def x_axis(self, data: CurveData) -> tuple[float, float, str]:
        scan = data.extra.get("scan")
        offset = float(np.median(scan.nu - scan.detuning)) if scan is not None and \
            scan.nu.size else 0.0
        return offset, 1e6, "pump detuning (MHz)"

    def annotate(self, ax: Any, data: CurveData, result: AnalysisResult) -> None:
        if result.details.get("optical_linewidth_resolved") == 0.0:
            ax.axvline(result.details["center_detuning"] / 1e6, color="C1", ls="--",
                       label="brightest step (linewidth unresolved)")
            ax.legend(fontsize=8)


def _meter_shape_errors(scan: _Scan, y: np.ndarray, sigma: np.ndarray, fit: LorentzianFit
                        ) -> tuple[float, float]:
    """(width, centre) systematic errors, Hz, from the power meter's range gains and
    linearity (`meter_shape.line_shape_errors`): the scan's own fit (per-pass centres and
    peaks when interleaved, the same point errors `sigma`) redone with each gain changed.
    Zero for a line read on one range apart from the linearity; a flat fraction of every
    width (the range accuracy, 0.25 %) overstated it ~2x on the study's benches."""
    x = scan.nu - scan.nu_ref
    up = scan.up_pass

    def refit(values: np.ndarray) -> tuple[float, float] | None:
        moved = fit_lorentzian(x, values, sigma) if up is None else fit_lorentzian_passes(
            x, values, sigma, up)
        return None if moved is None else (moved.fwhm, moved.center)

    # y is per photon (`load`): a reading's gain change moves y by its share times nu_ref/nu
    readings = MeterReadings(scan.on, scan.off, scan.nu / scan.nu_ref)
    base = refit(y) or (fit.fwhm, fit.center)
    return line_shape_errors(refit, y, readings, base)


def _resolved(values: dict[str, FitValue], details: dict[str, float], scan: _Scan,
              fit: LorentzianFit, samples: int, scatter: ExcessScatter,
              shape: tuple[float, float]) -> Verdict:
    nu0 = scan.nu_ref + fit.center
    wavelength = SPEED_OF_LIGHT / nu0
    per_hz = wavelength**2 / SPEED_OF_LIGHT  # m of wavelength per Hz of optical frequency
    values["optical_resonance_wavelength"] = FitValue(
        wavelength, per_hz * fit.center_stderr, "m").with_systematic(
        math.hypot(_laser_wavelength_error(), per_hz * shape[1]))
    values["optical_linewidth"] = FitValue(fit.fwhm, fit.fwhm_stderr, "Hz").with_systematic(
        shape[0])
    details.update({"optical_linewidth_resolved": 1.0, "fitted_peak_power": fit.peak,
                    "center_detuning": scan.detuning_at(nu0)})
    if not scan.nu.min() <= nu0 <= scan.nu.max():
        return Verdict.bad(Reason.NO_SIGNAL, f"only a tail in the scan "
                           f"{scan.window_text()}: the fit puts the resonance at detuning "
                           f"{scan.detuning_at(nu0) / 1e6:.4g} MHz; centre the scan there")
    if fit.fwhm > np.ptp(scan.nu):
        return Verdict.bad(Reason.OUT_OF_RANGE, f"linewidth {fit.fwhm:.3g} Hz is wider than "
                           f"the scan ({np.ptp(scan.nu):.3g} Hz): widen the span")
    bound = chi2_bound(fit.points - 3, samples)
    if scatter.too_large or fit.chi2_reduced > bound:
        return Verdict.bad(Reason.POOR_FIT, f"{scatter.describe()} (reduced chi^2 "
                           f"{fit.chi2_reduced:.3g}): the converted light is not one "
                           "Lorentzian line")
    return Verdict.ok(f"resonance at {wavelength * 1e9:.7f} nm, linewidth "
                      f"{values['optical_linewidth']}")


def _unresolved(values: dict[str, FitValue], details: dict[str, float], scan: _Scan,
                step: float) -> Verdict:
    i = int(np.argmax(scan.converted))
    bright = int(np.count_nonzero(scan.converted > scan.converted[i] / 2))
    if bright > 2:
        return Verdict.bad(Reason.POOR_FIT, f"the Lorentzian fit did not converge on a "
                           f"line {bright} points wide")
    nu0 = float(scan.nu[i])
    wavelength = SPEED_OF_LIGHT / nu0
    # The resonance lies within half a step of the brightest step: uniform there.
    values["optical_resonance_wavelength"] = FitValue(
        wavelength, wavelength**2 / SPEED_OF_LIGHT * step / math.sqrt(12), "m").with_systematic(
        _laser_wavelength_error())
    details.update({"optical_linewidth_resolved": 0.0, "center_detuning": scan.detuning_at(nu0)})
    if i in (0, scan.nu.size - 1):
        return Verdict.bad(Reason.NO_SIGNAL, f"the brightest point is at the edge of the "
                           f"scan {scan.window_text()}: centre the scan there")
    return Verdict.ok(f"resonance at {wavelength * 1e9:.7f} nm (the brightest laser step); "
                      f"linewidth unresolved: narrower than "
                      f"{MIN_RESOLVED_STEPS * step / 1e6:.3g} MHz ({MIN_RESOLVED_STEPS} "
                      f"laser steps of 0.1 pm)")


def _laser_wavelength_error() -> float:
    """m, one sigma: the laser's absolute accuracy and its coarse move's repeatability.
    Only the absolute wavelength carries it: the bench sets every later detuning with the
    same laser, relative to this result, so the offset cancels there."""
    return math.hypot(LASER_WAVELENGTH_ACCURACY_PM, LASER_WAVELENGTH_REPEATABILITY_PM) \
        * 1e-12 / DATA_SHEET_COVERAGE


@dataclass(frozen=True)
class _Scan:
    """A stored scan, ordered by pump frequency."""

    nu: np.ndarray
    """Pump optical frequency, Hz (c / pump_wavelength)."""
    detuning: np.ndarray
    wavelength: np.ndarray
    converted: np.ndarray
    """Optical power with the mw tone on minus off, W."""
    p_off: np.ndarray
    """mw-off readings in acquisition order (their successive differences are noise)."""
    on: np.ndarray
    """mw-on readings, W, in frequency order (the meter's range for each: `meter_shape`)."""
    off: np.ndarray
    """mw-off readings, W, in frequency order."""
    up_pass: np.ndarray | None = None
    """Per point (in frequency order): measured on the up pass of an interleaved scan
    (`efficiency_fits.passes`); None for a scan measured otherwise."""

    @classmethod
    def from_run(cls, run: StoredRun) -> _Scan:
        wavelength = column(run, "pump_wavelength")
        detuning = column(run, "pump_detuning")
        p_on, p_off = column(run, ON), column(run, OFF)
        n = min(wavelength.size, detuning.size, p_on.size, p_off.size)
        wavelength, detuning, p_on, p_off = (a[:n] for a in (wavelength, detuning, p_on, p_off))
        nu = SPEED_OF_LIGHT / wavelength if n else np.empty(0)
        order = np.argsort(nu, kind="stable")
        up = passes(detuning)
        return cls(nu[order], detuning[order], wavelength[order], (p_on - p_off)[order], p_off,
                   p_on[order], p_off[order], None if up is None else up[order])

    @property
    def nu_ref(self) -> float:
        return float(np.round(np.mean(self.nu), -6))

    def detuning_at(self, nu: float) -> float:
        """Pump detuning (the setup's, at run time) of optical frequency `nu`."""
        return float(nu - np.median(self.nu - self.detuning))

    def window_text(self) -> str:
        return (f"{self.detuning.min() / 1e6:.4g}..{self.detuning.max() / 1e6:.4g} MHz of "
                "pump detuning")


class OpticalResonanceScan(LabSequence[OpticalResonanceOptions]):
    """Pump-detuning scan of the converted light (power meter, mw tone on minus off).

    Proposes ``optical_resonance_wavelength`` (m) when the verdict is good.
    """

    name: ClassVar[str] = "optical_resonance_scan"
    options_class: ClassVar[type] = OpticalResonanceOptions
    analysis_class: ClassVar[type[Analysis]] = OpticalResonanceAnalysis

    def __init__(self, options: OpticalResonanceOptions | None = None, **changes: Any) -> None:
        super().__init__(options, **changes)
        self._meter: MeterState | None = None
        self._locked = False
        """Whether `prepare` released the pump lock (`finish` re-enables it)."""

    def dataset_parameters(self) -> list[DatasetParameter]:
        sp = ("pump_detuning",)
        return [DatasetParameter("pump_detuning", "Hz", "Pump detuning (read back)"),
                DatasetParameter("pump_wavelength", "m", "Pump wavelength (read back)", sp),
                DatasetParameter("pump_power", "W", "Pump power (read back)", sp),
                DatasetParameter("mw_frequency", "Hz", "Microwave frequency (read back)", sp),
                DatasetParameter("mw_power", "dBm", "Microwave power at source (read back)", sp),
                DatasetParameter(ON, "W", "Optical power, mw on", sp),
                DatasetParameter(OFF, "W", "Optical power, mw off", sp)]

    def _chunks(self) -> list[np.ndarray]:
        return [c for c in np.array_split(self.options.acquisition_order(),
                                          self.options.segments) if c.size]

    def steps(self) -> list[Step]:
        chunks = self._chunks()
        return [Step(i, f"detuning {c[0] / 1e6:.5g}..{c[-1] / 1e6:.5g} MHz ({i + 1}/"
                     f"{len(chunks)})", {"start": float(c[0]), "stop": float(c[-1]),
                                         "points": float(c.size)})
                for i, c in enumerate(chunks)]

    def prepare(self, station: LabStation) -> None:
        options = self.options
        setup = require_setup(station, type(self).__name__)
        self._meter = prepare_drive(setup, options.mw_frequency, options.mw_power,
                                    options.averaging)
        self._locked = release_pump_lock(setup)  # the absolute line: the laser alone
        switch_pump_on(setup, options.pump_power, float(options.detunings()[0]))

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        setup = require_setup(station, type(self).__name__)
        return scan_detunings(setup, self._chunks()[step.index], keep=self.keep)

    def finish(self, station: LabStation) -> None:
        setup = getattr(station, "setup", None)
        if setup is not None:
            try:
                restore_bench(setup, self._meter)
            finally:
                restore_pump_lock(setup, self._locked)
