"""`CurveAnalysis`: the shared base of the curve analyses (one y against one x; or several
such curves in one run, `CurveAnalysis.groups`, each fitted on its own).

A subclass declares only what is specific to its measurement: the stored columns, the model,
its parameters (names, units, plausible ranges), the start values, the fit method and what a
good fit proposes. The base loads the data, checks the number of points and the signal, fits
(`fitting.weighted_least_squares` or `fitting.poisson_ml`, or the subclass's own `fit`), gives
the `FitValue`s and the verdict, and draws one figure: the data with error bars, the fitted
curve with its one- and two-sigma bands (delta method from the covariance) and the normalised
residuals below (a column per curve). docs/fitting.md#7-writing-an-analysis shows an
example.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from matplotlib.figure import Figure

from .analysis import (
    Analysis,
    AnalysisResult,
    FitValue,
    Reason,
    Verdict,
    with_relative_systematic,
)
from .data import StoredRun
from .fitting import Fit, poisson_ml, poor_fit, weighted_least_squares
from .report_figures import SI_BASE_UNITS, si_axis, split_unit

BAND_POINTS = 400
"""Abscissae the fitted curve and its band are drawn at."""


@dataclass(frozen=True)
class Param:
    """One fitted parameter: its name (the `FitValue` key), unit, and the plausible range
    (low, high) outside which the verdict is ``out of plausible range`` (None: any)."""

    name: str
    unit: str = ""
    plausible: tuple[float, float] | None = None


@dataclass
class CurveData:
    """The points an analysis fits: `x`, `y` and their one-sigma errors `sigma` (None for
    Poisson counts), plus what `load` wants in the result and what its later hooks need."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None = None
    details: dict[str, float] = field(default_factory=dict)
    tables: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    values: dict[str, FitValue] = field(default_factory=dict)
    """Values known before the fit (kept in the result whatever the fit gives)."""
    systematic: dict[str, float] = field(default_factory=dict)
    """Relative systematic error per fitted parameter from the calibration constants the
    points assumed (e.g. an efficiency's scale from the line losses), set by `load`; the base
    adds ``relative x |value|`` to the parameter's `FitValue` as its `sys` part
    (docs/fitting.md#systematic-uncertainty)."""
    group: str = ""
    """The curve's name among several (`CurveAnalysis.groups`); "" for the only one."""
    stop: Verdict | None = None
    """A bad verdict found while loading that ends the analysis before the fit, keeping the
    details, tables and values loaded so far (a saturated detector)."""


class CurveAnalysis(Analysis):
    """Base of an analysis that fits a model curve y(x) to one stored run, or to each of its
    curves (`groups`); module docstring. Override `model` and `guess`; the other hooks have
    defaults."""

    x_column: ClassVar[str] = ""
    y_column: ClassVar[str] = ""
    yerr_column: ClassVar[str] = ""
    """The column of one-sigma errors of y; "" with `counts` (Poisson errors)."""
    counts: ClassVar[bool] = False
    """y holds Poisson counts: fit by Poisson maximum likelihood."""
    params: ClassVar[tuple[Param, ...]] = ()
    bounds: ClassVar[tuple[Sequence[float], Sequence[float]] | None] = None
    """(lower, upper) per parameter, or None."""
    min_points: ClassVar[int] = 5
    """Fewer stored points than this cannot support a fit with a verdict."""
    fit_p_min: ClassVar[float] = 1e-6
    """A fit whose chi2 p-value is below this is poor (docs/fitting.md section 4)."""
    figure_name: ClassVar[str] = "fit"
    x_label: ClassVar[str] = "x"
    y_label: ClassVar[str] = "y"
    x_scale: ClassVar[float] = 1.0
    """The figure's x axis shows x / x_scale (e.g. 1e6 for MHz)."""
    x_log: ClassVar[bool] = False
    """Draw x on a log axis (the curve at log-spaced abscissae)."""
    last_run: int | None = None
    last_fits: dict[str, tuple[Fit | None, CurveData]] = {}
    """Fit (None: not fitted) and data of each curve of run `last_run` (what `plot` draws;
    `analyze` assigns a new dict, so the class default is never changed)."""

    @property
    def last_fit(self) -> tuple[int, Fit, CurveData] | None:
        """Run id, fit and data of the last curve `analyze` fitted."""
        for fit, data in reversed(self.last_fits.values()):
            if fit is not None and self.last_run is not None:
                return self.last_run, fit, data
        return None

    # -- what a subclass declares -------------------------------------------------------------
    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        """The model, vectorised over x, in the parameters' order of `params`."""
        raise NotImplementedError

    def guess(self, data: CurveData) -> Sequence[float]:
        """Start values of the parameters."""
        raise NotImplementedError

    def load(self, run: StoredRun) -> CurveData | Verdict:
        """The points to fit, sorted by x (default: `x_column`, `y_column`, `yerr_column`).
        A bad `Verdict` stops the analysis with it."""
        x = np.asarray(run.data.get(self.x_column, []), float)
        y = np.asarray(run.data.get(self.y_column, []), float)
        order = np.argsort(x, kind="stable")
        sigma = None if not self.yerr_column else np.asarray(
            run.data.get(self.yerr_column, []), float)[order]
        return CurveData(x[order], y[order], sigma)

    def no_signal(self, data: CurveData) -> str:
        """Why the data hold no signal to fit ("" when they do)."""
        return ""

    def fit(self, data: CurveData) -> Fit | Verdict:
        """Fit the model: Poisson ML for `counts`, else weighted least squares. An analysis
        with its own optimiser overrides this, returning a `Fit` or a `Verdict` that ends the
        analysis without a curve (bad; or good when the data answer without one, with the
        values put in `data.values`)."""
        names = tuple(p.name for p in self.params)
        units = {p.name: p.unit for p in self.params}
        p0 = list(self.guess(data))
        try:
            if self.counts:
                pairs = None if self.bounds is None else list(zip(*self.bounds, strict=True))
                return poisson_ml(self.model, data.x, data.y, p0, names, units=units,
                                  bounds=pairs)
            if data.sigma is None:  # unit weights would claim errors nobody measured
                raise TypeError(f"{type(self).__name__}: no point errors (set yerr_column, "
                                "counts, or give them in load)")
            return weighted_least_squares(self.model, data.x, data.y, data.sigma, p0, names,
                                          units=units, bounds=self.bounds)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:
            return Verdict.bad(Reason.POOR_FIT, f"the fit did not converge ({exc})")

    def values(self, fit: Fit, data: CurveData) -> dict[str, FitValue]:
        return fit.values()

    def fit_details(self, fit: Fit, data: CurveData) -> dict[str, float]:
        """Diagnostics for `AnalysisResult.details` (default: chi2, dof, p-value)."""
        return fit.diagnostics()

    def judge(self, fit: Fit, data: CurveData, values: dict[str, FitValue]) -> Verdict:
        """Default verdict: a parameter outside its plausible range, then a poor fit by the
        chi2 p-value (`fit_p_min`), else good with the values (of this curve: `values`
        holds the run's, a named curve's suffixed ``_<group>``)."""
        suffix = f"_{data.group}" if data.group else ""
        for p in self.params:
            v = values[p.name + suffix]
            if p.plausible is not None and not p.plausible[0] <= v.value <= p.plausible[1]:
                return Verdict.bad(Reason.OUT_OF_RANGE, f"{p.name} = {v} outside the "
                                   f"plausible {p.plausible[0]:g}..{p.plausible[1]:g}")
        if fit.dof > 0 and poor_fit(fit.chi2, fit.dof, self.fit_p_min):
            return Verdict.bad(Reason.POOR_FIT, f"chi2 {fit.chi2:.4g} for {fit.dof} degrees "
                               f"of freedom (p = {fit.p_value:.2g} < {self.fit_p_min:g})")
        return Verdict.ok(", ".join(f"{k} = {v}" for k, v in values.items()
                                    if not suffix or k.endswith(suffix)))

    def too_few(self, points: int, data: CurveData | None) -> str:
        """The detail of a ``too few points`` verdict (`data` is None when the stored rows
        were counted before loading)."""
        return f"{points} points, at least {self.min_points} needed"

    def propose(self, values: dict[str, FitValue], data: CurveData) -> dict[str, float]:
        """Calibration values a good fit supports (default: none)."""
        return {}

    def groups(self, run: StoredRun) -> dict[str, CurveData] | Verdict:
        """The curves of one run, by name, each fitted on its own (default: one unnamed
        curve, `load`). A named curve's `FitValue`s are suffixed ``_<name>``; a bad
        `Verdict` stops the analysis with it."""
        data = self.load(run)
        return data if isinstance(data, Verdict) else {"": data}

    def propose_groups(self, values: dict[str, FitValue],
                       groups: dict[str, CurveData]) -> dict[str, float]:
        """Calibration values of a good run of several curves (default: `propose` of each)."""
        return {k: v for data in groups.values() for k, v in self.propose(values, data).items()}

    # -- what the base does -------------------------------------------------------------------
    def analyze(self, run: StoredRun) -> AnalysisResult:
        result = AnalysisResult(self.sequence, run.run_id, {}, Verdict.ok())
        self.last_run, self.last_fits = run.run_id, {}
        stored = len(run.data.get(self.x_column, [])) if self.x_column else None
        if stored is not None and stored < self.min_points:
            result.verdict = Verdict.bad(Reason.TOO_FEW_POINTS, self.too_few(stored, None))
            return result
        groups = self.groups(run)
        if isinstance(groups, Verdict):
            result.verdict = groups
            return result
        verdicts = []
        for name, data in groups.items():
            data.group = name
            verdict = self._analyze_curve(run, result, stored, data)
            if not verdict.good:
                result.verdict = verdict
                return result
            verdicts.append(verdict)
        result.verdict = verdicts[0] if len(verdicts) == 1 else Verdict.ok(
            ", ".join(v.detail for v in verdicts if v.detail))
        result.proposed = self.propose_groups(result.values, groups)
        return result

    def _analyze_curve(self, run: StoredRun, result: AnalysisResult, stored: int | None,
                       data: CurveData) -> Verdict:
        """Load, fit and judge one curve into `result`; its verdict."""
        result.values.update(data.values)
        result.details.update(data.details)
        result.tables.update(data.tables)
        self.last_fits[data.group] = (None, data)
        if data.stop is not None:
            return data.stop
        if stored is None and data.x.size < self.min_points:
            return Verdict.bad(Reason.TOO_FEW_POINTS, self.too_few(data.x.size, data))
        why = self.no_signal(data)
        if why:
            return Verdict.bad(Reason.NO_SIGNAL, why)
        fit = self.fit(data)
        if isinstance(fit, Verdict):
            # The fit hook may end without a curve: bad, or good when the data answer
            # without one (an unresolved line's brightest step); its data.values stand.
            result.values.update(data.values)
            result.details.update(data.details)
            return fit
        self.last_fits[data.group] = (fit, data)
        suffix = f"_{data.group}" if data.group else ""
        values = self.values(fit, data)
        for name, relative in data.systematic.items():
            with_relative_systematic(values, (name,), relative)
        result.values.update({k + suffix: v for k, v in values.items()})
        result.values.update(data.values)
        result.details.update(self.fit_details(fit, data))
        return self.judge(fit, data, result.values)

    def plot(self, run: StoredRun, result: AnalysisResult) -> dict[str, Figure]:
        """Data with error bars, the fitted curve with its one- and two-sigma bands, and the
        normalised residuals below; a column per curve."""
        curves: dict[str, tuple[Fit | None, CurveData]]
        if self.last_fits and self.last_run == run.run_id:
            curves = dict(self.last_fits)
        else:
            groups = self.groups(run)
            if isinstance(groups, Verdict):
                groups = {"": CurveData(np.empty(0), np.empty(0))}
            curves = {name: (None, data) for name, data in groups.items()}
        fig = Figure(figsize=(8 if len(curves) == 1 else 5 * len(curves), 6))
        axes = fig.subplots(2, len(curves), sharex="col", height_ratios=(3, 1), squeeze=False)
        for i, (name, (fit, data)) in enumerate(curves.items()):
            self._draw(axes[0, i], axes[1, i], fit, data, result)
            if name:
                axes[0, i].set_title(self.group_title(name, data), fontsize=9)
        fig.suptitle(textwrap.fill(f"run {run.run_id}: {result.verdict}", 120), fontsize=8)
        fig.tight_layout()
        return {self.figure_name: fig}

    def group_title(self, name: str, data: CurveData) -> str:
        """The title of a named curve's panels (default: its name)."""
        return name

    def _draw(self, ax: Any, ax_res: Any, fit: Fit | None, data: CurveData,
              result: AnalysisResult) -> None:
        x0, k, x_label = self.x_axis(data)
        err = data.sigma if data.sigma is not None else (
            np.sqrt(np.maximum(data.y, 1.0)) if self.counts else None)
        # Complex data (a reflection trace) are drawn as magnitudes; residuals per quadrature.
        ax.errorbar((data.x - x0) / k, _shown(data.y), err, fmt=".", ms=4, label="measured")
        if fit is not None and data.x.size:
            lo, hi = float(data.x.min()), float(data.x.max())
            xx = (np.geomspace(lo, hi, BAND_POINTS) if self.x_log and lo > 0
                  else np.linspace(lo, hi, BAND_POINTS))
            curve, band = self.band(fit, xx)
            ax.plot((xx - x0) / k, curve, "-", color="C1", label="fit")
            # 2 sigma drawn first and lighter, so the 1 sigma band reads on top of it
            ax.fill_between((xx - x0) / k, curve - 2 * band, curve + 2 * band, color="C1",
                            alpha=0.15, lw=0, label="fit ± 2\N{GREEK SMALL LETTER SIGMA}")
            ax.fill_between((xx - x0) / k, curve - band, curve + band, color="C1",
                            alpha=0.35, lw=0, label="fit ± 1\N{GREEK SMALL LETTER SIGMA}")
            r = fit.residuals
            if np.iscomplexobj(r):
                ax_res.plot((fit.x - x0) / k, r.real, ".", ms=4, label="Re")
                ax_res.plot((fit.x - x0) / k, r.imag, ".", ms=4, label="Im")
                ax_res.legend(fontsize=7)
            else:
                ax_res.plot((fit.x - x0) / k, r, ".", ms=4)
            ax_res.set_title(f"\N{GREEK SMALL LETTER CHI}²/dof = {fit.reduced_chi2:.3g} "
                             f"({fit.dof} dof)",
                             fontsize=8)
        self.annotate(ax, data, result)
        if self.x_log:
            ax.set_xscale("log")
        ax_res.axhline(0.0, color="grey", lw=0.8)
        y_label, y_unit = split_unit(self.y_label)
        if y_unit in SI_BASE_UNITS:  # '5 nW', not '5e-9' under a '1e-8' offset
            si_axis(ax.yaxis, y_unit)
        ax.set_ylabel(y_label if y_unit in SI_BASE_UNITS else self.y_label)
        ax.legend(fontsize=8)
        ax_res.set_xlabel(x_label)
        ax_res.set_ylabel("residual / \N{GREEK SMALL LETTER SIGMA}")

    def x_axis(self, data: CurveData) -> tuple[float, float, str]:
        """The figure's abscissa: (offset, scale, label); it shows (x - offset) / scale.
        Default: (0, `x_scale`, `x_label`)."""
        return 0.0, self.x_scale, self.x_label

    def annotate(self, ax: Any, data: CurveData, result: AnalysisResult) -> None:
        """Draw what else the data panel shows (markers, a second trace); default none."""

    def band(self, fit: Fit, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model at `x` and its one-sigma band, by the delta method: the gradient over
        the parameters (central differences) through the fit's covariance. A complex model
        is shown (and banded) as its magnitude."""
        p = np.asarray(fit.params, float)
        curve = _shown(self.model(x, *p))
        jac = np.empty((x.size, p.size))
        for i in range(p.size):
            dp = np.zeros(p.size)
            dp[i] = 1e-6 * max(abs(p[i]), math.sqrt(max(fit.covariance[i, i], 0.0)), 1e-300)
            jac[:, i] = (_shown(self.model(x, *(p + dp)))
                         - _shown(self.model(x, *(p - dp)))) / (2 * dp[i])
        var = np.einsum("ik,kl,il->i", jac, fit.covariance, jac)
        return curve, np.sqrt(np.clip(var, 0.0, None))


def _shown(y: np.ndarray) -> np.ndarray:
    """What the figure draws of `y`: its magnitude if complex."""
    y = np.asarray(y)
    return np.abs(y) if np.iscomplexobj(y) else np.asarray(y, float)
