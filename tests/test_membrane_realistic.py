"""The membrane electro-optomechanical transducer characterized on the realistic lab.

The membrane_eom preset's optical line is 3 MHz wide and drifts ~4 MHz rms per minute
(`drift.DriftSettings.optical`), and the TSL-570 tunes in 12.5 MHz steps: with the laser
alone, the efficiency map sees no signal. lab_configs/membrane_bench.yaml locks the pump to
the cavity with an offset sideband lock (`TransducerSetup.pump_lock`, the world's
`physics.pump_lock`); the characterization then finds the line with the laser alone and scans
the detuning as lock offsets. Held here, through the real drivers on the simulated twins:

* with the lock released the map says "no signal" (the problem the lock solves);
* locked, on the default realistic lab, the optical resonance scan and the efficiency map
  are good and the line's position and width are within their stated errors;
* locked, with the microwave mode's own drift held (the optical problem alone), every step
  is good, an operating point is recommended and every reported quantity is within its
  stated combined error of what the drifting world had (`tools/coverage_study.py`'s truths
  and pulls);
* the same on the default lab, the 20 kHz microwave mode drifting too: the fine VNA scan runs
  up then down and carries the drift it sees, and the steps that hold the tone on the mode
  re-find it first (docs/fitting.md#drift-seen-by-scanning-both-ways).

Tolerance: |pull| < 4 for each of the ~18 quantities: for Gaussian errors the chance that any
exceeds 4 sigma is 18 x 6.3e-5 = 1e-3; the seed is fixed, so a failure is a change, never a
flake. membrane_eom's heating scan is at the edge of what it resolves (the coverage study,
tests/test_coverage_study.py): on some seeds it honestly reports tau_slow unconstrained; the
seed here was fixed before the results were seen.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from qnetlab.instruments.errors import ConfigError
from qnetlab.instruments.lab_config import load_config
from qnetlab.instruments.station import load_station
from qnetlab.sequences.analysis import FitValue, Reason, Verdict
from qnetlab.sequences.transducer.characterization import TransducerCharacterization
from qnetlab.sequences.transducer.efficiency import EfficiencyMap
from qnetlab.sequences.transducer.optical_resonance import OpticalResonanceScan
from qnetlab.sim_instruments.physics.fridge import FridgeModel
from qnetlab.sim_instruments.physics.presets import get_preset
from qnetlab.sim_instruments.visa_backend import bench_of

from conftest import REPO, load_tool

MEMBRANE_BENCH = REPO / "lab_configs" / "membrane_bench.yaml"
SEED = 4242
DRIFT_SEED = 31
"""The default lab's test (microwave drift on): fixed before its results were seen."""
MAX_PULL = 4.0
DEVICE_NOISE_THRESHOLD = 5.0
"""Photons: the operating point's N_add ceiling for this device (Brubaker 2022: N_add 3.2 at
best), so that the recommendation has something to find."""


cs = load_tool("coverage_study")


def membrane_bench(folder: Path, seed: int = SEED) -> Path:
    lab = load_config(MEMBRANE_BENCH).with_simulation(seed=seed)
    return Path(lab.to_yaml(folder / f"membrane_{seed}.yaml").path)


def quiet_station(config: Path) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # the drivers' "Connected to"
        return load_station(config)


def test_the_lock_holds_the_detuning_against_the_drift_and_lets_go_beyond_its_span(
        tmp_path: Path) -> None:
    """Through the real N5183B driver on the lock's twin: a detuning within the span is the
    synthesizer's offset and stays put while the cavity drifts an hour (to the lock's
    residual); a far one switches the lock off and leaves the laser at its setting."""
    with quiet_station(membrane_bench(tmp_path)) as station:
        world = bench_of(station.instrument("vna")).world
        setup = station.setup
        assert setup is not None and world.pump_lock is not None
        lock = world.pump_lock.settings
        residual = 6 * lock.residual_rms  # 6 sigma of the residual: never by chance
        setup.pump_detuning(1.5e6)
        assert setup.pump_locked and setup.pump_lock.frequency() == pytest.approx(
            setup.pump_lock_center + 1.5e6)
        timebase = 1e-7 * setup.pump_lock_center  # the synthesizer's accuracy bound
        before = world.optical_resonance_frequency()
        assert abs(world.pump_detuning - 1.5e6) < residual + timebase
        world.advance(3600.0)
        assert abs(world.optical_resonance_frequency() - before) > 1e6  # the cavity moved
        assert abs(world.pump_detuning - 1.5e6) < residual + timebase  # the pump followed
        assert setup.pump_detuning() == pytest.approx(1.5e6)
        setup.pump_detuning(50e9)  # beyond the span: the laser alone
        assert not setup.pump_locked
        assert abs(world.pump_detuning - 50e9) < 2e9  # laser accuracy and drift, not 1.5 MHz
        setup.pump_lock_enabled(False)
        setup.pump_detuning(0.0)
        assert not setup.pump_locked and abs(world.pump_detuning) > residual + timebase


@pytest.mark.parametrize(("change", "entry"), [
    ({"setup": {"pump_lock": "no_such_source"}}, "qnetlab.transducer_setup.pump_lock"),
    ({"simulation": {"pump_lock": {"residual_rms": -1.0}}}, "qnetlab.simulation.pump_lock"),
    ({"simulation": {"pump_lock": {"span": 1.0}}}, "qnetlab.simulation.pump_lock.span"),
    ({"simulation": {"drift": {"microwave": {"sigma": "large"}}}}, "qnetlab.simulation.drift"),
    ({"simulation": {"drift": {"optics": {"sigma": 1.0}}}}, "qnetlab.simulation.drift"),
])
def test_a_bad_lock_or_drift_entry_names_itself(tmp_path: Path, change: dict[str, Any],
                                                entry: str) -> None:
    lab = load_config(MEMBRANE_BENCH)
    with pytest.raises(ConfigError) as err:
        if "setup" in change:
            lab = lab.with_transducer_setup(**change["setup"])
        lab = lab.with_simulation(**change.get("simulation", {}))
        with quiet_station(Path(lab.to_yaml(tmp_path / "bad.yaml").path)):
            pass
    assert err.value.entry == entry, err.value


@pytest.mark.slow
def test_without_the_lock_the_drifting_line_gives_no_signal(tmp_path: Path) -> None:
    """What the characterization did before the lock: find the line with the laser, then
    map the efficiency on the laser's 12.5 MHz steps around it. The 3 MHz line drifts by
    more than its width while the map runs and lies between steps: never a good verdict."""
    db = tmp_path / "lab.db"
    with quiet_station(membrane_bench(tmp_path)) as station:
        world = bench_of(station.instrument("vna")).world
        assert not world.ideal and world.pump_lock is not None
        setup = station.setup
        assert setup is not None
        f0 = world.mw_resonance_frequency()
        optical = OpticalResonanceScan(mw_frequency=f0).run(station, db, quiet=True)
        assert optical.analysis is not None and optical.analysis.verdict.good
        setup.optical_resonance_wavelength(
            optical.analysis.proposed["optical_resonance_wavelength"])
        setup.pump_lock_enabled(False)
        run = EfficiencyMap(mw_frequency=f0).run(station, db, quiet=True)
        assert run.analysis is not None
        assert not run.analysis.verdict.good, run.analysis.verdict
        assert run.analysis.verdict.reason in (Reason.NO_SIGNAL, Reason.POOR_FIT), \
            run.analysis.verdict


def characterize(folder: Path, seed: int = SEED, **simulation: Any) -> tuple[Any, list[Any]]:
    """The characterization of the membrane bench (`seed`, `simulation` entries changed),
    and its pulls against what the drifting world had."""
    config = load_config(membrane_bench(folder, seed)).with_simulation(**simulation)
    with quiet_station(Path(config.to_yaml(folder / "bench.yaml").path)) as station:
        world = bench_of(station.instrument("vna")).world
        assert not world.ideal, "the realistic lab is the default"
        with cs.recording_drift(world) as log:
            result = TransducerCharacterization(
                max_added_noise=DEVICE_NOISE_THRESHOLD).run(station, folder / "lab.db",
                                                            quiet=True)
        truth = cs.WorldTruth(world.transducer, world.fridge, log)
    analyses = {name: result.analysis(name) for name in cs.STEPS}
    return result, cs.pull_rows(analyses, truth)


def pull_table(rows: list[Any]) -> str:
    return "\n".join(f"{r.name}: truth {r.truth:.6g} fitted {r.fitted:.6g} stat {r.stat:.3g} "
                     f"sys {r.sys:.3g} pull {r.pull:+.2f}" for r in rows)


OPTICAL = ("optical resonance", "optical linewidth (map)")
"""What the lock is for: the line found by the laser, its width resolved on lock offsets."""


@pytest.fixture(scope="module")
def default_lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Any]]:
    """The characterization of the default realistic lab, every drift on (`DRIFT_SEED`):
    one run that two tests hold to what each is about (a characterization is the file's
    cost; the same lab on a second seed checked the same code path again)."""
    return characterize(tmp_path_factory.mktemp("default_lab"), seed=DRIFT_SEED)


@pytest.mark.slow
def test_the_realistic_lab_locked_finds_and_resolves_the_drifting_line(
        default_lab: tuple[Any, list[Any]]) -> None:
    """The default realistic lab, every drift on: the optical steps are good and their
    values within their stated errors; every step gives a verdict. (The 20 kHz microwave
    mode also drifts, by a quarter linewidth per minute at the lab's 10 kHz rms: the last
    test holds what the characterization does about it.)"""
    result, rows = default_lab
    for name in cs.STEPS:
        assert result.analysis(name) is not None, (name, result.notes.get(name))
    for name in ("optical_resonance_scan", "efficiency_map"):
        verdict = result.analysis(name).verdict
        assert verdict.good, (name, verdict)
    found = {r.name: r for r in rows}
    assert set(OPTICAL) <= set(found), pull_table(rows)
    for name in OPTICAL:
        assert abs(found[name].pull) < MAX_PULL, f"{name}\n{pull_table(rows)}"
    # 12 points per linewidth on the lock's offsets: the width to ~1 %, a real lab's figure.
    width = found["optical linewidth (map)"]
    assert 0.001 < width.stderr / width.truth < 0.05, width


@pytest.mark.slow
def test_with_the_microwave_mode_held_every_quantity_is_recovered(tmp_path: Path) -> None:
    """The optical lock on its own: the same lab with the microwave resonance's drift held
    (``qnetlab.simulation.drift.microwave.sigma: 0``; every other drift and instrument error
    on). Every step is good, an operating point is recommended (at the device's own noise
    threshold: its N_add is ~3, so the default of 1 finds none), and every reported value is
    within its stated combined error of the truth."""
    result, rows = characterize(tmp_path, drift={"microwave": {"sigma": 0.0}})
    for name in cs.STEPS:
        analysis = result.analysis(name)
        assert analysis is not None, (name, result.notes.get(name))
        assert analysis.verdict.good, (name, analysis.verdict)
    assert result.good and result.verdict.startswith("good: operate at"), result.verdict
    point = result.operating_point
    assert point is not None and point.added_noise <= DEVICE_NOISE_THRESHOLD
    names = {row.name for row in rows}
    assert {"eta_max", "pump power at C = 1", "optical linewidth (map)", "conversion bandwidth",
            "conversion centre", "N_add intercept", "N_add slope", "heating tau_fast",
            "heating tau_slow", "absorbed fraction", "optical resonance",
            "mw resonance"} <= names, names
    for row in rows:
        assert np.isfinite(row.pull) and abs(row.pull) < MAX_PULL, \
            f"{row.name}\n{pull_table(rows)}"
    # A real lab's errors, not 1e-7: the efficiency to ~10 %.
    eta = next(r for r in rows if r.name == "eta_max")
    assert 0.02 < eta.stderr / eta.truth < 0.3, eta


@pytest.mark.slow
def test_on_the_default_realistic_lab_the_drifting_microwave_mode_is_followed(
        default_lab: tuple[Any, list[Any]]) -> None:
    """Every drift on, the microwave mode's too (10 kHz rms, 30 min: a quarter of its 20 kHz
    width per minute). The fine VNA scan runs up then down and carries the drift it sees as a
    systematic; the efficiency map and the added-noise scan re-find the mode with a quick
    VNA sweep before each pump power (`CharacterizationOptions.needs_recentre`); the
    mw resonance's truth is the resonance when the VNA swept it. Every step is good, an
    operating point is recommended, and every reported value is within its stated combined
    error of the truth."""
    result, rows = default_lab
    for name in cs.STEPS:
        analysis = result.analysis(name)
        assert analysis is not None, (name, result.notes.get(name))
        assert analysis.verdict.good, (name, analysis.verdict, pull_table(rows))
    mw = result.analysis("microwave_resonance_scan").details
    assert mw["passes"] == 2 and mw["drift_error_center"] >= 0, mw
    tones = result.analysis("efficiency_map").details
    assert tones["mw_tone_drift_rms"] > 0, tones  # re-centred: the tone followed the mode
    assert result.good and result.verdict.startswith("good: operate at"), result.verdict
    for row in rows:
        assert np.isfinite(row.pull) and abs(row.pull) < MAX_PULL, \
            f"{row.name}\n{pull_table(rows)}"
    assert len(rows) >= 15, pull_table(rows)




def test_the_mw_resonance_truth_is_the_resonance_when_the_vna_swept_it() -> None:
    """A wide scan of two 2 s segments while the mode drifts 500 Hz/s: the truth of a dip in
    the first segment is the resonance at that sweep's trigger (the VNA twin's trace time),
    not the scan's mean (1 kHz higher); an up-and-down scan's is the mean over both sweeps."""
    f0, name = 8.0e9, "microwave_resonance_scan"
    log = cs.DriftLog()
    log.runs.append((name, [cs.DriftSample(t, 1.9e14, f0 + 500.0 * t)
                            for t in (0.0, 2.0, 2.0, 4.0)]))
    log.steps.append((name, [{"start": f0 - 50e6, "stop": f0 + 1e6},
                             {"start": f0 + 1e6 + 5e3, "stop": f0 + 50e6}]))
    truth = cs.WorldTruth(get_preset("membrane_eom").model, FridgeModel(), log)
    assert truth.mean_mw(name) == f0 + 1000.0
    assert truth.mw_when_swept(name, f0) == f0
    assert truth.mw_when_swept(name, f0 + 20e6) == f0 + 1000.0  # the second sweep's start
    (row,) = cs.pull_rows({name: SimpleNamespace(verdict=Verdict.ok(), values={
        "resonance_frequency": FitValue(f0 + 10.0, 5.0, "Hz")})}, truth)
    assert row.truth == f0 and row.pull == pytest.approx(2.0), row
    # up, then down over one window (the fine scan): the mean of the two sweeps' starts
    log.runs.append((name, [cs.DriftSample(t, 1.9e14, f0 + 100.0 * t)
                            for t in (10.0, 10.4, 10.4, 10.8)]))
    log.steps.append((name, [{"start": f0 - 2e5, "stop": f0 + 2e5, "pass": 0.0},
                             {"start": f0 - 2e5, "stop": f0 + 2e5, "pass": 1.0}]))
    assert truth.mw_when_swept(name, f0) == pytest.approx(f0 + 100.0 * 10.2)
