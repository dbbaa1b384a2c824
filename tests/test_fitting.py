"""The shared fitting layer (`sequences.fitting`) and `StoredRun.options_as`.

Tolerances: a fitted parameter must lie within `SIGMAS` of its own standard error of the
truth (a correct fit misses that by chance with probability ~6e-7); pull spreads over `REPEATS`
fits must be 1 within `SIGMAS` of the sample standard deviation's own error, sqrt(1 / 2n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from qnetlab.sequences.analysis import FitValue
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.fitting import (
    chi2_bound,
    chi2_p_value,
    inflation_factor,
    pearson_chi2,
    poisson_ml,
    poor_fit,
    scale_covariance,
    weighted_least_squares,
)

SIGMAS = 5.0
REPEATS = 200


def line(x: np.ndarray, a: float, b: float) -> np.ndarray:
    return a + b * x


def lorentzian(x: np.ndarray, x0: float, fwhm: float, peak: float) -> np.ndarray:
    return peak / (1 + (2 * (x - x0) / fwhm) ** 2)


def decay(t: np.ndarray, amplitude: float, tau: float, floor: float) -> np.ndarray:
    return amplitude * np.exp(-t / tau) + floor


def test_a_weighted_line_recovers_its_parameters_and_analytic_errors() -> None:
    rng = np.random.default_rng(1)
    x = np.linspace(0, 10, 40)
    sigma = np.full(x.size, 0.3)
    truth = (1.5, -0.7)
    fit = weighted_least_squares(line, x, line(x, *truth) + rng.normal(0, sigma), sigma,
                                 [0.0, 0.0], ["a", "b"], units={"a": "V", "b": "V/s"},
                                 inflate=False)
    # The slope's error of a straight line with equal errors: sigma / sqrt(sum (x - mean)^2).
    expected = 0.3 / math.sqrt(float(np.sum((x - x.mean()) ** 2)))
    assert fit.stderr[1] == pytest.approx(expected, rel=1e-6)
    values = fit.values()
    assert set(values) == {"a", "b"} and isinstance(values["a"], FitValue)
    assert values["b"].unit == "V/s"
    for name, true in zip(("a", "b"), truth, strict=True):
        assert abs(values[name].value - true) < SIGMAS * values[name].stderr
    assert fit.dof == x.size - 2
    assert fit.residuals.shape == x.shape
    assert fit.chi2 == pytest.approx(float(np.sum(fit.residuals ** 2)))
    diag = fit.diagnostics()
    assert diag["dof"] == fit.dof and diag["chi2_reduced"] == pytest.approx(fit.chi2 / fit.dof)


def test_a_lorentzian_recovers_centre_width_and_peak() -> None:
    rng = np.random.default_rng(2)
    x = np.linspace(-50e6, 50e6, 81)
    truth = (3e6, 20e6, 1e-3)
    sigma = np.full(x.size, 2e-5)
    fit = weighted_least_squares(lorentzian, x, lorentzian(x, *truth) + rng.normal(0, sigma),
                                 sigma, [0.0, 30e6, 8e-4], ["x0", "fwhm", "peak"])
    for value, err, true in zip(fit.params, fit.stderr, truth, strict=True):
        assert abs(value - true) < SIGMAS * err


def test_the_covariance_is_inflated_by_reduced_chi2_only_above_one() -> None:
    cov = np.array([[4.0, 1.0], [1.0, 2.0]])
    assert inflation_factor(30.0, 10) == 3.0
    assert np.allclose(scale_covariance(cov, 30.0, 10), 3 * cov)
    assert inflation_factor(5.0, 10) == 1.0  # less scatter than stated: never narrowed
    assert np.allclose(scale_covariance(cov, 5.0, 10), cov)
    assert inflation_factor(5.0, 10, shrink=True) == 0.5  # a noise estimate: both ways
    assert inflation_factor(math.nan, 10) == 1.0 and inflation_factor(30.0, 0) == 1.0


def test_understated_errors_are_widened_to_the_scatter() -> None:
    """Errors stated 3x too small: the inflated errors match those of the true sigma."""
    rng = np.random.default_rng(3)
    x = np.linspace(0, 10, 400)
    true_sigma = 0.6
    y = line(x, 1.0, 2.0) + rng.normal(0, true_sigma, x.size)
    honest = weighted_least_squares(line, x, y, np.full(x.size, true_sigma), [0, 0], "ab",
                                    inflate=False)
    small = weighted_least_squares(line, x, y, np.full(x.size, true_sigma / 3), [0, 0], "ab")
    # chi2/dof of the understated fit is 9 * (chi2/dof of the honest one) ~ 9 +- 9 sqrt(2/dof).
    ratio = small.stderr / honest.stderr
    tolerance = SIGMAS * math.sqrt(2 / honest.dof) / 2  # sqrt halves a relative error
    assert np.all(np.abs(ratio - 1) < tolerance)


@pytest.mark.slow
def test_poisson_ml_recovers_a_decay_with_honest_errors() -> None:
    rng = np.random.default_rng(4)
    t = np.linspace(0, 5, 30)
    truth = (40.0, 1.2, 3.0)
    pulls = []
    for _ in range(REPEATS):
        counts = rng.poisson(decay(t, *truth))
        fit = poisson_ml(decay, t, counts, [30.0, 1.0, 2.0], ["amplitude", "tau", "floor"],
                         bounds=[(1e-3, None), (1e-3, None), (0.0, None)], inflate=False)
        pulls.append((fit.params - truth) / fit.stderr)
    p = np.asarray(pulls)
    bound = SIGMAS * math.sqrt(1 / (2 * REPEATS))
    assert np.all(np.abs(p.std(axis=0) - 1) < bound), p.std(axis=0)
    assert np.all(np.abs(p.mean(axis=0)) < SIGMAS / math.sqrt(REPEATS) + 0.1), p.mean(axis=0)
    assert np.allclose(fit.sigma, np.sqrt(fit.model_y))


def test_pearson_chi2_leaves_out_bins_expecting_few_counts() -> None:
    chi2, bins = pearson_chi2(np.array([10, 0, 7]), np.array([8.0, 0.5, 7.0]))
    assert bins == 2 and chi2 == pytest.approx(4 / 8)


def test_the_chi2_bounds() -> None:
    assert chi2_p_value(10.0, 10) == pytest.approx(0.44049, abs=1e-4)
    assert not poor_fit(10.0, 10, 1e-6) and poor_fit(100.0, 10, 1e-6)
    # A reduced chi2 from two variance estimates: 1 + 5 sqrt(2/dof + 3/n).
    assert chi2_bound(50, 300) == pytest.approx(1 + 5 * math.sqrt(2 / 50 + 3 / 300))


@dataclass(frozen=True)
class _Options:
    channel: int = 1
    inputs: tuple[int, ...] = (1, 2)
    rate: float | None = None


def _run(options: dict[str, object]) -> StoredRun:
    return StoredRun(1, Path("lab.db"), "guid", "run", {}, {}, metadata={"options": options})


def test_options_as_fills_missing_keys_with_defaults_and_ignores_unknown_ones() -> None:
    got = _run({"inputs": [3, 4], "retired_option": 5}).options_as(_Options)
    assert got == _Options(channel=1, inputs=(3, 4), rate=None)
    assert _run({}).options_as(_Options) == _Options()
    assert _run({"rate": 2.5, "channel": 3}).options_as(_Options).rate == 2.5
    with pytest.raises(TypeError):
        _run({}).options_as(dict)  # type: ignore[type-var]
