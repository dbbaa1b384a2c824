"""The coverage study (tools/coverage_study.py, issue 13 item 6): its pulls are taken against
what the simulated world had, its tables have the promised shape, and on the realistic lab
(`qnetlab.simulation.ideal: false`) the characterization's combined errors cover the truth.

Statistics of the slow test. With honest errors, the number of benches whose |pull| < 1
(< 2) is Binomial(n, 0.683) (Binomial(n, 0.954)), checked for every quantity with n >= 20
pulls. The tool's table marks counts outside the binomial's central 99 %; with ~17 quantities
x 2 checks that alone would fail an honest analysis by chance ~30 % of the time, so the test
takes each check's bounds at 1 % / (number of checks) (Bonferroni): an honest analysis fails
it by chance with probability <= 1 %, and a coverage of 1 in 24 or 5 in 20 at 1 sigma is
still far outside. The seeds are fixed, so the outcome is deterministic; a failure names the
quantity, its counts, its bounds and its pulls.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qnetlab.instruments.station import load_station
from qnetlab.sequences.analysis import FitValue, Reason, Verdict
from qnetlab.sequences.framework import LabSequence
from qnetlab.sequences.resonance import MicrowaveResonanceScan
from qnetlab.sim_instruments.physics.fridge import FridgeModel
from qnetlab.sim_instruments.physics.presets import get_preset
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import load_tool

cs = load_tool("coverage_study")


def analysis(good: bool = True, **values: FitValue) -> Any:
    """A hand-made analysis result: what `pull_rows` reads of one."""
    verdict = Verdict.ok() if good else Verdict.bad(Reason.POOR_FIT, "made up")
    return SimpleNamespace(verdict=verdict, values=values)


def world_truth(samples: dict[str, list[tuple[float, float, float]]] | None = None) -> Any:
    log = cs.DriftLog()
    for name, points in (samples or {}).items():
        log.runs.append((name, [cs.DriftSample(*p) for p in points]))
    return cs.WorldTruth(get_preset("bulk_eo_cw").model, FridgeModel(), log)


# -- pulls against a known truth -------------------------------------------------------------
def test_a_known_truth_gives_the_known_pull() -> None:
    truth = world_truth()
    eta = truth.transducer.external_efficiency  # electro-optic: eta_max is eta_e eta_o
    rows = cs.pull_rows({"efficiency_map": analysis(
        eta_max=FitValue.combined(eta + 0.003, 0.001, 0.002))}, truth)
    (row,) = rows
    assert row.name == "eta_max" and row.truth == eta and row.fitted == eta + 0.003
    assert row.stat == pytest.approx(0.001) and row.sys == pytest.approx(0.002)
    assert row.stderr == pytest.approx(math.hypot(0.001, 0.002))
    assert row.pull == pytest.approx(0.003 / math.hypot(0.001, 0.002))  # the combined error
    assert row.rel_error == pytest.approx(0.003 / eta)


def test_a_drifting_truth_is_the_mean_over_the_steps_that_measured_it() -> None:
    f0 = get_preset("bulk_eo_cw").model.mw_resonance_frequency
    # the wide scan ran first, then the fine one: the fine one's samples are the truth
    truth = world_truth()
    truth.drift.runs += [
        ("microwave_resonance_scan", [cs.DriftSample(0.0, 1.9e14, f0 + 9e3)]),
        ("microwave_resonance_scan", [cs.DriftSample(1.0, 1.9e14, f0 + 1e3),
                                      cs.DriftSample(2.0, 1.9e14, f0 + 3e3)])]
    (row,) = cs.pull_rows({"microwave_resonance_scan": analysis(
        resonance_frequency=FitValue(f0 + 4e3, 1e3, "Hz"))}, truth)
    assert row.truth == pytest.approx(f0 + 2e3)
    assert row.pull == pytest.approx(2.0)
    assert row.drift == pytest.approx(2e3)  # how far it moved while measured


def test_bad_verdicts_are_left_out_and_unusable_errors_not_counted() -> None:
    truth = world_truth()
    tau = truth.transducer.heating_tau_fast
    rows = cs.pull_rows({
        "pump_heating_scan": analysis(heating_tau_fast=FitValue(tau, 0.0, "s")),
        "fridge_load_scan": analysis(False, absorbed_fraction=FitValue(0.1, 0.01))}, truth)
    assert [r.name for r in rows] == ["heating tau_fast"]  # the bad fridge step: no value
    assert math.isnan(rows[0].pull)
    bench = cs.BenchResult("bulk_eo_cw", 1, False, rows=rows)
    (cover,) = cs.coverage([bench])
    assert cover.n == 0 and cover.not_finite == 1


# -- the coverage table -----------------------------------------------------------------------
def bench_with_pulls(pulls: dict[str, float], seed: int) -> Any:
    rows = [cs.PullRow(name, "", 1.0, 1.0 + p, 1.0, 0.0, 1.0, p, abs(p)) for name, p in
            pulls.items()]
    return cs.BenchResult("bulk_eo_cw", seed, False, rows=rows)


def test_coverage_counts_and_binomial_bounds() -> None:
    # 30 benches: eta_max's pulls honest-looking, tau_fast's all 1.5 sigma off
    spread = [(-1) ** i * (i % 10) / 4 for i in range(30)]  # |pull| 0 .. 2.25
    benches = [bench_with_pulls({"eta_max": p, "heating tau_fast": 1.5}, i)
               for i, p in enumerate(spread)]
    cover = {c.name: c for c in cs.coverage(benches)}
    eta, tau = cover["eta_max"], cover["heating tau_fast"]
    assert eta.n == tau.n == 30 and eta.checked
    assert eta.within1 == sum(abs(p) < 1 for p in spread) == 12
    assert eta.within2 == sum(abs(p) < 2 for p in spread) == 24
    lo, hi = int(stats.binom.ppf(0.005, 30, 0.6827)), int(stats.binom.isf(0.005, 30, 0.6827))
    assert eta.bounds1 == (lo, hi) == cs.accepted(30, cs.ONE_SIGMA)
    assert eta.ok1 == (lo <= 12 <= hi) and not eta.ok2  # 24 of 30 within 2: too few
    assert tau.within1 == 0 and not tau.ok1 and tau.within2 == 30 and not tau.ok
    assert eta.median_rel_error == pytest.approx(statistics.median(abs(p) for p in spread))
    # below the minimum sample count a quantity is listed but not checked
    few = {c.name: c for c in cs.coverage(benches[:5])}
    assert not few["heating tau_fast"].checked and few["heating tau_fast"].ok


def test_a_bounded_error_is_held_to_the_coverage_it_implies() -> None:
    """eta_e's stated error is mostly the VNA directivity's bound / sqrt(3), a rectangular
    error: its pulls never pass sqrt(3), so all within 2 sigma and 1/sqrt(3) = 57.7 % within
    1 (no Gaussian rest). 130 such benches are OUT against the Gaussian's 95.4 % (all within
    2 has probability 0.9545^130 = 0.002, below the 99 % range's 0.005 tail) and inside the
    range the rectangle implies; Gaussian pulls are OUT against it (too many beyond 1.73)."""
    rng = np.random.default_rng(3)
    u = rng.uniform(-1.0, 1.0, 130) * math.sqrt(3)  # a rectangle's pulls, error b/sqrt(3)

    def benches(pulls: np.ndarray, rectangular: float) -> list[Any]:
        return [cs.BenchResult("bulk_eo_cw", i, False, rows=[
            cs.PullRow("mw eta_e", "", 1.0, 1.0 + p, 0.0, 1.0, 1.0, p, abs(p),
                       rectangular=rectangular)]) for i, p in enumerate(pulls)]

    (gaussian_check,) = cs.coverage(benches(u, 0.0))
    assert gaussian_check.within2 == 130 and not gaussian_check.ok2
    (bounded,) = cs.coverage(benches(u, 1.0))
    assert bounded.ok, bounded
    assert bounded.expected1 == pytest.approx(1 / math.sqrt(3), abs=0.005)
    assert bounded.expected2 == 1.0
    (wrong,) = cs.coverage(benches(rng.normal(size=130), 1.0))
    assert not wrong.ok2


def test_the_tables_have_both_parts_and_nothing_checked_is_no_pass() -> None:
    benches = [bench_with_pulls({"eta_max": 0.5, "N_add slope": -0.2}, i) for i in range(3)]
    result = cs.tables(benches, min_samples=20)
    assert result["example"]["seed"] == 0
    header = result["example"]["markdown"].splitlines()[0]
    for column in ("truth", "fitted", "stat", "sys", "combined", "pull"):
        assert f"| {column} |" in header
    names = [row["name"] for row in result["coverage"]["rows"]]
    assert names == ["eta_max", "N_add slope"]  # QUANTITIES order, reported ones only
    cover_header = result["coverage"]["markdown"].splitlines()[0]
    assert "within 1 sigma" in cover_header and "median rel. error" in cover_header
    assert result["checked"] == [] and result["ok"] is False
    assert "not a pass" in cs.report_text(result, "cmd")
    assert cs.tables(benches, min_samples=3)["ok"] is True


# -- the world's truth, read from a bench ----------------------------------------------------
@pytest.mark.slow
def test_recording_drift_reads_the_realistic_worlds_resonance(tmp_path: Path) -> None:
    config = cs.bench_config(tmp_path, "bulk_eo_cw", 7, ideal=False)
    station = load_station(config)
    try:
        world = bench_of(station.instrument("vna")).world
        assert not world.ideal
        # the world's line attenuation is drawn from the stated {value, error}
        stated = station.setup.mw_line_attenuation()  # type: ignore[union-attr]
        assert world.settings.mw_line_attenuation_db != stated
        original = LabSequence.run
        with cs.recording_drift(world) as log:
            scan = MicrowaveResonanceScan(points=201, segments=2, span=40e6)
            scan.run(station, tmp_path / "lab.db", quiet=True)
        assert LabSequence.run is original and "measure" not in vars(scan)
        ((name, samples),) = log.runs
        assert name == "microwave_resonance_scan" and len(samples) == 2 * len(scan.steps())
        assert all(s.mw_frequency == pytest.approx(
            world.transducer.mw_resonance_frequency + world.drift.mw_shift(s.time))
            for s in samples)
        truth = cs.WorldTruth(world.transducer, world.fridge, log)
        mean = truth.mean_mw(name)
        assert mean != world.transducer.mw_resonance_frequency  # it drifted
        assert mean == pytest.approx(sum(s.mw_frequency for s in samples) / len(samples))
    finally:
        station.close()


@pytest.mark.slow
def test_one_ideal_bench_is_compared_with_its_world(tmp_path: Path) -> None:
    bench = cs.run_bench("bulk_eo_cw", 7000, ideal=True, folder=tmp_path)
    assert bench.error == "", bench.error
    assert set(bench.steps) == set(cs.STEPS)
    # The VNA, laser and power-meter steps need no photon counting (whose tagger can time out
    # on a loaded machine: that step's verdict then says so and its values are left out).
    for step in cs.STEPS[:3]:
        assert bench.steps[step] == "good", (step, bench.steps[step])
    rows = {r.name: r for r in bench.rows}
    good = {name for name, state in bench.steps.items() if state == "good"}
    # every quantity of a good step (bulk_eo_cw's 25 MHz optical line is resolved)
    assert set(rows) == {q.name for q in cs.QUANTITIES if q.sequence in good}
    model = get_preset("bulk_eo_cw").model
    assert rows["eta_max"].truth == model.external_efficiency
    assert rows["mw resonance"].truth == model.mw_resonance_frequency  # ideal: no drift
    assert rows["mw resonance"].drift == 0.0
    if "heating tau_fast" in rows:
        assert rows["heating tau_fast"].truth == model.heating_tau_fast
    for r in rows.values():  # the clean lab: every value within 4.5 combined sigma
        assert abs(r.pull) < 4.5, r
    assert (tmp_path / "bulk_eo_cw_7000.yaml").is_file() and (tmp_path / "lab.db").is_file()
    result = cs.tables([bench])
    assert [row["name"] for row in result["example"]["rows"]] == list(rows)


@pytest.mark.slow
def test_a_realistic_bench_runs_and_says_what_each_step_gave(tmp_path: Path) -> None:
    bench = cs.run_bench("silicon_cw", 7001, ideal=False, folder=tmp_path)
    assert bench.error == "", bench.error
    assert not bench.ideal and set(bench.steps) == set(cs.STEPS)
    good = {name for name, state in bench.steps.items() if state == "good"}
    assert {r.name for r in bench.rows} <= {q.name for q in cs.QUANTITIES
                                            if q.sequence in good}
    assert "realistic lab" in cs.report_text(cs.tables([bench]), "cmd")


# -- the study itself ---------------------------------------------------------------------------
STUDY_PRESETS = ("bulk_eo_cw", "bulk_eo_pulsed", "piezo_om_integrated", "silicon_cw",
                 "membrane_eom", "piezo_om")
"""Every preset. piezo_om's heating (< 2 photons on ~100, Jiang 2023) is below what the scan
resolves at the detector's rates: the scan reports an upper limit on its share of the noise (no
times), whose coverage the study checks (the truth below it in >= 95 % of the benches,
docs/transducer.md#heating-below-resolution). membrane_eom's heating is resolved since the scan's
first look and interleaved delays (tests/test_heating_slow_tau.py); it runs on its pump-locked
bench (`coverage_study` picks lab_configs/membrane_bench.yaml). It joined when the efficiency
map's optical linewidth stopped counting the meter's range steps as 0.25 % of every width and the
row drift the serpentine cancels (tests/test_map_linewidth_errors.py): that quantity was 30 of 30
within one sigma, above the binomial's 99 % range."""
FAMILY_FALSE_ALARM = 0.01
"""Chance that an honest analysis fails the slow test (all its checks together)."""
STUDY_SEEDS = 7
"""42 benches. bulk_eo_cw's map stays at C << 1 up to the scan's 10 mW (C ~ 0.01, Hease 2020),
so its efficiency map honestly says eta_max and P(C=1) are not determined on most seeds: the
other five presets' 35 benches carry those two to n >= 20."""
HEADLINE = ("mw resonance", "optical resonance", "eta_max", "pump power at C = 1",
            "conversion bandwidth", "N_add intercept", "N_add slope", "heating tau_fast",
            "heating tau_slow", "absorbed fraction")


@pytest.mark.slow
@pytest.mark.study  # 42 characterizations: 12-18 min (`pytest -m study`)
@pytest.mark.timeout(3600)
def test_realistic_lab_errors_cover_the_truth_over_seeds_and_drawn_constants() -> None:
    benches = cs.run_study(STUDY_PRESETS, STUDY_SEEDS, cs.FIRST_SEED, ideal=False, jobs=1)
    assert not [b for b in benches if b.error], [b.error for b in benches if b.error]
    checks = 2 * sum(c.checked for c in cs.coverage(benches))
    tail = FAMILY_FALSE_ALARM / 2 / max(checks, 1)  # each side, per check (Bonferroni)
    cover = {c.name: c for c in cs.coverage(benches, tail=tail)}
    text = cs.coverage_table(list(cover.values())) + "\n" + cs.verdict_table(benches)
    # The characterization works on the realistic lab: the headline values are reported
    # (good verdicts) on at least 20 of the 42 benches.
    short = [name for name in HEADLINE if name not in cover or not cover[name].checked]
    assert not short, f"too few good values for {short}:\n{text}"
    for c in cover.values():
        if not c.checked:
            continue
        pulls = sorted(round(abs(r.pull), 2) for b in benches for r in b.rows
                       if r.name == c.name and math.isfinite(r.pull))
        assert c.ok1, (c.name, c.within1, c.n, c.bounds1, pulls, text)
        assert c.ok2, (c.name, c.within2, c.n, c.bounds2, pulls, text)
    # An upper limit (piezo_om's unresolved heating) holds the truth at its confidence.
    for limit in cs.limit_coverage(benches, min_samples=1, tail=tail):
        assert limit.ok, (limit, cs.limit_table([limit]))
