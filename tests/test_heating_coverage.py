"""Coverage of the pump-heating times' errors (issue 13: tau_fast held the truth within one
stated error on 21 of 45 benches).

`PumpHeatingScan` runs through the real drivers on seeded simulated benches with custom
devices (heating times drawn per bench: tau_fast log-uniform over 0.3-3 ms, from three times the
shortest delay up, tau_slow over 0.3-5 s; every scan must give a good verdict, so the coverage
is that of the values a lab would use), and the fraction of benches whose stated one-sigma
(two-sigma) error holds the true time must be what a Gaussian error gives: 68.3 % (95.4 %).

The same coverage on the realistic lab (``qnetlab.simulation.ideal: false``: 60 benches whose
pump power, detection efficiency and optical line drift; `PumpHeatingScan`'s references take
the drift out and put what is left into the errors).

Statistics. With n benches the count within one sigma is Binomial(n, 0.683) for honest
errors; the accepted range is its central 99.7 % (scipy's binomial quantiles, ~3 sigma), so an
honest analysis fails by chance with probability ~3e-3 per check, and the seeds make every
run deterministic. The issue's 47 % (28 of 60) is outside that range.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qnetlab.instruments.station import load_station
from qnetlab.sequences.analysis import Reason
from qnetlab.sequences.transducer.heating import PumpHeatingScan, fit_heating, heating_model
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import bench_config

BENCHES = 60
FIRST_SEED = 1000
# Devices whose heating the default scan (2 mW) resolves on every seed: piezo_om's (< 2
# photons on ~100, Jiang 2023) is below it, membrane_eom's (~0.5 photons on a floor of 2.9
# at 2 mW, Brubaker 2022) at its edge (tau_slow then "not constrained" on some seeds).
PRESETS = ("bulk_eo_cw", "bulk_eo_pulsed", "piezo_om_integrated", "silicon_cw")
ONE_SIGMA, TWO_SIGMA = math.erf(1 / math.sqrt(2)), math.erf(2 / math.sqrt(2))
TAIL = 0.0015  # each side: the accepted range is the central 99.7 % of the binomial


def accepted(n: int, p: float) -> tuple[int, int]:
    """The central 99.7 % of Binomial(n, p): counts outside it reject p."""
    return int(stats.binom.ppf(TAIL, n, p)), int(stats.binom.isf(TAIL, n, p))


def custom_device(seed: int) -> tuple[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    overrides = {"heating_tau_fast": float(np.exp(rng.uniform(math.log(3e-4),
                                                               math.log(3e-3)))),
                 "heating_tau_slow": float(np.exp(rng.uniform(math.log(0.3), math.log(5.0))))}
    return PRESETS[seed % len(PRESETS)], overrides


def heating_pulls(folder: Path, seed: int, ideal: bool = True) -> dict[str, float] | None:
    """(fitted - true) / stated error of both times, from one bench's scan; None for a scan
    whose verdict is bad (only on the realistic lab: see its test)."""
    preset, overrides = custom_device(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # the drivers' "Connected to" lines
        station = load_station(bench_config(folder, preset, {
            "seed": seed, "transducer_overrides": overrides, "ideal": ideal}))
    try:
        model: Any = bench_of(station.instrument("vna")).world.transducer
        result = PumpHeatingScan().run(station, folder / "lab.db", quiet=True)
    finally:
        station.close()
    a = result.analysis
    assert a is not None, (seed, preset)
    if not ideal and (not a.verdict.good or "heating_amplitude_upper_limit" in a.details):
        # An honest "not resolved" (an upper limit, no times) / "not constrained" is allowed
        # on the drifting lab, never a fit that fails to describe the data.
        assert a.verdict.good or a.verdict.reason in (Reason.NO_SIGNAL,
                                                      Reason.POOR_FIT), a.verdict
        assert "describe" not in a.verdict.detail, (seed, preset, a.verdict)
        return None
    assert a.verdict.good, (seed, preset, overrides, a.verdict)
    return {name: (a.values[f"heating_{name}"].value - getattr(model, f"heating_{name}"))
            / a.values[f"heating_{name}"].stderr for name in ("tau_fast", "tau_slow")}


def assert_coverage(pulls: dict[str, list[float]]) -> None:
    """68.3 % (95.4 %) of each time's pulls within 1 (2), within the binomial bounds."""
    for name, values in pulls.items():
        n = len(values)
        z = np.abs(np.asarray(values))
        within1, within2 = int(np.sum(z < 1)), int(np.sum(z < 2))
        lo1, hi1 = accepted(n, ONE_SIGMA)
        lo2, hi2 = accepted(n, TWO_SIGMA)
        assert lo1 <= within1 <= hi1, (name, n, within1, (lo1, hi1), sorted(z.round(2)))
        assert lo2 <= within2 <= hi2, (name, n, within2, (lo2, hi2), sorted(z.round(2)))


@pytest.mark.slow
@pytest.mark.study  # 60 scans: 2-5 min (`pytest -m study`)
@pytest.mark.timeout(900)  # 60 scans of a few s each; a loaded CI box is slower
def test_heating_times_cover_the_truth_over_seeded_benches(tmp_path: Path) -> None:
    pulls: dict[str, list[float]] = {"tau_fast": [], "tau_slow": []}
    for seed in range(FIRST_SEED, FIRST_SEED + BENCHES):
        folder = tmp_path / str(seed)
        folder.mkdir()
        result = heating_pulls(folder, seed)
        assert result is not None
        for name, pull in result.items():
            pulls[name].append(pull)
    assert_coverage(pulls)


REALISTIC_BENCHES = 60
REALISTIC_FIRST_SEED = 3000
MIN_GOOD = 50
"""Scans with measured times (a good verdict, not an upper limit) the coverage needs. The rest
may honestly say not resolved / not constrained: here no optical scan puts the pump on the
line first, so on an electro-optic preset (25-30 MHz lines) the pump sometimes sits where the
laser's own accuracy and the line's drift put it, its converted noise a small part of the
pump leakage. 58 of these 60 are good (and the times cover: tau_fast 42 / 56 of 58 within 1 /
2 sigma, tau_slow 47 / 57; the same scans with the gain's wander extrapolated from the
references' spacing as a random walk, before the early references: tau_slow 50 / 57) since
the background stays within the laser's fine tuning (no coarse move re-lands the pump) and
its wander is measured from its own counts; with the background 50 GHz away and the gain's
wander taken for the background's, 12 of 40 were not seen."""


@pytest.mark.slow
@pytest.mark.study  # 60 scans: ~2 min (`pytest -m study`)
@pytest.mark.timeout(900)  # 60 scans of ~2 s each on an idle core; a loaded CI box is slower
def test_heating_times_cover_the_truth_on_the_realistic_lab(tmp_path: Path) -> None:
    """The same on the drifting lab (``ideal: false``: pump delivery, detection path and the
    optical line drift between cycles; the laser sits where its own accuracy puts it): the
    references and the far-detuned background make the stated errors honest there too.
    Coverage over the scans with a good verdict (the values a lab would use, at least
    `MIN_GOOD`); ~2 min."""
    pulls: dict[str, list[float]] = {"tau_fast": [], "tau_slow": []}
    unseen = 0
    for seed in range(REALISTIC_FIRST_SEED, REALISTIC_FIRST_SEED + REALISTIC_BENCHES):
        folder = tmp_path / str(seed)
        folder.mkdir()
        result = heating_pulls(folder, seed, ideal=False)
        if result is None:
            unseen += 1
            continue
        for name, pull in result.items():
            pulls[name].append(pull)
    assert REALISTIC_BENCHES - unseen >= MIN_GOOD, unseen
    assert_coverage(pulls)


def test_the_issues_coverage_is_rejected_by_the_bounds() -> None:
    lo, hi = accepted(BENCHES, ONE_SIGMA)
    assert not lo <= round(21 / 45 * BENCHES) <= hi  # the issue's 47 %
    assert lo <= round(ONE_SIGMA * BENCHES) <= hi


# -- the profile interval itself (pure fit, synthetic Poisson data) -------------------------
DELAYS = np.geomspace(1e-4, 60.0, 24)


def synthetic(seed: int, amp_fast: float, tau_fast: float) -> tuple[np.ndarray, np.ndarray]:
    """Rates (Hz) and their Poisson errors for 1 s probes at the scan's default delays."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(heating_model(DELAYS, 3.0e4, amp_fast, tau_fast, 6.7e3, 0.5))
    return counts.astype(float), np.sqrt(np.maximum(counts, 1.0))


def test_the_interval_is_the_profile_and_holds_the_value() -> None:
    rate, err = synthetic(7, 1.6e4, 1e-3)
    fit = fit_heating(DELAYS, rate, err, np.ones_like(DELAYS))
    assert fit is not None
    for name in ("tau_fast", "tau_slow"):
        lo, hi = fit.intervals[name]
        value = getattr(fit, name)
        assert 0 < lo < value < hi < math.inf
        assert fit.stderr[name] == pytest.approx((hi - lo) / 2)
        assert fit.covariance is not None
        index = ("floor", "amp_fast", "tau_fast", "amp_slow", "tau_slow").index(name)
        assert math.sqrt(fit.covariance[index, index]) == pytest.approx(fit.stderr[name])


def test_a_weak_fast_channel_gets_a_wider_asymmetric_interval() -> None:
    # A fast channel seen at a few delays only: tau_fast 2e-4 s next to the shortest delay.
    rate, err = synthetic(11, 2.0e3, 2e-4)
    fit = fit_heating(DELAYS, rate, err, np.ones_like(DELAYS))
    assert fit is not None
    lo, hi = fit.intervals["tau_fast"]
    # in ln tau the profile is skewed: the upper side is longer than the lower
    assert hi - fit.tau_fast > fit.tau_fast - lo
