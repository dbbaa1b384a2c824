"""Issue 13 item 1: the emulated instruments' data-sheet noise and accuracy (``ideal: false``).

Through the real drivers against their twins where a driver reaches the quantity, and on the
emulators directly where many instances are needed (one per seed). Tolerances come from the
statistics, not from tuning:

* a per-instance error is drawn from N(0, sigma) with sigma = bound / 2
  (`instrument_errors.COVERAGE_FACTOR`); over N seeds (N - 1) s^2 / sigma^2 is chi-square with
  N - 1 degrees of freedom, and the test accepts its central 1 - 1e-6 interval, the mean within
  5 sigma / sqrt(N);
* a reading's noise over K readings: the same chi-square interval for its sample variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qnetlab.drivers.keysight import KeysightN5183B, KeysightP9374A
from qnetlab.drivers.lakeshore import LakeshoreModel372
from qnetlab.drivers.santec import SantecTSL570
from qnetlab.drivers.thorlabs import ThorlabsPM100D
from qnetlab.instruments.lab_config import load_config
from qnetlab.sim_instruments.devices import create_emulator
from qnetlab.sim_instruments.devices import keysight_n5183b as n5183b
from qnetlab.sim_instruments.devices import keysight_p9374a as p9374a
from qnetlab.sim_instruments.devices import lakeshore_372 as ls372
from qnetlab.sim_instruments.devices import santec_tsl570 as tsl570
from qnetlab.sim_instruments.devices import thorlabs_pm100d as pm100d
from qnetlab.sim_instruments.physics.instrument_errors import (
    db_bound_to_relative,
    sigma_of_bound,
)
from qnetlab.sim_instruments.physics.presets import get_preset
from qnetlab.sim_instruments.physics.world import LabWorld
from qnetlab.sim_instruments.visa_backend import bench_of

SEEDS = 300
"""Instances (seeds) for the spread of a per-instance error."""
P_REJECT = 1e-6
"""Two-sided probability of rejecting a correct variance (chi-square interval)."""


def variance_ratio_bounds(n: int) -> tuple[float, float]:
    """The central 1 - P_REJECT interval of s^2 / sigma^2 for n normal samples."""
    dof = n - 1
    return (stats.chi2.ppf(P_REJECT / 2, dof) / dof, stats.chi2.ppf(1 - P_REJECT / 2, dof) / dof)


def assert_spread(samples: np.ndarray, sigma: float, what: str) -> None:
    """`samples` look like N(0, sigma^2): variance within the chi-square interval, mean within
    5 sigma / sqrt(n)."""
    n = samples.size
    low, high = variance_ratio_bounds(n)
    ratio = float(np.var(samples, ddof=1)) / sigma**2
    assert low < ratio < high, f"{what}: s^2/sigma^2 = {ratio:.3f}, expected {low:.3f}..{high:.3f}"
    assert abs(samples.mean()) < 5 * sigma / math.sqrt(n), f"{what}: mean {samples.mean():.3g}"


def assert_noise(samples: np.ndarray, sigma: float, what: str) -> None:
    """`samples` scatter about their mean with standard deviation `sigma`."""
    low, high = variance_ratio_bounds(samples.size)
    ratio = float(np.var(samples, ddof=1)) / sigma**2
    assert low < ratio < high, f"{what}: s^2/sigma^2 = {ratio:.3f}, expected {low:.3f}..{high:.3f}"


def world_of(seed: int, ideal: bool = False) -> LabWorld:
    return LabWorld(get_preset("bulk_eo_cw").model, seed=seed, ideal=ideal)


def emulator(twin: str, seed: int, ideal: bool = False, name: str = "inst") -> Any:
    world = world_of(seed, ideal)
    return world, create_emulator(twin, world, name)


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``twin(DriverClass, "twin_name", seed=1, ideal=False)``: one driver against its twin
    over the in-process VISA backend, in a lab with ``qnetlab.simulation.ideal`` as given."""
    import pyvisa_qnetlab

    opened: list[Any] = []

    def open_twin(driver: type, twin_name: str, *, seed: int = 1, ideal: bool = False) -> Any:
        name = f"{twin_name}_{len(opened)}"
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"qnetlab:\n  simulation: {{seed: {seed}, transducer: bulk_eo_cw, "
            f"ideal: {str(ideal).lower()}}}\n"
            f"instruments:\n  {name}:\n    type: {driver.__module__}.{driver.__name__}\n"
            f"    address: {{sim: {twin_name}}}\n"
        )
        world = pyvisa_qnetlab.register_world(load_config(config))
        inst = driver(name, f"TCPIP0::{name}::{twin_name}::INSTR", visalib=world.visalib)
        opened.append(inst)
        return inst

    yield open_twin
    for inst in opened:
        inst.close()


# -- Santec TSL-570 -----------------------------------------------------------------------------
SIGMA_WL_ACC = sigma_of_bound(tsl570.WAVELENGTH_ACCURACY_PM) * 1e-12  # m
SIGMA_WL_REP = sigma_of_bound(tsl570.WAVELENGTH_REPEATABILITY_PM) * 1e-12  # m
SIGMA_P_STAB = sigma_of_bound(db_bound_to_relative(tsl570.POWER_STABILITY_DB))  # relative
SIGMA_P_ACC_DB = sigma_of_bound(tsl570.POWER_ACCURACY_DB)


def test_laser_emits_off_its_setpoint_while_reading_back_the_setpoint(twin):
    laser = twin(SantecTSL570, "santec_tsl570", seed=5)
    world, device = bench_of(laser).world, bench_of(laser).device(laser.name)
    offset_pm, _ = device.accuracy_errors()
    assert offset_pm != 0.0
    setpoint = 1550.2e-9
    emitted = []
    for _ in range(60):  # re-setting the same wavelength: each lands within the repeatability
        laser.wavelength(1550.1e-9)
        laser.wavelength(setpoint)
        laser.output(True)
        assert laser.wavelength() == pytest.approx(setpoint, rel=1e-12)  # the readback
        emitted.append(world.pump.wavelength - setpoint)
    errors = np.array(emitted)
    # The fixed offset is the same for every setting; the repeatability scatters about it.
    assert abs(errors.mean() - offset_pm * 1e-12) < 5 * SIGMA_WL_REP / math.sqrt(errors.size)
    assert_noise(errors, SIGMA_WL_REP, "wavelength repeatability")


def test_laser_power_has_a_fixed_error_and_fluctuates_within_its_stability(twin):
    laser = twin(SantecTSL570, "santec_tsl570", seed=6)
    world, device = bench_of(laser).world, bench_of(laser).device(laser.name)
    _, power_error_db = device.accuracy_errors()
    laser.output(True)
    ratios = []
    for _ in range(80):
        laser.power(5e-3)
        assert laser.power() == pytest.approx(5e-3, rel=1e-4)  # reads its setting
        ratios.append(world.pump.power / 5e-3)
    ratios_arr = np.array(ratios) / 10 ** (power_error_db / 10)
    assert abs(ratios_arr.mean() - 1) < 5 * SIGMA_P_STAB / math.sqrt(ratios_arr.size)
    assert_noise(ratios_arr, SIGMA_P_STAB, "power stability")


def test_laser_errors_over_instances_match_the_data_sheet():
    wavelength_errors, power_errors_db = [], []
    for seed in range(SEEDS):
        world, device = emulator("santec_tsl570", seed)
        device.handle(":POW:UNIT 1")
        device.handle(":WAV 1550.2000")
        device.handle(":POW 5")
        device.handle(":POW:STAT 1")
        while device.handle("*OPC?") == "0":  # tuning (realistic lab): poll, as a driver does
            pass
        assert float(device.handle(":WAV?") or "nan") == 1550.2
        wavelength_errors.append(world.pump.wavelength - 1550.2e-9)
        power_errors_db.append(10 * math.log10(world.pump.power / 5e-3))
    assert_spread(np.array(wavelength_errors), math.hypot(SIGMA_WL_ACC, SIGMA_WL_REP),
                  "wavelength accuracy (+ one repeatability draw)")
    stability_db = 10 * math.log10(1 + SIGMA_P_STAB)
    assert_spread(np.array(power_errors_db), math.hypot(SIGMA_P_ACC_DB, stability_db),
                  "power accuracy (+ one stability draw)")


# -- Keysight N5183B ----------------------------------------------------------------------------
def test_microwave_source_is_off_its_setting_by_a_fixed_error(twin):
    source = twin(KeysightN5183B, "keysight_n5183b", seed=7)
    world, device = bench_of(source).world, bench_of(source).device(source.name)
    fractional, level_db = device.accuracy_errors()
    for frequency, power in ((8.0e9, -10.0), (5.5e9, 3.0), (8.0e9, -10.0)):
        source.frequency(frequency)
        source.power(power)
        source.rf_output("on")
        assert source.frequency() == frequency and source.power() == power  # readbacks
        assert world.mw_drive.frequency == pytest.approx(frequency * (1 + fractional), rel=1e-15)
        assert world.mw_drive.power_dbm == pytest.approx(power + level_db, abs=1e-12)
    assert world.mw_drive.frequency != 8.0e9


def test_microwave_source_errors_over_instances_match_the_data_sheet():
    fractional, level = [], []
    for seed in range(SEEDS):
        world, device = emulator("keysight_n5183b", seed)
        device.handle("FREQ 8 GHZ")
        device.handle("POW -5")
        fractional.append(world.mw_drive.frequency / 8e9 - 1)
        level.append(world.mw_drive.power_dbm + 5)
    assert_spread(np.array(fractional), sigma_of_bound(n5183b.FREQUENCY_ACCURACY),
                  "timebase accuracy")
    assert_spread(np.array(level), sigma_of_bound(n5183b.LEVEL_ACCURACY_DB), "level accuracy")


# -- Thorlabs PM100D ----------------------------------------------------------------------------
def _light_on(world: LabWorld) -> None:
    """Pump and microwave drive on resonance: microwatts of converted light at the meter."""
    world.set_pump(power=1e-3, wavelength=world.transducer.optical_resonance_wavelength, on=True)
    world.set_mw_drive(frequency=world.transducer.mw_resonance_frequency, power_dbm=19.0, on=True)


def _meter_ratios(meter: Any, world: LabWorld, n: int) -> np.ndarray:
    """n readings over the true power at the time of each (removes any drift of the light)."""
    ratios = []
    for _ in range(n):
        reading = meter.power()
        ratios.append(reading / world.optical_output_power())
    return np.array(ratios)


def test_power_meter_has_a_fixed_calibration_error_and_relative_noise(twin):
    meter = twin(ThorlabsPM100D, "thorlabs_pm100d", seed=8)
    world, device = bench_of(meter).world, bench_of(meter).device(meter.name)
    _light_on(world)
    meter.wavelength(world.pump.wavelength)
    meter.averaging(1)
    light = world.optical_output_power()
    current = pm100d.responsivity(world.pump.wavelength) * light
    index = pm100d.current_range_index(current)
    sensor, linearity, ranges = device.calibration_errors()
    gain = (1 + sensor) * (1 + pm100d.linearity_deviation(light, linearity)) * (1 + ranges[index])
    ratios = _meter_ratios(meter, world, 200)
    step = pm100d.CURRENT_RANGES[index] * pm100d.RESOLUTION_FS / current
    sigma = math.sqrt(pm100d.RELATIVE_NOISE**2 + step**2 + step**2 / 12
                      + (pm100d.ThorlabsPM100DEmulator.noise_floor / light) ** 2)
    assert sigma < 0.3 * abs(gain - 1)  # the fixed error stands out of the noise
    assert abs(ratios.mean() - gain) < 5 * sigma / math.sqrt(ratios.size)
    assert_noise(ratios, sigma, "relative reading noise")


def test_power_meter_range_sets_resolution_and_noise(twin):
    meter = twin(ThorlabsPM100D, "thorlabs_pm100d", seed=9)
    world, device = bench_of(meter).world, bench_of(meter).device(meter.name)
    _light_on(world)
    meter.wavelength(world.pump.wavelength)
    meter.averaging(1)
    light = world.optical_output_power()
    responsivity = pm100d.responsivity(world.pump.wavelength)
    auto = _meter_ratios(meter, world, 100)
    meter.power_range(pm100d.ThorlabsPM100DEmulator.max_power)  # the top range, fixed
    assert device.current_range_in_use(responsivity * light) == len(pm100d.CURRENT_RANGES) - 1
    fixed = _meter_ratios(meter, world, 100)
    # On the top range one resolution step is many times the relative noise of the reading.
    step = pm100d.CURRENT_RANGES[-1] * pm100d.RESOLUTION_FS / (responsivity * light)
    assert step > 10 * pm100d.RELATIVE_NOISE
    assert np.std(fixed, ddof=1) > 5 * np.std(auto, ddof=1)
    assert_noise(fixed, math.sqrt(pm100d.RELATIVE_NOISE**2 + step**2 + step**2 / 12),
                 "noise on the top range")
    # Each range has its own gain error: the mean steps when the range changes.
    _, _, ranges = device.calibration_errors()
    auto_index = pm100d.current_range_index(responsivity * light)
    expected_step = (1 + ranges[-1]) / (1 + ranges[auto_index])
    assert fixed.mean() / auto.mean() == pytest.approx(expected_step, abs=5 * step / 10)


def test_power_meter_calibration_over_instances_matches_the_data_sheet():
    gains = []
    for seed in range(SEEDS):
        world, device = emulator("thorlabs_pm100d", seed)
        _light_on(world)
        device.handle(f"SENS:CORR:WAV {world.pump.wavelength * 1e9:.6f}")
        device.handle("SENS:AVER 1000")  # reading noise down to well below the accuracy
        reading = float(device.handle("MEAS:POW?") or "nan")
        gains.append(reading / world.optical_output_power() - 1)
    light = world.optical_output_power()
    index = pm100d.current_range_index(pm100d.responsivity(world.pump.wavelength) * light)
    sigma = math.sqrt(sigma_of_bound(pm100d.SENSOR_ACCURACY) ** 2
                      + (sigma_of_bound(pm100d.SENSOR_LINEARITY)
                         * pm100d.linearity_deviation(light, 1.0)) ** 2
                      + sigma_of_bound(pm100d.CONSOLE_ACCURACY_FS[index]) ** 2)
    # Products of (1 + e) terms: the second-order cross terms are < 1e-3 of sigma^2.
    assert_spread(np.array(gains), sigma, "sensor and console calibration")


# -- Keysight P9374A ----------------------------------------------------------------------------
def _far_off_resonance_trace(vna: Any) -> tuple[np.ndarray, np.ndarray]:
    vna.start(1.0e9)
    vna.stop(1.5e9)
    vna.points(401)
    vna.if_bandwidth(100)
    return vna.sweep()


def test_vna_trace_has_a_fixed_cable_ripple(twin):
    vna = twin(KeysightP9374A, "keysight_p9374a", seed=10)
    world, device = bench_of(vna).world, bench_of(vna).device(vna.name)
    frequency, s11 = _far_off_resonance_trace(vna)
    pure = world.mw_reflection(frequency)
    background = device.background
    expected = background.apply(pure, frequency)
    noise = world.settings.vna_noise * math.sqrt(100 / p9374a.REFERENCE_IFBW)
    # The trace is the fixed background plus white noise of the documented size.
    residual = s11 - expected
    assert np.sqrt(np.mean(np.abs(residual) ** 2)) == pytest.approx(noise, rel=0.2)
    # The ripple: |S11| varies by about 2 |r| over the span, far above the noise.
    ripple = np.abs(s11) / np.abs(pure)
    assert np.ptp(ripple) > 1.5 * abs(background.reflection)
    assert abs(background.reflection) > 10 * noise
    _, again = vna.sweep()
    assert np.sqrt(np.mean(np.abs(again - expected) ** 2)) == pytest.approx(noise, rel=0.2)


def test_vna_background_differs_across_instances():
    backgrounds = [emulator("keysight_p9374a", seed)[1].background for seed in range(40)]
    reflections = np.array([b.reflection for b in backgrounds])
    assert np.all(np.abs(reflections) >= 0.5 * p9374a.MISMATCH_REFLECTION)
    assert np.all(np.abs(reflections) <= p9374a.MISMATCH_REFLECTION)
    assert len({round(b.cable_length, 9) for b in backgrounds}) == len(backgrounds)


# -- Lake Shore 372 -----------------------------------------------------------------------------
def test_thermometer_calibration_error_is_fixed_per_sensor(twin):
    bridge = twin(LakeshoreModel372, "lakeshore_372", seed=11)
    world, device = bench_of(bridge).world, bench_of(bridge).device(bridge.name)
    error = device.calibration_error("6")
    truth = world.mxc_temperature()
    kelvin = np.array([bridge.ch06.temperature() for _ in range(50)])
    ohms = np.array([float(bridge.ask("SRDG? 6")) for _ in range(50)])
    # The bridge reads the resistance truly; the curve maps it to the wrong temperature.
    assert abs(ohms.mean() / ls372.resistance_of(truth) - 1) < 5 * ls372.RESISTANCE_NOISE
    r_over = math.log(ls372.resistance_of(truth) / ls372.R_INF)
    kelvin_noise = 4 * ls372.RESISTANCE_NOISE / r_over  # |dlnT/dlnR| = 4 / ln(R/R_inf)
    assert abs(kelvin.mean() / truth - (1 + error)) < 5 * kelvin_noise / math.sqrt(kelvin.size)
    assert abs(error) > 10 * kelvin_noise / math.sqrt(kelvin.size)


def test_thermometer_calibration_over_instances_matches_the_data_sheet():
    errors = []
    for seed in range(SEEDS):
        world, device = emulator("lakeshore_372", seed)
        kelvin = np.mean([float(device.handle("KRDG? 6") or "nan") for _ in range(10)])
        errors.append(kelvin / world.mxc_temperature() - 1)
    assert_spread(np.array(errors), sigma_of_bound(ls372.CALIBRATION_ACCURACY),
                  "RuOx calibration")


# -- settling (issue 13 item 1): lab time before a new setting is at its output ------------------
def test_laser_tunes_in_lab_time_and_the_driver_waits_for_opc(twin):
    """TSL-570: a wavelength set reaches the pump `tsl570.tuning_time` after the command
    (settle + move at the top sweep speed); ``*OPC?`` reads 0 meanwhile, and the driver's set
    returns only once it reads 1, i.e. after the tuning time and at most one ``*OPC?`` exchange
    (`OPC_EXCHANGE_S`) more. Timings are exact (virtual clock), so the bounds are too."""
    laser = twin(SantecTSL570, "santec_tsl570", seed=12)
    world, device = bench_of(laser).world, bench_of(laser).device(laser.name)
    before_nm = float(laser.ask(":WAV?"))
    target = 1560.0e-9
    expected = tsl570.tuning_time(before_nm, 1560.0)
    assert expected > tsl570.TUNING_SETTLE_S
    t0 = world.now()
    laser.wavelength(target)
    waited = world.now() - t0
    assert expected <= waited <= expected + tsl570.OPC_EXCHANGE_S + 1e-12
    assert laser.ask("*OPC?") == "1"
    offset_pm, _ = device.accuracy_errors()
    # Settled: the emitted wavelength is the setting's, off by the data-sheet errors only.
    assert abs(world.pump.wavelength - target - offset_pm * 1e-12) < 5 * SIGMA_WL_REP

    # The same on the wire, without the driver's wait: the pump has not moved yet.
    old = world.pump.wavelength
    laser.write(":WAV 1550.0000")
    assert device.tuning and world.pump.wavelength == old
    world.advance(tsl570.tuning_time(1560.0, 1550.0) - 1e-6)
    assert world.pump.wavelength == old  # still tuning a microsecond before the end
    world.advance(2e-6)
    assert not device.tuning
    assert abs(world.pump.wavelength - 1550e-9 - offset_pm * 1e-12) < 5 * SIGMA_WL_REP


def test_microwave_source_switching_takes_its_data_sheet_time(twin):
    """N5183B: a frequency or level change completes (the command returns) after the switching
    time, so the tone is at its new value when the next exchange comes; a repeated setting
    does not switch."""
    source = twin(KeysightN5183B, "keysight_n5183b", seed=13)
    world = bench_of(source).world
    source.rf_output("on")
    for set_, value, switching in ((source.frequency, 5.5e9, n5183b.FREQUENCY_SWITCHING_S),
                                   (source.power, -7.0, n5183b.LEVEL_SWITCHING_S),
                                   (source.frequency, 5.5e9, 0.0)):
        t0 = world.now()
        set_(value)
        assert world.now() - t0 == pytest.approx(switching, abs=1e-12)
    assert world.mw_drive.frequency == pytest.approx(5.5e9, rel=5 * n5183b.FREQUENCY_ACCURACY)


def test_power_meter_range_change_delays_the_reading(twin):
    """PM100D: a measurement (``MEAS:POW?``, count x 3 ms) started right after a range change
    ends `RANGE_SETTLE_S` later; so does one over which auto-ranging switches range."""
    meter = twin(ThorlabsPM100D, "thorlabs_pm100d", seed=14)
    world = bench_of(meter).world
    _light_on(world)
    meter.averaging(10)
    measuring = 10 * pm100d.ThorlabsPM100DEmulator.sample_time

    def reading_time() -> float:
        t0 = world.now()
        meter.power()
        return world.now() - t0

    reading_time()  # the range in use is known from here on
    assert reading_time() == pytest.approx(measuring, abs=1e-12)
    meter.power_range(pm100d.ThorlabsPM100DEmulator.max_power)  # a fixed range
    assert reading_time() == pytest.approx(measuring + pm100d.RANGE_SETTLE_S, abs=1e-12)
    assert reading_time() == pytest.approx(measuring, abs=1e-12)
    meter.write("SENS:POW:RANG:AUTO 1")
    assert reading_time() == pytest.approx(measuring + pm100d.RANGE_SETTLE_S, abs=1e-12)
    world.set_mw_drive(on=False)  # microwatts down to the leaked pump: a lower range
    assert reading_time() == pytest.approx(measuring + pm100d.RANGE_SETTLE_S, abs=1e-12)
    assert reading_time() == pytest.approx(measuring, abs=1e-12)


def test_thermometer_channel_change_holds_through_the_pause_then_settles():
    """372: after ``SCAN`` to channel 6 its readings hold the reading it had at the change for
    the channel's pause time (INSET, 3 s by default), then approach the live reading with the
    200 ms filter. One filter time constant into the settling the noise-free reading is
    live + (held - live) / e; a reading's noise is RESISTANCE_NOISE relative (rms), so 5 of it
    bounds the check."""
    world, bridge = emulator("lakeshore_372", 15, name="ls")
    pause = bridge.inputs["6"].pause
    bridge.handle("SCAN 6,0")
    held = float(bridge.handle("SRDG? 6") or "nan")
    world.set_extra_heat_load(1e-4)  # the mixing chamber warms up meanwhile
    world.advance(pause - 0.1)
    assert float(bridge.handle("SRDG? 6") or "nan") == held  # held, not even noise
    live = ls372.resistance_of(world.mxc_temperature())
    assert abs(held / live - 1) > 100 * ls372.RESISTANCE_NOISE  # the truth has moved
    world.advance(0.1 + ls372.READING_FILTER_TAU_S)
    live = ls372.resistance_of(world.mxc_temperature())
    settling = live + (held - live) / math.e
    reading = float(bridge.handle("SRDG? 6") or "nan")
    assert abs(reading / settling - 1) < 5 * ls372.RESISTANCE_NOISE
    world.advance(ls372.SETTLED_AFTER_TAUS * ls372.READING_FILTER_TAU_S)
    live = ls372.resistance_of(world.mxc_temperature())
    assert abs(float(bridge.handle("SRDG? 6") or "nan") / live - 1) < 5 * ls372.RESISTANCE_NOISE


def test_ideal_lab_settles_at_once():
    """``ideal: true``: no settling anywhere, as before: settings reach the world with no lab
    time passing, ``*OPC?`` reads 1 at once, a range change adds nothing, and a scanner change
    holds no reading."""
    world, laser = emulator("santec_tsl570", 3, ideal=True, name="laser")
    laser.handle(":WAV 1560.0000")
    assert (world.pump.wavelength, laser.handle("*OPC?"), world.now()) == (1560e-9, "1", 0.0)

    world, source = emulator("keysight_n5183b", 3, ideal=True, name="mw")
    source.handle("FREQ 5.5 GHZ")
    source.handle("POW -7")
    assert (world.mw_drive.frequency, world.now()) == (5.5e9, 0.0)

    world, meter = emulator("thorlabs_pm100d", 3, ideal=True, name="pm")
    _light_on(world)
    meter.handle("SENS:AVER 10")
    meter.handle("SENS:POW:RANG 20MW")
    meter.handle("MEAS:POW?")
    assert world.now() == pytest.approx(10 * pm100d.ThorlabsPM100DEmulator.sample_time,
                                        abs=1e-15)

    world, bridge = emulator("lakeshore_372", 3, ideal=True, name="ls")
    bridge.handle("SCAN 6,0")
    readings = {bridge.handle("SRDG? 6") for _ in range(3)}
    assert len(readings) == 3  # live: fresh noise every reading, no held value


# -- the clean lab is unchanged -----------------------------------------------------------------
def test_ideal_lab_instruments_are_exact():
    """``ideal: true``: settings reach the world exactly, readings carry only today's noise,
    drawn from the instrument's own generator exactly as before issue 13."""
    world, laser = emulator("santec_tsl570", 3, ideal=True, name="laser")
    laser.handle(":POW:UNIT 1")
    laser.handle(":WAV 1550.2000")
    laser.handle(":POW 5")
    assert (world.pump.wavelength, world.pump.power) == (1550.2 * 1e-9, 5e-3)

    world, source = emulator("keysight_n5183b", 3, ideal=True, name="mw")
    source.handle("FREQ 8 GHZ")
    source.handle("POW -5")
    assert (world.mw_drive.frequency, world.mw_drive.power_dbm) == (8e9, -5.0)

    world, meter = emulator("thorlabs_pm100d", 3, ideal=True, name="pm")
    _light_on(world)
    meter.handle("SENS:CORR:WAV 1550")
    meter.handle("SENS:AVER 4")
    noise = world.rng("pm")  # the meter's own generator, replayed
    for _ in range(5):
        reading = float(meter.handle("MEAS:POW?") or "nan")
        r_true = pm100d.responsivity(world.pump.wavelength)
        current = r_true * world.optical_output_power() + r_true * noise.normal(
            0.0, pm100d.ThorlabsPM100DEmulator.noise_floor / 2)
        assert reading == float(f"{current / pm100d.responsivity(1550e-9):+.9E}")

    world, bridge = emulator("lakeshore_372", 3, ideal=True, name="ls")
    kelvin, ohms = float(bridge.handle("KRDG? 6") or "nan"), float(
        bridge.handle("SRDG? 6") or "nan")
    assert kelvin == pytest.approx(world.mxc_temperature(), rel=5 * ls372.RESISTANCE_NOISE)
    assert ohms == pytest.approx(ls372.resistance_of(world.mxc_temperature()),
                                 rel=5 * ls372.RESISTANCE_NOISE)

    world, vna = emulator("keysight_p9374a", 3, ideal=True, name="vna")
    vna.handle("SENS:FREQ:STAR 7.9 GHZ;STOP 8.1 GHZ")
    vna.handle("SENS:SWE:POIN 51")
    vna.handle("SENS:BAND 1000")
    vna.take_sweeps(1)
    freqs = np.linspace(7.9e9, 8.1e9, 51)
    rng = world.rng("vna")
    scale = world.settings.vna_noise / math.sqrt(2)
    expected = world.mw_reflection(freqs) + rng.normal(0.0, scale, 51) + 1j * rng.normal(
        0.0, scale, 51)
    np.testing.assert_allclose(vna._data[1], expected, rtol=0, atol=1e-12)
