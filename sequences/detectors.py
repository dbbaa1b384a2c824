"""Detector calibrations: dark-count rate per channel (`DarkCountScan`) and detection
efficiency against bias (`EfficiencyBiasScan`, sigmoid fit, recommended bias), through the
`SinglePhotonDetector` role only; the light is switched with one boolean parameter (by
default the transducer pump) and every setting changed is put back however the run ends.
Derivation, counting and limits: docs/detectors.md#4-calibrations-sequencesdetectorspy.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import curve_fit

from qnetlab.instruments.station import TAGGER_COUNTER_WINDOW_S, LabStation

from .analysis import Analysis, AnalysisResult, FitValue, Reason, Verdict
from .curve_analysis import CurveAnalysis, CurveData, Param
from .data import StoredRun
from .fitting import Fit, chi2_p_value, scale_covariance
from .framework import DatasetParameter, LabSequence, RunResult, Step
from .report_figures import figure_title
from .transducer.counting import count_clicks

log = logging.getLogger(__name__)

DEAD_CHANNEL_EXPECTED_COUNTS = 10.0
"""No click where the bias implies more dark counts than this: the channel is dead."""
MIN_DARK_COUNTS = 10
"""Fewer dark counts than this are not a calibration (relative error > 30 %)."""
DISPERSION_P_MIN = 1e-6
"""Repeats whose Pearson chi2 is less probable than this do not share one Poisson rate."""
SIGNAL_SIGNIFICANCE = 5.0
"""Net (light minus dark) counts must exceed this many Poisson deviations."""
MIN_SWEEP_POINTS = 8
"""Fewer unlatched biases cannot support a 3-parameter sigmoid fit with a verdict."""
MIN_PLATEAU_POINTS = 3
"""Biases measured at or above the recommended bias: the plateau must be seen, not guessed."""
FIT_P_MIN = 1e-6
"""A sigmoid fit whose chi2 is less probable than this does not describe the curve."""


# -- light and restore ---------------------------------------------------------------------------
def _light_parameter(station: LabStation, spec: str) -> Any:
    """The boolean parameter that switches the light (``instrument.parameter``, or the
    transducer pump's ``pump_on`` when `spec` is empty)."""
    if spec:
        inst, _, name = spec.partition(".")
        param = station.instrument(inst).parameters.get(name)
        if param is None:
            raise ValueError(f"light_switch {spec!r}: {inst} has no parameter {name!r}")
        return param
    if station.setup is None:
        raise ValueError("the station has no transducer_setup to switch the light with: give "
                         "light_switch='<instrument>.<parameter>' (a boolean output)")
    return station.setup.pump_on


def _counts(channel: Any, integration_time: float, window: float) -> tuple[int, float]:
    """Clicks over `integration_time` s of whole `window`-s counter readings (at least one),
    and the time (s) actually counted over: `count_clicks` for a fixed number of readings."""
    readings = max(1, round(integration_time / window))
    count = count_clicks(channel, min_clicks=math.inf, max_time=readings * window,
                         window=window)
    return count.clicks, count.exposure


# -- dark counts ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DarkCountScanOptions:
    """Options of `DarkCountScan` (SI units)."""

    detector: str = "snspd"
    """Station name of the `SinglePhotonDetector`."""
    channels: tuple[int, ...] = ()
    """Channel numbers to read; () reads every channel of the detector."""
    integration_time: float = 10.0
    """s counted per repeat (a whole number of counter windows)."""
    repeats: int = 3
    """Integrations per channel (checked for a common Poisson rate)."""
    counter_window: float = TAGGER_COUNTER_WINDOW_S
    """s one ``count_rate`` reading integrates over (the tagger counter's window)."""
    light_switch: str = ""
    """``instrument.parameter`` (bool) switching the light; '' is the transducer pump."""
    reference_bias: float = 10.5e-6
    """A, where a live channel shows at least `reference_dark_count_rate`."""
    reference_dark_count_rate: float = 1.0
    """Hz, the floor of a live channel's dark-count rate at `reference_bias`."""
    dark_count_current_scale: float = 0.6e-6
    """A, the dark-count rate grows by e per this much bias."""

    def __post_init__(self) -> None:
        if not (self.integration_time > 0 and self.counter_window > 0 and self.repeats >= 1):
            raise ValueError("integration_time and counter_window must be > 0 s and "
                             "repeats >= 1")
        if self.integration_time < self.counter_window:
            raise ValueError(f"integration_time {self.integration_time:g} s is shorter than "
                             f"one counter window ({self.counter_window:g} s)")
        if self.reference_dark_count_rate < 0 or self.dark_count_current_scale <= 0:
            raise ValueError("reference_dark_count_rate must be >= 0 Hz and "
                             "dark_count_current_scale > 0 A")


class DarkCountAnalysis(Analysis):
    """Dark-count rate (Hz) per channel, Poisson estimate from the pooled counts.

    Not a `CurveAnalysis`: one rate per channel and a dispersion test of its repeats, no
    curve to fit; the errors and the p-value follow `sequences.fitting`."""

    sequence = "dark_count_scan"

    def analyze(self, run: StoredRun) -> AnalysisResult:
        d = {k: np.asarray(run.data.get(k, []), float)
             for k in ("channel", "counts", "integration_time", "bias", "latched")}
        result = AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok())
        if d["channel"].size == 0:
            result.verdict = Verdict.bad(Reason.TOO_FEW_POINTS, "no integration stored")
            return result
        options = run.options_as(DarkCountScanOptions)
        problems: list[tuple[Reason, str]] = []
        for c in sorted({int(x) for x in d["channel"]}):
            rows = d["channel"] == c
            n, t = float(d["counts"][rows].sum()), float(d["integration_time"][rows].sum())
            bias = float(np.median(d["bias"][rows]))
            rate = n / t
            result.values[f"dark_count_rate_ch{c}"] = FitValue(
                rate, math.sqrt(max(n, 1.0)) / t, "Hz")
            result.details[f"counts_ch{c}"] = n
            result.details[f"time_ch{c}"] = t
            result.details[f"bias_ch{c}"] = bias
            expected = _implied_dark_rate(bias, options) * t
            result.details[f"implied_min_counts_ch{c}"] = expected
            per = d["counts"][rows]
            times = d["integration_time"][rows]
            p = _dispersion_p(per, times)
            result.details[f"dispersion_p_ch{c}"] = p
            problem = _dark_problem(c, n, t, bias, bool(np.any(d["latched"][rows] > 0)),
                                    expected, p)
            result.details[f"good_ch{c}"] = float(problem is None)
            if problem is not None:
                problems.append(problem)
            else:
                result.proposed[f"dark_count_rate_ch{c}"] = rate
        if problems:
            result.verdict = Verdict.bad(problems[0][0], "; ".join(p[1] for p in problems))
        else:
            result.verdict = Verdict.ok(", ".join(
                f"{k.removeprefix('dark_count_rate_')}: {v}" for k, v in result.values.items()))
        return result

    def plot(self, run: StoredRun, result: AnalysisResult) -> dict[str, Figure]:
        ch = np.asarray(run.data.get("channel", []), float)
        n = np.asarray(run.data.get("counts", []), float)
        t = np.asarray(run.data.get("integration_time", []), float)
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for c in sorted({int(x) for x in ch}):
            rows = ch == c
            r, e = n[rows] / t[rows], np.sqrt(np.maximum(n[rows], 1.0)) / t[rows]
            ax.errorbar(np.arange(r.size), r, e, fmt="o", label=f"ch{c} repeats")
            v = result.values.get(f"dark_count_rate_ch{c}")
            if v is not None:
                ax.axhline(v.value, ls="--", lw=1, color=ax.lines[-1].get_color())
        ax.set_xlabel("repeat")
        ax.set_ylabel("dark-count rate (Hz)")
        ax.legend(fontsize=8)
        fig.suptitle(figure_title(f"run {run.run_id}: {result.verdict}"), fontsize=8)
        fig.tight_layout()
        return {"dark_counts": fig}


def _implied_dark_rate(bias: float, options: DarkCountScanOptions) -> float:
    """Hz: the conservative floor of a live channel's dark-count rate at `bias` (A)."""
    if bias <= 0:
        return 0.0
    ref = float(options.reference_bias)
    rate = float(options.reference_dark_count_rate)
    scale = float(options.dark_count_current_scale)
    return rate * math.exp(min((bias - ref) / scale, 50.0))


def _dispersion_p(counts: np.ndarray, times: np.ndarray) -> float:
    """Survival probability of the repeats' Pearson chi2 about their common Poisson rate."""
    if counts.size < 2 or counts.sum() <= 0:
        return 1.0
    mu = times * counts.sum() / times.sum()
    chi2 = float(np.sum((counts - mu) ** 2 / mu))
    return chi2_p_value(chi2, counts.size - 1)


def _dark_problem(c: int, n: float, t: float, bias: float, latched: bool, expected: float,
                  p: float) -> tuple[Reason, str] | None:
    if latched:
        return Reason.NO_SIGNAL, (f"ch{c} is latched at {bias * 1e6:.4g} uA (no clicks): "
                                  "reset it or lower its bias, then measure again")
    if bias <= 0:
        return Reason.NO_SIGNAL, (f"ch{c} is not biased (0 A: disabled): no dark counts to "
                                  "measure; set its operating bias")
    if n == 0 and expected > DEAD_CHANNEL_EXPECTED_COUNTS:
        return Reason.NO_SIGNAL, (f"ch{c} is dead: 0 counts in {t:g} s where its bias "
                                  f"{bias * 1e6:.4g} uA implies at least {expected:.3g} "
                                  "dark counts; check the detector, amplifier, cable and "
                                  "the counter's threshold")
    if n < MIN_DARK_COUNTS:
        return Reason.TOO_FEW_POINTS, (f"ch{c}: only {n:g} dark counts in {t:g} s (at least "
                                       f"{MIN_DARK_COUNTS} needed); integrate longer")
    if p < DISPERSION_P_MIN:
        return Reason.POOR_FIT, (f"ch{c}: the repeats do not share one Poisson rate (chi2 "
                                 f"probability {p:.2g}): a light leak or a drifting bias?")
    return None


class DarkCountScan(LabSequence[DarkCountScanOptions]):
    """Dark-count rate of each detector channel at its present bias, light off.

    Proposes ``dark_count_rate_ch<n>`` (Hz) per channel when the verdict is good.
    """

    name: ClassVar[str] = "dark_count_scan"
    options_class: ClassVar[type] = DarkCountScanOptions
    analysis_class: ClassVar[type[Analysis]] = DarkCountAnalysis

    def dataset_parameters(self) -> list[DatasetParameter]:
        sp = ("channel", "repeat")
        return [DatasetParameter("channel", "", "Detector channel"),
                DatasetParameter("repeat", "", "Repeat"),
                DatasetParameter("counts", "", "Dark counts", sp),
                DatasetParameter("integration_time", "s", "Integration time", sp),
                DatasetParameter("bias", "A", "Bias current", sp),
                DatasetParameter("latched", "", "Latched (1) or not (0)", sp)]

    def steps(self) -> list[Step]:
        # Channels () means "all": the plan is completed in `prepare`, from the detector.
        channels = self.options.channels or getattr(self, "_all_channels", ())
        return [Step(i * self.options.repeats + r, f"ch{c} repeat {r + 1}/"
                     f"{self.options.repeats}", {"channel": float(c), "repeat": float(r)})
                for i, c in enumerate(channels) for r in range(self.options.repeats)]

    def run(self, station: LabStation, db_path: Any, *, quiet: bool = False,
            analyze: bool = True) -> RunResult:
        """As `LabSequence.run`; the light is switched off for the run and restored after."""
        if not self.options.channels:
            self._all_channels = tuple(sorted(
                station.instrument(self.options.detector).detector_channels))
        return LabSequence.run(self, station, db_path, quiet=quiet, analyze=analyze)

    def prepare(self, station: LabStation) -> None:
        self.restorer.change(_light_parameter(station, self.options.light_switch), False)

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        options = self.options
        channel = station.instrument(options.detector).detector_channels[
            int(step.settings["channel"])]
        bias = float(channel.bias_current())
        latched = bool(channel.latched())
        n, t = (0, options.integration_time) if latched else _counts(
            channel, options.integration_time, options.counter_window)
        return {"channel": np.array([step.settings["channel"]]),
                "repeat": np.array([step.settings["repeat"]]),
                "counts": np.array([float(n)]), "integration_time": np.array([t]),
                "bias": np.array([bias]), "latched": np.array([float(latched)])}


# -- efficiency against bias ---------------------------------------------------------------------
@dataclass(frozen=True)
class EfficiencyBiasScanOptions:
    """Options of `EfficiencyBiasScan` (SI units)."""

    detector: str = "snspd"
    """Station name of the `SinglePhotonDetector`."""
    channel: int = 1
    bias_start: float = 2.0e-6
    """A, first bias of the sweep (low: no efficiency)."""
    bias_stop: float = 12.4e-6
    """A, last bias; the sweep stops earlier at the first latched point."""
    points: int = 53
    integration_time: float = 1.0
    """s counted per bias, light on, and again light off."""
    counter_window: float = TAGGER_COUNTER_WINDOW_S
    """s one ``count_rate`` reading integrates over (the tagger counter's window)."""
    light_switch: str = ""
    """``instrument.parameter`` (bool) switching the light; '' is the transducer pump."""
    pump_power: float | None = None
    """W, set on the transducer pump for the run (None keeps the present setting)."""
    incident_photon_rate: float | None = None
    """Photons/s at the detector from an independent calibration; None: relative efficiency."""
    incident_photon_rate_stderr: float = 0.0
    """Photons/s, standard error of `incident_photon_rate`."""
    plateau_fraction: float = 0.98
    """The recommended bias is where the efficiency reaches this fraction of the plateau."""
    switching_margin: float = 0.5e-6
    """A, the recommended bias must stay this far below the switching current."""

    def __post_init__(self) -> None:
        if not (0 <= self.bias_start < self.bias_stop) or self.points < 2:
            raise ValueError(f"need 0 <= bias_start < bias_stop and points >= 2, got "
                             f"{self.bias_start:g}..{self.bias_stop:g} A in {self.points}")
        if not (self.integration_time >= self.counter_window > 0):
            raise ValueError("integration_time must be at least one counter window (> 0 s)")
        if not 0.5 < self.plateau_fraction < 1:
            raise ValueError(f"plateau_fraction must be in (0.5, 1), got "
                             f"{self.plateau_fraction}")
        if self.incident_photon_rate is not None and not self.incident_photon_rate > 0:
            raise ValueError("incident_photon_rate must be > 0 photons/s (or None)")
        if self.switching_margin < 0 or self.incident_photon_rate_stderr < 0:
            raise ValueError("switching_margin and incident_photon_rate_stderr must be >= 0")


def sigmoid(bias: np.ndarray, plateau: float, midpoint: float, width: float) -> np.ndarray:
    """The efficiency-curve model: `plateau` (any unit) / (1 + exp(-(bias - midpoint) /
    width)), currents in A."""
    x = np.clip(-(np.asarray(bias, float) - midpoint) / width, -700, 700)
    return plateau / (1.0 + np.exp(x))


class EfficiencyBiasAnalysis(CurveAnalysis):
    """Sigmoid fit of the net count rate against bias: plateau, half-point, width, and the
    recommended bias on the plateau (own optimiser: `_fit_sigmoid` reweights with the
    model's Poisson variances)."""

    sequence = "efficiency_bias_scan"
    params = (Param("plateau_count_rate", "Hz"), Param("midpoint_current", "A"),
              Param("sigmoid_width", "A"))
    min_points = MIN_SWEEP_POINTS
    figure_name = "efficiency"
    x_label, y_label, x_scale = "bias current (µA)", "count rate, light on - off (Hz)", 1e-6

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        return sigmoid(x, *p)

    def load(self, run: StoredRun) -> CurveData | Verdict:
        options = run.options_as(EfficiencyBiasScanOptions)
        d = {k: np.asarray(run.data.get(k, []), float)
             for k in ("bias", "counts_light", "counts_dark", "integration_time", "latched")}
        known = {}
        latched = d["latched"] > 0
        if np.any(latched):
            known["switching_current"] = FitValue(float(np.min(d["bias"][latched])),
                                                  _bias_step(options), "A")
        ok = ~latched & np.isfinite(d["counts_light"]) & np.isfinite(d["counts_dark"])
        b, n_on, n_off, t = (d[k][ok] for k in ("bias", "counts_light", "counts_dark",
                                                "integration_time"))
        order = np.argsort(b, kind="stable")
        b, n_on, n_off, t = b[order], n_on[order], n_off[order], t[order]
        net = float(np.sum(n_on - n_off))
        return CurveData(b, (n_on - n_off) / t, np.sqrt(np.maximum(n_on + n_off, 1.0)) / t,
                         {"points": float(b.size), "net_counts": net},
                         extra={"options": options, "n_on": n_on, "n_off": n_off, "t": t,
                                "net": net}, values=known)

    def too_few(self, points: int, data: CurveData | None) -> str:
        c = data.extra["options"].channel if data is not None else "?"
        return f"ch{c}: {points} unlatched biases, at least {MIN_SWEEP_POINTS} needed"

    def no_signal(self, data: CurveData) -> str:
        c, e = data.extra["options"].channel, data.extra
        spread = math.sqrt(float(np.sum(e["n_on"] + e["n_off"])) + 1)
        if e["n_on"].sum() == 0:
            return (f"ch{c} is dead: no click at any bias, light on or off; check the "
                    "detector, amplifier, cable and counter threshold")
        if e["net"] < SIGNAL_SIGNIFICANCE * spread:
            return (f"ch{c}: no light signal (net {e['net']:.0f} ± {spread:.0f} counts, light "
                    "on minus off): is the light reaching the detector?")
        return ""

    def fit(self, data: CurveData) -> Fit | Verdict:
        e = data.extra
        fit = _fit_sigmoid(data.x, e["n_on"], e["n_off"], e["t"])
        if fit is None:
            return Verdict.bad(Reason.POOR_FIT, f"ch{e['options'].channel}: the sigmoid fit "
                               "did not converge")
        return fit

    def values(self, fit: Fit, data: CurveData) -> dict[str, FitValue]:
        options, (p, cov, err) = data.extra["options"], (fit.params, fit.covariance, fit.stderr)
        values = fit.values()
        if options.incident_photon_rate is not None:
            phi, s_phi = float(options.incident_photon_rate), \
                float(options.incident_photon_rate_stderr)
            eta = p[0] / phi
            values["plateau_efficiency"] = FitValue(
                float(eta), float(eta * math.hypot(err[0] / p[0], s_phi / phi)), "")
        lever = math.log(options.plateau_fraction / (1 - options.plateau_fraction))
        values["recommended_bias"] = FitValue(float(p[1] + lever * p[2]), math.sqrt(max(
            cov[1, 1] + lever ** 2 * cov[2, 2] + 2 * lever * cov[1, 2], 0)), "A")
        return values

    def fit_details(self, fit: Fit, data: CurveData) -> dict[str, float]:
        absolute = data.extra["options"].incident_photon_rate is not None
        return {**fit.diagnostics(), "absolute": float(absolute)}

    def judge(self, fit: Fit, data: CurveData, values: dict[str, FitValue]) -> Verdict:
        o = data.extra["options"]
        return _efficiency_verdict(int(o.channel), data.x, values, fit,
                                   float(o.switching_margin), float(o.plateau_fraction))

    def propose(self, values: dict[str, FitValue], data: CurveData) -> dict[str, float]:
        c = data.extra["options"].channel
        out = {f"bias_current_ch{c}": values["recommended_bias"].value}
        if "plateau_efficiency" in values:
            out[f"detection_efficiency_ch{c}"] = values["plateau_efficiency"].value
        return out

    def annotate(self, ax: Any, data: CurveData, result: AnalysisResult) -> None:
        if "n_off" in data.extra:
            ax.plot(data.x * 1e6, data.extra["n_off"] / data.extra["t"], ".", label="dark")
        v = result.values
        if "recommended_bias" in v:
            ax.axvline(v["recommended_bias"].value * 1e6, ls="--", color="g",
                       label="recommended bias")
        if "switching_current" in v:
            ax.axvline(v["switching_current"].value * 1e6, ls=":", color="r",
                       label="latched")
        ax.legend(fontsize=8)


def _bias_step(options: EfficiencyBiasScanOptions) -> float:
    points = int(options.points)
    return (float(options.bias_stop) - float(options.bias_start)) / max(
        points - 1, 1)


def _fit_sigmoid(b: np.ndarray, n_on: np.ndarray, n_off: np.ndarray, t: np.ndarray
                 ) -> Fit | None:
    """Weighted least-squares sigmoid fit of the net rate (Hz) against bias (A): parameters
    (plateau Hz, midpoint A, width A), their covariance, chi2 and degrees of freedom; the
    point errors are the model's Poisson ones of the last pass."""
    y = (n_on - n_off) / t
    dark = np.maximum(n_off, 0) / t
    top = float(np.mean(np.sort(y)[-3:]))
    above = np.flatnonzero(y > top / 2)
    mid0 = float(b[above[0]]) if above.size else float(np.median(b))
    scale = float(b.max() - b.min())
    p0 = [max(top, 1.0), mid0, scale / 20]
    bounds = ([0.0, float(b.min()) - scale, scale * 1e-4], [np.inf, float(b.max()) + scale,
                                                            scale])
    # Work in uA-like units: the Jacobian's columns are then of similar size.
    x, s = b / scale, scale
    sigma = np.sqrt(np.maximum(n_on + n_off, 1.0)) / t
    p = np.array([p0[0], p0[1] / s, p0[2] / s])
    lo, hi = [bounds[0][0], bounds[0][1] / s, bounds[0][2] / s], \
        [bounds[1][0], bounds[1][1] / s, bounds[1][2] / s]
    try:
        for _ in range(2):  # data weights first, then the model's Poisson variances
            p, cov = curve_fit(sigmoid, x, y, p0=p, sigma=sigma, absolute_sigma=True,
                               bounds=(lo, hi), maxfev=20000)
            model = sigmoid(x, *p)
            sigma = np.sqrt(np.maximum(model + 2 * dark, 1.0 / t) / t)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(p)) or not np.all(np.isfinite(cov)):
        return None
    model = sigmoid(x, *p)
    chi2 = float(np.sum(((y - model) / sigma) ** 2))
    dof = max(y.size - 3, 1)
    cov = scale_covariance(cov, chi2, dof)  # scatter beyond Poisson widens the errors
    jac = np.diag([1.0, s, s])
    return Fit(("plateau_count_rate", "midpoint_current", "sigmoid_width"),
               np.array([p[0], p[1] * s, p[2] * s]), jac @ cov @ jac, chi2, dof, b, y, model,
               sigma, {"plateau_count_rate": "Hz", "midpoint_current": "A",
                       "sigmoid_width": "A"})


def _efficiency_verdict(c: int, b: np.ndarray, v: dict[str, FitValue], fit: Fit,
                        margin: float, fraction: float) -> Verdict:
    plateau, i_rec = v["plateau_count_rate"], v["recommended_bias"]
    if not (plateau.stderr < 0.1 * plateau.value and math.isfinite(i_rec.stderr)):
        return Verdict.bad(Reason.POOR_FIT, f"ch{c}: the plateau is not determined "
                           f"({plateau}); extend the sweep to higher bias")
    top = float(b.max())
    on_plateau = int(np.sum(b >= i_rec.value))
    if i_rec.value > top or on_plateau < MIN_PLATEAU_POINTS:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"ch{c}: no plateau reached: the efficiency "
                           f"reaches {fraction:.0%} of its fitted plateau at "
                           f"{i_rec.value * 1e6:.4g} uA, with {on_plateau} biases measured "
                           f"there (last {top * 1e6:.4g} uA, at least {MIN_PLATEAU_POINTS} "
                           "needed); extend the sweep if switching allows")
    switching = v["switching_current"].value if "switching_current" in v else top
    if i_rec.value > switching - margin:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"ch{c}: the plateau point "
                           f"{i_rec.value * 1e6:.4g} uA is within {margin * 1e6:.3g} uA of "
                           f"switching ({switching * 1e6:.4g} uA): no safe operating bias")
    if fit.p_value < FIT_P_MIN:
        return Verdict.bad(Reason.POOR_FIT, f"ch{c}: the sigmoid does not describe the curve "
                           f"(chi2 {fit.chi2:.1f} for {float(fit.dof):.0f} dof): unsteady "
                           "light or saturation?")
    eff = v.get("plateau_efficiency")
    return Verdict.ok(f"ch{c}: recommended bias {i_rec}, midpoint {v['midpoint_current']}, "
                      f"width {v['sigmoid_width']}" + (f", efficiency {eff}" if eff else
                                                       f", plateau {plateau}"))


class EfficiencyBiasScan(LabSequence[EfficiencyBiasScanOptions]):
    """Detection efficiency (count rate, light on minus off) of one channel against bias.

    Proposes ``bias_current_ch<n>`` (A) and, with a known incident photon rate,
    ``detection_efficiency_ch<n>`` when the verdict is good.
    """

    name: ClassVar[str] = "efficiency_bias_scan"
    options_class: ClassVar[type] = EfficiencyBiasScanOptions
    analysis_class: ClassVar[type[Analysis]] = EfficiencyBiasAnalysis

    def dataset_parameters(self) -> list[DatasetParameter]:
        sp = ("bias_setpoint",)
        return [DatasetParameter("bias_setpoint", "A", "Bias setpoint"),
                DatasetParameter("bias", "A", "Bias current (read back)", sp),
                DatasetParameter("counts_light", "", "Counts, light on", sp),
                DatasetParameter("counts_dark", "", "Counts, light off", sp),
                DatasetParameter("integration_time", "s", "Integration time", sp),
                DatasetParameter("latched", "", "Latched (1) or not (0)", sp)]

    def biases(self) -> np.ndarray:
        """The sweep's biases, A."""
        options = self.options
        return np.linspace(options.bias_start, options.bias_stop, options.points)

    def steps(self) -> list[Step]:
        return [Step(i, f"ch{self.options.channel} at {b * 1e6:.4g} uA", {"bias": float(b)})
                for i, b in enumerate(self.biases())]

    def run(self, station: LabStation, db_path: Any, *, quiet: bool = False,
            analyze: bool = True) -> RunResult:
        """As `LabSequence.run`; the light, pump power and bias are restored after the run."""
        self._latched_at: float | None = None
        return LabSequence.run(self, station, db_path, quiet=quiet, analyze=analyze)

    def prepare(self, station: LabStation) -> None:
        options = self.options
        channel = self._channel(station)
        self._light = _light_parameter(station, options.light_switch)
        self.restorer.change(channel.bias_current, 0.0)  # also clears a latch
        self.restorer.change(self._light, False)
        if options.pump_power is not None:
            if station.setup is None:
                raise ValueError("pump_power needs the station's transducer_setup")
            self.restorer.change(station.setup.pump_power, options.pump_power)

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        options = self.options
        channel = self._channel(station)
        row = {"bias_setpoint": np.array([step.settings["bias"]])}
        if self._latched_at is None:
            channel.bias_current(step.settings["bias"])
            if channel.latched():
                self._latched_at = step.settings["bias"]
                channel.bias_current(0.0)  # unbias: clears the latch, protects the wire
        if self._latched_at is not None:
            nan = np.array([math.nan])
            return {**row, "bias": row["bias_setpoint"], "counts_light": nan,
                    "counts_dark": nan, "integration_time": np.array([0.0]),
                    "latched": np.array([1.0])}
        bias = float(channel.bias_current())
        self._light.set(False)
        dark, t = _counts(channel, options.integration_time, options.counter_window)
        self._light.set(True)
        light, _ = _counts(channel, options.integration_time, options.counter_window)
        return {**row, "bias": np.array([bias]), "counts_light": np.array([float(light)]),
                "counts_dark": np.array([float(dark)]), "integration_time": np.array([t]),
                "latched": np.array([0.0])}

    def _channel(self, station: LabStation) -> Any:
        return station.instrument(self.options.detector).detector_channels[self.options.channel]
