"""`ConversionBandwidthScan`: conversion efficiency against the microwave tone's frequency.

At a fixed pump (power and detuning), the microwave tone steps across the microwave
resonance; at each frequency the power meter reads the optical output with the tone on and
off, and eta follows from the difference (`efficiency_fits`, calibration from the run's
station snapshot; the photon flux of the tone is computed at each frequency). The
conversion band is the microwave mode's Lorentzian: the fit gives its FWHM (the conversion
bandwidth), its centre and the peak efficiency, errors from the covariance of the
noise-weighted fit scaled by the residual chi^2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from matplotlib.figure import Figure

from qnetlab.instruments.station import LabStation
from qnetlab.sequences.analysis import Analysis, AnalysisResult, FitValue, Reason, Verdict
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import chi2_bound
from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step

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
    column,
    fit_lorentzian,
    usable_efficiency_points,
)

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
    averaging: int = 100
    """Power-meter samples per reading (~3 ms each): noise 50 pW / sqrt(averaging)."""
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


class ConversionBandwidthAnalysis(Analysis):
    """Lorentzian fit of eta against the microwave frequency."""

    sequence = "conversion_bandwidth_scan"
    uses_partial_steps = True
    """Every row is one complete on/off reading at one mw frequency."""

    def analyze(self, run: StoredRun) -> AnalysisResult:
        result = AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok())
        f = column(run, "mw_frequency")
        if f.size < MIN_POINTS:
            result.verdict = Verdict.bad(Reason.TOO_FEW_POINTS, f"{f.size} points, at least "
                                         f"{MIN_POINTS} needed")
            return result
        points = usable_efficiency_points(run)
        if isinstance(points, Verdict):
            result.verdict = points
            return result
        eta, noise = points.eta, points.noise
        order = np.argsort(f, kind="stable")
        f, eta, noise = f[order], eta[order], noise[order]
        spacing = float(np.ptp(f)) / (f.size - 1)
        result.details.update({"meter_noise": points.meter_noise, "point_spacing": spacing})
        result.tables["bandwidth"] = {"mw_frequency (Hz)": f.tolist(), "eta": eta.tolist(),
                                      "eta_stderr": noise.tolist()}
        best = int(np.argmax(eta / noise))
        if eta[best] < SIGNAL_SIGMAS * noise[best]:
            result.verdict = Verdict.bad(Reason.NO_SIGNAL, f"no converted light above the "
                                         f"noise at {f[0] / 1e9:.6g}..{f[-1] / 1e9:.6g} GHz: "
                                         "check the pump (on the optical resonance?) and the "
                                         "microwave window")
            return result
        f_ref = float(np.round(np.mean(f)))
        fit = fit_lorentzian(f - f_ref, eta, noise)
        if fit is None:
            result.verdict = Verdict.bad(Reason.POOR_FIT, "the Lorentzian fit did not converge")
            return result
        result.values = {
            "conversion_bandwidth": FitValue(fit.fwhm, fit.fwhm_stderr, "Hz"),
            "conversion_center_frequency": FitValue(f_ref + fit.center, fit.center_stderr, "Hz"),
            "peak_efficiency": FitValue(fit.peak, fit.peak_stderr, ""),
        }
        result.details["chi2_reduced"] = fit.chi2_reduced
        result.verdict = _verdict(result.values, f, spacing, fit.chi2_reduced,
                                  chi2_bound(fit.points - 3, points.noise_samples))
        return result

    def plot(self, run: StoredRun, result: AnalysisResult) -> dict[str, Figure]:
        table = result.tables.get("bandwidth", {})
        f = np.asarray(table.get("mw_frequency (Hz)", column(run, "mw_frequency")), float)
        eta = np.asarray(table.get("eta", np.full(f.size, np.nan)), float)
        err = np.asarray(table.get("eta_stderr", np.zeros(f.size)), float)
        v = result.values
        ref = v["conversion_center_frequency"].value if "conversion_center_frequency" in v \
            else float(np.mean(f)) if f.size else 0.0
        fig = Figure(figsize=(9, 4.2))
        ax = fig.subplots()
        ax.errorbar((f - ref) / 1e6, eta, err, fmt=".", label="measured")
        if f.size and all(k in v for k in ("conversion_bandwidth", "peak_efficiency")):
            ff = np.linspace(f.min(), f.max(), 2000)
            model = v["peak_efficiency"].value / (
                1 + (2 * (ff - ref) / v["conversion_bandwidth"].value) ** 2)
            ax.plot((ff - ref) / 1e6, model, "-", label=f"Lorentzian fit, FWHM "
                    f"{v['conversion_bandwidth'].value / 1e6:.4g} MHz")
        ax.set_xlabel(f"microwave detuning from {ref / 1e9:.7g} GHz (MHz)")
        ax.set_ylabel("eta")
        ax.legend(fontsize=8)
        fig.suptitle(f"run {run.run_id}: {result.verdict}", fontsize=9)
        fig.tight_layout()
        return {"bandwidth": fig}


def _verdict(values: dict[str, FitValue], f: np.ndarray, spacing: float, chi2: float,
             bound: float) -> Verdict:
    width, f0, peak = (values[k] for k in ("conversion_bandwidth",
                                           "conversion_center_frequency", "peak_efficiency"))
    if not f.min() <= f0.value <= f.max():
        return Verdict.bad(Reason.NO_SIGNAL, f"only a tail of the conversion band: the fit "
                           f"puts its centre at {f0.value / 1e9:.7g} GHz, outside the scan; "
                           "centre the scan there")
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
    if chi2 > bound:
        return Verdict.bad(Reason.POOR_FIT, f"reduced chi^2 {chi2:.3g} against the meter noise "
                           f"(above {bound:.3g}): the conversion band is not one Lorentzian")
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
        return list(np.array_split(self.options.frequencies(), self.options.segments))

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
