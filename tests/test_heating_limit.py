"""The pump-heating scan below its resolution (issue 13: piezo_om's heating, < 2 photons on
N_add ~ 100 (Jiang 2023), came back as a bad "no heating seen" verdict): an upper limit on
the heating with a good verdict when it is below what matters, the times not determined;
measured times as before when the heating is resolved; a bad verdict when the data are not
described at all. sequences/transducer/heating_limit.py, docs/transducer.md
#heating-below-resolution.

The scans here are hand-built stored runs (the columns `PumpHeatingScan` stores, Poisson
counts from a known model, no dead time) analysed by `PumpHeatingAnalysis`, the analysis a
real run gets. Statistics: the coverage test draws 400 Gaussian datasets per truth; an
honest 95 % limit covers the truth in Binomial(400, 0.95) of them, and the test accepts
counts down to that binomial's 0.15 % quantile (a false failure ~1.5e-3 per truth; seeded,
so deterministic). Single-dataset checks use fixed seeds and margins of several sigma.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qnetlab.sequences.analysis import Reason
from qnetlab.sequences.curve_analysis import CurveData
from qnetlab.sequences.data import StoredRun
from qnetlab.sequences.transducer.heating import (
    PumpHeatingAnalysis,
    fit_heating,
    heating_model,
    heating_verdict,
)
from qnetlab.sequences.transducer.heating_limit import (
    CONFIDENCE,
    added_noise_limit,
    upper_limits,
)
from qnetlab.sequences.transducer.operating_point import LinearModel

from conftest import load_tool

DELAYS = np.geomspace(1e-4, 60.0, 24)
PULSE = 30.0
FLOOR = 2.0e5
"""Hz: the cold converted noise (the heating's share is quoted against the steady one)."""
BACKGROUND = 2.0e3
"""Hz: leakage and dark counts, counted with the pump far detuned."""


def stored_scan(seed: int, amp_fast: float = 0.0, tau_fast: float = 1e-3,
                amp_slow: float = 0.0, tau_slow: float = 0.5, repeats: int = 1,
                shape: Any = None) -> StoredRun:
    """The columns of a `PumpHeatingScan` run: per delay, Poisson probe clicks at
    `heating_model` (plus `shape(delay)` Hz if given), the reference at the pulse's end
    (floor plus both amplitudes) and the far-detuned background every fourth step."""
    rng = np.random.default_rng(seed)
    n = DELAYS.size
    exposure = np.full(n, float(repeats))
    rate = heating_model(DELAYS, FLOOR + BACKGROUND, amp_fast, tau_fast, amp_slow, tau_slow)
    if shape is not None:
        rate = rate + shape(DELAYS)
    ref_rate = FLOOR + BACKGROUND + amp_fast + amp_slow
    step_start = 100.0 * np.arange(n)
    bg_every = (np.arange(n) % 4 == 3) | (np.arange(n) == 0) | (np.arange(n) == n - 1)
    data = {
        "delay": DELAYS, "counts": rng.poisson(rate * exposure).astype(float),
        "exposure": exposure, "latched": np.zeros(n), "bias": np.full(n, 10.5e-6),
        "ref_counts": rng.poisson(ref_rate * 2.0 * repeats, n).astype(float),
        "ref_exposure": np.full(n, 2.0 * repeats), "ref_time": step_start + PULSE,
        "probe_time": step_start + PULSE + DELAYS,
        "bg_counts": np.where(bg_every, rng.poisson(BACKGROUND * 5.0, n), 0).astype(float),
        "bg_exposure": np.where(bg_every, 5.0, 0.0),
        "bg_time": np.where(bg_every, step_start + 90.0, np.nan),
        "pulse": np.full(n, PULSE)}
    options = {"pump_power": 2e-3, "delays": n, "pulse_duration": PULSE, "dead_time": 0.0,
               "recovery_time": 0.0, "counter_dead_time": 0.0, "repeats": repeats}
    return StoredRun(1, Path("lab.db"), "guid", "pump_heating_scan", data, {},
                     metadata={"options": options})


def analyse(run: StoredRun) -> Any:
    return PumpHeatingAnalysis().analyze(run)


# -- below resolution: an upper limit -------------------------------------------------------
def test_no_heating_gives_an_upper_limit_and_a_good_verdict() -> None:
    a = analyse(stored_scan(1))
    assert a.verdict.good, a.verdict
    assert "not resolved" in a.verdict.detail and "times not determined" in a.verdict.detail
    assert "consistent with no heating" in a.verdict.detail
    # No time is reported as measured; the limit is, with its confidence and time range.
    assert not any(k.startswith("heating_tau") for k in a.values), a.values
    d = a.details
    assert d["heating_limit_confidence"] == CONFIDENCE
    assert d["heating_limit_tau_min"] == pytest.approx(DELAYS[0])
    assert d["heating_limit_tau_max"] == pytest.approx(PULSE / 3)
    assert d["heating_amplitude_upper_limit"] > 0.0  # the truth (0) lies below it
    # Relative to the steady converted noise (references minus background): a 1 s probe of
    # ~2e5 Hz has a 0.2 % error, so the limit is a few per cent, well below the 10 % that
    # matters.
    assert d["heating_share_upper_limit"] == pytest.approx(
        d["heating_amplitude_upper_limit"] / d["steady_converted_rate"])
    assert d["steady_converted_rate"] == pytest.approx(FLOOR, rel=0.01)
    assert 0.002 < d["heating_share_upper_limit"] < 0.05


def test_a_weak_heating_below_resolution_is_held_by_the_limit() -> None:
    # piezo_om-like: 0.8 % of the noise, 70 % of it fast; neither channel at 5 sigma.
    a = analyse(stored_scan(2, amp_fast=1.1e3, amp_slow=0.5e3))
    assert a.verdict.good, a.verdict
    assert "heating_tau_fast" not in a.values
    assert a.details["heating_amplitude_upper_limit"] >= 1.6e3


def test_a_time_not_constrained_gives_the_limit_not_a_bad_verdict() -> None:
    # Both amplitudes seen (14 and 6 errors), but tau_slow's profile interval reaches past
    # twice it: the times are not determined (what the clean lab's piezo_om scan shows), and
    # the heating (4.8 % of the steady noise here) is bounded instead.
    run = stored_scan(0, amp_fast=8e3, amp_slow=2e3)
    data = PumpHeatingAnalysis().load(run)
    assert isinstance(data, CurveData)
    fit = fit_heating(data.x, data.y, data.extra["rate_err"], data.extra["exposure"],
                      data.extra["rel_var"])
    assert fit is not None and "not constrained" in heating_verdict(fit, data.x, PULSE).detail
    a = analyse(run)
    assert a.verdict.good and "not resolved" in a.verdict.detail, a.verdict
    assert not any(k.startswith("heating_tau") for k in a.values), a.values
    assert a.details["heating_amplitude_upper_limit"] >= 1e4


def test_an_unresolved_heating_above_what_matters_is_not_good() -> None:
    # A scan counting 1000x less (1 ms probes: rate errors ~30x larger): the limit reaches
    # beyond a tenth of the noise, which it cannot exclude.
    run = stored_scan(3)
    run.data["counts"] = np.random.default_rng(3).poisson(
        (FLOOR + BACKGROUND) * 1e-3, DELAYS.size).astype(float)
    run.data["exposure"] = np.full(DELAYS.size, 1e-3)
    a = analyse(run)
    assert not a.verdict.good and a.verdict.reason is Reason.NO_SIGNAL, a.verdict
    assert "not excluded above 10%" in a.verdict.detail, a.verdict
    assert a.details["heating_share_upper_limit"] > 0.1


def test_a_rate_two_exponentials_do_not_describe_is_a_poor_fit() -> None:
    # A rate that oscillates with log(delay): no floor plus decays, nor a constant, fits.
    a = analyse(stored_scan(4, shape=lambda t: 5e3 * np.sin(2.0 * np.log(t))))
    assert not a.verdict.good and a.verdict.reason is Reason.POOR_FIT, a.verdict


# -- resolved: measured as before -------------------------------------------------------------
def test_a_clear_heating_is_measured_not_limited() -> None:
    truth = {"amp_fast": 4e4, "tau_fast": 1e-3, "amp_slow": 2e4, "tau_slow": 0.5}
    a = analyse(stored_scan(5, amp_fast=truth["amp_fast"], tau_fast=truth["tau_fast"],
                            amp_slow=truth["amp_slow"], tau_slow=truth["tau_slow"]))
    assert a.verdict.good and "tau_fast" in a.verdict.detail, a.verdict
    assert "heating_amplitude_upper_limit" not in a.details
    for name in ("tau_fast", "tau_slow"):
        value = a.values[f"heating_{name}"]
        assert abs(value.value - truth[name]) < 4 * value.stderr, (name, value)


# -- the limit's coverage ----------------------------------------------------------------------
@pytest.mark.parametrize(("amp_fast", "tau_fast", "amp_slow", "tau_slow"), [
    (1.5e3, 1e-3, 0.6e3, 0.5),   # piezo_om-like shares, at 2-3 point errors
    (3e3, 2e-4, 0.0, 1.0),       # one fast channel near the shortest delay
    (0.0, 1e-3, 2e3, 8.0),       # one slow channel near the longest time
    (1e3, 3e-3, 1e3, 0.05),
])
def test_the_limit_holds_the_truth_at_least_95_percent_of_the_time(
        amp_fast: float, tau_fast: float, amp_slow: float, tau_slow: float) -> None:
    draws = 400
    rng = np.random.default_rng(11)
    sigma = np.full(DELAYS.size, 1.0e3)
    truth = heating_model(DELAYS, FLOOR, amp_fast, tau_fast, amp_slow, tau_slow)
    rates = truth[:, None] + rng.normal(size=(DELAYS.size, draws)) * sigma[:, None]
    limits = upper_limits(DELAYS, rates, sigma, (DELAYS[0], 10.0))
    covered = sum(lim.amplitude_upper_limit >= amp_fast + amp_slow for lim in limits)
    assert covered >= stats.binom.ppf(0.0015, draws, CONFIDENCE), covered


def test_bad_input_to_the_limit_names_the_problem() -> None:
    with pytest.raises(ValueError, match="tau_min < tau_max"):
        upper_limits(DELAYS, np.ones(DELAYS.size), np.ones(DELAYS.size), (1.0, 0.1))
    with pytest.raises(ValueError, match="positive error"):
        upper_limits(DELAYS, np.ones(DELAYS.size), np.zeros(DELAYS.size), (1e-4, 1.0))


# -- what uses it -------------------------------------------------------------------------------
def test_the_operating_point_takes_the_limit_scaled_not_zero() -> None:
    added = LinearModel(98.5, 375.0, 1.0, 10.0)  # N_add = 98.5 + 375 / W * P
    details = {"heating_share_upper_limit": 0.02, "pump_power": 2e-3,
               "heating_limit_confidence": 0.95}
    at_scan = 98.5 + 375.0 * 2e-3 + stats.norm.ppf(0.95) * math.hypot(1.0, 10.0 * 2e-3)
    # Heating is linear in the absorbed power: twice the scan's power, twice the limit.
    assert added_noise_limit(details, added, 4e-3) == pytest.approx(0.02 * at_scan * 2)
    assert math.isnan(added_noise_limit({"pump_power": 2e-3}, added, 4e-3))  # resolved


def test_the_coverage_study_counts_limits_against_the_truth() -> None:
    cs = load_tool("coverage_study")
    rows = [cs.LimitRow("heating share (upper limit)", 0.0076, limit, 0.95, limit >= 0.0076)
            for limit in [0.02] * 19 + [0.005]]
    (cover,) = cs.limit_coverage([cs.BenchResult("piezo_om", 1, False, limits=rows)])
    assert (cover.n, cover.covered, cover.checked) == (20, 19, True)
    assert cover.ok and cover.lowest == stats.binom.ppf(cs.TAIL, 20, 0.95)
    bad = [cs.LimitRow("heating share (upper limit)", 0.0076, 0.005, 0.95, False)] * 20
    (cover,) = cs.limit_coverage([cs.BenchResult("piezo_om", 1, False, limits=bad)])
    assert not cover.ok
    result = cs.tables([cs.BenchResult("piezo_om", 1, False, limits=bad)])
    assert "truth below the limit" in result["limits"]["markdown"] and not result["ok"]
