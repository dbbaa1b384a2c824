"""`CurveAnalysis`: a subclass that only declares its model recovers its parameters, gives the
shared bad verdicts, and draws the one figure layout (data + band, residuals).

Synthetic runs (fixed seeds) with Gaussian errors of known sigma: a fitted value more than
5 of its standard errors from the truth happens by chance with probability ~6e-7 per value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from qnetlab.sequences import CurveAnalysis
from qnetlab.sequences.analysis import FitValue, Reason, Verdict
from qnetlab.sequences.curve_analysis import CurveData, Param
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import Fit

SIGMAS = 5.0
TRUTH = {"amplitude": 2.0, "decay_time": 1.3, "offset": 0.1}
NOISE = 0.02


class Decay(CurveAnalysis):
    """The whole analysis: an exponential decay with an offset."""

    sequence = "decay_test"
    x_column, y_column, yerr_column = "time", "signal", "signal_err"
    params = (Param("amplitude", "V"), Param("decay_time", "s", (0.0, 100.0)),
              Param("offset", "V"))
    x_label, y_label = "time (s)", "signal (V)"

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        return p[0] * np.exp(-x / p[1]) + p[2]

    def guess(self, data: CurveData) -> Sequence[float]:
        return [float(data.y[0] - data.y[-1]), float(np.ptp(data.x)) / 3, float(data.y[-1])]

    def no_signal(self, data: CurveData) -> str:
        return "flat" if np.ptp(data.y) < 5 * float(np.median(data.sigma)) else ""

    def propose(self, values: dict, data: CurveData) -> dict[str, float]:
        return {"decay_time": values["decay_time"].value}


class FastDecay(Decay):
    params = (Param("amplitude", "V"), Param("decay_time", "s", (0.0, 1.0)),
              Param("offset", "V"))


class CountDecay(Decay):
    """The same decay as Poisson counts (fit by Poisson maximum likelihood)."""

    yerr_column = ""
    counts: ClassVar[bool] = True

    def no_signal(self, data: CurveData) -> str:
        return ""


class Line(CurveAnalysis):
    x_column, y_column, yerr_column = "x", "y", "e"
    params = (Param("intercept"), Param("slope"))

    def model(self, x: np.ndarray, *p: float) -> np.ndarray:
        return p[0] + p[1] * x

    def guess(self, data: CurveData) -> Sequence[float]:
        return [0.0, 0.0]


def stored(data: dict[str, np.ndarray]) -> StoredRun:
    return StoredRun(1, Path("lab.db"), "guid", "run", data, {})


def decay_run(points: int = 60, seed: int = 1, stated_noise: float = NOISE,
              truth: dict[str, float] = TRUTH) -> StoredRun:
    t = np.linspace(0.0, 6.0, points)
    rng = np.random.default_rng(seed)
    y = truth["amplitude"] * np.exp(-t / truth["decay_time"]) + truth["offset"]
    return stored({"time": t, "signal": y + rng.normal(0.0, NOISE, t.size),
                   "signal_err": np.full(t.size, stated_noise)})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_declared_decay_recovers_its_parameters(seed: int) -> None:
    a = Decay().analyze(decay_run(seed=seed))
    assert a.verdict.good, a.verdict
    for name, true in TRUTH.items():
        v = a.values[name]
        assert v.stderr > 0 and abs(v.value - true) < SIGMAS * v.stderr, (name, v, true)
    assert a.values["decay_time"].unit == "s"
    assert a.proposed == {"decay_time": a.values["decay_time"].value}
    assert {"chi2", "dof", "chi2_reduced", "fit_p"} <= set(a.details)
    assert a.details["dof"] == 60 - 3


def test_poisson_counts_are_fitted_by_maximum_likelihood() -> None:
    t = np.linspace(0.0, 6.0, 40)
    truth = {"amplitude": 400.0, "decay_time": 1.3, "offset": 20.0}
    mu = truth["amplitude"] * np.exp(-t / truth["decay_time"]) + truth["offset"]
    run = stored({"time": t, "signal": np.random.default_rng(4).poisson(mu).astype(float)})
    a = CountDecay().analyze(run)
    assert a.verdict.good, a.verdict
    for name, true in truth.items():
        v = a.values[name]
        assert abs(v.value - true) < SIGMAS * v.stderr, (name, v, true)


def test_too_few_points_no_signal_poor_fit_and_out_of_range() -> None:
    few = Decay().analyze(decay_run(points=4))
    assert few.verdict.reason is Reason.TOO_FEW_POINTS and "4 points" in few.verdict.detail
    flat = Decay().analyze(decay_run(truth={"amplitude": 0.0, "decay_time": 1.0,
                                            "offset": 0.1}))
    assert flat.verdict.reason is Reason.NO_SIGNAL
    # Errors stated 10x too small: chi2 ~ 100 dof, p far below 1e-6.
    poor = Decay().analyze(decay_run(stated_noise=NOISE / 10))
    assert poor.verdict.reason is Reason.POOR_FIT and poor.proposed == {}
    assert "decay_time" in poor.values  # what was fitted is still shown
    # A 1.3 s decay (fitted to ~1 %) where only 0..1 s is plausible.
    slow = FastDecay().analyze(decay_run())
    assert slow.verdict.reason is Reason.OUT_OF_RANGE and "decay_time" in slow.verdict.detail


def test_the_figure_has_data_with_band_and_residuals() -> None:
    run = decay_run()
    analysis = Decay()
    result = analysis.analyze(run)
    figures = analysis.plot(run, result)
    (fig,) = figures.values()
    ax, ax_res = fig.axes
    assert any(isinstance(c, PolyCollection) for c in ax.collections)  # the 1-sigma band
    (points,) = ax_res.get_lines()[:1]
    assert np.asarray(points.get_ydata()).size == 60
    # Without an analyze() first (a re-plot), the data alone are drawn on the same layout.
    assert len(Decay().plot(run, result)[analysis.figure_name].axes) == 2


def test_the_band_is_the_delta_method_of_the_covariance() -> None:
    """For a straight line the band is exact: var = C00 + 2 x C01 + x^2 C11."""
    x = np.linspace(-1.0, 3.0, 30)
    rng = np.random.default_rng(7)
    run = stored({"x": x, "y": 0.5 + 2.0 * x + rng.normal(0, 0.1, x.size),
                  "e": np.full(x.size, 0.1)})
    analysis = Line()
    assert analysis.analyze(run).verdict.good
    assert analysis.last_fit is not None
    _, fit, _ = analysis.last_fit
    c = fit.covariance
    xx = np.linspace(-2.0, 4.0, 9)
    _, band = analysis.band(fit, xx)
    np.testing.assert_allclose(band, np.sqrt(c[0, 0] + 2 * xx * c[0, 1] + xx**2 * c[1, 1]),
                               rtol=1e-6)


def test_a_fit_hook_may_answer_without_a_curve() -> None:
    """A good verdict from `fit` (no curve, e.g. an unresolved line) keeps its values and
    proposes; the figure then shows the data alone, on the same two panels."""

    class Brightest(Decay):
        def fit(self, data: CurveData) -> Verdict:
            data.values["decay_time"] = FitValue(float(data.x[np.argmax(data.y)]), 0.1, "s")
            return Verdict.ok("brightest point")

    run = decay_run()
    analysis = Brightest()
    a = analysis.analyze(run)
    assert a.verdict.good and a.values["decay_time"].value == 0.0
    assert a.proposed == {"decay_time": 0.0}
    assert analysis.last_fit is None
    assert len(analysis.plot(run, a)[analysis.figure_name].axes) == 2


class TwoDecays(Decay):
    """Two curves in one run (columns signal_a / signal_b), each fitted on its own."""

    def groups(self, run: StoredRun) -> dict[str, CurveData] | Verdict:
        t = np.asarray(run.data["time"], float)
        return {g: CurveData(t, np.asarray(run.data[f"signal_{g}"], float),
                             np.asarray(run.data["signal_err"], float)) for g in ("a", "b")}

    def judge(self, fit: Fit, data: CurveData, values: dict[str, FitValue]) -> Verdict:
        verdict = super().judge(fit, data, values)
        return verdict if not verdict.good else Verdict.ok(f"{data.group} fitted")

    def propose(self, values: dict, data: CurveData) -> dict[str, float]:
        return {f"decay_time_{data.group}": values[f"decay_time_{data.group}"].value}


def two_decay_run(truth_b: dict[str, float]) -> StoredRun:
    t = np.linspace(0.0, 6.0, 60)
    rng = np.random.default_rng(5)
    signal = {g: tr["amplitude"] * np.exp(-t / tr["decay_time"]) + tr["offset"]
              + rng.normal(0.0, NOISE, t.size) for g, tr in (("a", TRUTH), ("b", truth_b))}
    return stored({"time": t, "signal_a": signal["a"], "signal_b": signal["b"],
                   "signal_err": np.full(t.size, NOISE)})


def test_several_curves_are_fitted_named_judged_and_drawn_each() -> None:
    truth_b = {"amplitude": 1.0, "decay_time": 0.4, "offset": -0.2}
    run = two_decay_run(truth_b)
    analysis = TwoDecays()
    a = analysis.analyze(run)
    assert a.verdict.good and a.verdict.detail == "a fitted, b fitted", a.verdict
    for group, truth in (("a", TRUTH), ("b", truth_b)):
        for name, true in truth.items():
            v = a.values[f"{name}_{group}"]
            assert abs(v.value - true) < SIGMAS * v.stderr, (group, name, v, true)
    assert a.proposed == {f"decay_time_{g}": a.values[f"decay_time_{g}"].value
                          for g in ("a", "b")}
    fig = analysis.plot(run, a)[analysis.figure_name]
    assert len(fig.axes) == 4 and [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]
    # The first bad curve ends the analysis with its verdict; nothing is proposed.
    flat = analysis.analyze(two_decay_run({"amplitude": 0.0, "decay_time": 1.0,
                                           "offset": 0.1}))
    assert flat.verdict.reason is Reason.NO_SIGNAL and flat.proposed == {}
    assert "decay_time_a" in flat.values and "decay_time_b" not in flat.values
