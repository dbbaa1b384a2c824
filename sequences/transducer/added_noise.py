"""`AddedNoiseScan`: the transducer's added noise against pump power, referred to its input
(efficiency on the power meter, noise by photon counting on and off resonance, then the line
N_add(P) = n_0 + k P by generalised least squares, `fit_added_noise`). Derivation and the
placeholder linewidth: docs/transducer.md#added-noise-the-measurement-in-detail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from matplotlib.figure import Figure
from scipy import constants

from qnetlab.instruments.station import LabStation
from qnetlab.sequences.analysis import Analysis, AnalysisResult, FitValue, Reason, Verdict
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import chi2_p_value, scale_covariance
from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step
from qnetlab.sequences.report_figures import figure_title

from .bench import DB_TO_LN, constant_error, recentre_tone
from .counting import (
    MAX_DEAD_TIME_LOSS,
    DeadTimeModel,
    count_clicks,
    counter_input_switch,
    detector_channel,
)
from .efficiency_fits import instrument_efficiency_relative_error, pump_power_relative_error

MIN_POWERS = 3
"""Fewer pump powers cannot support a 2-parameter line with a verdict."""
SIGNIFICANCE = 5.0
"""A signal (net noise counts, efficiency) must exceed this many standard errors."""
FIT_P_MIN = 1e-6
"""A line whose chi2 is less probable than this does not describe N_add(P)."""



@dataclass(frozen=True)
class AddedNoiseScanOptions:
    """Options of `AddedNoiseScan` (SI units)."""

    pump_powers: tuple[float, ...] = (0.5e-3, 1e-3, 2e-3, 3e-3, 4e-3, 6e-3)
    """W at the laser output, one step each (ascending keeps the heating history simple)."""
    pump_detuning: float = 0.0
    """Hz, the pump on the optical resonance (from `OpticalResonanceScan`)."""
    far_detuning: float = 50e9
    """Hz: the pump's detuning for the leakage count, >> the optical linewidth."""
    mw_frequency: float = 8.0e9
    """Hz, the microwave resonance (from the VNA) where eta is measured."""
    mw_linewidth: float = 10e6
    """Hz, the microwave FWHM (from the VNA); sets the noise band B = (pi / 2) mw_linewidth.
    The default is a placeholder: pass the measured one."""
    mw_linewidth_stderr: float = 5e6
    """Hz, its standard error (propagated into every N_add)."""
    mw_power: float = 10.0
    """dBm at the microwave source while eta is measured: the bench's top (its soft limit),
    so the weakest devices' converted power (a few pW at 0 dBm for bulk_eo_cw's 0.5 mW
    point) stands well above the power meter's 50 pW noise floor averaged down (Thorlabs
    PM100D with an S155C: the twin's `noise_floor`)."""
    detection_drift: float = 0.01
    """Relative rms change of the detection path's efficiency over one minute, taken as a
    random walk over the scan (over t s: this x sqrt(t / 60)). Fibre polarization at a
    polarization-sensitive SNSPD wanders by a few per cent over tens of minutes
    (docs/simulation.md#drift-realistic-lab, Brida et al. quant-ph/0610185): the realistic
    lab's 3 % with a 20 min correlation time moves 0.95 % in a minute. The converted noise
    follows it, the power meter's eta does not, so N_add wanders with it from step to step
    (the level at the first step is the detection efficiency's stated error). Measure it on
    your bench (a stable source counted over an hour); 0: a path taken as stable. (The
    far-detuned pump leakage is no reference for it: a device with a large N_add and a
    GHz-wide optical line leaks converted noise there too.)"""
    power_readings: int = 5
    """Power-meter readings per microwave state (on and off) per pump power."""
    power_meter_averages: int = 100
    """Samples the power meter averages per reading, if it has an ``averaging`` setting."""
    settle_time: float = 30.0
    """s of lab time with the pump on at each power before measuring: several times the
    slowest heating time (0.5-5 s in the presets), so N_add is in its steady state."""
    integration_time: float = 10.0
    """s, longest count per pump state (pump on, far, off)."""
    min_clicks: int = 100_000
    """A count stops earlier once it has this many clicks (0.3 % Poisson error)."""
    detector_bias: float = 10.5e-6
    """A, the detector's operating bias during the run (restored afterwards)."""
    detection_efficiency_stderr: float = 0.0
    """Standard error of the setup's ``detection_efficiency`` (propagated like B's); 0 takes
    the setup's own (``detection_efficiency_error``, from the lab config)."""
    dead_time: float = 20e-9
    """s, detector dead time (`counting.DeadTimeModel` says where the defaults come from)."""
    recovery_time: float = 8e-9
    """s, detector efficiency recovery after the dead time."""
    counter_dead_time: float = 3e-9
    """s, tagger input dead time."""
    recentre: bool = False
    """After each power's settle time, re-find the microwave resonance with one quick VNA
    sweep (`bench.recentre_tone`, `mw_linewidth` wide x 10) and move the tone there before
    eta is read: for a mode narrow against its drift over the settle time (a 20 kHz mode
    drifts ~2 kHz in 30 s on the realistic lab), whose tone left at `mw_frequency` would
    read a lower eta, so a higher N_add, as the scan goes on. The tone it set is the row's
    ``mw_frequency``."""

    def __post_init__(self) -> None:
        p = self.pump_powers
        if len(p) < MIN_POWERS or min(p) <= 0:
            raise ValueError(f"pump_powers needs at least {MIN_POWERS} powers > 0 W, got {p}")
        if not (self.mw_linewidth > 0 and self.mw_linewidth_stderr >= 0):
            raise ValueError("mw_linewidth must be > 0 Hz and mw_linewidth_stderr >= 0 Hz "
                             "(pass the VNA's fitted linewidth and its error)")
        if abs(self.far_detuning - self.pump_detuning) < 5e9:
            raise ValueError(f"far_detuning {self.far_detuning:g} Hz must be at least 5 GHz "
                             "from pump_detuning: many optical linewidths off resonance")
        if self.power_readings < 2 or self.power_meter_averages < 1:
            raise ValueError("power_readings must be >= 2 (their scatter is eta's error) and "
                             "power_meter_averages >= 1")
        if self.settle_time < 0 or self.integration_time < 1.0 or self.min_clicks < 1:
            raise ValueError("settle_time must be >= 0 s, integration_time >= 1 s (one "
                             "counter window) and min_clicks >= 1")
        if not 0 <= self.detection_drift < 1:
            raise ValueError(f"detection_drift must be in [0, 1) (relative, per minute), got "
                             f"{self.detection_drift}")
        if not (self.detector_bias > 0 and self.detection_efficiency_stderr >= 0):
            raise ValueError("detector_bias must be > 0 A and detection_efficiency_stderr "
                             ">= 0")
        DeadTimeModel(self.dead_time, self.recovery_time, self.counter_dead_time)


# -- pure functions -------------------------------------------------------------------------
def mw_photon_flux(mw_dbm: np.ndarray, line_attenuation: float, mw_frequency: np.ndarray
                   ) -> np.ndarray:
    """Microwave photons/s at the device from the source power (dBm) and the line's
    attenuation (dB)."""
    watts = 1e-3 * 10 ** ((np.asarray(mw_dbm, float) - line_attenuation) / 10)
    return watts / (constants.h * np.asarray(mw_frequency, float))


def conversion_efficiency(power_on: np.ndarray, power_off: np.ndarray, power_err: np.ndarray,
                          photon_flux: np.ndarray, wavelength: np.ndarray,
                          output_loss: float) -> tuple[np.ndarray, np.ndarray]:
    """eta and its standard error from the power meter (W): mw on minus off over the converted
    power a unit efficiency would give there (`photon_flux` photons/s at `wavelength` m
    through `output_loss` dB)."""
    unit = (np.asarray(photon_flux, float) * constants.h * constants.c
            / np.asarray(wavelength, float) * 10 ** (-output_loss / 10))
    return (np.asarray(power_on, float) - power_off) / unit, np.asarray(power_err, float) / unit


def added_noise_points(eta: np.ndarray, eta_err: np.ndarray, rate_on: np.ndarray,
                       rate_on_err: np.ndarray, rate_far: np.ndarray, rate_far_err: np.ndarray,
                       detection_efficiency: float, bandwidth: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """N_add (photons, referred to the input) per point and its standard error from the
    counts and eta alone (the common scale errors of B and eta_det are not included).

    Rates are incident click rates (Hz), `bandwidth` B in Hz."""
    scale = detection_efficiency * bandwidth
    n_out = (np.asarray(rate_on, float) - rate_far) / scale
    n_out_err = np.hypot(rate_on_err, rate_far_err) / scale
    eta = np.asarray(eta, float)
    n_add = n_out / eta
    err = np.sqrt((n_out_err / eta) ** 2 + (n_out * np.asarray(eta_err, float) / eta**2) ** 2)
    return n_add, err


@dataclass(frozen=True)
class AddedNoiseFit:
    """N_add(P) = intercept + slope P; errors one sigma, covariance of (intercept, slope)."""

    intercept: float
    slope: float
    intercept_stderr: float
    slope_stderr: float
    covariance: float
    chi2: float
    dof: int


def fit_added_noise(power: np.ndarray, n_add: np.ndarray, n_add_err: np.ndarray,
                    scale_rel_err: float = 0.0, shared: np.ndarray | None = None
                    ) -> AddedNoiseFit:
    """Least-squares line through N_add(P) (powers W, errors one sigma), generalised to
    the points' covariance ``diag(err^2) + shared`` (`shared`: what the points have in
    common, e.g. the detection path's drift between them; None: independent points).

    The covariance is scaled by chi2 / dof when that exceeds 1 (scatter beyond the stated
    errors widens the result, never narrows it); `scale_rel_err`, a relative error common to
    every point (B, eta_det), is then added as ``rel^2 * p p^T``."""
    x = np.asarray(power, float)
    y = np.asarray(n_add, float)
    v = np.diag(np.asarray(n_add_err, float) ** 2)
    if shared is not None:
        v = v + np.asarray(shared, float)
    v_inv = np.linalg.inv(v)
    design = np.column_stack([np.ones_like(x), x])
    fisher = design.T @ v_inv @ design
    cov = np.linalg.inv(fisher)
    p = cov @ (design.T @ v_inv @ y)
    r = y - design @ p
    chi2 = float(r @ v_inv @ r)
    dof = max(x.size - 2, 1)
    cov = scale_covariance(cov, chi2, dof)
    cov = cov + scale_rel_err**2 * np.outer(p, p)
    return AddedNoiseFit(float(p[0]), float(p[1]), math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1]),
                         float(cov[0, 1]), chi2, dof)


# -- analysis -------------------------------------------------------------------------------
_COLUMNS = ("pump_power", "pump_wavelength", "mw_frequency", "mw_power", "power_mw_on",
            "power_mw_off", "power_err", "counts_on", "time_on", "counts_far", "time_far",
            "counts_dark", "time_dark", "latched", "bias")


class AddedNoiseAnalysis(Analysis):
    """N_add = N_out / eta per pump power, and the line n_0 + k P through it.

    Not a `CurveAnalysis`: each point is itself derived from a count and an efficiency
    fit of its own; the line uses `sequences.fitting`."""

    sequence = "added_noise_scan"

    def analyze(self, run: StoredRun) -> AnalysisResult:
        result = AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok())
        d = {k: np.asarray(run.data.get(k, []), float) for k in _COLUMNS}
        options = run.options_as(AddedNoiseScanOptions)
        n = d["pump_power"].size
        result.details["points"] = float(n)
        if n == 0:
            result.verdict = Verdict.bad(Reason.TOO_FEW_POINTS, "no pump power measured")
            return result
        if np.any(d["latched"] > 0) or np.any(d["bias"] <= 0):
            where = d["pump_power"][(d["latched"] > 0) | (d["bias"] <= 0)]
            result.verdict = Verdict.bad(Reason.NO_SIGNAL, "the detector was latched or "
                                         f"unbiased at pump power {where[0] * 1e3:.3g} mW: "
                                         "reset it and check detector_bias")
            return result
        if d["counts_on"].sum() + d["counts_dark"].sum() == 0:
            result.verdict = Verdict.bad(Reason.NO_SIGNAL, "the detector counted nothing, "
                                         "pump on or off (not even dark counts): the channel is "
                                         "dead; check the detector, amplifier, cable and the "
                                         "counter's input and threshold")
            return result
        try:
            computed = _points(run, d, options)
        except KeyError as exc:
            result.verdict = Verdict.bad(Reason.NO_SIGNAL, f"calibration constant missing: "
                                         f"{exc}")
            return result
        result.details.update(computed.details)
        result.tables["added_noise"] = computed.table
        return _conclude(result, d["pump_power"], computed)

    def plot(self, run: StoredRun, result: AnalysisResult) -> dict[str, Figure]:
        table = result.tables.get("added_noise", {})
        p = np.asarray(table.get("pump_power (W)", []), float)
        y = np.asarray(table.get("N_add (photons)", []), float)
        e = np.asarray(table.get("N_add stderr (photons)", []), float)
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        if p.size:
            ax.errorbar(p * 1e3, y, e, fmt="o", label="measured (counts and eta errors)")
        v = result.values
        if "added_noise_intrinsic" in v and "added_noise_slope" in v and p.size:
            pp = np.linspace(0.0, float(p.max()), 100)
            n0, k = v["added_noise_intrinsic"].value, v["added_noise_slope"].value
            ax.plot(pp * 1e3, n0 + k * pp, "-", label=f"fit {v['added_noise_intrinsic']} + "
                    f"{k * 1e-3:.3g} /mW")
        ax.axhline(1.0, ls=":", color="k", lw=1, label="N_add = 1")
        ax.set_xlabel("pump power (mW)")
        ax.set_ylabel("N_add (photons, input-referred)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.suptitle(figure_title(f"run {run.run_id}: {result.verdict}"), fontsize=8)
        fig.tight_layout()
        return {"added_noise": fig}


@dataclass
class _Points:
    n_add: np.ndarray
    n_add_err: np.ndarray
    eta: np.ndarray
    eta_err: np.ndarray
    net: np.ndarray
    net_err: np.ndarray
    loss: np.ndarray
    scale_rel_err: float
    table: dict[str, list[float]]
    power_scale_rel_err: float
    details: dict[str, float]
    drift: np.ndarray
    """The points' shared covariance from the detection path's drift (`detection_walk`)."""


def _points(run: StoredRun, d: dict[str, np.ndarray], options: AddedNoiseScanOptions) -> _Points:
    line = float(run.snapshot_value("transducer", "mw_line_attenuation"))
    loss_db = float(run.snapshot_value("transducer", "optical_output_loss"))
    det = float(run.snapshot_value("transducer", "detection_efficiency"))
    det_err = float(options.detection_efficiency_stderr) or constant_error(
        run, "detection_efficiency")
    # N_add = N_out / eta: eta from the power meter carries the line losses' scale error,
    # N_out the detection efficiency's (docs/fitting.md#systematic-uncertainty).
    rel_losses = DB_TO_LN * math.hypot(constant_error(run, "mw_line_attenuation"),
                                       constant_error(run, "optical_output_loss"))
    # The instruments' own data-sheet accuracies (the source's level, the meter's sensor)
    # scale eta like the line losses do (the efficiency map's rule: efficiency_fits).
    rel_losses = math.hypot(rel_losses, instrument_efficiency_relative_error())
    flux = mw_photon_flux(d["mw_power"], line, d["mw_frequency"])
    eta, eta_err = conversion_efficiency(d["power_mw_on"], d["power_mw_off"], d["power_err"],
                                         flux, d["pump_wavelength"], loss_db)
    dead = DeadTimeModel(float(options.dead_time), float(options.recovery_time),
                         float(options.counter_dead_time))
    r_on, e_on = dead.correct(d["counts_on"], d["time_on"])
    r_far, e_far = dead.correct(d["counts_far"], d["time_far"])
    r_dark, _ = dead.correct(d["counts_dark"], d["time_dark"])
    bandwidth = 0.5 * math.pi * float(options.mw_linewidth)
    rel_b = float(options.mw_linewidth_stderr) / float(options.mw_linewidth)
    rel_det = det_err / det
    n_add, n_err = added_noise_points(eta, eta_err, r_on, e_on, r_far, e_far, det, bandwidth)
    drift = detection_walk(n_add, _elapsed(d, options), float(options.detection_drift))
    table = {"pump_power (W)": d["pump_power"].tolist(), "eta": eta.tolist(),
             "eta stderr": eta_err.tolist(), "rate_on (Hz)": r_on.tolist(),
             "rate_far (Hz)": r_far.tolist(), "rate_dark (Hz)": r_dark.tolist(),
             "N_add (photons)": n_add.tolist(),
             "N_add stderr (photons)": np.sqrt(n_err**2 + np.diag(drift)).tolist()}
    loss = np.maximum(dead.loss(d["counts_on"], d["time_on"]),
                      dead.loss(d["counts_far"], d["time_far"]))
    details = {"noise_bandwidth": bandwidth, "detection_efficiency": det,
               "scale_relative_error": math.hypot(rel_b, rel_det, rel_losses),
               "noise_bandwidth_relative_error": rel_b,
               "detection_efficiency_relative_error": rel_det,
               "efficiency_scale_relative_error": rel_losses,
               "max_dead_time_loss": float(np.max(loss)),
               "dark_rate": float(np.sum(d["counts_dark"]) / max(np.sum(d["time_dark"]), 1e-9)),
               "mw_linewidth_is_default": float(_is_default_linewidth(options))}
    return _Points(n_add, n_err, eta, eta_err, r_on - r_far, np.hypot(e_on, e_far), loss,
                   math.hypot(rel_b, rel_det, rel_losses), table,
                   pump_power_relative_error(), details, drift)


def detection_walk(n_add: np.ndarray, elapsed: np.ndarray, per_minute: float) -> np.ndarray:
    """The covariance the detection path's random walk gives the N_add points measured
    `elapsed` s after the first: ``(per_minute^2 / 60) N_k N_l min(t_k, t_l)`` (the first
    point's level is the detection efficiency's stated error, not this)."""
    n = np.asarray(n_add, float)
    t = np.asarray(elapsed, float)
    return np.asarray(per_minute**2 / 60.0 * np.outer(n, n) * np.minimum.outer(t, t), float)


def _elapsed(d: dict[str, np.ndarray], options: AddedNoiseScanOptions) -> np.ndarray:
    """s of lab time from the first point's counts to each point's (rows in acquisition
    order): each step settles, then counts on, far and dark (the read-back count times)."""
    counting = d["time_on"] + d["time_far"] + d["time_dark"]
    per_step = float(options.settle_time) + counting
    return np.concatenate([[0.0], np.cumsum(per_step[:-1])]) if per_step.size else per_step


def _is_default_linewidth(options: AddedNoiseScanOptions) -> bool:
    default = AddedNoiseScanOptions()
    return (float(options.mw_linewidth) == default.mw_linewidth
            and float(options.mw_linewidth_stderr)
            == default.mw_linewidth_stderr)


def _conclude(result: AnalysisResult, power: np.ndarray, pts: _Points) -> AnalysisResult:
    saturated = pts.loss > MAX_DEAD_TIME_LOSS
    if np.any(saturated):
        result.verdict = Verdict.bad(Reason.OUT_OF_RANGE, f"the detector saturates at pump "
                                     f"power {power[saturated][0] * 1e3:.3g} mW (dead time "
                                     f"loses {pts.loss[saturated][0]:.0%} of the clicks): "
                                     "lower the pump power or attenuate before the detector")
        return result
    if not np.any(pts.net > SIGNIFICANCE * pts.net_err):
        result.verdict = Verdict.bad(Reason.NO_SIGNAL, "no converted noise above the pump "
                                     "leakage at any pump power (counts on resonance minus "
                                     "far detuned within 5 sigma of 0): is the pump on the "
                                     "optical resonance and the detector behind the filters?")
        return result
    weak = ~(pts.eta > SIGNIFICANCE * pts.eta_err)
    if np.any(weak):
        result.verdict = Verdict.bad(Reason.NO_SIGNAL, f"no conversion on the power meter at "
                                     f"pump power {power[weak][0] * 1e3:.3g} mW (eta = "
                                     f"{pts.eta[weak][0]:.3g} ± {pts.eta_err[weak][0]:.2g}): "
                                     "check the microwave drive, its frequency and the pump "
                                     "detuning")
        return result
    if np.any(pts.eta > 1):
        result.verdict = Verdict.bad(Reason.OUT_OF_RANGE, f"eta = {pts.eta.max():.3g} > 1: "
                                     "check mw_line_attenuation and optical_output_loss")
        return result
    if power.size < MIN_POWERS:
        result.verdict = Verdict.bad(Reason.TOO_FEW_POINTS, f"{power.size} pump powers, at "
                                     f"least {MIN_POWERS} needed")
        return result
    # The statistical fit; the common scale (B, eta_det, the line losses) is its systematic
    # error, fully correlated between intercept and slope.
    fit = fit_added_noise(power, pts.n_add, pts.n_add_err, 0.0, pts.drift)
    rel = pts.scale_rel_err
    result.values["added_noise_intrinsic"] = FitValue.combined(
        fit.intercept, fit.intercept_stderr, rel * abs(fit.intercept), "photons")
    # The slope is per watt of the laser's setting: the power the device sees (the laser's
    # accuracy, the delivery's drift) scales the slope alone.
    result.values["added_noise_slope"] = FitValue.combined(
        fit.slope, fit.slope_stderr, math.hypot(rel, pts.power_scale_rel_err) * abs(fit.slope),
        "photons/W")
    top = int(np.argmax(power))
    at_max = float(pts.n_add[top])
    result.values["added_noise_at_max_power"] = FitValue.combined(
        at_max, math.sqrt(float(pts.n_add_err[top]) ** 2 + float(pts.drift[top, top])),
        at_max * rel, "photons")
    fit_p = chi2_p_value(fit.chi2, fit.dof)
    result.details.update({"chi2": fit.chi2, "dof": float(fit.dof), "fit_p": fit_p,
                           "intercept_slope_covariance": fit.covariance
                           + rel**2 * fit.intercept * fit.slope,
                           "max_pump_power": float(power[top])})
    if np.any(pts.n_add < -SIGNIFICANCE * pts.n_add_err) or (
            fit.intercept < -SIGNIFICANCE * result.values["added_noise_intrinsic"].stderr):
        result.verdict = Verdict.bad(Reason.OUT_OF_RANGE, "negative added noise: the far-"
                                     "detuned count exceeds the resonant one (leakage that "
                                     "depends on the detuning?)")
        return result
    if fit_p < FIT_P_MIN:
        result.verdict = Verdict.bad(Reason.POOR_FIT, f"N_add is not linear in the pump "
                                     f"power (chi2 {fit.chi2:.1f} for {fit.dof} dof): "
                                     "unsteady heating? lengthen settle_time")
        return result
    note = "" if not result.details.get("mw_linewidth_is_default") else (
        "; noise band from the DEFAULT mw_linewidth (10 ± 5 MHz): pass the VNA's")
    result.verdict = Verdict.ok(f"N_add = {result.values['added_noise_intrinsic']} + "
                                f"{result.values['added_noise_slope']} x P; "
                                f"{result.values['added_noise_at_max_power']} at "
                                f"{power[top] * 1e3:.3g} mW{note}")
    return result


# -- sequence -------------------------------------------------------------------------------
class AddedNoiseScan(LabSequence[AddedNoiseScanOptions]):
    """Added noise (input-referred) against pump power by photon counting; see the module
    docstring. Proposes nothing (the results are device properties, not settings)."""

    name: ClassVar[str] = "added_noise_scan"
    options_class: ClassVar[type] = AddedNoiseScanOptions
    analysis_class: ClassVar[type[Analysis]] = AddedNoiseAnalysis

    def dataset_parameters(self) -> list[DatasetParameter]:
        sp = ("pump_power_setpoint",)
        units = {"pump_power": "W", "pump_wavelength": "m", "mw_frequency": "Hz",
                 "mw_power": "dBm", "power_mw_on": "W", "power_mw_off": "W", "power_err": "W",
                 "time_on": "s", "time_far": "s", "time_dark": "s", "bias": "A"}
        labels = {"power_mw_on": "Optical power, mw on (mean)",
                  "power_mw_off": "Optical power, mw off (mean)",
                  "power_err": "Standard error of on minus off",
                  "counts_on": "Clicks, pump on resonance", "counts_far": "Clicks, pump far "
                  "detuned", "counts_dark": "Clicks, pump off", "latched": "Detector latched"}
        return [DatasetParameter("pump_power_setpoint", "W", "Pump power setpoint")] + [
            DatasetParameter(c, units.get(c, ""), labels.get(c, c.replace("_", " ")), sp)
            for c in _COLUMNS]

    def steps(self) -> list[Step]:
        return [Step(i, f"pump {p * 1e3:.4g} mW", {"pump_power": float(p)})
                for i, p in enumerate(self.options.pump_powers)]

    def prepare(self, station: LabStation) -> None:
        options = self.options
        setup = station.setup
        channel = detector_channel(station, self.name)
        assert setup is not None
        setup.pump_on(False)
        setup.mw_source.rf_output(False)
        r = self.restorer
        r.change(setup.pump_detuning, options.pump_detuning)
        r.change(setup.mw_frequency, options.mw_frequency)
        r.change(setup.mw_power, options.mw_power)
        meter = setup.power_meter
        r.change(meter.wavelength, float(setup.pump_laser.wavelength()))
        if "averaging" in meter.parameters:
            r.change(meter.parameters["averaging"], options.power_meter_averages)
        switch = counter_input_switch(channel)
        if switch is not None:
            r.change(switch, True)
        r.change(channel.bias_current, options.detector_bias)
        r.change(setup.pump_power, options.pump_powers[0])

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        options = self.options
        setup = station.setup
        assert setup is not None
        channel = detector_channel(station, self.name)
        setup.pump_detuning(options.pump_detuning)
        setup.pump_power(step.settings["pump_power"])
        setup.pump_on(True)
        station.sleep(options.settle_time)
        rf = setup.mw_source.rf_output
        if options.recentre:  # the tone is off here: the VNA sees the mode alone
            recentre_tone(setup, options.mw_linewidth)
        on, off = [], []
        for _ in range(options.power_readings):
            rf(True)
            on.append(float(setup.optical_power()))
            rf(False)
            off.append(float(setup.optical_power()))
        err = math.sqrt(np.var(on, ddof=1) / len(on) + np.var(off, ddof=1) / len(off))
        wavelength = float(setup.pump_laser.wavelength())
        resonant = count_clicks(channel, min_clicks=options.min_clicks,
                                 max_time=options.integration_time)
        setup.pump_detuning(options.far_detuning)
        far = count_clicks(channel, min_clicks=options.min_clicks,
                                 max_time=options.integration_time)
        setup.pump_on(False)
        dark = count_clicks(channel, min_clicks=options.min_clicks,
                                 max_time=options.integration_time)
        setup.pump_detuning(options.pump_detuning)
        row = {"pump_power_setpoint": step.settings["pump_power"],
               "pump_power": float(setup.pump_power()), "pump_wavelength": wavelength,
               "mw_frequency": float(setup.mw_frequency()), "mw_power": float(setup.mw_power()),
               "power_mw_on": float(np.mean(on)), "power_mw_off": float(np.mean(off)),
               "power_err": err, "counts_on": resonant.clicks, "time_on": resonant.exposure,
               "counts_far": far.clicks, "time_far": far.exposure, "counts_dark": dark.clicks,
               "time_dark": dark.exposure, "latched": float(bool(channel.latched())),
               "bias": float(channel.bias_current())}
        return {k: np.array([float(v)]) for k, v in row.items()}

    def finish(self, station: LabStation) -> None:
        """Pump off and microwave off first (the safe state); the framework's restorer then
        puts every other setting back (detector bias, tagger input, power meter, pump power
        and detuning, mw settings)."""
        setup = station.setup
        if setup is not None:
            setup.pump_on(False)
            setup.mw_source.rf_output(False)
