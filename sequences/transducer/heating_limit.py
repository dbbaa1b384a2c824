"""An upper limit on the pump heating when the heating scan does not resolve it
(`heating.PumpHeatingAnalysis`: a heating channel not seen at `heating.SIGNIFICANCE` standard
errors, a time not constrained, or no two-exponential fit on data with nothing to fit).

What is bounded: the total heating amplitude A = A_f + A_s (Hz at the detector, on the
references' scale), the excess noise rate the heating leaves at the end of the pulse, for
heating times anywhere in `tau_range` (the times the scan could have measured: from the
shortest delay to a third of the longest delay and of the pulse). With the times fixed the
model R(t) = R_0 + A_f e^(-t/tau_f) + A_s e^(-t/tau_s) is linear, so A has an exact Gaussian
estimate and error; with the times unknown (the data do not determine them) the limit is the
largest one-sided bound over every pair of times the data allow. That is the construction of
Berger & Boos (J. Am. Stat. Assoc. 89, 1012 (1994)) for a nuisance parameter: a confidence
set for the times at level 1 - `SET_ALPHA` (the pairs whose chi2 is within the chi2
distribution's 1 - `SET_ALPHA` quantile for two parameters of the best pair's), and over it
the maximum of the bound at confidence `confidence + SET_ALPHA`; together at least
`confidence`, whatever the times are. Each bound is ``max(A_hat, 0) + z sigma_A`` (the
estimate clipped at the physical boundary only makes it larger: the coverage of the plain
``A_hat + z sigma_A`` is kept, and a downward fluctuation cannot give an empty or
meaningless limit). Profile likelihood in A with the times free is not used: at A = 0 the
times are not identified and Wilks' theorem does not hold there (the regime this is for).
The times' set uses the chi2 quantile too, which is asymptotic; but where the times are not
identified (A ~ 0) any limit >= 0 holds the truth, and where A > 0 tests/test_heating_limit.py
checks the coverage on synthetic scans. docs/transducer.md#heating-below-resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from qnetlab.sequences.analysis import Reason, Verdict
from qnetlab.sequences.fitting import chi2_p_value, inflation_factor

from .operating_point import LinearModel

CONFIDENCE = 0.95
"""One-sided confidence of the limit."""
SET_ALPHA = 0.01
"""The times' confidence set misses the true pair at most this often; the bound per pair is
taken at `CONFIDENCE + SET_ALPHA` so that the two together hold `CONFIDENCE`."""
TAUS_PER_DECADE = 8
"""Grid of times, log-spaced: neighbours 33 % apart, so the true pair is never far from one
on the grid (the bound varies slowly with the times)."""


@dataclass(frozen=True)
class HeatingLimit:
    """The heating scan's result when it does not resolve the heating: an upper limit on
    the amplitude, the times not determined."""

    amplitude_upper_limit: float
    """Hz at the detector: A_f + A_s at the pulse's end is below this at `confidence`."""
    confidence: float
    tau_range: tuple[float, float]
    """s: the heating times the limit holds for (module docstring)."""
    limiting_times: tuple[float, float]
    """s: the pair of times whose bound is the limit."""
    amplitude_estimate: float
    """Hz, A_hat at `limiting_times` (may be negative: a fluctuation)."""
    amplitude_stderr: float
    """Hz, its one-sigma error there."""
    chi2_min: float
    """Best chi2 over the grid of times (the two-exponential model, 5 parameters)."""
    dof: int
    flat_chi2: float
    """chi2 of a constant rate (no heating at all), `dof` + 4 degrees of freedom."""
    steady_rate: float | None = None
    """Hz, the converted noise at the pulse's end (references minus background) on the
    same scale: the denominator of `share_upper_limit`; None without references."""
    tau_fast: None = None
    """Not determined."""
    tau_slow: None = None
    """Not determined."""

    @property
    def fit_p(self) -> float:
        """The chi2 p-value of the best two-exponential model on the grid."""
        return chi2_p_value(self.chi2_min, self.dof)

    @property
    def flat_p(self) -> float:
        """The chi2 p-value of no heating at all (a constant rate)."""
        return chi2_p_value(self.flat_chi2, self.dof + 4)

    @property
    def share_upper_limit(self) -> float | None:
        """The limit as a fraction of the steady converted noise (the heating's share of
        N_add at the scan's pump power, the rest being the cold floor); None without it."""
        if self.steady_rate is None or not self.steady_rate > 0:
            return None
        return self.amplitude_upper_limit / self.steady_rate

    def details(self) -> dict[str, float]:
        """For `AnalysisResult.details` (JSON: no None; a missing share is left out)."""
        out = {"heating_amplitude_upper_limit": self.amplitude_upper_limit,
               "heating_limit_confidence": self.confidence,
               "heating_limit_tau_min": self.tau_range[0],
               "heating_limit_tau_max": self.tau_range[1],
               "heating_limit_amplitude_estimate": self.amplitude_estimate,
               "heating_limit_amplitude_stderr": self.amplitude_stderr,
               "flat_chi2": self.flat_chi2, "flat_p": self.flat_p}
        share = self.share_upper_limit
        if share is not None:
            out["heating_share_upper_limit"] = share
        return out

    def describe(self) -> str:
        share = self.share_upper_limit
        shown = f"{self.amplitude_upper_limit:.3g} Hz"
        if share is not None:
            shown = f"{share:.2%} of the steady converted noise ({shown})"
        return (f"below {shown} at {self.confidence:.0%} confidence for heating "
                f"times {self.tau_range[0]:.3g}-{self.tau_range[1]:.3g} s; times not "
                "determined")


def time_grid(tau_range: tuple[float, float], ratio: float) -> list[tuple[float, float]]:
    """The (tau_f, tau_s) pairs (s) in `tau_range`, tau_s >= `ratio` tau_f: two channels the
    model tells apart (a single channel is a pair with A_s = 0)."""
    lo, hi = tau_range
    n = max(2, math.ceil(TAUS_PER_DECADE * math.log10(hi / lo)) + 1)
    taus = np.geomspace(lo, hi, n)
    pairs = [(float(f), float(s)) for f in taus for s in taus if s >= ratio * f * (1 - 1e-9)]
    if not pairs:  # a range narrower than the ratio: one channel at a time
        pairs = [(float(f), math.inf) for f in taus]
    return pairs


def upper_limits(delay: np.ndarray, rates: np.ndarray, sigma: np.ndarray,
                 tau_range: tuple[float, float], *, ratio: float = 3.0,
                 confidence: float = CONFIDENCE) -> list[HeatingLimit]:
    """The limit (module docstring) for each column of `rates` (Hz, shape (points,) or
    (points, datasets)) at `delay` (s) with one-sigma errors `sigma` (Hz, per point, the same
    for every dataset). The grid's linear algebra is done once for all datasets."""
    t = np.asarray(delay, float)
    y = np.asarray(rates, float)
    y = y[:, None] if y.ndim == 1 else y
    s = np.asarray(sigma, float)
    if not (0 < tau_range[0] < tau_range[1]) or not 0 < confidence < 1 - SET_ALPHA:
        raise ValueError(f"need 0 < tau_min < tau_max (got {tau_range}) and 0 < confidence "
                         f"< {1 - SET_ALPHA:g} (got {confidence})")
    if y.shape[0] != t.size or s.shape != t.shape or t.size < 6 or np.any(~(s > 0)):
        raise ValueError(f"need >= 6 delays with one rate and a positive error each, got "
                         f"{t.size} delays, rates {y.shape}, errors {s.shape}")
    w = 1.0 / s**2
    sw = np.sqrt(w)
    flat_mean = (w @ y) / np.sum(w)
    flat_chi2 = np.sum(w[:, None] * (y - flat_mean) ** 2, axis=0)
    pairs = time_grid(tau_range, ratio)
    amp = np.empty((len(pairs), y.shape[1]))
    amp_var = np.empty(len(pairs))
    chi2 = np.empty((len(pairs), y.shape[1]))
    pick = np.array([0.0, 1.0, 1.0])
    for k, (tf, ts) in enumerate(pairs):
        design = np.column_stack([np.ones_like(t), np.exp(-t / tf), np.exp(-t / ts)])
        normal_inv = np.linalg.pinv((design * w[:, None]).T @ design)
        coef = normal_inv @ (design * w[:, None]).T @ y
        chi2[k] = np.sum((sw[:, None] * (y - design @ coef)) ** 2, axis=0)
        amp[k] = pick @ coef
        amp_var[k] = float(pick @ normal_inv @ pick)
    dof = t.size - 5
    z = float(stats.norm.ppf(confidence + SET_ALPHA))
    out = []
    for j in range(y.shape[1]):
        best = float(np.min(chi2[:, j]))
        scale = inflation_factor(best, dof)  # the fit's inflation rule (fitting.md)
        allowed = chi2[:, j] <= best + float(stats.chi2.ppf(1 - SET_ALPHA, 2)) * scale
        err = np.sqrt(amp_var * scale)
        bound = np.where(allowed, np.maximum(amp[:, j], 0.0) + z * err, -np.inf)
        k = int(np.argmax(bound))
        out.append(HeatingLimit(float(bound[k]), confidence, tau_range, pairs[k],
                                float(amp[k, j]), float(err[k]), best, dof,
                                float(flat_chi2[j])))
    return out


def limit_verdict(limit: HeatingLimit, fit_p: float | None, *, max_share: float,
                  fit_p_min: float) -> Verdict:
    """The verdict on a scan that did not resolve the heating (docs/transducer.md
    #heating-below-resolution): bad (poor fit) when neither two exponentials (`fit_p`, the
    fit's chi2 p-value, None when it did not converge; else the grid's best) nor a constant
    rate describe the data; bad (no signal) when the limit's share of the steady noise is
    unknown (no references) or above `max_share`; else good, with the limit."""
    p = limit.fit_p if fit_p is None else max(fit_p, limit.fit_p)
    if p < fit_p_min and limit.flat_p < fit_p_min:
        return Verdict.bad(Reason.POOR_FIT, f"the noise rate changes with the delay in a way "
                           f"two exponentials do not describe (best chi2 {limit.chi2_min:.1f} "
                           f"for {limit.dof} dof)")
    share = limit.share_upper_limit
    if share is None:
        return Verdict.bad(Reason.NO_SIGNAL, f"pump heating not resolved: "
                           f"{limit.describe()}, but its share of the converted noise needs "
                           "the references and the background (reference_windows, "
                           "background_time)")
    seen = ("consistent with no heating" if limit.flat_p >= fit_p_min else
            f"a change with the delay is seen, a constant rate has chi2 "
            f"{limit.flat_chi2:.1f} for {limit.dof + 4} dof, but not resolved into channels")
    if share > max_share:
        return Verdict.bad(Reason.NO_SIGNAL, f"pump heating not resolved ({seen}) and not "
                           f"excluded above {max_share:.0%} of the noise: {limit.describe()}: "
                           "more cycles per delay (max_repeats) or a stronger pulse")
    return Verdict.ok(f"pump heating not resolved ({seen}): {limit.describe()}")


def added_noise_limit(details: dict[str, float], added: LinearModel,
                      pump_power: float) -> float:
    """Photons of N_add (input-referred) that a heating the scan did not resolve may add at
    `pump_power` (W, on the heating scan's pump-power scale), at the limit's confidence, from
    the scan's `details`: its share of the steady noise times the steady N_add at the scan's
    power (`added`, the noise scan's line: its value plus `z` of its error, so the product
    of two bounds stays conservative), times pump_power / the scan's (the heating is linear
    in the absorbed power). NaN when the scan gave no share limit (heating resolved)."""
    share = details.get("heating_share_upper_limit")
    scan_power = details.get("pump_power")
    if share is None or scan_power is None or not scan_power > 0:
        return math.nan
    z = float(stats.norm.ppf(details.get("heating_limit_confidence", CONFIDENCE)))
    at_scan = float(added.value(np.array([scan_power]))[0]
                    + z * added.stderr(np.array([scan_power]))[0])
    return float(share * max(at_scan, 0.0) * pump_power / scan_power)
