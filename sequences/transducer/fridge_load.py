"""`FridgeLoadScan`: mixing-chamber temperature traces after pump-power steps, fitted for the
fridge's time constant, its base temperature and the absorbed fraction of the pump power
(`fit_fridge_traces`). The framework's interlock guard looks only between steps, so within a
step this sequence watches the readings itself: above the ceiling it switches the pump off at
once and the next step stops the run (`FridgeCeilingError`, everything measured kept).
Model and fit: docs/transducer.md#fridge-load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import least_squares

from qnetlab.instruments.errors import InstrumentRefusedError
from qnetlab.instruments.station import LabStation
from qnetlab.instruments.transducer_setup import DEFAULT_FRIDGE_COOLING_COEFFICIENT
from qnetlab.sequences.analysis import Analysis, AnalysisResult, FitValue, Reason, Verdict
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import chi2_p_value
from qnetlab.sequences.framework import DatasetParameter, LabSequence, Step
from qnetlab.sequences.report_figures import figure_title

MIN_READINGS = 5
"""Readings a segment needs to count in the fit."""
SIGNIFICANCE = 5.0
"""The warming must exceed this many standard errors to count as seen."""
FIT_P_MIN = 1e-6
"""A T_eq^2 line whose chi2 is less probable than this does not describe the fridge."""
DEFAULT_COOLING_COEFFICIENT = DEFAULT_FRIDGE_COOLING_COEFFICIENT
"""W/K^2, a for a run whose setup states none (docs/transducer.md#3-the-fridge)."""
COVERAGE_FACTOR = 2.0
"""A certificate's +- accuracy is an expanded uncertainty with k = 2 (JCGM 100:2008, the GUM,
section 6.2): one sigma is half of it."""
MAX_FRACTION_SIGMAS = 5.0
"""An absorbed fraction outside [0, 1] by more than this many combined standard errors says
the assumed cooling coefficient (or the T^2 law) does not describe this fridge."""


class FridgeCeilingError(InstrumentRefusedError, RuntimeError):
    """The mixing chamber passed its ceiling during a step: the run stops (higher powers
    would only pass it again)."""


@dataclass(frozen=True)
class FridgeLoadScanOptions:
    """Options of `FridgeLoadScan` (SI units)."""

    pump_powers: tuple[float, ...] = (0.0, 2.5e-3, 5e-3, 7.5e-3, 10e-3)
    """W at the laser output, one step each; 0 is the pump off (the base temperature)."""
    pump_detuning: float = 0.0
    """Hz, the pump on the optical resonance (as in operation)."""
    hold_time: float = 300.0
    """s of lab time per step: several fridge time constants (60 s on the bench)."""
    readings: int = 40
    """Temperature readings per step."""
    cooling_coefficient: float | None = None
    """a, W/K^2, in P_cool = a (T^2 - T_base^2): the fridge's cooling-power spec. None takes
    the setup's ``fridge_cooling_coefficient`` from the run's snapshot (the lab config's),
    else `DEFAULT_COOLING_COEFFICIENT`."""
    cooling_coefficient_stderr: float | None = None
    """W/K^2, its standard error (propagated into absorbed_fraction as its systematic error).
    None takes the setup's ``fridge_cooling_coefficient_error`` (else 0)."""
    temperature_ceiling: float | None = None
    """K; None takes the lowest maximum of the lab config's interlocks on the pump (none:
    no ceiling)."""
    pump_power_stability: float = 0.005
    """Relative rms wander of the pump power reaching the device (fibre coupling and
    polarization into the fridge), which no meter on the bench sees: each step's heating
    (T_eq^2 - T_base^2) carries it as an independent relative error in the T_eq^2 line.
    Measure it on your bench (e.g. the pump leakage counted far detuned over an hour);
    default 0.5 %: a fibre-coupled cryostat's delivered power wanders by ~1 % over an hour
    (docs/simulation.md#drift-realistic-lab), about half that between steps minutes apart.
    0: an exactly known power."""
    thermometer_accuracy: float = 0.03
    """+-relative accuracy (k = 2, as certificates state it: one sigma is half) of the
    mixing-chamber sensor's calibration curve at mK temperatures. A common scale error of
    every reading: it leaves the time constant alone, moves T_base by this fraction and the
    T^2 slope (so the absorbed fraction) by twice it, as their systematic errors. Default: a
    calibrated RuOx sensor read by a Lake Shore 372, whose calibration term dominates the
    accuracy at mK at a few per cent of T (Lake Shore, "Model 372 sensor performance"; the
    twin's `CALIBRATION_ACCURACY`). Pass your sensor's certificate value."""

    def __post_init__(self) -> None:
        p = self.pump_powers
        if len(p) < 2 or min(p) < 0 or len({float(x) for x in p}) < 2:
            raise ValueError(f"pump_powers needs at least 2 different powers >= 0 W, got {p}")
        if not (self.hold_time > 0 and self.readings >= MIN_READINGS):
            raise ValueError(f"need hold_time > 0 s and readings >= {MIN_READINGS}")
        a, a_err = self.cooling_coefficient, self.cooling_coefficient_stderr
        if not ((a is None or a > 0) and (a_err is None or a_err >= 0)):
            raise ValueError("cooling_coefficient must be > 0 W/K^2 and its stderr >= 0 "
                             "(or None: the setup's)")
        if not (0 <= self.thermometer_accuracy < 1 and 0 <= self.pump_power_stability < 1):
            raise ValueError(f"thermometer_accuracy and pump_power_stability must be in "
                             f"[0, 1) (relative), got {self.thermometer_accuracy}, "
                             f"{self.pump_power_stability}")
        if self.temperature_ceiling is not None and not self.temperature_ceiling > 0:
            raise ValueError("temperature_ceiling must be > 0 K (or None for the interlock's)")


# -- the fit --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FridgeFit:
    """Both stages' results (K, s, W; one-sigma errors)."""

    time_constant: float
    time_constant_stderr: float
    powers: np.ndarray
    """The distinct powers, W, ascending."""
    equilibrium: np.ndarray
    """T_eq per power, K."""
    equilibrium_cov: np.ndarray
    base_temperature: float
    base_temperature_stderr: float
    slope: float
    """f / a, K^2/W."""
    slope_stderr: float
    line_chi2: float
    line_dof: int
    relative_noise: float
    """Estimated relative rms noise of one reading."""
    residual_correlation: float = 0.0
    """Lag-1 correlation of the trace residuals within segments (0 for white noise): a
    diagnostic; the trace fit's covariance models the correlation (`_drift_covariance`)."""

    @property
    def line_p(self) -> float:
        return 1.0 if self.line_dof < 1 else chi2_p_value(self.line_chi2, self.line_dof)


def segments(step: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Segment index per reading: a new segment at each step and each change of power."""
    s = np.asarray(step, float)
    p = np.asarray(power, float)
    new = np.ones(s.size, bool)
    new[1:] = (np.diff(s) != 0) | (np.diff(p) != 0)
    return np.cumsum(new) - 1


def _design(t: np.ndarray, seg: np.ndarray, level: np.ndarray, tau: float, n_levels: int,
            n_seg: int) -> np.ndarray:
    decay = np.exp(-t / tau)
    design = np.zeros((t.size, n_levels + n_seg))
    design[np.arange(t.size), level] = 1.0 - decay
    design[np.arange(t.size), n_levels + seg] = decay
    return design


def fit_fridge_traces(elapsed: np.ndarray, temperature: np.ndarray, power: np.ndarray,
                      segment: np.ndarray, power_stability: float = 0.0, *,
                      jackknife: bool = True) -> FridgeFit | None:
    """Fit temperature traces (K) at `elapsed` s from each segment's first reading, under
    `power` W, `segment` index per reading (see the module docstring). `power_stability`
    is the relative rms error of each step's delivered power (its heating T_eq^2 - T_base^2
    carries it in the line). None if the data cannot support it (fewer than two powers, or
    a failed fit).

    The stage relaxes towards an equilibrium that moves with the delivered pump power, which
    no reading shows: the fit's covariance is that of white reading noise plus a diffusing
    power (`_drift_covariance`, both sizes measured from the residuals), and the time
    constant's error is the larger of that and the delete-one-segment jackknife's
    (`jackknife`; with a handful of segments alone it has a handful of degrees of freedom,
    so it is only a floor)."""
    t_abs = np.asarray(elapsed, float)
    y = np.asarray(temperature, float)
    seg_raw = np.asarray(segment, int)
    _, seg = np.unique(seg_raw, return_inverse=True)
    t = t_abs - np.array([t_abs[seg == k].min() for k in range(seg.max() + 1)])[seg]
    levels, level = np.unique(np.asarray(power, float), return_inverse=True)
    n_lv, n_seg = levels.size, int(seg.max()) + 1
    if n_lv < 2 or y.size < n_lv + n_seg + 2 or np.any(y <= 0):
        return None
    w = 1.0 / y  # relative noise: residuals in units of the reading
    positive = t[t > 0]
    if positive.size == 0:
        return None
    grid = np.geomspace(float(positive.min()) / 3, float(t.max()) * 10, 60)
    best: tuple[float, float] | None = None
    for tau in grid:
        a = _design(t, seg, level, float(tau), n_lv, n_seg) * w[:, None]
        coef, *_ = np.linalg.lstsq(a, y * w, rcond=None)
        cost = float(np.sum((a @ coef - y * w) ** 2))
        if best is None or cost < best[0]:
            best = (cost, float(tau))
    assert best is not None
    a = _design(t, seg, level, best[1], n_lv, n_seg) * w[:, None]
    coef, *_ = np.linalg.lstsq(a, y * w, rcond=None)
    scale = float(np.median(y))

    def residual(p: np.ndarray) -> np.ndarray:
        tau = math.exp(p[0])
        return (_design(t, seg, level, tau, n_lv, n_seg) @ (p[1:] * scale) - y) * w

    p0 = np.concatenate([[math.log(best[1])], coef / scale])
    try:
        res = least_squares(residual, p0, x_scale="jac", method="lm")
        dof = y.size - p0.size
        s2 = float(2 * res.cost / dof)
        rho = _lag1_correlation(res.fun, seg)
        heating = _segment_heating(res.x[1:1 + n_lv] * scale, level, seg, n_seg)
        cov = _drift_covariance(res.jac, res.fun, t, seg, math.exp(res.x[0]),
                                w * heating[seg],
                                drifts=rho > RHO_SIGNIFICANCE / math.sqrt(y.size))
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not (res.success and np.all(np.isfinite(res.x)) and np.all(np.isfinite(cov))):
        return None
    p = res.x
    tau = math.exp(p[0])
    tau_err = tau * math.sqrt(max(cov[0, 0], 0.0))
    if jackknife:
        tau_err = max(tau_err, _jackknife_tau(t_abs, y, np.asarray(power, float), seg,
                                              power_stability))
    t_eq = p[1:1 + n_lv] * scale
    cov_eq = cov[1:1 + n_lv, 1:1 + n_lv] * scale**2
    # Stage 2: T_eq^2 = T_base^2 + slope P, generalised least squares.
    jac = np.diag(2 * t_eq)
    cov_y = jac @ cov_eq @ jac.T
    design = np.column_stack([np.ones(n_lv), levels])
    try:
        line = None
        # The power's wander scales each step's heating above base: two passes, the second
        # with the heating from the first line.
        for _ in range(2 if power_stability > 0 else 1):
            heating = (t_eq**2 - line[0]) if line is not None else (t_eq**2 - np.min(t_eq**2))
            cov_total = cov_y + np.diag((power_stability * heating) ** 2)
            inv = np.linalg.inv(cov_total)
            cov_line = np.linalg.inv(design.T @ inv @ design)
            line = cov_line @ design.T @ inv @ (t_eq**2)
    except np.linalg.LinAlgError:
        return None
    assert line is not None
    r = t_eq**2 - design @ line
    chi2 = float(r @ inv @ r)
    base2 = float(line[0])
    base = math.sqrt(base2) if base2 > 0 else math.nan
    return FridgeFit(
        residual_correlation=rho,
        time_constant=tau, time_constant_stderr=tau_err,
        powers=levels, equilibrium=t_eq, equilibrium_cov=cov_eq, base_temperature=base,
        base_temperature_stderr=math.sqrt(max(cov_line[0, 0], 0.0)) / (2 * base)
        if base2 > 0 else math.inf,
        slope=float(line[1]), slope_stderr=math.sqrt(max(cov_line[1, 1], 0.0)),
        line_chi2=chi2, line_dof=n_lv - 2, relative_noise=math.sqrt(s2))


def _jackknife_tau(elapsed: np.ndarray, temperature: np.ndarray, power: np.ndarray,
                   seg: np.ndarray, power_stability: float) -> float:
    """Delete-one-segment jackknife standard error of the time constant, s (0 when fewer
    than three segments leave a fit)."""
    taus = []
    for k in np.unique(seg):
        keep = seg != k
        sub = fit_fridge_traces(elapsed[keep], temperature[keep], power[keep], seg[keep],
                                power_stability, jackknife=False)
        if sub is not None:
            taus.append(sub.time_constant)
    n = len(taus)
    if n < 3:
        return 0.0
    x = np.asarray(taus)
    return math.sqrt((n - 1) / n * float(np.sum((x - x.mean()) ** 2)))


RHO_SIGNIFICANCE = 3.0
"""The residuals' lag-1 correlation must exceed this many of its white-noise standard
errors (1 / sqrt(readings)) before the fit's covariance models a drifting pump power."""


def _segment_heating(t_eq: np.ndarray, level: np.ndarray, seg: np.ndarray, n_seg: int
                     ) -> np.ndarray:
    """K per unit relative pump drift, per segment: how far the equilibrium moves when the
    delivered power changes by a fraction x, d T_eq = x (T_eq^2 - T_base^2) / (2 T_eq),
    with T_base^2 the lowest level's square (0 for the pump-off segments)."""
    t_eq = np.abs(np.asarray(t_eq, float))
    per_level = (t_eq**2 - np.min(t_eq**2)) / (2 * np.maximum(t_eq, 1e-300))
    out = np.zeros(n_seg)
    for k in range(n_seg):
        out[k] = per_level[level[seg == k][0]]
    return out


def _brownian_response(t: np.ndarray, seg: np.ndarray, tau: float) -> np.ndarray:
    """Covariance (per unit diffusion, s) of the stage's response to an equilibrium that
    diffuses from each segment's start: u(t) = int_0^t (1 - exp(-(t - s) / tau)) dB(s),
    so cov(u(t1), u(t2)) = int_0^min(t1,t2) (1 - e^-(t1-s)/tau)(1 - e^-(t2-s)/tau) ds;
    0 across segments (each segment's start temperature is fitted)."""
    t1, t2 = t[:, None], t[None, :]
    m = np.minimum(t1, t2)
    k = (m - tau * (np.exp(-(t1 - m) / tau) - np.exp(-t1 / tau))
         - tau * (np.exp(-(t2 - m) / tau) - np.exp(-t2 / tau))
         + tau / 2 * (np.exp(-(t1 + t2 - 2 * m) / tau) - np.exp(-(t1 + t2) / tau)))
    return np.where(seg[:, None] == seg[None, :], k, 0.0)


def _drift_covariance(jac: np.ndarray, residual: np.ndarray, t: np.ndarray, seg: np.ndarray,
                      tau: float, gain: np.ndarray, drifts: bool = True) -> np.ndarray:
    """The fit's parameter covariance under white reading noise plus a diffusing pump power:
    Sigma = s2 I + q2 G K G (K `_brownian_response`, G = diag(`gain`), the weighted residual
    per unit relative drift), s2 and q2 by the method of moments on the residuals
    (E r^T Q r = tr(Q M Sigma M), M the residual projector, Q = I and G K G), then the
    sandwich A Sigma A^T of the least-squares estimator A = (J^T J)^-1 J^T. Unlike a
    white-noise covariance scaled by the residuals' correlation, this weighs the drift where
    the time constant is read from: the start of each relaxation. `drifts` False (the
    residuals show no correlation): white noise alone, s2 = r^T r / tr(M), as the moment
    estimate's noise in q2 would only widen the errors of an undrifting fridge."""
    jtj_inv = np.linalg.inv(jac.T @ jac)
    estimator = jtj_inv @ jac.T
    m = np.eye(jac.shape[0]) - jac @ estimator
    drift = gain[:, None] * _brownian_response(t, seg, tau) * gain[None, :]
    md = m @ drift @ m
    moments = np.array([[np.trace(m), np.trace(md)],
                        [np.trace(drift @ m), np.sum(drift * md)]])
    observed = np.array([residual @ residual, residual @ drift @ residual])
    white = observed[0] / max(float(np.trace(m)), 1.0) * jtj_inv
    if not drifts:
        return white
    try:
        # Unclipped: under white noise q2 scatters about 0 both ways, and clipping it would
        # inflate every error (the bias an unbiased variance must not have).
        s2, q2 = np.linalg.solve(moments, observed)
    except np.linalg.LinAlgError:  # no heated segment: no drift to tell from the noise
        return white
    sigma = s2 * np.eye(jac.shape[0]) + q2 * drift
    cov = estimator @ sigma @ estimator.T
    if not (s2 > 0 and np.all(np.diag(cov) > 0)):  # a moment estimate gone negative
        return white
    return cov


def _lag1_correlation(residual: np.ndarray, segment: np.ndarray) -> float:
    """Lag-1 autocorrelation of `residual` over neighbours within the same segment."""
    r = np.asarray(residual, float)
    same = np.asarray(segment)[1:] == np.asarray(segment)[:-1]
    denominator = float(np.sum(r**2))
    if not same.any() or denominator <= 0:
        return 0.0
    return float(np.sum((r[1:] * r[:-1])[same])) / denominator * r.size / int(same.sum())


# -- analysis -------------------------------------------------------------------------------
_COLUMNS = ("step", "elapsed", "pump_power", "temperature", "ceiling")


class FridgeLoadAnalysis(Analysis):
    """Fridge time constant, base temperature and the pump's absorbed fraction.

    Not a `CurveAnalysis`: two stages (relaxation traces of every power step sharing one
    time constant, then T_eq^2 against power), with the rules of `sequences.fitting`."""

    sequence = "fridge_load_scan"
    uses_partial_steps = True
    """Every row is one temperature reading at a known time after its step began, and the
    fit takes each segment from its first reading with its own start temperature: a hold
    cut short is a shorter segment (kept if it has `MIN_READINGS`)."""

    def analyze(self, run: StoredRun) -> AnalysisResult:
        result = AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok())
        d = {k: np.asarray(run.data.get(k, []), float) for k in _COLUMNS}
        options = run.options_as(FridgeLoadScanOptions)
        order = np.lexsort((d["elapsed"], d["step"]))
        d = {k: v[order] for k, v in d.items()}
        seg = segments(d["step"], d["pump_power"])
        counts = np.bincount(seg) if seg.size else np.zeros(0, int)
        keep = counts[seg] >= MIN_READINGS if seg.size else np.zeros(0, bool)
        result.details["readings"] = float(d["temperature"].size)
        fit = None
        if np.unique(d["pump_power"][keep]).size >= 2:
            fit = fit_fridge_traces(d["elapsed"][keep], d["temperature"][keep],
                                    d["pump_power"][keep], seg[keep],
                                    float(options.pump_power_stability))
        if fit is None:
            result.verdict = Verdict.bad(Reason.TOO_FEW_POINTS, "fewer than two pump powers "
                                         f"with {MIN_READINGS} readings each, or the fit "
                                         "failed: nothing to fit")
            return result
        a, a_err = cooling_coefficient(run, options)
        # The data give only the slope f / a: f inherits a's relative error in full
        # (analytic propagation, f proportional to a), as its systematic part.
        f = fit.slope * a
        # The sensor's calibration scales every reading by (1 + e): T_base by it, T^2 (so the
        # slope) by twice it; a common scale error, so systematic.
        acc = float(options.thermometer_accuracy) / COVERAGE_FACTOR
        result.values = {
            "fridge_time_constant": FitValue(fit.time_constant, fit.time_constant_stderr, "s"),
            "base_temperature": FitValue.combined(
                fit.base_temperature, fit.base_temperature_stderr,
                acc * abs(fit.base_temperature) if math.isfinite(fit.base_temperature)
                else 0.0, "K"),
            "absorbed_fraction": FitValue.combined(f, fit.slope_stderr * a, abs(f) * math.hypot(
                a_err / a, 2 * acc), ""),
        }
        eq_err = np.sqrt(np.clip(np.diag(fit.equilibrium_cov), 0, None))
        result.tables["fridge_load"] = {
            "pump_power (W)": fit.powers.tolist(),
            "equilibrium_temperature (K)": fit.equilibrium.tolist(),
            "equilibrium_temperature stderr (K)": eq_err.tolist(),
            "absorbed_power (W)": (f * fit.powers).tolist()}
        ceiling = float(np.nanmin(d["ceiling"])) if d["ceiling"].size else math.inf
        result.details.update({
            "slope_K2_per_W": fit.slope, "slope_stderr": fit.slope_stderr,
            "line_chi2": fit.line_chi2, "line_dof": float(fit.line_dof),
            "line_p": fit.line_p, "relative_noise": fit.relative_noise,
            "residual_correlation": fit.residual_correlation,
            "thermometer_accuracy": acc,
            "ceiling": ceiling, "max_temperature": float(d["temperature"].max()),
            "cooling_coefficient": a, "cooling_coefficient_stderr": a_err,
            "line_chi2_reduced": fit.line_chi2 / fit.line_dof if fit.line_dof else math.nan})
        result.verdict = _verdict(fit, d, ceiling, hold=float(options.hold_time))
        if result.verdict.good:
            result.verdict = _judge_fraction(result.values["absorbed_fraction"], a, a_err,
                                             result.verdict)
        return result

    def plot(self, run: StoredRun, result: AnalysisResult) -> dict[str, Figure]:
        d = {k: np.asarray(run.data.get(k, []), float) for k in _COLUMNS}
        order = np.lexsort((d["elapsed"], d["step"]))
        d = {k: v[order] for k, v in d.items()}
        fig = Figure(figsize=(11, 4))
        ax_t, ax_sq = fig.subplots(1, 2)
        # One time axis over the whole run: each step's readings after the previous step's.
        offset, t_run = 0.0, np.zeros(d["step"].size)
        hold = run.options_as(FridgeLoadScanOptions).hold_time
        for s in np.unique(d["step"]):
            rows = d["step"] == s
            t_run[rows] = offset + d["elapsed"][rows]
            offset += hold
        ax_t.plot(t_run, d["temperature"] * 1e3, ".", ms=3, label="MXC reading")
        if d["ceiling"].size and np.isfinite(np.nanmin(d["ceiling"])):
            ax_t.axhline(float(np.nanmin(d["ceiling"])) * 1e3, ls=":", color="r",
                         label="ceiling")
        ax_t.set_xlabel("time in the run (s)")
        ax_t.set_ylabel("mixing-chamber temperature (mK)")
        if ax_t.get_legend_handles_labels()[0]:
            ax_t.legend(fontsize=8)
        table = result.tables.get("fridge_load", {})
        p = np.asarray(table.get("pump_power (W)", []), float)
        teq = np.asarray(table.get("equilibrium_temperature (K)", []), float)
        err = np.asarray(table.get("equilibrium_temperature stderr (K)", []), float)
        if p.size:
            # d(T^2) = 2 |T| dT: a fitted T_eq below 0 (a segment too short to pin it; the
            # verdict says so) must not give a negative error bar. NaN draws no bar.
            yerr = np.abs(2 * teq) * np.where(err >= 0, err, np.nan) * 1e6
            ax_sq.errorbar(p * 1e3, teq**2 * 1e6, yerr, fmt="o", label="T_eq^2 from the traces")
            slope = result.details.get("slope_K2_per_W")
            base = result.values.get("base_temperature")
            if slope is not None and base is not None and math.isfinite(base.value):
                pp = np.linspace(0, float(p.max()), 50)
                ax_sq.plot(pp * 1e3, (base.value**2 + slope * pp) * 1e6, "-",
                           label="T_base^2 + (f/a) P")
        ax_sq.set_xlabel("pump power (mW)")
        ax_sq.set_ylabel("T_eq^2 (mK^2)")
        if ax_sq.get_legend_handles_labels()[0]:
            ax_sq.legend(fontsize=8)
        fig.suptitle(figure_title(f"run {run.run_id}: {result.verdict}"), fontsize=8)
        fig.tight_layout()
        return {"fridge_load": fig}


def cooling_coefficient(run: StoredRun, options: FridgeLoadScanOptions
                        ) -> tuple[float, float]:
    """a and its one-sigma error, W/K^2: the options' if given, else the setup's (the lab
    config's ``fridge_cooling_coefficient``) from the run's snapshot, else the default with
    no stated error."""
    a, a_err = options.cooling_coefficient, options.cooling_coefficient_stderr
    if a is None:
        try:
            a = float(run.snapshot_value("transducer", "fridge_cooling_coefficient"))
        except KeyError:  # a run stored before the setup had the constant
            a = DEFAULT_COOLING_COEFFICIENT
    if a_err is None:
        try:
            a_err = float(run.snapshot_value("transducer", "fridge_cooling_coefficient_error"))
        except KeyError:
            a_err = 0.0
    return float(a), float(a_err)


def _judge_fraction(fraction: FitValue, a: float, a_err: float, verdict: Verdict) -> Verdict:
    """The model test the T_eq^2 line cannot make: f and a enter only as f / a, so a wrong
    assumed a moves f by a / a_true with the line as straight as ever. A fraction outside
    [0, 1] beyond its combined error is a contradiction the data do show; otherwise the
    verdict says how much of f's error is the assumed a (an exact a is named as such)."""
    f, err = fraction.value, fraction.stderr
    if f - MAX_FRACTION_SIGMAS * err > 1 or f + MAX_FRACTION_SIGMAS * err < 0:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"absorbed fraction {fraction} is outside "
                           f"0..1 by more than {MAX_FRACTION_SIGMAS:g} sigma: the assumed "
                           f"cooling coefficient a = {a:.3g} ± {a_err:.2g} W/K^2 does not "
                           "describe this fridge; calibrate a with a heater at the mixing "
                           "chamber and set qnetlab.transducer_setup.fridge_cooling_coefficient")
    if a_err == 0:
        note = (f"absorbed fraction {fraction} assumes an EXACT cooling coefficient a = "
                f"{a:.3g} W/K^2 (f scales with a): state its uncertainty as "
                "fridge_cooling_coefficient: {value, error}")
    else:
        note = (f"absorbed fraction {fraction}, the sys part from a = {a:.3g} ± {a_err:.2g} "
                "W/K^2 and the thermometer's calibration")
    return Verdict.ok("; ".join(x for x in (verdict.detail, note) if x))


def _verdict(fit: FridgeFit, d: dict[str, np.ndarray], ceiling: float, hold: float
             ) -> Verdict:
    unphysical = ~(fit.equilibrium > 0)
    if np.any(unphysical):
        i = int(np.argmax(unphysical))
        return Verdict.bad(Reason.POOR_FIT, f"the fitted equilibrium temperature at pump power "
                           f"{fit.powers[i] * 1e3:.3g} mW is {fit.equilibrium[i] * 1e3:.3g} mK, "
                           "not above 0 K: its readings do not pin it (a hold cut short, or "
                           "one ended by the ceiling); hold longer or lower the power")
    hot = fit.equilibrium > ceiling
    tripped = (d["temperature"] > ceiling) & (d["pump_power"] > 0)
    if np.any(hot) or np.any(tripped):
        if np.any(hot):
            i = int(np.argmax(hot))
            power, t_eq = float(fit.powers[i]), float(fit.equilibrium[i])
        else:
            i = int(np.argmax(tripped))
            power, t_eq = float(d["pump_power"][i]), float(d["temperature"][i])
        return Verdict.bad(Reason.OUT_OF_RANGE, f"the fridge heats too fast: at pump power "
                           f"{power * 1e3:.3g} mW the mixing chamber goes to {t_eq * 1e3:.3g} "
                           f"mK, above its {ceiling * 1e3:.3g} mK ceiling (cooling "
                           f"{fit.slope:.3g} K^2/W of pump): lower the pump power or duty "
                           "cycle, or check the fridge's cooling")
    if not fit.slope > SIGNIFICANCE * fit.slope_stderr:
        return Verdict.bad(Reason.NO_SIGNAL, f"the mixing chamber does not warm with the pump "
                           f"(T_eq^2 slope {fit.slope:.3g} ± {fit.slope_stderr:.2g} K^2/W): is "
                           "the pump reaching the device, and the thermometer its stage?")
    if not fit.time_constant < hold / 2:
        return Verdict.bad(Reason.OUT_OF_RANGE, f"time constant {fit.time_constant:.3g} s is "
                           f"not well below the hold time {hold:g} s: hold longer")
    if not math.isfinite(fit.base_temperature):
        return Verdict.bad(Reason.OUT_OF_RANGE, "T_eq^2 extrapolates below 0 at zero power: "
                           "the T^2 cooling law does not hold")
    if fit.line_p < FIT_P_MIN:
        return Verdict.bad(Reason.POOR_FIT, f"T_eq^2 is not linear in the pump power (chi2 "
                           f"{fit.line_chi2:.1f} for {fit.line_dof} dof)")
    return Verdict.ok(f"tau = {fit.time_constant:.4g} ± {fit.time_constant_stderr:.2g} s, "
                      f"T_base = {fit.base_temperature * 1e3:.4g} mK")


# -- sequence -------------------------------------------------------------------------------
class FridgeLoadScan(LabSequence[FridgeLoadScanOptions]):
    """Mixing-chamber temperature after pump-power steps; see the module docstring.
    Proposes nothing (the composite takes absorbed_fraction for its fridge budget)."""

    name: ClassVar[str] = "fridge_load_scan"
    options_class: ClassVar[type] = FridgeLoadScanOptions
    analysis_class: ClassVar[type[Analysis]] = FridgeLoadAnalysis

    def dataset_parameters(self) -> list[DatasetParameter]:
        sp = ("reading",)
        return [DatasetParameter("reading", "", "Reading number in the run"),
                DatasetParameter("step", "", "Step", sp),
                DatasetParameter("elapsed", "s", "Lab time since the step began", sp),
                DatasetParameter("pump_power", "W", "Pump power applied (0: off)", sp),
                DatasetParameter("temperature", "K", "Mixing-chamber temperature", sp),
                DatasetParameter("ceiling", "K", "Temperature ceiling", sp)]

    def steps(self) -> list[Step]:
        return [Step(i, f"pump {p * 1e3:.4g} mW", {"pump_power": float(p)})
                for i, p in enumerate(self.options.pump_powers)]

    def prepare(self, station: LabStation) -> None:
        setup = station.setup
        if setup is None:
            raise ValueError("fridge_load_scan needs the station's transducer_setup (add "
                             "qnetlab.transducer_setup to the lab config)")
        setup.mw_source.rf_output(False)
        self._saved_power = float(setup.pump_power())
        self._saved_detuning = float(setup.pump_detuning())
        setup.pump_detuning(self.options.pump_detuning)
        ceiling = self.options.temperature_ceiling
        self._ceiling = ceiling if ceiling is not None else _interlock_ceiling(station)
        self._tripped: str | None = None

    def measure(self, station: LabStation, step: Step) -> dict[str, np.ndarray]:
        options = self.options
        setup = station.setup
        assert setup is not None
        if self._tripped is not None:
            raise FridgeCeilingError(f"stopped before {step.label}: {self._tripped}")
        power = step.settings["pump_power"]
        if power > 0:
            setup.pump_power(power)
            setup.pump_on(True)
        else:
            setup.pump_on(False)
        interval = options.hold_time / options.readings
        applied = power
        # Reading by reading into the step's buffer: an interrupted hold keeps its readings.
        for i in range(options.readings):
            if i:
                station.sleep(interval)
            temperature = float(setup.mxc_temperature())
            self.keep({"reading": float(step.index * options.readings + i),
                       "step": float(step.index), "elapsed": i * interval,
                       "pump_power": float(applied), "temperature": temperature,
                       "ceiling": float(self._ceiling)})
            if applied > 0 and temperature > self._ceiling:
                setup.pump_on(False)  # now, not at the next step: the stage is too warm
                applied = 0.0
                self._tripped = (f"the mixing chamber read {temperature * 1e3:.4g} mK, above "
                                 f"its {self._ceiling * 1e3:.4g} mK ceiling, at pump power "
                                 f"{power * 1e3:.4g} mW; the pump was switched off")
        return {}

    def finish(self, station: LabStation) -> None:
        """Pump off and microwave off (the safe state), then the pump power and detuning back
        to what they were (the power ramps with the pump off)."""
        setup = station.setup
        if setup is None:
            return
        setup.pump_on(False)
        setup.mw_source.rf_output(False)
        if hasattr(self, "_saved_power"):
            setup.pump_power(self._saved_power)
            setup.pump_detuning(self._saved_detuning)


def _interlock_ceiling(station: LabStation) -> float:
    """K: the lowest maximum of the lab config's interlocks that guard the pump and read the
    setup's fridge (inf if there is none)."""
    setup = station.setup
    config: Any = getattr(station, "lab_config", None)
    if setup is None or config is None:
        return math.inf
    pump, fridge = setup.pump_laser.name, setup.fridge.name
    maxima = [float(lock.maximum) for lock in config.interlocks
              if any(ref.split(".")[0] == pump for ref in lock.guards)
              and lock.sensor.split(".")[0] == fridge]
    return min(maxima, default=math.inf)
