"""The realistic lab drifts (issue 13, item 2): sim_instruments/physics/drift.py.

Each drift is a stationary Ornstein-Uhlenbeck process with a stated sigma and correlation time
(`DriftSettings`), plus a deterministic photorefractive shift of lithium-niobate devices. The
statistical tests draw one value per seed over N_SEEDS seeds and hold it to bounds computed
from the model's own distribution at a two-sided probability of P_FAIL each (about 25 bounds
in the file: a chance failure ~2.5e-3, never with the fixed seeds once it passes):

* the mean square over sigma^2 is chi^2_N / N (the mean is known to be 0);
* the correlation coefficient r at a lag, through Fisher's z = atanh(r), is normal with
  standard deviation 1 / sqrt(N - 3) around atanh(exp(-lag / tau)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qnetlab.instruments.station import load_station
from qnetlab.sequences.transducer.optical_resonance import OpticalResonanceScan
from qnetlab.sim_instruments.bench import SimulatedBench, build_bench
from qnetlab.sim_instruments.faults_world import (
    drift_optical_resonance,
    drift_state,
    drop_detector_efficiency,
    drop_pump_coupling,
    shift_mw_resonance,
    shift_tagger_input_delay,
    simulated_bench,
)
from qnetlab.sim_instruments.physics.drift import (
    STEPS_PER_TAU,
    DriftSettings,
    OrnsteinUhlenbeck,
    OUSpec,
)
from qnetlab.sim_instruments.physics.presets import get_preset
from qnetlab.sim_instruments.physics.transducer import SPEED_OF_LIGHT
from qnetlab.sim_instruments.physics.world import LabWorld

from conftest import bench_config

N_SEEDS = 600
P_FAIL = 1e-4
Z = stats.norm.isf(P_FAIL / 2)
"""Two-sided normal bound at P_FAIL (3.9)."""

HOUR = 3600.0

PROCESSES: dict[str, Callable[[LabWorld], OrnsteinUhlenbeck]] = {
    "optical": lambda w: w.drift.optical,
    "microwave": lambda w: w.drift.microwave,
    "pump_delivery": lambda w: w.drift.pump,
    "detection": lambda w: w.drift.detection_process("snspd/slot1"),
    "tagger_delay": lambda w: w.drift.tagger_process("tagger/input1"),
}


def realistic_world(seed: int, preset: str = "bulk_eo_cw") -> LabWorld:
    return LabWorld(get_preset(preset).model, seed=seed, ideal=False)


def mean_square_bounds(n: int) -> tuple[float, float]:
    """Bounds on (mean of x^2) / sigma^2 for n zero-mean normal draws: chi^2_n / n."""
    return (stats.chi2.ppf(P_FAIL / 2, n) / n, stats.chi2.isf(P_FAIL / 2, n) / n)


def assert_correlation(x: np.ndarray, y: np.ndarray, expected: float, what: str) -> None:
    """Pearson r of (x, y) against `expected`, through Fisher's z."""
    r = float(np.corrcoef(x, y)[0, 1])
    z = (math.atanh(r) - math.atanh(expected)) * math.sqrt(x.size - 3)
    assert abs(z) < Z, f"{what}: r = {r:.4f}, model {expected:.4f} (z = {z:.2f})"


# -- the stochastic model ----------------------------------------------------------------------
@pytest.mark.parametrize("quantity", sorted(PROCESSES))
def test_each_drift_has_its_stated_sigma_and_correlation_time(quantity: str) -> None:
    spec: OUSpec = getattr(DriftSettings(), quantity)
    tau = spec.tau
    t0 = 5 * tau  # long after lab time 0 (the process is stationary from the start anyway)
    lags = (0.25 * tau, tau, 2 * tau)
    samples = np.empty((N_SEEDS, 1 + len(lags)))
    for seed in range(N_SEEDS):
        process = PROCESSES[quantity](realistic_world(seed))
        samples[seed] = [process.value(t0 + lag) for lag in (0.0, *lags)]

    low, high = mean_square_bounds(N_SEEDS)
    ratio = float(np.mean(samples[:, 0] ** 2)) / spec.sigma**2
    # the linear interpolation between grid points lowers the variance by < 1/(2 x 256)
    assert low < ratio < high * (1 + 0.5 / STEPS_PER_TAU), (quantity, ratio, low, high)
    mean = float(np.mean(samples[:, 0]))
    assert abs(mean) < Z * spec.sigma / math.sqrt(N_SEEDS), (quantity, mean)
    for k, lag in enumerate(lags, start=1):
        assert_correlation(samples[:, 0], samples[:, k], math.exp(-lag / tau),
                           f"{quantity} at lag {lag:g} s")


def test_an_hour_moves_the_optical_resonance_by_the_stated_rms() -> None:
    """Over many seeds the hour's change of the optical resonance (temperature/strain part)
    has the model's rms: sigma sqrt(2 (1 - exp(-1 h / tau))) = 27 MHz."""
    spec = DriftSettings().optical
    t0 = 3 * HOUR
    changes = np.array([
        (lambda p: p.value(t0 + HOUR) - p.value(t0))(realistic_world(seed).drift.optical)
        for seed in range(N_SEEDS)])
    expected = spec.rms_change(HOUR)
    assert 20e6 < expected < 40e6  # the stated, lab-realistic scale (drift.py docstring)
    low, high = mean_square_bounds(N_SEEDS)
    ratio = float(np.mean(changes**2)) / expected**2
    assert low < ratio < high, (ratio, low, high)


def test_photorefractive_shift_builds_under_the_pump_and_relaxes_in_the_dark() -> None:
    settings = DriftSettings()
    world = realistic_world(3)
    pump = 2e-3
    world.set_pump(power=pump, on=True)
    world.advance(10 * settings.photorefractive_tau_on)
    lit = world.drift_state()
    saturated = settings.photorefractive_shift_per_watt * pump
    # saturated to e^-10, times the delivered pump's drift factor (1 +- 1 %, < 5 sigma)
    assert lit.photorefractive_shift == pytest.approx(saturated, rel=0.05)
    assert lit.photorefractive_shift > 0  # lower index: the line moves to higher frequency
    world.set_pump(on=False)
    world.advance(settings.photorefractive_tau_dark)
    dark = world.drift_state()
    assert dark.photorefractive_shift == pytest.approx(lit.photorefractive_shift / math.e,
                                                       rel=1e-9)
    # only lithium-niobate (electro-optic) devices: an opto-mechanical one has none
    om = realistic_world(3, "piezo_om")
    om.set_pump(power=pump, on=True)
    om.advance(HOUR)
    assert om.drift_state().photorefractive_shift == 0.0


# -- reproducible, cadence-free ----------------------------------------------------------------
def _read_everything(world: LabWorld) -> tuple[float, ...]:
    s = world.drift_state()
    return (s.optical_shift, s.photorefractive_shift, s.mw_shift, s.pump_factor,
            world.detection_factor("snspd/slot1"), world.tagger_delay_drift_ps("tagger", 2),
            world.mxc_temperature(), world.added_noise(), world.pump_power_at_device,
            world.efficiency())


def test_drift_is_reproducible_and_independent_of_how_often_the_world_is_read() -> None:
    def world_after(seed: int, steps: np.ndarray) -> LabWorld:
        world = realistic_world(seed)
        world.set_pump(power=2e-3, on=True)
        world.set_mw_drive(frequency=world.transducer.mw_resonance_frequency, on=True)
        for dt in steps:
            world.advance(float(dt))
            _read_everything(world)
        return world

    total = 6 * HOUR
    once = world_after(11, np.array([total]))
    cuts = np.sort(np.random.default_rng(0).uniform(0, total, 997))
    often = world_after(11, np.diff(np.concatenate([[0.0], cuts, [total]])))
    assert often.now() == pytest.approx(once.now(), abs=1e-6)
    a, b = _read_everything(once), _read_everything(often)
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    assert a[0] != 0.0 and a[3] != 1.0  # it did drift
    other = _read_everything(world_after(12, np.array([total])))
    assert other[0] != a[0] and other[2] != a[2]  # another seed, another drift


# -- measured through the instruments -----------------------------------------------------------
@pytest.mark.parametrize("ideal", [False, True])
def test_an_hour_of_drift_shows_in_the_power_meter_reading(tmp_path: Path,
                                                           ideal: bool) -> None:
    """Find the optical line with the resonance scan, park the pump on its flank (12.5 MHz,
    half the bulk_eo_cw linewidth, below it), and read the converted light through the
    PM100D driver now and an hour later: the realistic lab's line has moved (temperature,
    strain and the pump's own photorefractive shift) and the reading follows the world's
    truth; the ideal lab reads the same."""
    config = bench_config(tmp_path, "bulk_eo_cw", simulation={"ideal": ideal, "seed": 1})
    with load_station(config, profile="sim") as station:
        world = simulated_bench(station).world
        setup = station.setup
        f_mw = world.transducer.mw_resonance_frequency
        run = OpticalResonanceScan(mw_frequency=f_mw, span=1e9).run(station, tmp_path / "l.db",
                                                                    quiet=True)
        assert run.analysis is not None
        setup.optical_resonance_wavelength(
            run.analysis.values["optical_resonance_wavelength"].value)
        setup.mw_frequency(f_mw)
        setup.pump_power(2e-3)
        setup.pump_detuning(-12.5e6)
        setup.pump_on(True)
        setup.mw_source.rf_output(True)
        readings, truths, lines = [], [], []
        for _ in range(2):
            readings.append(setup.optical_power())
            truths.append(world.optical_output_power())
            lines.append(world.optical_resonance_frequency())
            world.advance(HOUR)
    measured, true = readings[1] / readings[0], truths[1] / truths[0]
    moved = lines[1] - lines[0]
    if ideal:
        assert moved == 0.0 and measured == pytest.approx(1.0, rel=0.02)
        return
    # seed 1: the line moved by 50 MHz (two linewidths; ~17 MHz of it photorefractive, under
    # the parked pump): the reading fell ~6x, as the world's truth says
    assert 10e6 < abs(moved) < 150e6, moved
    assert abs(measured - 1) > 0.5, measured
    assert measured == pytest.approx(true, rel=0.05), (measured, true)


def test_detection_paths_drift_each_on_their_own(tmp_path: Path) -> None:
    bench = build_bench(bench_config(tmp_path, "bulk_eo_cw",
                                     simulation={"ideal": False, "seed": 5}))
    world = bench.world
    world.set_pump(power=2e-3, on=True)
    sim900: Any = bench.device("snspd")
    ratios = []
    for _ in range(4):
        world.advance(HOUR)
        f1, f2 = world.detection_factor("snspd/slot1"), world.detection_factor("snspd/slot2")
        # the same light at both paths, each with its nominal collection and its own drift
        c1, c2 = (sim900.module(k).path.collection_efficiency for k in (1, 2))
        assert sim900.photon_rate(1) / sim900.photon_rate(2) == pytest.approx(
            c1 * f1 / (c2 * f2), rel=1e-12)
        ratios.append(f1 / f2)
    assert len(set(ratios)) == 4 and all(abs(r - 1) < 0.3 for r in ratios)
    assert set(drift_state(bench).detection_factors) >= {"snspd/slot1", "snspd/slot2"}


# -- step faults on top of the drift ---------------------------------------------------------
def _pair(tmp_path: Path) -> tuple[SimulatedBench, SimulatedBench]:
    """Two identical realistic benches (same seed): one gets a fault, one stays the twin."""
    config = bench_config(tmp_path, "bulk_eo_cw", simulation={"ideal": False, "seed": 9})
    benches = build_bench(config), build_bench(config)
    for bench in benches:
        bench.world.set_pump(power=2e-3, on=True)
        bench.world.advance(0.5 * HOUR)
    return benches


def _tagger_delay(bench: SimulatedBench) -> int:
    tagger: Any = bench.zmq_devices["tagger"]
    return int(tagger.tagging_model().channels[0].delay_ps)


STEPS: dict[str, tuple[Callable[[SimulatedBench], float], Callable[[SimulatedBench], float],
                       Callable[[float, float], float], float]] = {
    # fault, observable, relation faulted vs twin, expected relation
    "resonance jump": (lambda b: drift_optical_resonance(b, 150e6),
                       lambda b: b.world.drifted_transducer().optical_resonance_wavelength,
                       lambda f, t: SPEED_OF_LIGHT / f - SPEED_OF_LIGHT / t, 150e6),
    "microwave jump": (lambda b: shift_mw_resonance(b, 1e6),
                       lambda b: b.world.mw_resonance_frequency(), lambda f, t: f - t, 1e6),
    "pump coupling drop": (lambda b: drop_pump_coupling(b, 0.5),
                           lambda b: b.world.pump_power_at_device, lambda f, t: f / t, 0.5),
    "detector coupling drop": (
        # returns the plateau efficiency: the path's drift multiplies the light instead
        lambda b: drop_detector_efficiency(b, 0.7)
        * b.device("snspd").photon_rate(1),
        lambda b: b.device("snspd").photon_rate(1)
        * b.device("snspd").module(1).model.max_efficiency,
        lambda f, t: f / t, 0.7),
    "cable replaced": (lambda b: shift_tagger_input_delay(b, 1, 500), _tagger_delay,
                       lambda f, t: f - t, 500),
}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_step_faults_apply_on_top_of_the_drift(tmp_path: Path, step: str) -> None:
    fault, observe, relate, expected = STEPS[step]
    faulted, twin = _pair(tmp_path)
    returned = fault(faulted)
    assert returned == pytest.approx(observe(faulted), rel=1e-12)  # the truth now, drift in
    seen = []
    for _ in range(4):
        assert relate(observe(faulted), observe(twin)) == pytest.approx(expected, rel=1e-6)
        seen.append(observe(twin))
        for bench in (faulted, twin):
            bench.world.advance(1.5 * HOUR)
    assert len(set(seen)) > 1, f"{step}: the twin's observable never drifted"


# -- the ideal lab is today's ---------------------------------------------------------------
def test_the_ideal_lab_draws_no_drift_and_reads_as_before(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    consumers: list[str] = []
    original = LabWorld.rng

    def recording(self: LabWorld, consumer: str) -> np.random.Generator:
        consumers.append(consumer)
        return original(self, consumer)

    monkeypatch.setattr(LabWorld, "rng", recording)
    bench = build_bench(bench_config(tmp_path, "bulk_eo_cw",
                                     simulation={"seed": 4, "ideal": True}))
    world = bench.world
    assert world.ideal is True
    world.set_pump(power=2e-3, wavelength=1550.2e-9, on=True)
    world.set_mw_drive(frequency=8.001e9, power_dbm=-10.0, on=True)
    freqs = np.linspace(7.9e9, 8.1e9, 11)
    for _ in range(3):
        world.advance(5 * HOUR)
        m = world.transducer
        assert world.pump_detuning == SPEED_OF_LIGHT / 1550.2e-9 - m.optical_resonance_frequency
        assert world.mw_detuning == 8.001e9 - m.mw_resonance_frequency
        assert world.pump_power_at_device == 2e-3
        assert np.array_equal(world.mw_reflection(freqs), m.mw_reflection(freqs))
        assert world.drifted_transducer() is m
        bench.device("snspd").photon_rate(1)
        tagger: Any = bench.zmq_devices["tagger"]
        assert tagger.tagging_model() is tagger.model
        state = drift_state(bench)
        assert (state.optical_shift, state.mw_shift, state.pump_factor) == (0.0, 0.0, 1.0)
    assert not [c for c in consumers if c.startswith("drift/")]
