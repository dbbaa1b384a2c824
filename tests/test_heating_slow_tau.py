"""The pump-heating scan's slow heating time on devices whose slow channel is weak or slow
(issue 13: on the drifting realistic lab membrane_eom's tau_slow, 5 s, came back "not
constrained" on 4 of 7 seeds and once 2.01 ± 0.98 s with a good verdict).

The cause was counting, not the pulse: the default 30 s pulse and 60 s record are 6 and 12
slow times, but the slow channel is ~3 % of the noise floor (Brubaker 2022: N_add 3.2-4 with
little pump heating), and one 1 s probe per delay plus the lab's gain drift left it at a few
errors. The scan's first look (`sequences/transducer/heating_plan.py`) now measures the heating
contrast over one pulse and counts enough cycles per delay, and lengthens a pulse that does
not let the slow channel settle; the verdict flags a time whose profile interval's upper side
is long, and a slow time the pulse could not have charged.

Tolerances: |pull| < 3 on one seeded bench (a Gaussian error exceeds it with probability
2.7e-3; the seed was fixed before the result was seen and makes the run deterministic). The
look's arithmetic is checked on exact synthetic rates.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.sequences.analysis import Reason
from qnetlab.sequences.transducer.heating import (
    PumpHeatingScan,
    fit_heating,
    heating_verdict,
    interleaved_order,
)
from qnetlab.sequences.transducer.heating_plan import (
    Look,
    next_pulse,
    plan_from_look,
    repeats_for,
)
from qnetlab.sequences.transducer.heating_references import (
    EarlyReferences,
    normalise_to_references,
)
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import REPO, bench_config, load_tool

SPEED_OF_LIGHT = 299_792_458.0
MEMBRANE_BENCH = REPO / "lab_configs" / "membrane_bench.yaml"
MAX_PULL = 3.0


def quiet_station(config: Path) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # the drivers' "Connected to" lines
        return load_station(config)


def on_the_line(station: Any) -> Any:
    """The pump on the optical line as the characterization's optical scan leaves it (here
    from the world's resonance: this file tests the heating scan alone)."""
    world = bench_of(station.instrument("vna")).world
    station.setup.optical_resonance_wavelength(
        SPEED_OF_LIGHT / world.optical_resonance_frequency())
    return world


# -- through the real drivers -----------------------------------------------------------------
@pytest.mark.slow
def test_membrane_slow_heating_time_is_recovered_on_the_drifting_lab(tmp_path: Path) -> None:
    """Seed 31 of the realistic membrane bench: before the first look the scan said
    "tau_slow is not constrained (1.45 ± 1.1 s)" against a truth of 5 s (pull -3.3)."""
    lab = load_config(MEMBRANE_BENCH).with_simulation(seed=31)
    with quiet_station(Path(lab.to_yaml(tmp_path / "membrane_31.yaml").path)) as station:
        world = on_the_line(station)
        assert not world.ideal
        truth = world.transducer
        scan = PumpHeatingScan()
        result = scan.run(station, tmp_path / "lab.db", quiet=True)
    a = result.analysis
    assert a is not None and a.verdict.good, a.verdict
    # the look asked for more counting than one cycle per delay: the contrast is weak
    assert scan.plan is not None and scan.plan.settled and scan.plan.repeats > 1, scan.plan
    assert a.details["cycles_per_delay"] == pytest.approx(scan.plan.repeats)
    for name in ("tau_fast", "tau_slow"):
        value = a.values[f"heating_{name}"]
        pull = (value.value - getattr(truth, f"heating_{name}")) / value.stderr
        assert abs(pull) < MAX_PULL, (name, value, pull)


@pytest.mark.slow
def test_a_pulse_too_short_for_the_slow_channel_is_lengthened(tmp_path: Path) -> None:
    """A strongly heating device (silicon_cw) whose slow time is 15 s, on the clean lab: the
    default 30 s pulse is two slow times; the look sees the channel still charging and
    lengthens the pulse to five of its slow times, and the scan recovers the time."""
    config = bench_config(tmp_path, "silicon_cw", {
        "seed": 5, "ideal": True, "transducer_overrides": {"heating_tau_slow": 15.0}})
    with quiet_station(config) as station:
        world = on_the_line(station)
        scan = PumpHeatingScan(delay_max=90.0)
        result = scan.run(station, tmp_path / "lab.db", quiet=True)
    plan = scan.plan
    assert plan is not None and plan.settled, plan
    assert plan.pulse >= 60.0, plan  # at least doubled from 30 s
    a = result.analysis
    assert a is not None and a.details["pulse_duration"] == plan.pulse
    assert a.verdict.good, a.verdict
    value = a.values["heating_tau_slow"]
    assert abs(value.value - world.transducer.heating_tau_slow) < MAX_PULL * value.stderr


# -- the look's arithmetic (exact synthetic rates) --------------------------------------------
def rising(pulse: float, floor: float, fast: float, slow: float, tau: float,
           windows: int = 4) -> Look:
    """The look at a pulse of `pulse` s: Poisson errors of `windows` 1 s windows."""
    times = (0.0, pulse / 4, pulse / 2, pulse)
    rates = [floor + (fast if t > 0 else 0.0) + slow * (1 - math.exp(-t / tau)) for t in times]
    errors = [math.sqrt(r / windows) for r in rates]
    return Look(pulse, (rates[0], rates[1], rates[2], rates[3]),
                (errors[0], errors[1], errors[2], errors[3]))


def test_the_look_reads_the_slow_time_from_the_rise_and_lengthens_the_pulse() -> None:
    look = rising(30.0, 2e5, 1e5, 5e4, 15.0)
    assert not look.settled
    assert look.slow_time() == pytest.approx(15.0, rel=1e-9)
    assert next_pulse(look, 120.0) == pytest.approx(75.0)  # five slow times
    assert next_pulse(look, 50.0) == 50.0  # never beyond the bench's limit
    assert next_pulse(rising(50.0, 2e5, 1e5, 5e4, 15.0), 50.0) is None  # at the limit: final
    settled = rising(75.0, 2e5, 1e5, 5e4, 15.0)
    assert settled.settled and next_pulse(settled, 120.0) is None


def test_the_look_counts_enough_cycles_for_a_weak_contrast_and_no_more() -> None:
    # membrane_eom at 2 mW: ~3e3 Hz of heating on a 2.3e4 Hz floor, settled in 30 s
    weak = rising(30.0, 2.3e4, 2.2e3, 8e2, 5.0)
    n = repeats_for(weak, 40.0, 1.0, 1, 6)
    contrast = weak.contrast[0]
    assert n == math.ceil((40.0 / contrast) ** 2 * weak.rates[3])
    assert 2 <= n <= 6
    # a strong contrast: one cycle already shows it 40 errors up
    assert repeats_for(rising(30.0, 2e4, 2e4, 1e4, 0.5), 40.0, 1.0, 1, 6) == 1
    # heating not seen, or far below what max_repeats could show: the least, said honestly
    assert repeats_for(rising(30.0, 2.9e6, 0.0, 0.0, 0.5), 40.0, 1.0, 1, 6) == 1
    assert repeats_for(rising(30.0, 2.9e6, 1.5e4, 6e3, 0.5), 40.0, 1.0, 1, 6) == 1
    plan = plan_from_look(weak, target_snr=40.0, counting_time=1.0, least=1, most=6)
    assert plan.repeats == n and plan.settled and "cycle(s) per delay" in plan.describe()


def test_a_tiny_rise_of_a_drifting_mhz_rate_is_not_taken_for_a_slow_channel() -> None:
    # 2.9 MHz of noise, a rise of 4 kHz (3.3 of its counting errors) in the pulse's second
    # half: the lab's gain wander, 0.14 % of the rate and below 5 % of the 104 kHz contrast
    look = Look(30.0, (2.85e6, 2.95e6, 2.950e6, 2.954e6), (850.0,) * 4)
    assert look.late_rise[0] > 3 * look.late_rise[1]
    assert look.settled


# -- the verdict --------------------------------------------------------------------------------
DELAYS = np.geomspace(1e-4, 60.0, 24)


def weak_slow_fit(seed: int) -> Any:
    rng = np.random.default_rng(seed)
    rate = rng.poisson(2.3e4 + 2.2e3 * np.exp(-DELAYS / 1e-3) + 8e2 * np.exp(-DELAYS / 5.0))
    fit = fit_heating(DELAYS, rate.astype(float), np.sqrt(rate), np.ones_like(DELAYS))
    assert fit is not None
    return fit


def test_a_slow_time_the_pulse_could_not_charge_is_out_of_range() -> None:
    fit = weak_slow_fit(3)
    verdict = heating_verdict(fit, DELAYS, pulse=fit.tau_slow * 2)
    assert not verdict.good and verdict.reason is Reason.OUT_OF_RANGE
    assert "heating pulse" in verdict.detail


def test_a_time_whose_interval_reaches_twice_it_is_not_constrained() -> None:
    # One 1 s probe per delay on membrane_eom's weak slow channel (the old scan): on some
    # seeds the profile interval of tau_slow is long on its upper side. Whatever the seed,
    # a good verdict means the upper bound is within twice the value.
    flagged = 0
    for seed in range(12):
        fit = weak_slow_fit(seed)
        verdict = heating_verdict(fit, DELAYS)
        upper = fit.intervals["tau_slow"][1]
        if verdict.good:
            assert upper < 2 * fit.tau_slow and fit.stderr["tau_slow"] < 0.5 * fit.tau_slow
        elif "not constrained" in verdict.detail and "tau_slow" in verdict.detail:
            flagged += 1
            assert "upper bound" in verdict.detail
    assert flagged > 0  # the weak channel is at the edge: some seeds say so


def test_the_delays_are_measured_interleaved() -> None:
    scan = PumpHeatingScan()
    steps = scan.steps()
    delays = [s.settings["delay"] for s in steps]
    assert sorted(delays) == pytest.approx(list(scan.delays()))  # every delay once
    assert [s.index for s in steps] == list(range(len(steps)))  # index: acquisition order
    # neighbouring delays are measured far apart in lab time: no monotonic sweep
    position = {k: i for i, k in enumerate(interleaved_order(len(delays)))}
    assert min(abs(position[k + 1] - position[k]) for k in range(len(delays) - 1)) >= 4
    ascending = PumpHeatingScan(interleave=False).steps()
    assert [s.settings["delay"] for s in ascending] == pytest.approx(list(scan.delays()))


def test_the_coverage_study_runs_membrane_eom_on_its_locked_bench(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The study's default bench has no pump lock; membrane_eom's 3 MHz drifting line needs
    one, so the study takes lab_configs/membrane_bench.yaml for it (and any --config as
    given)."""
    cs = load_tool("coverage_study")
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(cs, "_run_one", lambda item: seen.append((item[0], item[3])) or
                        cs.BenchResult(item[0], item[1], item[2]))
    cs.run_study(("bulk_eo_cw", "membrane_eom"), 1, 7000, False, jobs=1)
    assert dict(seen) == {"bulk_eo_cw": str(cs.BENCH_CONFIG),
                          "membrane_eom": str(MEMBRANE_BENCH)}
    seen.clear()
    cs.run_study(("membrane_eom",), 1, 7000, False, jobs=1, config=MEMBRANE_BENCH)
    assert seen == [("membrane_eom", str(MEMBRANE_BENCH))]


# -- the background's error on a normalised probe -------------------------------------------------
def test_a_background_error_is_not_counted_twice_on_a_probe_and_its_reference() -> None:
    """The background comes off a probe and off the reference its gain rests on, so an error
    in it cancels in proportion (1 - probe's net / reference's net). Counted on the probe
    alone it inflated the points' errors (the coverage study's tau_slow was 90/104 within
    1 sigma, bulk_eo_pulsed's fit chi2/dof ~0.67).

    A fast-drifting gain (10 % per cycle, independent: each probe rests on its own reference,
    0.1 ms before it), probes at half their reference's converted rate, counting errors 10x
    below a background error of 300 Hz drawn independently per point: the normalised
    converted rates' pulls about the noiseless normalisation have variance 1 if the stated
    errors are right (the probe-only sum gave 0.30; this gives 1.13). 200 runs x 24 points:
    the variance's standard error is sqrt(2 / 4800) = 0.02; the bound 0.15 leaves room for
    what the propagation leaves out (second order in the background over the reference's
    net, the gains' common scale), and the old 0.30 is 35 standard errors outside it."""
    rng = np.random.default_rng(20261207)
    n, runs, bg, sigma_bg, signal = 24, 200, 7500.0, 300.0, 20000.0
    probe_time = np.linspace(100.0, 1500.0, n)
    ref_time = probe_time - 1e-4  # a short delay: the gain's random walk adds ~nothing
    pulls = []
    for _ in range(runs):
        gain = np.exp(rng.normal(0.0, 0.1, n))  # independent per cycle: a fast drift
        ref_true, rate_true = bg + signal * gain, bg + 0.5 * signal * gain
        err = np.full(n, 30.0)
        quoted = bg + rng.normal(0.0, sigma_bg, n)
        kwargs = dict(rate_err=err, ref_err=err, ref_time=ref_time, probe_time=probe_time,
                      background_err=np.full(n, sigma_bg))
        exact = normalise_to_references(rate_true, ref_rate=ref_true, background=bg,
                                        **kwargs)  # type: ignore[arg-type]
        got = normalise_to_references(rate_true + rng.normal(0.0, 30.0, n),
                                      ref_rate=ref_true + rng.normal(0.0, 30.0, n),
                                      background=quoted, **kwargs)  # type: ignore[arg-type]
        stated = np.sqrt(got.rate_err**2 + got.rel_var * got.rate**2)
        # the background's mean goes back on every point alike (the floor takes it)
        pulls.append(((got.rate - np.mean(quoted)) - (exact.rate - bg)) / stated)
    variance = float(np.var(np.concatenate(pulls)))
    assert variance == pytest.approx(1.0, abs=0.15), variance


# -- the gain's wander at the probes' own lags ----------------------------------------------------
def gain_pull_variance(grid_step: float, early: bool, seed: int, runs: int = 100) -> float:
    """Variance of the normalised probes' log errors over their stated errors, on a scan of
    24 cycles 90 s apart whose probes sit 1e-4..60 s after their references (the delays in
    a shuffled order), and whose log gain is a random walk of 8 % per 30 s sampled every
    `grid_step` s and linear in between: smooth below a 30 s step (as temperatures and the
    simulated lab's drifts are), rough at every lag the probes have for a 0.01 s step.
    Early references 1, 4 and 16 s before the references in turn; counting errors 0.2 %, no
    background. Each run's common scale (the gains are relative to their mean) is taken off
    with the errors' weights."""
    rng = np.random.default_rng(seed)
    n, cycle, count = 24, 90.0, 0.002
    lead = np.resize([1.0, 4.0, 16.0], n)
    ref_time = 100.0 + cycle * np.arange(n)
    delay = np.geomspace(1e-4, 60.0, n)[rng.permutation(n)]
    probe_time = ref_time + delay
    converted = 1e5 * (0.5 + 0.5 * np.exp(-delay / 0.5))
    grid = np.arange(0.0, ref_time[-1] + 200.0, grid_step)
    pulls = []
    for _ in range(runs):
        walk = np.cumsum(rng.normal(0.0, 0.08 * math.sqrt(grid_step / 30.0), grid.size))
        ref, before, probe = (rate * np.exp(np.interp(t, grid, walk)) * (
            1 + count * rng.normal(size=n)) for rate, t in (
            (1e5, ref_time), (1e5, ref_time - lead), (converted, probe_time)))
        got = normalise_to_references(
            probe, count * probe, ref, count * ref, ref_time, probe_time,
            early=EarlyReferences(before, count * before, lead) if early else None)
        stated = np.sqrt(got.rel_var + (got.rate_err / got.rate) ** 2)
        error = np.log(got.rate / converted)
        pulls.append((error - np.sum(error / stated**2) / np.sum(stated**-2)) / stated)
    return float(np.var(np.concatenate(pulls)))


def test_the_gain_wander_at_a_probes_lag_is_measured_not_extrapolated() -> None:
    """The references are a cycle (~1.5 min) apart, the probes 1e-4..60 s after theirs. A
    random walk fitted at the references' spacing states S(T) t / T for a probe at lag t; a
    drift that is smooth below that spacing moves by ~(t/T)^2 of S(T), so the slow channel's
    points (t ~ 0.1-3 s) carried errors several times too large (bulk_eo_cw/pulsed: their
    fit residuals there 0.2-0.35 of the stated errors in variance, and tau_slow 44/50 within
    1 sigma on fresh characterization benches). The early references measure the wander at
    short lags (`drift_structure`).

    Bounds: 100 runs x 24 points; the pulls' variance has a standard error ~0.03 for
    independent points (sqrt(2 / 2400)), more with the runs' shared drift estimate. The
    measured wander is an upper bound on a smooth drift (chords of a convex structure
    function), so its variance lies below 1 but must be well above the random walk's (0.55
    here); on the rough walk the model is exact with or without early references, and they
    must not shrink the errors (1 +- 0.15)."""
    old = gain_pull_variance(30.0, early=False, seed=3)
    new = gain_pull_variance(30.0, early=True, seed=3)
    assert old < 0.65 and 0.8 < new < 1.15, (old, new)
    assert gain_pull_variance(0.01, early=True, seed=4) == pytest.approx(1.0, abs=0.15)
    assert gain_pull_variance(0.01, early=False, seed=4) == pytest.approx(1.0, abs=0.15)
