"""The pump-heating scan's references: the detection gain's drift measured from the
reference counts taken at the end of each heating pulse, the probes normalised by the gain at
their time, and the far-detuned background interpolated in lab time.

Why and how: docs/transducer.md ("Pump heating: the cycle and the probe").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qnetlab.sequences.data import StoredRun

from .counting import DeadTimeModel

__all__ = ["Normalised", "background_at", "gain_at", "interpolate_background",
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
                            background_drift: float | None = None) -> Normalised:
    """Each probe rate (Hz) over the gain at its time relative to the run's mean (`gain_at`
    from the references), with the variances that leaves (module docstring). Times are lab
    times, s. `background` (Hz, per cycle, with its error) does not scale with the gain: it
    comes off probe and reference before the division and its mean goes back on after.
    Between its measurements at `background_times` the background (pump leakage through the
    same detection path) wanders like the gain: a random walk pinned at both ends (a
    Brownian bridge), whose variance joins its error: at `background_drift` (relative
    variance per s, from the background's own counts), else (None) at the gain's, its upper
    bound (the gain carries the detection path and pump power as the background does, and
    the conversion's drift besides)."""
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
    log_gain, log_gain_var = gain_at(ref_time, np.log(net_ref), log_var, drift, probe_time)
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
        _, at_ref_var = gain_at(ref_time, np.log(net_ref), log_var, drift, ref_time)
        share = np.clip(at_ref_var / np.where(log_var > 0, log_var, np.inf), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        bg_err = bg_err * np.abs(1.0 - share * raw_net / net_ref) / gain
    # Relative to y (the fit's weights scale them with the model's rate): the gain's error
    # acts on the converted part, the background's on all.
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_var = log_gain_var * (net / y) ** 2 + (bg_err / y) ** 2
    rel_var = np.where(np.isfinite(rel_var), rel_var, 0.0)
    return Normalised(y, np.asarray(rate_err, float) / gain, rel_var, drift, drift_err, gain)


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
