"""The fitting layer every analysis shares: weighted least squares, Poisson maximum
likelihood, the reduced-chi2 covariance rule, the poor-fit bounds and model-vs-data
diagnostics a figure can draw.

The rules are written here once; docs/fitting.md says why each one is what it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import curve_fit, minimize
from scipy.special import ndtr

from .analysis import FitValue, Reason, Verdict
from .timetags import Correlation

Model = Callable[..., np.ndarray]
"""``model(x, *params) -> y``, vectorised over x."""


# -- the rules ---------------------------------------------------------------------------------
def inflation_factor(chi2: float, dof: int, *, shrink: bool = False) -> float:
    """The factor a fit's covariance is multiplied by: ``chi2 / dof`` when that exceeds 1
    (scatter beyond the stated errors widens the result, never narrows it), else 1.

    `shrink` scales by ``chi2 / dof`` both ways: for a fit whose point errors are only a
    common noise estimate (the efficiency map), where the residuals are the better estimate.
    A non-finite chi2 or ``dof < 1`` leaves the covariance as it is (factor 1).
    """
    if dof < 1 or not math.isfinite(chi2):
        return 1.0
    reduced = chi2 / dof
    return reduced if shrink or reduced > 1 else 1.0


def scale_covariance(cov: np.ndarray, chi2: float, dof: int, *, shrink: bool = False
                     ) -> np.ndarray:
    """`cov` times `inflation_factor` (docs/fitting.md#2-covariance-inflation)."""
    return np.asarray(cov, float) * inflation_factor(chi2, dof, shrink=shrink)


def chi2_p_value(chi2: float, dof: int) -> float:
    """Survival probability of `chi2` with `dof` degrees of freedom (the fit's p-value)."""
    return float(stats.chi2.sf(chi2, dof))


def poor_fit(chi2: float, dof: int, p_min: float) -> bool:
    """True when a chi2 this large is less probable than `p_min` for a model that is right
    (docs/fitting.md#4-the-chi2-bound-when-is-a-fit-poor)."""
    return chi2_p_value(chi2, dof) < p_min


def chi2_bound(dof: int, noise_samples: int, sigmas: float = 5.0) -> float:
    """A reduced chi^2 above this is a poor fit, when the point errors come from a noise
    estimate of `noise_samples` successive differences rather than being known: the reduced
    chi2 is then a ratio of two variance estimates with mean ~1 and relative standard
    deviation ``sqrt(2/dof + 3/noise_samples)``; `sigmas` of that above 1
    (docs/fitting.md#4-the-chi2-bound-when-is-a-fit-poor)."""
    return 1 + sigmas * math.sqrt(2 / max(dof, 1) + 3 / max(noise_samples, 1))


def pass_drift_error(difference: float, stderr_a: float, stderr_b: float) -> float:
    """The drift error of a quantity measured in two passes of one scan, one up and one
    down (`efficiency_fits.interleaved`, the VNA scan's `passes`): half their `difference`,
    less what the passes' own errors explain, so a scan that did not drift adds nothing on
    average (docs/fitting.md#drift-seen-by-scanning-both-ways)."""
    return math.sqrt(max(difference**2 - stderr_a**2 - stderr_b**2, 0.0)) / 2


def pearson_chi2(counts: np.ndarray, expected: np.ndarray, min_expected: float = 5.0
                 ) -> tuple[float, int]:
    """Pearson chi2 of Poisson `counts` against `expected`, over the bins expecting at least
    `min_expected` (chi2 is not chi2-like below that), and the number of such bins."""
    c, m = np.asarray(counts, float), np.asarray(expected, float)
    valid = m >= min_expected
    return float(np.sum((c[valid] - m[valid]) ** 2 / m[valid])), int(valid.sum())


# -- a fit's result ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Fit:
    """A fitted parameter vector with its covariance (already scaled by the inflation rule)
    and the model-vs-data diagnostics a figure can draw."""

    names: tuple[str, ...]
    params: np.ndarray
    covariance: np.ndarray
    chi2: float
    dof: int
    x: np.ndarray
    y: np.ndarray
    """The data fitted (for a Poisson fit, the counts)."""
    model_y: np.ndarray
    """The model at `x` with the fitted parameters."""
    sigma: np.ndarray
    """The point errors the residuals are normalised by (Poisson: sqrt of the model)."""
    units: dict[str, str] = field(default_factory=dict)

    @property
    def reduced_chi2(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else math.nan

    @property
    def p_value(self) -> float:
        return chi2_p_value(self.chi2, self.dof) if self.dof > 0 else math.nan

    @property
    def stderr(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))

    @property
    def residuals(self) -> np.ndarray:
        """(data - model) / sigma per point (complex for complex data: per quadrature)."""
        r = np.asarray((self.y - self.model_y) / self.sigma)
        return r if np.iscomplexobj(r) else r.astype(float)

    def values(self) -> dict[str, FitValue]:
        """Every parameter as a `FitValue` (value, one-sigma error, unit)."""
        return {n: FitValue(float(v), float(e), self.units.get(n, ""))
                for n, v, e in zip(self.names, self.params, self.stderr, strict=True)}

    def diagnostics(self) -> dict[str, float]:
        """chi2, dof, reduced chi2 and p-value, for `AnalysisResult.details`."""
        return {"chi2": self.chi2, "dof": float(self.dof), "chi2_reduced": self.reduced_chi2,
                "fit_p": self.p_value}


def weighted_least_squares(model: Model, x: np.ndarray, y: np.ndarray, sigma: np.ndarray,
                           p0: Sequence[float], names: Sequence[str], *,
                           units: dict[str, str] | None = None,
                           bounds: tuple[Sequence[float], Sequence[float]] | None = None,
                           inflate: bool = True) -> Fit:
    """Fit `model` to `y` with one-sigma errors `sigma` (``curve_fit``, absolute sigma).

    The covariance is scaled by `inflation_factor` unless `inflate` is False. Raises
    RuntimeError or ValueError (from scipy) when the fit does not converge.
    """
    xa, ya, sa = (np.asarray(a, float) for a in (x, y, sigma))
    kw = {} if bounds is None else {"bounds": bounds}
    p, cov = curve_fit(model, xa, ya, p0=list(p0), sigma=sa, absolute_sigma=True,
                       maxfev=20000, **kw)
    m = np.asarray(model(xa, *p), float)
    chi2 = float(np.sum(((ya - m) / sa) ** 2))
    dof = ya.size - len(p0)
    if inflate:
        cov = scale_covariance(cov, chi2, dof)
    return Fit(tuple(names), np.asarray(p, float), np.asarray(cov, float), chi2, dof,
               xa, ya, m, sa, dict(units or {}))


def poisson_ml(model: Model, x: np.ndarray, counts: np.ndarray, p0: Sequence[float],
               names: Sequence[str], *, units: dict[str, str] | None = None,
               bounds: Sequence[tuple[float | None, float | None]] | None = None,
               inflate: bool = True, min_expected: float = 5.0) -> Fit:
    """Poisson maximum-likelihood fit of `model` (expected counts per point) to `counts`.

    Errors: the inverse Fisher information ``(J^T diag(1/mu) J)^-1``, scaled by
    `inflation_factor` of the Pearson chi2 over the points expecting at least `min_expected`
    counts (docs/fitting.md#3-poisson-maximum-likelihood). Raises ValueError when the fit does
    not converge or its information matrix is singular.
    """
    xa, c = np.asarray(x, float), np.asarray(counts, float)

    def mu(p: np.ndarray) -> np.ndarray:
        return np.maximum(np.asarray(model(xa, *p), float), 1e-300)

    def nll(p: np.ndarray) -> float:
        m = mu(p)
        return float(np.sum(m - c * np.log(m)))

    res = minimize(nll, np.asarray(p0, float), method="L-BFGS-B" if bounds else "Nelder-Mead",
                   bounds=bounds, options={"maxiter": 20000})
    p = np.asarray(res.x, float)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"the Poisson fit did not converge ({res.message})")
    m = mu(p)
    try:
        cov = np.linalg.inv(_fisher_information(mu, p, m))
    except np.linalg.LinAlgError:
        raise ValueError("the Poisson fit is degenerate (singular Fisher information)") from None
    chi2, bins = pearson_chi2(c, m, min_expected)
    dof = bins - p.size
    if inflate:
        cov = scale_covariance(cov, chi2, dof)
    return Fit(tuple(names), p, cov, chi2, dof, xa, c, m, np.sqrt(m), dict(units or {}))


def _fisher_information(mu: Callable[[np.ndarray], np.ndarray], p: np.ndarray,
                        model: np.ndarray, *, scale: Sequence[float] | None = None
                        ) -> np.ndarray:
    """``J^T diag(1/mu) J`` of a Poisson likelihood with expected counts `mu(p)` (= `model`),
    over the points expecting any counts; J by central differences in `p`, column k divided
    by ``scale[k]`` (the parameters' physical units) when given."""
    jac = np.empty((model.size, p.size))
    for k in range(p.size):
        dp = np.zeros(p.size)
        dp[k] = 1e-5 * max(abs(p[k]), 1e-2)
        step = 2 * dp[k] if scale is None else 2 * dp[k] * scale[k]
        jac[:, k] = (mu(p + dp) - mu(p - dp)) / step
    keep = model > 1e-12
    return jac[keep].T @ (jac[keep] / model[keep, None])


# -- the coincidence-peak fit (timing calibrations) --------------------------------------------
PEAK_SIGNIFICANCE = 5.0
"""Pairs in the peak window must exceed the background by this many Poisson deviations."""
MIN_PEAK_PAIRS = 20
"""Fewer coincidences than this in the peak cannot support a fit with a verdict."""
FIT_HALF_WIDTH_SIGMAS = 8.0
"""The fit window: the peak centre +- this many widths."""
MIN_EXPECTED_FOR_CHI2 = 5.0
"""Bins expecting fewer pairs are left out of the Pearson chi2 (it is not chi2-like there)."""


@dataclass(frozen=True)
class PeakFit:
    """A fitted coincidence peak. Times in ps."""

    delay_ps: float
    """Peak centre: mean of ``t_B - t_A``, ps."""
    delay_stderr_ps: float
    sigma_ps: float
    """Peak width (rms), ps: the two inputs' jitters added in quadrature."""
    sigma_stderr_ps: float
    pairs: float
    """Fitted coincidences in the peak."""
    background_per_bin: float
    """Pairs per bin away from the peak (fixed in the fit)."""
    chi2_reduced: float
    """Pearson chi2/dof over the bins expecting >= 5 pairs (nan if too few)."""
    error_scale: float
    """Factor applied to the Fisher errors: sqrt of `inflation_factor`."""
    covariance: np.ndarray | None = field(default=None, compare=False)
    """Of (pairs, delay_ps, sigma_ps), scaled like the errors (for a figure's band)."""
    dof: int = 0
    """Degrees of freedom of `chi2_reduced`."""


def fit_peak(corr: Correlation, peak_window_ps: int) -> PeakFit | Verdict:
    """Find and fit the coincidence peak of `corr`: a flat background plus a Gaussian
    integrated over each bin, by Poisson maximum likelihood (derivation: docs/timing.md).

    `peak_window_ps` is the width of the window searched for the peak (ps), wider than the
    expected peak. Returns a bad `Verdict` (never raises) when there is no peak to fit.
    """
    counts = np.asarray(corr.counts, float)
    w = corr.bin_width_ps
    if corr.tags_a == 0 or corr.tags_b == 0:
        return Verdict.bad(Reason.NO_SIGNAL, f"{corr.tags_a} tags on input {corr.channel_a}, "
                           f"{corr.tags_b} on input {corr.channel_b}")
    lo_edge = corr.edges_ps[:-1].astype(float) - 0.5
    m = max(1, min(int(peak_window_ps // w), counts.size))
    sums = np.convolve(counts, np.ones(m), mode="valid")
    j = int(np.argmax(sums))
    peak = float(sums[j])
    away = np.ones(counts.size, bool)
    away[max(0, j - m):j + 2 * m] = False
    background = float(np.mean(counts[away])) if away.any() else 0.0
    expected = background * m
    if peak - expected <= PEAK_SIGNIFICANCE * math.sqrt(expected + 1.0) \
            or peak - expected < MIN_PEAK_PAIRS:
        return Verdict.bad(Reason.NO_SIGNAL, f"no coincidence peak between inputs "
                           f"{corr.channel_a} and {corr.channel_b}: at most {peak:.0f} pairs "
                           f"in {m * w} ps against {expected:.1f} expected from background "
                           f"({corr.tags_a} and {corr.tags_b} tags)")
    centres = lo_edge + 0.5 * w
    sl = slice(j, j + m)
    excess = np.clip(counts[sl] - background, 0.0, None)
    t_mean = float(np.sum(excess * centres[sl]) / np.sum(excess))
    s0 = math.sqrt(max(float(np.sum(excess * (centres[sl] - t_mean) ** 2) / np.sum(excess)),
                       w * w / 12.0 + 0.25))
    half = max(FIT_HALF_WIDTH_SIGMAS * s0, 5.0 * w)
    sel = (centres >= t_mean - half) & (centres <= t_mean + half)
    lo, c = lo_edge[sel], counts[sel]
    hi = lo + w

    def mu(p: np.ndarray) -> np.ndarray:
        n_pairs, t0, s = p[0] * peak, t_mean + p[1] * s0, p[2] * s0
        return background + n_pairs * (ndtr((hi - t0) / s) - ndtr((lo - t0) / s))

    def nll(p: np.ndarray) -> float:
        model = np.maximum(mu(p), 1e-300)
        return float(np.sum(model - c * np.log(model)))

    try:
        res = minimize(nll, np.array([1.0, 0.0, 1.0]), method="L-BFGS-B",
                       bounds=[(1e-6, 10.0), (-half / s0, half / s0), (0.02, 50.0)])
    except (ValueError, FloatingPointError):
        return Verdict.bad(Reason.POOR_FIT, "the peak fit failed")
    p = res.x
    if not (res.success and np.all(np.isfinite(p))):
        return Verdict.bad(Reason.POOR_FIT, f"the peak fit did not converge ({res.message})")
    # Fisher information of the Poisson likelihood, in physical units (pairs, ps, ps).
    model = mu(p)
    try:
        cov = np.linalg.inv(_fisher_information(mu, p, model, scale=(peak, s0, s0)))
    except np.linalg.LinAlgError:
        return Verdict.bad(Reason.POOR_FIT, "the peak fit is degenerate")
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    chi2_sum, bins = pearson_chi2(c, model, MIN_EXPECTED_FOR_CHI2)
    dof = bins - 3
    chi2 = chi2_sum / dof if dof > 0 else math.nan
    factor = math.sqrt(inflation_factor(chi2_sum, dof))
    return PeakFit(delay_ps=float(t_mean + p[1] * s0), delay_stderr_ps=float(err[1] * factor),
                   sigma_ps=float(p[2] * s0), sigma_stderr_ps=float(err[2] * factor),
                   pairs=float(p[0] * peak), background_per_bin=background,
                   chi2_reduced=chi2, error_scale=factor,
                   covariance=cov * factor**2, dof=dof)
