"""The pump-heating scan's references: the detection gain's drift measured from the
reference counts taken at the end of each heating pulse (and early references before it: the
wander at the probes' own lags), the probes normalised by the gain at their time, and the
far-detuned background interpolated in lab time.

Why and how: docs/transducer.md ("Pump heating: the cycle and the probe").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from qnetlab.sequences.data import StoredRun

from .counting import DeadTimeModel

__all__ = ["EarlyReferences", "Normalised", "Wander", "background_at", "drift_structure",
           "early_references", "gain_at", "interpolate_background", "lag_axis",
           "normalise_to_references", "reference_drift_rate"]


@dataclass(frozen=True)
class Normalised:
    """Probe rates divided by the relative gain at their time (Hz at the run's geometric
    mean gain), the probes' Poisson errors on the same scale, and the relative variance each
    point carries on top (the gain's estimate, the background's error)."""

    rate: np.ndarray
    rate_err: np.ndarray
    rel_var: np.ndarray
    drift_rate: float
    """Relative gain variance per second of lag, 1/s (`reference_drift_rate`)."""
    drift_rate_stderr: float
    gain: np.ndarray
    """The gain at each probe over the run's geometric mean gain."""
    wander: Wander | None = None
    """The gain's wander used (`drift_structure`; without early references a random walk at
    `drift_rate`)."""


@dataclass(frozen=True)
class EarlyReferences:
    """Each row's early reference: counted `lag` s (per row) before the row's reference in
    the same pulse (pump on, the heating settled), summed over the row's cycles like the
    reference. Rates Hz (dead-time corrected, background included like the reference's),
    one-sigma errors."""

    rate: np.ndarray
    err: np.ndarray
    lag: np.ndarray


def reference_drift_rate(ref_rate: np.ndarray, ref_err: np.ndarray, ref_time: np.ndarray
                         ) -> tuple[float, float]:
    """The relative gain's variance per second of lag (1/s) and its standard error, from the
    references in lab-time order: sum over consecutive pairs of (the change of ln rate)^2
    minus the pair's counting variances, over the sum of their lags. A random walk's
    variance grows in proportion to the lag; a stationary drift (Ornstein-Uhlenbeck) does so
    at lags well below its correlation time (minutes to hours: fibre polarization, coupling,
    the resonance under the pump), so this is what a short lag inherits. Negative estimates
    (no drift above counting) are 0."""
    order = np.argsort(np.asarray(ref_time, float), kind="stable")
    r = np.asarray(ref_rate, float)[order]
    v = (np.asarray(ref_err, float)[order] / r) ** 2
    t = np.asarray(ref_time, float)[order]
    if r.size < 3:
        return 0.0, math.inf
    dx2 = np.diff(np.log(r)) ** 2
    excess = dx2 - v[1:] - v[:-1]
    lag = float(np.sum(np.diff(t)))
    if not lag > 0:
        return 0.0, math.inf
    rate = float(np.sum(excess)) / lag
    # Each squared change of a Gaussian has variance 2 (its expectation)^2.
    stderr = math.sqrt(2.0 * float(np.sum(np.maximum(dx2, v[1:] + v[:-1]) ** 2))) / lag
    return max(rate, 0.0), stderr


@dataclass(frozen=True)
class Wander:
    """The log gain's variance over a lag l (s), piecewise linear in l: `rates[k]` (1/s) per
    second of lag between `knees[k - 1]` and `knees[k]` (from 0; the last rate beyond the
    last knee). One rate and no knee is a random walk."""

    rates: tuple[float, ...]
    knees: tuple[float, ...] = ()

    def at(self, lag: np.ndarray) -> np.ndarray:
        lag = np.maximum(np.asarray(lag, float), 0.0)
        return _segments(lag, self.knees) @ np.asarray(self.rates, float)


def _segments(lag: np.ndarray, knees: tuple[float, ...]) -> np.ndarray:
    """How much of each segment of the lag axis (0..knee_1, knee_1..knee_2, ..., beyond the
    last) each lag (s) covers: the design of a piecewise linear structure function."""
    edges = np.concatenate([[0.0], np.asarray(knees, float), [math.inf]])
    lag = np.asarray(lag, float)[..., None]
    return np.clip(lag - edges[:-1], 0.0, edges[1:] - edges[:-1])


def drift_structure(ref_rate: np.ndarray, ref_err: np.ndarray, ref_time: np.ndarray,
                    early_rate: np.ndarray, early_err: np.ndarray, early_lag: np.ndarray
                    ) -> Wander:
    """The gain's `Wander` from the lags the scan measures: the references' cycle to cycle
    (lab-time order, one to three minutes) and each row's early reference `early_lag` s
    before its reference (pump on, the same state). Knees at the early lags. A row sums its
    cycles' counts, early reference, reference and probe alike, so its early pair's wander
    is that of the row's probe at the same lag whether the cycles' drifts correlate or not
    (divided by the cycles, as for independent ones, it overstated membrane_eom's 4-5).

    Why: the probes sit 1e-4..60 s after their reference, below the references' spacing T,
    and a random walk fitted at T states S(T) t / T there; a drift that is smooth below T (a
    temperature, a photorefractive shift, a line drifting under a fixed pump) moves by
    ~(t/T)^2 of S(T), which on the bulk electro-optic benches overstated the slow channel's
    points' errors ~10x in variance (docs/transducer.md#pump-heating-the-cycle-and-the-probe).
    A broken line through the measured lags, non-decreasing (a drift's structure function),
    is exact for a random walk and above a smooth drift's everywhere below T (chords of a
    convex curve, then the line to 0), so the errors stay upper bounds where the old ones
    were, only closer.

    Weighted non-negative least squares on each pair's excess of its squared log change over
    its counting variance, weighted by a Gaussian pair's variance, 2 (expected)^2, from the
    data first and then from the fit (iterated)."""
    order = np.argsort(np.asarray(ref_time, float), kind="stable")
    ref = np.asarray(ref_rate, float)
    rel_ref = (np.asarray(ref_err, float) / ref) ** 2
    early = np.asarray(early_rate, float)
    r, t = ref[order], np.asarray(ref_time, float)[order]
    dx2 = np.concatenate([np.diff(np.log(r)) ** 2, np.log(ref / early) ** 2])
    count = np.concatenate([rel_ref[order][1:] + rel_ref[order][:-1],
                            rel_ref + (np.asarray(early_err, float) / early) ** 2])
    lag = np.concatenate([np.diff(t), np.broadcast_to(np.asarray(early_lag, float),
                                                      early.shape)])
    knees = tuple(float(k) for k in np.unique(np.asarray(early_lag, float)))
    design = _segments(lag, knees)
    excess = dx2 - count
    expected = np.maximum(dx2, count)
    rates = np.zeros(design.shape[1])
    for _ in range(4):
        w = 1.0 / (math.sqrt(2.0) * expected)
        rates, _ = nnls(design * w[:, None], excess * w)
        expected = count + design @ rates
    return Wander(tuple(float(x) for x in rates), knees)


def lag_axis(ref_time: np.ndarray, probe_time: np.ndarray, wander: Wander
             ) -> tuple[np.ndarray, np.ndarray]:
    """The references' and probes' positions (dimensionless) on an axis along which the log
    gain is a unit random walk, for its `wander` S(l). Row i holds reference i and probe i,
    t_i s after it and T_i before the next reference: the probe sits S(t_i) after its
    reference and the next reference max(S(T_i), S(t_i) + S(T_i - t_i)) after it, so each
    side of the probe carries at least the wander over its own lag (where S is convex, the
    cycle's S(T_i) with the rest after the probe; where it saturates, a cycle longer than
    its references' own, which only lets the smoother lean less on the far references)."""
    rt, pt = np.asarray(ref_time, float), np.asarray(probe_time, float)
    order = np.argsort(rt, kind="stable")
    cycle = np.diff(rt[order])
    own = np.clip((pt - rt)[order][:-1], 0.0, cycle)
    gap = np.maximum(wander.at(cycle), wander.at(own) + wander.at(cycle - own))
    u_ref = np.empty(rt.size)
    u_ref[order] = np.concatenate([[0.0], np.cumsum(gap)])
    return u_ref, u_ref + wander.at(pt - rt)


def gain_at(ref_time: np.ndarray, log_ref: np.ndarray, log_ref_var: np.ndarray,
            drift_rate: float, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The log gain and its variance at lab times `at` (s) from the references' log rates
    `log_ref` (variances `log_ref_var`) at `ref_time`: a random walk of diffusion
    `drift_rate` (1/s) observed with counting noise, estimated from every reference before
    and after (a Kalman filter forward, then the Rauch-Tung-Striebel smoother back). With no
    drift every point gets the weighted mean of all the references; with a strong drift
    each gets the references next to it."""
    times = np.concatenate([np.asarray(ref_time, float), np.asarray(at, float)])
    observed = np.concatenate([np.ones(np.size(ref_time), bool), np.zeros(np.size(at), bool)])
    values = np.concatenate([np.asarray(log_ref, float), np.zeros(np.size(at))])
    noise = np.concatenate([np.asarray(log_ref_var, float), np.zeros(np.size(at))])
    # References first at equal times: a probe is estimated after its own cycle's reference.
    order = np.lexsort((~observed, times))
    n = order.size
    m_pred, p_pred, m_filt, p_filt = (np.zeros(n) for _ in range(4))
    m, var, last = float(np.mean(log_ref)), 1e6, float(times[order[0]])
    for k, i in enumerate(order):
        var += drift_rate * max(float(times[i]) - last, 0.0)
        last = float(times[i])
        m_pred[k], p_pred[k] = m, var
        if observed[i]:
            gain = var / (var + noise[i])
            m, var = m + gain * (values[i] - m), (1.0 - gain) * var
        m_filt[k], p_filt[k] = m, var
    m_s, p_s = m_filt.copy(), p_filt.copy()
    for k in range(n - 2, -1, -1):
        c = p_filt[k] / p_pred[k + 1] if p_pred[k + 1] > 0 else 0.0
        m_s[k] = m_filt[k] + c * (m_s[k + 1] - m_pred[k + 1])
        p_s[k] = p_filt[k] + c * c * (p_s[k + 1] - p_pred[k + 1])
    out_m, out_p = np.empty(n), np.empty(n)
    out_m[order], out_p[order] = m_s, p_s
    return out_m[~observed], np.maximum(out_p[~observed], 0.0)


def normalise_to_references(rate: np.ndarray, rate_err: np.ndarray, ref_rate: np.ndarray,
                            ref_err: np.ndarray, ref_time: np.ndarray,
                            probe_time: np.ndarray, background: np.ndarray | float = 0.0,
                            background_err: np.ndarray | float = 0.0,
                            background_times: np.ndarray | None = None,
                            background_drift: float | None = None,
                            early: EarlyReferences | None = None) -> Normalised:
    """Each probe rate (Hz) over the gain at its time relative to the run's mean (`gain_at`
    from the references), with the variances that leaves (module docstring). Times are lab
    times, s. `background` (Hz, per cycle, with its error) does not scale with the gain: it
    comes off probe and reference before the division and its mean goes back on after.
    Between its measurements at `background_times` the background (pump leakage through the
    same detection path) wanders like the gain: a random walk pinned at both ends (a
    Brownian bridge), whose variance joins its error: at `background_drift` (relative
    variance per s, from the background's own counts), else (None) at the gain's, its upper
    bound (the gain carries the detection path and pump power as the background does, and
    the conversion's drift besides). `early` (one per row, the background taken off them
    too) measures the gain's wander at a short lag (`drift_structure`); without it the gain
    is a random walk in lab time at the references' rate."""
    bg = np.broadcast_to(np.asarray(background, float), np.shape(rate))
    bg_err = np.broadcast_to(np.asarray(background_err, float), np.shape(rate))
    net_ref = np.asarray(ref_rate, float) - bg
    if np.any(net_ref <= 0):
        gain = net_ref / float(np.mean(net_ref))
        return Normalised(np.asarray(rate, float), np.asarray(rate_err, float),
                          np.zeros(np.shape(rate)), math.nan, math.nan, gain)
    drift, drift_err = reference_drift_rate(net_ref, ref_err, ref_time)
    bg_drift = drift if background_drift is None else min(background_drift, drift)
    bg_err = np.hypot(bg_err, bg * np.sqrt(bg_drift * _bridge(np.asarray(probe_time, float),
                                                             background_times)))
    log_var = (np.asarray(ref_err, float) / net_ref) ** 2
    structure = Wander((drift,))
    rows = np.shape(ref_time) == np.shape(rate) == np.shape(probe_time)
    if early is not None and rows and np.shape(early.rate) == np.shape(rate):
        net_early = np.asarray(early.rate, float) - bg
        if np.all(net_early > 0):
            structure = drift_structure(net_ref, ref_err, ref_time, net_early, early.err,
                                        early.lag)
    # The smoother walks along the wander's own axis (`lag_axis`): a probe t s after its
    # reference inherits the wander at lag t, not the cycle's rate times t.
    if rows:
        u_ref, u_probe = lag_axis(ref_time, probe_time, structure)
    else:
        u_ref, u_probe = drift * np.asarray(ref_time, float), drift * np.asarray(
            probe_time, float)
    log_gain, log_gain_var = gain_at(u_ref, np.log(net_ref), log_var, 1.0, u_probe)
    gain = np.exp(log_gain - float(np.mean(log_gain)))
    raw_net = np.asarray(rate, float) - bg
    net = raw_net / gain
    y = net + float(np.mean(bg))
    # A background error comes off the probe and off the reference its gain rests on: the
    # two cancel in proportion to that reference's weight in the gain (the smoother's
    # variance at the reference over its own counting variance; a scan's row i holds
    # reference i and probe i). Counted on the probe alone it was inflated ~(1 - net/ref)^-1.
    share = np.zeros(np.shape(rate))
    if np.shape(ref_time) == np.shape(rate):
        _, at_ref_var = gain_at(u_ref, np.log(net_ref), log_var, 1.0, u_ref)
        share = np.clip(at_ref_var / np.where(log_var > 0, log_var, np.inf), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        bg_err = bg_err * np.abs(1.0 - share * raw_net / net_ref) / gain
    # Relative to y (the fit's weights scale them with the model's rate): the gain's error
    # acts on the converted part, the background's on all.
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_var = log_gain_var * (net / y) ** 2 + (bg_err / y) ** 2
    rel_var = np.where(np.isfinite(rel_var), rel_var, 0.0)
    return Normalised(y, np.asarray(rate_err, float) / gain, rel_var, drift, drift_err, gain,
                      structure)


def _bridge(at: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """Lag-equivalent (s) of a random walk pinned at the sorted `times`: (t - t0)(t1 - t) /
    (t1 - t0) between two of them, the distance to the nearest outside (none: zero)."""
    if times is None or np.size(times) == 0:
        return np.zeros(np.shape(at))
    t = np.sort(np.asarray(times, float))
    out = np.empty(np.shape(at))
    for i, x in enumerate(np.asarray(at, float)):
        k = int(np.searchsorted(t, x))
        if k == 0 or k == t.size:
            out[i] = abs(x - t[min(k, t.size - 1)])
        else:
            out[i] = (x - t[k - 1]) * (t[k] - x) / (t[k] - t[k - 1])
    return out


def background_at(run: StoredRun, dead: DeadTimeModel, at: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float | None]:
    """The far-detuned background (Hz, dead-time corrected) and its counting error at lab
    times `at` (s), the times it was measured and its own relative drift rate (1/s, from
    three or more counts; else None: the gain's is taken); zeros (and None) if the run
    measured none."""
    b = {k: np.asarray(run.data.get(k, []), float)
         for k in ("bg_counts", "bg_exposure", "bg_time")}
    none = np.zeros(np.shape(at)), np.zeros(np.shape(at)), None, None
    if not all(v.size == b["bg_counts"].size for v in b.values()):
        return none
    measured = (b["bg_exposure"] > 0) & np.isfinite(b["bg_time"])
    if not np.any(measured):
        return none
    rate, err = dead.correct(b["bg_counts"][measured], b["bg_exposure"][measured])
    times = b["bg_time"][measured]
    drift = None
    if rate.size >= 3 and np.all(rate > 0):
        drift = reference_drift_rate(rate, err, times)[0]
    return (*interpolate_background(times, rate, err, at), times, drift)


def early_references(run: StoredRun, dead: DeadTimeModel, order: np.ndarray
                     ) -> EarlyReferences | None:
    """The rows' early references (in the rows' `order`), or None for a run that counted
    none (an older run, or no `early_reference_leads`)."""
    d = {k: np.asarray(run.data.get(k, []), float)
         for k in ("early_counts", "early_exposure", "early_lead")}
    if not (all(v.size == order.size for v in d.values()) and order.size and np.all(
            d["early_exposure"] > 0) and np.all(d["early_counts"] > 0) and np.all(
            d["early_lead"] > 0)):
        return None
    rate, err = dead.correct(d["early_counts"][order], d["early_exposure"][order])
    return EarlyReferences(rate, err, d["early_lead"][order])


def interpolate_background(times: np.ndarray, rates: np.ndarray, errors: np.ndarray,
                           at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The background (Hz) and its error at lab times `at` (s), linear in time between its
    measurements (constant beyond them)."""
    order = np.argsort(times)
    t, r, e = (np.asarray(x, float)[order] for x in (times, rates, errors))
    if t.size == 1:
        return np.full(np.shape(at), r[0]), np.full(np.shape(at), e[0])
    return np.interp(at, t, r), np.interp(at, t, e)


# -- analysis -------------------------------------------------------------------------------
